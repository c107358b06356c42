"""Step-time distributions: by strategy for a results store (``ipusim results plot``), and of
one run with variability (``ipusim run --report``). docs/variability.md.

The store's points are grouped by their noise condition — the swept ``variability.*`` values
— and, inside a condition, drawn one box per strategy with every sampled step as a point,
then ranked by mean and by p99 step time. A point without variability (a steady machine) is a
distribution of one step.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go

from simulator.viz.page import Page

COLOURS = ["#3b75c4", "#d8403a", "#3aa757", "#8e5ac8", "#f2a02d", "#19b6c9", "#8c5a3c"]


@dataclass(frozen=True)
class Sampled:
    """One point's step-time distribution."""

    condition: str  # the noise it ran under, e.g. "compute_cv 0.1"
    label: str  # the strategy (with the point's name when two share a strategy)
    steps_s: tuple[float, ...]
    mean_s: float
    p50_s: float
    p99_s: float
    throughput: float | None

    @classmethod
    def of(cls, doc: dict[str, Any], condition: str, label: str) -> Sampled | None:
        """From a result document (None when infeasible)."""
        step = doc.get("step_time_s")
        if not doc.get("feasible") or step is None:
            return None
        steps = tuple(doc.get("step_time_samples_s") or [step])
        return cls(
            condition,
            label,
            steps,
            float(doc.get("step_time_mean_s", step)),
            float(doc.get("step_time_p50_s", step)),
            float(doc.get("step_time_p99_s", step)),
            doc.get("throughput_samples_per_s"),
        )


def _render(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return "none" if not value else json.dumps(value, separators=(", ", ": "))
    if isinstance(value, list):
        return "none" if not value else f"{len(value)}"
    return str(value)


def condition_of(values: dict[str, Any]) -> str:
    """A point's noise condition from its swept values (the ``variability.*`` ones)."""
    parts = [
        f"{k.removeprefix('variability.')} {_render(v)}"
        for k, v in values.items()
        if k.startswith("variability")
    ]
    return ", ".join(parts) or "as given"


def from_store(rows: Sequence[dict[str, Any]]) -> list[Sampled]:
    """The distributions of a store's rows (``Store.rows``: values and result JSON)."""
    out: list[Sampled] = []
    for row in rows:
        if not row.get("result"):
            continue
        doc = json.loads(row["result"])
        values = json.loads(row["values"])
        point = Sampled.of(doc, condition_of(values), str(doc.get("strategy", doc.get("name"))))
        if point is not None:
            out.append(point)
    return _distinct_labels(out, rows)


def _distinct_labels(points: list[Sampled], rows: Sequence[dict[str, Any]]) -> list[Sampled]:
    """Two points of one condition with one strategy get their sweep index beside it."""
    seen: dict[tuple[str, str], int] = {}
    for p in points:
        seen[(p.condition, p.label)] = seen.get((p.condition, p.label), 0) + 1
    out = []
    counters: dict[tuple[str, str], int] = {}
    for p in points:
        key = (p.condition, p.label)
        if seen[key] > 1:
            counters[key] = counters.get(key, 0) + 1
            p = Sampled(**{**p.__dict__, "label": f"{p.label} #{counters[key]}"})
        out.append(p)
    return out


def conditions(points: Sequence[Sampled]) -> dict[str, list[Sampled]]:
    """Points by condition, in the order the conditions first appear."""
    out: dict[str, list[Sampled]] = {}
    for p in points:
        out.setdefault(p.condition, []).append(p)
    return out


def ranking(points: Sequence[Sampled]) -> list[list[Any]]:
    """Rows ranking ``points`` by mean step time (then p99), with their rank by p99."""
    by_p99 = {id(p): i + 1 for i, p in enumerate(sorted(points, key=lambda p: (p.p99_s, p.label)))}
    rows = []
    for i, p in enumerate(sorted(points, key=lambda p: (p.mean_s, p.p99_s, p.label))):
        rows.append(
            [
                i + 1,
                by_p99[id(p)],
                p.label,
                f"{p.mean_s * 1e3:,.3f}",
                f"{p.p50_s * 1e3:,.3f}",
                f"{p.p99_s * 1e3:,.3f}",
                f"{p.p99_s / p.mean_s - 1:+.1%}" if p.mean_s > 0 else "",
                len(p.steps_s),
                "" if p.throughput is None else f"{p.throughput:,.0f}",
            ]
        )
    return rows


RANK_HEADER = [
    "rank by mean",
    "rank by p99",
    "strategy",
    "mean (ms)",
    "p50 (ms)",
    "p99 (ms)",
    "p99 over mean",
    "steps sampled",
    "throughput (samples/s)",
]


def figure(points: Sequence[Sampled], title: str) -> go.Figure:
    """One box per strategy (every sampled step drawn beside it), mean and p99 marked."""
    fig = go.Figure()
    for i, p in enumerate(points):
        colour = COLOURS[i % len(COLOURS)]
        ms = np.array(p.steps_s) * 1e3
        fig.add_trace(
            go.Box(
                y=ms,
                name=p.label,
                boxpoints="all",
                jitter=0.4,
                pointpos=-1.6,
                marker={"color": colour, "size": 3, "opacity": 0.5},
                line={"color": colour},
                boxmean=True,
                hovertemplate=f"{p.label}<br>%{{y:.3f}} ms<extra></extra>",
                showlegend=False,
            )
        )
        fig.add_trace(
            go.Scatter(
                x=[p.label],
                y=[p.p99_s * 1e3],
                mode="markers",
                marker={"symbol": "line-ew-open", "size": 26, "color": "#222"},
                name="p99",
                showlegend=i == 0,
                hovertemplate=f"{p.label} p99 %{{y:.3f}} ms<extra></extra>",
            )
        )
    fig.update_layout(
        title=title,
        yaxis_title="step time (ms)",
        xaxis_title="strategy",
        height=420,
        legend={"orientation": "h", "y": -0.2},
        margin={"t": 50},
    )
    return fig


def add_store_section(page: Page, points: Sequence[Sampled]) -> None:
    """The distributions by strategy for each noise condition, with their rankings."""
    groups = conditions(points)
    if not any(len(p.steps_s) > 1 for p in points):
        return
    page.heading("Step-time distribution by strategy", "step-time-distribution")
    page.text(
        "Each box holds every sampled step (the ensemble's: every member's step) of one point; "
        "the dashed line is the mean, the black bar the p99. Points without variability are a "
        "single steady step. Strategies are ranked by mean step time and by p99."
    )
    for n, (cond, pts) in enumerate(groups.items()):
        page.figure(figure(pts, f"Step time by strategy — {cond}"), f"distribution-{n}")
        page.table(ranking(pts), RANK_HEADER)


def add_run_section(page: Page, result: Any) -> None:
    """One run's distribution (``ipusim run --report`` of a scenario with variability)."""
    samples = getattr(result, "step_time_samples_s", None)
    if not samples:
        return
    point = Sampled.of(
        {
            "feasible": True,
            "step_time_s": result.step_time_s,
            "step_time_samples_s": samples,
            "step_time_mean_s": result.step_time_mean_s,
            "step_time_p50_s": result.step_time_p50_s,
            "step_time_p99_s": result.step_time_p99_s,
            "throughput_samples_per_s": result.throughput_samples_per_s,
        },
        "",
        result.strategy,
    )
    assert point is not None
    page.heading("Step-time distribution", "step-time-distribution")
    facts = result.variability or {}
    page.text(
        f"{facts.get('samples', len(samples))} samples (seed {facts.get('seed')}); the timeline "
        f"and breakdowns are those of sample {facts.get('representative_sample')}, the median."
    )
    page.figure(figure([point], f"Step time of {result.name}"), "distribution-run")
    page.table(ranking([point]), RANK_HEADER)


__all__ = [
    "Sampled",
    "add_run_section",
    "add_store_section",
    "condition_of",
    "figure",
    "from_store",
    "ranking",
]
