"""Scaling plots (speedup against IPUs) and sweep plots (heatmaps, Pareto front).

Both take plain rows, not runs: the CLI runs the scenarios or opens the results store.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from simulator.viz.page import TEMPLATE, Page

_NAME = re.compile(r"^(?P<model>.+?)-(?P<round>v\d+(?:\.\d+)*)-(?P<system>.+)$")
SERIES_COLOURS = ["#3b75c4", "#d8403a", "#3aa757", "#8e5ac8", "#f2a02d", "#19b6c9", "#8c5a3c"]


@dataclass(frozen=True)
class ScalePoint:
    """One simulated scenario of a scaling series."""

    series: str  # e.g. "resnet50 v1.1"
    name: str
    chips: int
    throughput: float | None  # None: infeasible
    unit: str = "samples/s"
    step_breakdown: dict[str, float] | None = None  # critical-path seconds by cause


@dataclass(frozen=True)
class Measured:
    """A measured point (with its source)."""

    series: str
    chips: int
    throughput: float
    source: str


def series_of(name: str) -> str:
    """``resnet50-v1.1-pod64`` -> ``resnet50 v1.1`` (the name itself when it has no round)."""
    m = _NAME.match(name)
    return f"{m['model']} {m['round']}" if m else name


def measured_points(doc: dict[str, Any], source: str) -> list[Measured]:
    """Measured points of a validation file shaped like validation/mlperf.yaml."""
    out = []
    for p in doc.get("points", []):
        chips = int(p.get("chips", 16))
        out.append(Measured(f"{p['model']} {p['round']}", chips, float(p["throughput"]), source))
    return out


def scaling_figure(points: Sequence[ScalePoint], measured: Sequence[Measured]) -> go.Figure:
    """Speedup over the series' 16-IPU point (measured if known, else the smallest simulated
    one) against IPUs, with the ideal line; and throughput against IPUs (log-log)."""
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("speedup against IPUs", "throughput against IPUs"),
        horizontal_spacing=0.08,
    )
    names = sorted({p.series for p in points} | {m.series for m in measured})
    top, base = 16, 0
    for i, series in enumerate(names):
        colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
        mine = sorted((p for p in points if p.series == series), key=lambda p: p.chips)
        meas = [m for m in measured if m.series == series]
        ok = [p for p in mine if p.throughput]
        ref: tuple[int, float] | None = None
        if meas:
            m0 = min(meas, key=lambda m: m.chips)
            ref = (m0.chips, m0.throughput)
        elif ok:
            ref = (ok[0].chips, float(ok[0].throughput))  # type: ignore[arg-type]
        if ref is None:
            continue
        base = min(base or ref[0], ref[0])
        top = max(top, *(p.chips for p in mine), *(m.chips for m in meas))
        hover = [f"{p.name}: {p.throughput:,.0f} {p.unit}" for p in ok]
        common = {"mode": "lines+markers", "legendgroup": series, "line": {"color": colour}}
        fig.add_trace(
            go.Scatter(
                x=[p.chips for p in ok],
                y=[p.throughput / ref[1] for p in ok],  # type: ignore[operator]
                name=f"{series} (simulated)",
                text=hover,
                hovertemplate="%{text}<br>speedup %{y:.2f}×<extra></extra>",
                **common,
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=[p.chips for p in ok],
                y=[p.throughput for p in ok],
                name=f"{series} (simulated)",
                text=hover,
                hovertemplate="%{text}<extra></extra>",
                showlegend=False,
                **common,
            ),
            row=1,
            col=2,
        )
        bad = [p for p in mine if not p.throughput]
        if bad:
            fig.add_trace(
                go.Scatter(
                    x=[p.chips for p in bad],
                    y=[p.chips / ref[0] for p in bad],
                    mode="markers",
                    marker={"symbol": "x-open", "size": 10, "color": colour},
                    name=f"{series} (infeasible)",
                    legendgroup=series,
                    text=[p.name for p in bad],
                    hovertemplate="%{text}: infeasible (drawn on the ideal line)<extra></extra>",
                ),
                row=1,
                col=1,
            )
        for col, ys in (
            (1, [m.throughput / ref[1] for m in meas]),
            (2, [m.throughput for m in meas]),
        ):
            if meas:
                fig.add_trace(
                    go.Scatter(
                        x=[m.chips for m in meas],
                        y=ys,
                        mode="markers",
                        marker={
                            "symbol": "star",
                            "size": 14,
                            "color": colour,
                            "line": {"width": 1, "color": "black"},
                        },
                        name=f"{series} (measured)",
                        legendgroup=series,
                        showlegend=col == 1,
                        text=[f"measured: {m.throughput:,.0f} ({m.source})" for m in meas],
                        hovertemplate="%{text}<extra></extra>",
                    ),
                    row=1,
                    col=col,
                )
    base = base or 16
    xs = [base * 2**k for k in range(int(math.log2(max(top, base) / base)) + 1)]
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=[x / base for x in xs],
            mode="lines",
            line={"dash": "dash", "color": "#555"},
            name=f"ideal (linear from {base} IPUs)",
            hoverinfo="skip",
        ),
        row=1,
        col=1,
    )
    for col in (1, 2):
        fig.update_xaxes(type="log", dtick=math.log10(2), title_text="IPUs", row=1, col=col)
    speedups = [y for tr in fig.data if tr.xaxis in (None, "x") for y in (tr.y or ())]
    rates = [y for tr in fig.data if tr.xaxis == "x2" for y in (tr.y or ())]
    fig.update_yaxes(
        type="log", title_text=f"speedup over {base} IPUs", row=1, col=1, **log_ticks(speedups)
    )
    fig.update_yaxes(type="log", title_text="samples/s", row=1, col=2, **log_ticks(rates))
    fig.update_layout(height=560, template=TEMPLATE)
    return fig


#: step_breakdown causes (simulator.breakdown.CAUSES) as drawn, with their colours
CAUSE_STYLE = {
    "compute": ("compute", "#3b75c4"),
    "bubble": ("pipeline bubble", "#b9cbe6"),
    "exchange": ("exchange", "#f2a02d"),
    "sync": ("sync", "#8e5ac8"),
    "transfer": ("stage transfers", "#3aa757"),
    "collective_ipu_link": ("collective, IPU-Links", "#d8403a"),
    "collective_gw_link": ("collective, GW-Links", "#7a1f1b"),
    "optimizer": ("optimizer", "#e377c2"),
    "streaming_memory": ("Streaming Memory", "#8c5a3c"),
    "host_io": ("host input", "#19b6c9"),
    "host": ("host step end", "#6b6b6b"),
    "rng": ("RNG", "#17becf"),
    "other": ("other", "#e4e4e4"),
}


def step_breakdown_figure(rows: Sequence[tuple[str, dict[str, float]]]) -> go.Figure:
    """Stacked bars: where each step goes (its critical path by cause), one bar per labelled
    run, as shares of the step so that runs of very different step times compare; the hover
    gives milliseconds."""
    fig = go.Figure()
    labels = [label for label, _ in rows]
    totals = [sum(bd.values()) or 1.0 for _, bd in rows]
    for cause, (title, colour) in CAUSE_STYLE.items():
        secs = [bd.get(cause, 0.0) for _, bd in rows]
        if any(secs):
            fig.add_trace(
                go.Bar(
                    name=title,
                    x=labels,
                    y=[100 * v / t for v, t in zip(secs, totals, strict=True)],
                    customdata=[v * 1e3 for v in secs],
                    marker_color=colour,
                    hovertemplate="%{x}: "
                    + title
                    + " %{customdata:,.3f} ms (%{y:.1f} %)<extra></extra>",
                )
            )
    fig.update_layout(
        template=TEMPLATE,
        barmode="stack",
        height=520,
        yaxis={"title": {"text": "share of the step's critical path (%)"}, "range": [0, 100]},
        xaxis={"type": "category", "tickangle": -45},
        margin={"b": 160},
    )
    return fig


def scaling_page(points: Sequence[ScalePoint], measured: Sequence[Measured]) -> Page:
    """The scaling page: figure, table, where each step goes, what is measured and predicted."""
    p = Page("Scaling: speedup against IPUs")
    p.figure(scaling_figure(points, measured), "scaling")
    broken = [
        (f"{pt.name}", pt.step_breakdown)
        for pt in sorted(points, key=lambda q: (q.series, q.chips, q.name))
        if pt.step_breakdown
    ]
    if broken:
        p.heading("Where the step goes, by system size", "step-breakdown")
        p.figure(step_breakdown_figure(broken), "step-breakdown-figure")
    p.table(
        [
            (pt.name, pt.chips, f"{pt.throughput:,.0f}" if pt.throughput else "infeasible")
            for pt in sorted(points, key=lambda q: (q.series, q.chips, q.name))
        ],
        header=["scenario", "IPUs", "simulated samples/s"],
    )
    p.notes(
        [
            "Speedup = throughput ÷ the series' measured 16-IPU throughput (or, without one, its "
            "smallest simulated system). Stars are measured points (16 and 64 IPUs in "
            "validation/mlperf.yaml); lines are simulated. Systems without a star are "
            "predictions.",
            "Where the step goes: the critical path of one simulated step by cause "
            "(docs/metrics.md, step_breakdown); per-IPU efficiency falls as the causes that "
            "do not shrink with the system (host step end, syncs, collectives, the pipeline "
            "bubble of fewer micro-batches) take a larger share.",
            "Infeasible plans (they do not fit in SRAM) are crosses drawn on the ideal line.",
        ]
    )
    return p


# ---- sweeps ------------------------------------------------------------------------------------

METRICS = (
    ("throughput_samples_per_s", "throughput (samples/s)", True),
    ("time_to_train_s", "time to train (s)", False),
)


def _label(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def percent_format(top: float, ticks: int = 5) -> str:
    """A ``%`` format with enough decimals that ``ticks`` steps up to ``top`` read distinctly
    (``.0%`` for 0-100 %, ``.1%`` for 0-4 %, ...)."""
    step = top / ticks if top > 0 else 1.0
    decimals = 0
    while decimals < 4 and step * 100 < 10 ** (-decimals) - 1e-12:
        decimals += 1
    return f".{decimals}%"


def log_ticks(values: Sequence[float]) -> dict[str, Any]:
    """Tick values and labels for a log axis over ``values``: 1-2-5 steps inside their range,
    written out in full (12,000 rather than the bare '2' and '5' of plotly's minor ticks)."""
    pos = [v for v in values if v is not None and v > 0]
    if not pos:
        return {}
    lo, hi = min(pos), max(pos)
    ticks: list[float] = []
    decade = 10 ** math.floor(math.log10(lo))
    while decade <= hi * 10:
        ticks += [m * decade for m in (1, 2, 5) if lo / 2 <= m * decade <= hi * 2]
        decade *= 10
    if len(ticks) < 2:
        ticks = sorted({lo, hi})
    text = [f"{t:,.3g}" if t < 1000 else f"{t:,.0f}" for t in ticks]
    return {"tickvals": ticks, "ticktext": text}


def _order(labels: Sequence[str], raw: dict[str, Any]) -> list[str]:
    """Axis labels sorted by value: numbers numerically, text naturally (bow-pod16 before
    bow-pod128), lists by their text."""

    def key(label: str) -> tuple[Any, ...]:
        v = raw.get(label)
        if isinstance(v, bool) or not isinstance(v, int | float):
            parts = re.split(r"(\d+)", label)
            return (1, tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts))
        return (0, float(v))

    return sorted(labels, key=key)


def sweep_axes(rows: Sequence[dict[str, Any]], values: Sequence[dict[str, Any]]) -> list[str]:
    """Swept key paths with more than one distinct value, in the sweep's order."""
    keys = list(dict.fromkeys(k for v in values for k in v))
    return [k for k in keys if len({_label(r.get(k)) for r in rows}) > 1]


def heatmap_figure(
    rows: Sequence[dict[str, Any]], axes: Sequence[str], metric: str, title: str, higher: bool
) -> go.Figure:
    """Best ``metric`` over the other axes, for each pair of the first two axes."""
    x_key, y_key = axes[0], axes[1] if len(axes) > 1 else None
    raw_x = {_label(r.get(x_key)): r.get(x_key) for r in rows}
    xs = _order(list(raw_x), raw_x)
    raw_y = {_label(r.get(y_key)): r.get(y_key) for r in rows} if y_key else {}
    ys = _order(list(raw_y), raw_y) if y_key else [""]
    best: dict[tuple[str, str], float] = {}
    for r in rows:
        v = r.get(metric)
        if r.get("status") != "ok" or v is None:
            continue
        key = (_label(r.get(x_key)), _label(r.get(y_key)) if y_key else "")
        old = best.get(key)
        if old is None or (v > old if higher else v < old):
            best[key] = float(v)
    z = [[best.get((x, y)) for x in xs] for y in ys]
    text = [["" if best.get((x, y)) is not None else "none feasible" for x in xs] for y in ys]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=xs,
            y=ys,
            text=text,
            texttemplate="%{text}",
            colorscale="Viridis" if higher else "Viridis_r",
            colorbar={"title": {"text": title}},
            hovertemplate=f"{x_key} %{{x}}"
            + (f"<br>{y_key} %{{y}}" if y_key else "")
            + f"<br>{title}: %{{z:,.4g}}<extra></extra>",
        )
    )
    other = [a for a in axes[2:]]
    fig.update_layout(
        height=max(320, 120 + 40 * len(ys)),
        xaxis={"title": {"text": x_key}, "type": "category"},
        yaxis={"title": {"text": y_key or ""}, "type": "category"},
        title={
            "text": f"{title}" + (f" (best over {', '.join(other)})" if other else ""),
            "x": 0.01,
        },
        template=TEMPLATE,
    )
    return fig


def pareto(points: Sequence[tuple[float, float]], higher: bool) -> list[int]:
    """Indices of the points not dominated: fewer (or equal) cost and a better (or equal)
    value, strictly better in one. Sorted by cost."""
    order = sorted(
        range(len(points)), key=lambda i: (points[i][0], -points[i][1] if higher else points[i][1])
    )
    front: list[int] = []
    best: float | None = None
    for i in order:
        v = points[i][1]
        if best is None or (v > best if higher else v < best):
            front.append(i)
            best = v
    return front


def pareto_figure(
    rows: Sequence[dict[str, Any]], axes: Sequence[str], metric: str, title: str, higher: bool
) -> go.Figure | None:
    """Every feasible point (IPUs against ``metric``) with the Pareto front drawn through."""
    ok = [r for r in rows if r.get("status") == "ok" and r.get(metric) is not None]
    if not ok:
        return None
    pts = [(float(r["chips"]), float(r[metric])) for r in ok]
    front = pareto(pts, higher)
    hover = ["<br>".join(f"{a} = {_label(r.get(a))}" for a in axes) for r in ok]
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[p[0] for p in pts],
            y=[p[1] for p in pts],
            mode="markers",
            name="points",
            marker={"size": 8, "color": "#3b75c4", "opacity": 0.6},
            text=hover,
            hovertemplate="%{text}<br>IPUs %{x}<br>" + title + " %{y:,.4g}<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[pts[i][0] for i in front],
            y=[pts[i][1] for i in front],
            mode="lines+markers",
            name="Pareto front",
            line={"color": "#d8403a", "shape": "hv"},
            marker={"size": 10, "color": "#d8403a"},
            text=[hover[i] for i in front],
            hovertemplate="%{text}<br>IPUs %{x}<br>" + title + " %{y:,.4g}<extra></extra>",
        )
    )
    fig.update_layout(
        height=460,
        xaxis={"title": {"text": "IPUs"}, "type": "log", "dtick": math.log10(2)},
        yaxis={"title": {"text": title}, "type": "log", **log_ticks([y for _, y in pts])},
        title={"text": f"Pareto front: IPUs against {title}", "x": 0.01},
        template=TEMPLATE,
    )
    return fig


def sweep_page(sweeps: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]]) -> Page:
    """One page for a results store: per sweep, heatmaps of each metric and the Pareto front.

    ``sweeps``: name -> (flat rows, each row's swept values)."""
    p = Page("Sweep results", f"{len(sweeps)} sweep(s)")
    n = 0
    for name, (rows, values) in sweeps.items():
        p.heading(f"Sweep {name}", f"sweep-{n}")
        axes = sweep_axes(rows, values)
        status = {
            s: sum(1 for r in rows if r.get("status") == s) for s in ("ok", "infeasible", "error")
        }
        p.table([(k, v) for k, v in status.items()] + [("swept", ", ".join(axes) or "nothing")])
        for metric, title, higher in METRICS:
            if not any(r.get(metric) is not None for r in rows):
                continue
            if axes:
                p.figure(heatmap_figure(rows, axes, metric, title, higher), f"heatmap-{n}-{metric}")
            fig = pareto_figure(rows, axes, metric, title, higher)
            if fig is not None:
                p.figure(fig, f"pareto-{n}-{metric}")
        n += 1
    p.notes(
        [
            "Heatmaps show the best value over the axes not drawn; 'none feasible' cells had no "
            "feasible point. The Pareto front joins the points no other point beats with as "
            "many or fewer IPUs."
        ]
    )
    return p
