"""The tornado chart of a sensitivity analysis (``ipusim run --sensitivity --report``).

One horizontal bar pair per assumption, largest effect on top: from the base time to the time
with the assumption at its low end (one colour) and at its high end (the other). The vertical
line is the base time; the shaded band is the envelope of every bar (the result's band). An
end at which the plan does not fit is marked instead of drawn.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from simulator.viz.timeline import time_unit

LOW_COLOUR = "#3b75c4"
HIGH_COLOUR = "#e8833a"
MAX_BARS = 25


def _end(value: Any, unit: str | None) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "default"
    return f"{value:,.4g}" + (f" {unit}" if unit else "")


def tornado_figure(sens: Any, *, max_bars: int = MAX_BARS) -> go.Figure:
    """The tornado of ``sens`` (a :class:`simulator.sensitivity.Sensitivity`)."""
    base = sens.value_s
    scale, unit = time_unit(max(sens.band_s[1], base))
    shown = list(sens.assumptions[:max_bars])[::-1]  # plotly draws the first bar at the bottom
    labels = [f"{e.name} ({e.assumption})" for e in shown]
    fig = go.Figure()
    for end, colour in (("low", LOW_COLOUR), ("high", HIGH_COLOUR)):
        xs, bases, texts, hover = [], [], [], []
        for e in shown:
            t = getattr(e, f"{end}_s")
            value = getattr(e, end)
            if t is None:
                xs.append(0.0)
                texts.append("infeasible")
            else:
                xs.append((t - base) * scale)
                texts.append("")
            bases.append(base * scale)
            moved = "infeasible" if t is None else f"{t * scale:,.4g} {unit} ({t / base - 1:+.2%})"
            hover.append(f"{e.name} at its {end} end ({_end(value, e.unit)}): {moved}")
        fig.add_trace(
            go.Bar(
                name=f"at the {end} end of its range",
                orientation="h",
                y=labels,
                x=xs,
                base=bases,
                marker_color=colour,
                text=texts,
                textposition="outside",
                hovertext=hover,
                hoverinfo="text",
            )
        )
    lo, hi = sens.band_s
    fig.add_vrect(x0=lo * scale, x1=hi * scale, fillcolor="#999999", opacity=0.12, line_width=0)
    fig.add_vline(x=base * scale, line_color="#222222", line_width=1.5)
    what = "step time" if sens.metric == "step_time_s" else "time"
    fig.update_layout(
        barmode="overlay",
        height=max(320, 140 + 28 * len(shown)),
        xaxis={"title": {"text": f"{what} ({unit})"}},
        yaxis={"automargin": True},
        legend={"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 1.0, "xanchor": "right"},
        title={
            "text": f"band {lo * scale:,.4g} – {hi * scale:,.4g} {unit} around "
            f"{base * scale:,.4g} {unit} (one assumption at a time)",
            "x": 0.01,
        },
    )
    return fig


def add_to(page: Any, sens: Any) -> None:
    """The report's sensitivity section: the tornado and what was not varied."""
    page.heading("Sensitivity: the band and what moves it", "sensitivity")
    if not sens.assumptions:
        page.text("No assumption this run uses has a range to vary: the band is one point.")
    else:
        page.figure(tornado_figure(sens), "tornado-figure")
    notes = [
        "The band is the envelope of runs with one assumption at one end of its range, the "
        "others at their values (docs/metrics.md, sensitivity); not a confidence interval."
    ]
    if len(sens.assumptions) > MAX_BARS:
        notes.append(f"The {MAX_BARS} largest effects of {len(sens.assumptions)} are drawn.")
    if sens.untouched:
        notes.append("Not used by this run (left out, not run): " + ", ".join(sens.untouched))
    if sens.pinned:
        notes.append("Pinned (low = high, not varied): " + ", ".join(sens.pinned))
    if sens.calibrated:
        notes.append("Calibrated, held at their solved values: " + ", ".join(sens.calibrated))
    page.notes(notes)
