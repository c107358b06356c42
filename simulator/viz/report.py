"""The report of one run: one self-contained page.

Sections: the summary numbers; the closed-form estimate beside the simulated figure; the
timeline; utilisation per chip (heatmap of the share of the step by kind); link utilisation
(heatmap); memory per chip against capacity (stacked bars); the time breakdown per chip; with
``--sensitivity``, the tornado of the assumptions (:mod:`simulator.viz.tornado`).

Chips with identical rows (identical replicas, say) are drawn once when there are more than
``FULL_CHIPS`` of them, labelled with the chips they stand for, and the page says so.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go

from simulator.engine.trace import SPAN_KINDS
from simulator.viz import timeline
from simulator.viz.gantt import KIND_TITLES, KINDS, Gantt, ranges
from simulator.viz.page import Page
from simulator.viz.plots import percent_format
from simulator.viz.timeline import COLOURS

FULL_CHIPS = 64
MAX_LINK_NODES = 96
TOP_LINKS = 64
#: the chip-busy kinds of a timeline (link transfers are not chip time)
BREAKDOWN_KINDS = tuple(k for k in KINDS if k != "transfer")
MEMORY_COLOURS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1"]


def _fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds >= 1:
        return f"{seconds:,.4f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:,.3f} ms"
    return f"{seconds * 1e6:,.3f} µs"


def summary_rows(result: Any) -> list[tuple[str, str]]:
    """Key numbers of a TrainingResult, KernelResult or CommResult, as (name, value) pairs."""
    rows: list[tuple[str, str]] = [("scenario", result.name), ("system", result.system)]
    if hasattr(result, "step_time_s"):
        rows += [
            ("model", result.model),
            ("strategy", result.strategy + (f" ({result.schedule})" if result.schedule else "")),
            ("chips", f"{result.chips} = {result.replicas} replica(s) × {result.stages} stage(s)"),
            (
                "batch",
                f"{result.global_batch:,.0f} samples = micro-batch {result.micro_batch} × "
                f"{result.grad_accum} × {result.replicas}",
            ),
            ("feasible", "yes" if result.feasible else f"no: {result.reason}"),
            ("step time", _fmt_s(result.step_time_s)),
        ]
        if result.throughput_samples_per_s is not None:
            rows.append(("throughput", f"{result.throughput_samples_per_s:,.1f} samples/s"))
        if result.speedup is not None and result.baseline is not None:
            rows.append(
                (
                    "speedup",
                    f"{result.speedup:.3f}× over {result.baseline.name} "
                    f"({result.baseline.chips} chips); efficiency {result.scaling_efficiency:.1%}",
                )
            )
        if result.flop_utilisation is not None:
            rows.append(("FLOP utilisation", f"{result.flop_utilisation:.1%} of peak"))
        if result.bubble_fraction is not None and result.stages > 1:
            rows.append(("pipeline bubble", f"{result.bubble_fraction:.1%}"))
    elif hasattr(result, "op"):  # a kernel scenario
        sp = result.sparsity
        rows += [
            ("op", f"{result.op} [{result.m}×{result.k}]·[{result.k}×{result.n}] {result.dtype}"),
            (
                "sparsity",
                f"{sp['mode']}, density {sp['density']:g}, {sp['block']}×{sp['block']} blocks"
                if sp
                else "dense",
            ),
            ("feasible", "yes" if result.feasible else f"no: {result.reason}"),
            ("time", _fmt_s(result.time_s)),
        ]
        if result.tflops is not None:
            rows.append(("non-zero TFLOP/s", f"{result.tflops:,.2f} ({result.path})"))
        if result.speedup_vs_dense is not None:
            rows.append(("speedup over dense", f"{result.speedup_vs_dense:.3f}×"))
    else:
        rows += [
            ("pattern", result.pattern + (f" ({result.algorithm})" if result.algorithm else "")),
            ("chips", f"{result.chips} × {result.tiles_per_chip} tiles"),
            ("time", _fmt_s(result.time_s)),
            ("bandwidth", f"{result.bandwidth_GBps:,.2f} GB/s"),
        ]
        if result.algbw_GBps is not None:
            rows.append(("algbw", f"{result.algbw_GBps:,.2f} GB/s"))
    rows += [("warning", w) for w in result.warnings]
    return rows


def analytic_figure(result: Any) -> go.Figure | None:
    """Simulated time beside the closed-form estimate (its terms stacked, when it has terms)."""
    a = result.analytic
    if a is None:
        return None
    fig = go.Figure()
    fig.add_trace(
        go.Bar(name="simulated", x=["simulated"], y=[a.simulated_s * 1e3], marker_color="#3b75c4")
    )
    terms = getattr(a, "terms", None) or {"closed form": a.estimate_s}
    for i, (name, value) in enumerate(terms.items()):
        fig.add_trace(
            go.Bar(
                name=name.removesuffix("_s"),
                x=["closed form"],
                y=[value * 1e3],
                marker_color=MEMORY_COLOURS[i % len(MEMORY_COLOURS)],
            )
        )
    fig.update_layout(
        barmode="stack",
        height=360,
        yaxis={"title": {"text": "time (ms)"}},
        title={"text": f"simulated / closed form − 1 = {a.difference:+.2%}", "x": 0.01},
    )
    return fig


def _groups(per_chip: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(label, row) per chip, or per set of chips with identical rows past FULL_CHIPS chips."""
    if len(per_chip) <= FULL_CHIPS:
        return [(f"ipu {c}", row) for c, row in per_chip.items()]
    merged: dict[str, tuple[list[int], dict[str, Any]]] = {}
    for c, row in per_chip.items():
        key = repr(sorted(row.items()))
        merged.setdefault(key, ([], row))[0].append(int(c))
    return [
        (f"ipu {ranges(chips)} ({len(chips)})" if len(chips) > 1 else f"ipu {chips[0]}", row)
        for chips, row in merged.values()
    ]


def breakdown_of(outcome: Any) -> dict[str, dict[str, float]]:
    """Seconds per kind (and idle) per chip: the result's breakdown, or one from the trace."""
    bd = getattr(outcome.result, "breakdown", None)
    if bd:
        return bd  # type: ignore[no-any-return]
    trace = outcome.trace
    busy = trace.busy_by_kind(outcome.system.num_chips)
    used = sorted({s.row for s in trace.chip_spans} | {s.row for s in trace.rng_spans})
    out = {}
    for c in used:
        row = {k: float(busy[k][c]) for k in SPAN_KINDS if k != "transfer"}
        row["idle"] = max(0.0, trace.makespan - sum(row.values()))
        out[str(c)] = row
    return out


def utilisation_figure(bd: dict[str, dict[str, float]], step: float) -> go.Figure:
    """Heatmap: share of the step each chip spent per kind."""
    groups = _groups(bd)
    kinds = [k for k in BREAKDOWN_KINDS if any(row.get(k, 0) for _, row in groups)]
    z = np.array(
        [[row.get(k, 0.0) / step if step > 0 else 0.0 for k in kinds] for _, row in groups]
    )
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[KIND_TITLES[k] for k in kinds],
            y=[label for label, _ in groups],
            zmin=0,
            zmax=1,
            colorscale="Blues",
            colorbar={"title": {"text": "share of step"}, "tickformat": ".0%"},
            hovertemplate="%{y} · %{x}: %{z:.1%} of the step<extra></extra>",
        )
    )
    fig.update_layout(
        height=min(900, 140 + 16 * len(groups)),
        yaxis={"autorange": "reversed", "type": "category"},
    )
    return fig


def link_figure(outcome: Any) -> tuple[go.Figure | None, str]:
    """Heatmap of link utilisation (bytes carried / capacity / step), and a note."""
    trace, system = outcome.trace, outcome.system
    step = trace.makespan
    util = {
        ch.id: float(b) / (ch.capacity_Bps * step)
        for ch, b in zip(system.channels, trace.channel_bytes.tolist(), strict=False)
        if b > 0 and step > 0
    }
    if not util:
        return None, "No bytes crossed a link in this run."
    note = (
        "Utilisation = bytes the link carried ÷ (its achieved capacity × the step time), per "
        "direction. Only simulated traffic counts: the replicas that were not simulated send "
        "their pipeline transfers over their own links, not shown here."
    )
    nodes = sorted(
        {system.channels[c].src for c in util} | {system.channels[c].dst for c in util},
        key=_node_key,
    )
    if len(nodes) <= MAX_LINK_NODES:
        idx = {n: i for i, n in enumerate(nodes)}
        z = np.full((len(nodes), len(nodes)), np.nan)
        for c, u in util.items():
            ch = system.channels[c]
            z[idx[ch.src], idx[ch.dst]] = u
        fig = go.Figure(
            go.Heatmap(
                z=z,
                x=nodes,
                y=nodes,
                zmin=0,
                colorscale="YlOrRd",
                colorbar={
                    "title": {"text": "utilisation"},
                    "tickformat": percent_format(max(util.values())),
                },
                hovertemplate="%{y} → %{x}: %{z:.1%}<extra></extra>",
                hoverongaps=False,
            )
        )
        fig.update_layout(
            height=min(900, 200 + 14 * len(nodes)),
            xaxis={"title": {"text": "to"}, "type": "category"},
            yaxis={"title": {"text": "from"}, "autorange": "reversed", "type": "category"},
        )
        return fig, note
    top = sorted(util.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_LINKS]
    labels = [f"{system.channels[c].src}→{system.channels[c].dst}" for c, _ in top]
    fig = go.Figure(
        go.Heatmap(
            z=[[u] for _, u in top],
            x=["utilisation"],
            y=labels,
            zmin=0,
            colorscale="YlOrRd",
            colorbar={"tickformat": percent_format(max(util.values()))},
            hovertemplate="%{y}: %{z:.1%}<extra></extra>",
        )
    )
    fig.update_layout(height=min(1000, 140 + 14 * len(top)), yaxis={"autorange": "reversed"})
    return fig, note + (
        f" {len(util):,} links carried bytes across {len(nodes):,} nodes; the {len(top)} busiest "
        "are shown."
    )


def _node_key(node: str) -> tuple[str, int, str]:
    kind, _, rest = node.partition(":")
    return (kind, int(rest) if rest.isdigit() else -1, rest)


def memory_figure(memory: dict[str, dict[str, int]]) -> go.Figure | None:
    """Stacked bars: SRAM per chip by category, with the capacity marked."""
    if not memory:
        return None
    groups = _groups(memory)
    cats = [
        k
        for k in next(iter(memory.values()))
        if k not in ("total", "capacity", "streaming") and any(row.get(k) for _, row in groups)
    ]
    labels = [label for label, _ in groups]
    fig = go.Figure()
    for i, cat in enumerate(cats):
        fig.add_trace(
            go.Bar(
                name=cat.replace("_", " "),
                x=labels,
                y=[row.get(cat, 0) / 2**20 for _, row in groups],
                marker_color=MEMORY_COLOURS[i % len(MEMORY_COLOURS)],
                hovertemplate="%{x}: " + cat + " %{y:,.1f} MiB<extra></extra>",
            )
        )
    fig.add_trace(
        go.Scatter(
            name="capacity",
            x=labels,
            y=[row["capacity"] / 2**20 for _, row in groups],
            mode="markers",
            marker={"symbol": "line-ew-open", "size": 28, "color": "black", "line": {"width": 2}},
            hovertemplate="%{x}: capacity %{y:,.1f} MiB<extra></extra>",
        )
    )
    fig.update_layout(
        barmode="stack",
        height=420,
        yaxis={"title": {"text": "SRAM (MiB)"}},
        xaxis={"type": "category"},
    )
    return fig


def breakdown_figure(bd: dict[str, dict[str, float]]) -> go.Figure:
    """Stacked bars: seconds per kind per chip."""
    groups = _groups(bd)
    labels = [label for label, _ in groups]
    fig = go.Figure()
    for kind in BREAKDOWN_KINDS:
        ys = [row.get(kind, 0.0) * 1e3 for _, row in groups]
        if any(ys):
            fig.add_trace(
                go.Bar(
                    name=KIND_TITLES[kind],
                    x=labels,
                    y=ys,
                    marker_color=COLOURS[kind],
                    hovertemplate="%{x}: " + kind + " %{y:,.3f} ms<extra></extra>",
                )
            )
    fig.update_layout(
        barmode="stack",
        height=420,
        yaxis={"title": {"text": "time (ms)"}},
        xaxis={"type": "category"},
    )
    return fig


def page(outcome: Any, gantt: Gantt | None) -> Page:
    """The report page of ``outcome`` (``gantt``: its timeline, None when nothing ran)."""
    from simulator.viz.commands import summary_line

    result = outcome.result
    sens = getattr(outcome, "sensitivity", None)
    p = Page(f"Report: {result.name}", summary_line(result))
    p.raw(
        "<nav class='note'>"
        + " ".join(
            f"<a href='#{a}'>{t}</a>"
            for a, t in (
                ("summary", "summary"),
                ("closed-form", "closed form"),
                ("timeline-section", "timeline"),
                ("utilisation", "utilisation"),
                ("links", "links"),
                ("memory", "memory"),
                ("breakdown", "breakdown"),
                ("step-breakdown", "critical path"),
                *((("sensitivity", "sensitivity"),) if sens is not None else ()),
            )
        )
        + "</nav>"
    )
    p.heading("Summary", "summary")
    p.table(summary_rows(result))
    a = result.analytic
    if a is not None:
        p.heading("Closed form beside the simulation", "closed-form")
        rows = [
            ("simulated", _fmt_s(a.simulated_s)),
            ("closed form", _fmt_s(a.estimate_s)),
            ("simulated / closed form − 1", f"{a.difference:+.2%}"),
            ("formula", a.formula),
        ]
        rows += [
            (f"  {k.removesuffix('_s')}", _fmt_s(v)) for k, v in getattr(a, "terms", {}).items()
        ]
        p.table(rows)
        fig = analytic_figure(result)
        if fig is not None:
            p.figure(fig, "closed-form-figure")
    memory = getattr(result, "memory", None) or {}
    if memory and not isinstance(next(iter(memory.values())), dict):  # a kernel's: one chip
        memory = {str(result.chip): memory}
    if gantt is None:
        p.text(f"The plan is infeasible, so nothing ran: {result.reason}")
    else:
        p.heading("Timeline", "timeline-section")
        timeline.add_to(p, gantt, "timeline")
        bd = breakdown_of(outcome)
        step = outcome.trace.makespan
        p.heading("Utilisation per chip", "utilisation")
        p.figure(utilisation_figure(bd, step), "utilisation-figure")
        p.heading("Link utilisation", "links")
        fig, note = link_figure(outcome)
        if fig is not None:
            p.figure(fig, "links-figure")
        p.text(note)
        p.heading("Time breakdown per chip", "breakdown")
        p.figure(breakdown_figure(bd), "breakdown-figure")
        steps = getattr(result, "step_breakdown", None)
        if steps:
            from simulator.viz.plots import step_breakdown_figure

            p.heading("Where the step goes (critical path)", "step-breakdown")
            p.figure(step_breakdown_figure([(result.name, steps)]), "step-breakdown-figure")
    if gantt is not None:
        from simulator.viz.variability import add_run_section

        add_run_section(p, result)  # with variability: the sampled steps (docs/variability.md)
    if memory:
        p.heading("Memory per chip", "memory")
        fig = memory_figure(memory)
        if fig is not None:
            p.figure(fig, "memory-figure")
        p.text("SRAM planned per chip by category; the black mark is the chip's capacity.")
    if sens is not None:
        from simulator.viz.tornado import add_to

        add_to(p, sens)
    if max(len(bd) if gantt else 0, len(memory)) > FULL_CHIPS:
        p.notes(
            [
                f"More than {FULL_CHIPS} chips: chips with identical rows are drawn once, "
                "labelled with the chips they stand for and their count."
            ]
        )
    return p
