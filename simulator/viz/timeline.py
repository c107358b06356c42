"""The timeline: a plotly Gantt of one step (one row per chip and per busy link).

Bars are horizontal plotly bars, one trace per kind of span (so the legend toggles kinds),
with ``base`` = start and ``x`` = duration. Idle time is drawn as bars in the gaps of each chip
row. Rows are grouped by replica and stage; a menu in the figure and links above it jump to a
replica. Mirrored spans (replica 0's work shown on a replica that was not simulated) are drawn
paler.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from simulator.viz.gantt import KIND_TITLES, KINDS, Bar, Gantt
from simulator.viz.page import Page

COLOURS = {
    "compute": "#3b75c4",
    "exchange": "#f2a02d",
    "sync": "#8e5ac8",
    "collective": "#d8403a",
    "rng": "#19b6c9",
    "memory": "#8c5a3c",
    "host": "#6b6b6b",
    "transfer": "#3aa757",
    "idle": "#e4e4e4",
}
LABELLED = {"compute", "collective", "transfer", "memory"}
"""Kinds whose bars carry their label as text (shown when the bar is wide enough)."""

EXCHANGE_MIN = 0.02
"""A merged bar whose exchange is at least this share of it gets an exchange-coloured strip."""

VISIBLE_ROWS = 48
ROW_PX = 18


def time_unit(seconds: float) -> tuple[float, str]:
    """(scale, unit) to show ``seconds`` with: s, ms or µs."""
    if seconds >= 10:
        return 1.0, "s"
    if seconds >= 1e-3:
        return 1e3, "ms"
    return 1e6, "µs"


def si(x: float, unit: str) -> str:
    """``x`` with an SI prefix: 25.8 GFLOP, 3.15 MB."""
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.4g} {prefix}{unit}"
    return f"{x:.4g} {unit}"


def idle_bars(g: Gantt, min_fraction: float = 1e-6) -> list[Bar]:
    """Gaps of every chip row, as idle bars (link rows have no idle bars)."""
    by_row: dict[int, list[Bar]] = {}
    for b in g.bars:
        by_row.setdefault(b.row, []).append(b)
    out: list[Bar] = []
    tiny = g.makespan * min_fraction
    for i, row in enumerate(g.rows):
        if row.channel is not None:
            continue
        t = 0.0
        for b in sorted(by_row.get(i, ()), key=lambda b: (b.start, b.end)):
            if b.start - t > tiny:
                out.append(Bar(i, t, b.start, "idle", "idle", -1))
            t = max(t, b.end)
        if g.makespan - t > tiny:
            out.append(Bar(i, t, g.makespan, "idle", "idle", -1))
    return out


def _hovertemplate(kind: str, mirrored: bool, detail: str, cols: list[str], unit: str) -> str:
    head = "<b>%{text}</b> · " + KIND_TITLES[kind]
    if mirrored:
        head += " (mirrored from replica 0)"
    lines = [head, "%{y}", f"start %{{base:.6g}} {unit} · lasts %{{x:.4g}} {unit}"]
    units = {"flops": "FLOP", "bytes": "B"}
    work = [f"%{{customdata[{i}]:.4s}}{units[c]}" for i, c in enumerate(cols)]
    if work:
        lines.append(" · ".join(work))
    if detail:
        lines.append(html.escape(detail))
    return "<br>".join(lines) + "<extra></extra>"


def _bar_trace(
    bars: Sequence[Bar], g: Gantt, kind: str, detail: str, scale: float, unit: str, first: bool
) -> go.Bar:
    """Bars of one kind that share their hover template (per-bar hover only when merged)."""
    cols = [c for c in ("flops", "bytes") if any(getattr(b, c) for b in bars)]
    mirrored = bars[0].mirrored
    merged = detail == "*merged"
    trace = go.Bar(
        name=KIND_TITLES[kind],
        legendgroup=kind,
        showlegend=first,
        orientation="h",
        y=[g.rows[b.row].label for b in bars],
        base=np.array([b.start * scale for b in bars]),
        x=np.array([b.duration * scale for b in bars]),
        text=[b.label for b in bars],
        textposition="none",
        marker={"color": COLOURS[kind], "opacity": 0.55 if mirrored else 1.0, "line": {"width": 0}},
        width=0.8,
    )
    if cols:
        trace.customdata = np.array([[getattr(b, c) for c in cols] for b in bars])
    if merged:
        trace.hovertext = [html.escape(b.detail) for b in bars]
        trace.hovertemplate = _hovertemplate(kind, mirrored, "", cols, unit).replace(
            "<extra>", "<br>%{hovertext}<extra>"
        )
    else:
        trace.hovertemplate = _hovertemplate(kind, mirrored, detail, cols, unit)
    return trace


def _exchange_strips(bars: Sequence[Bar], g: Gantt, scale: float, unit: str) -> go.Bar:
    """The exchange time inside merged bars, as a thin strip in the exchange colour along the
    lower part of each bar, ending where the bar ends (a phase's exchange follows its compute),
    so exchange stays visible when phases are merged."""
    return go.Bar(
        name="exchange (in merged phases)",
        legendgroup="exchange",
        orientation="h",
        y=[g.rows[b.row].label for b in bars],
        base=np.array([(b.end - b.exchange_time) * scale for b in bars]),
        x=np.array([b.exchange_time * scale for b in bars]),
        width=0.3,
        offset=0.05,
        marker={"color": COLOURS["exchange"], "line": {"width": 0}},
        hovertemplate="%{y}: exchange %{x:.4g} " + unit + " in this merged bar<extra></extra>",
    )


def _label_trace(g: Gantt, scale: float) -> go.Scatter:
    """Bar labels, placed by the page's script: only bars wide enough at the current zoom get
    one (plotly's own bar text costs a layout pass per bar, far too slow for 10,000 bars)."""
    mine = [b for b in g.bars if b.kind in LABELLED]
    meta = {
        "x": [float(f"{(b.start + b.end) / 2 * scale:.9g}") for b in mine],
        "w": [float(f"{b.duration * scale:.6g}") for b in mine],
        "y": [g.rows[b.row].label for b in mine],
        "text": [b.label for b in mine],
    }
    return go.Scatter(
        name="labels",
        mode="text",
        x=[],
        y=[],
        text=[],
        meta=meta,
        textfont={"size": 9, "color": "white"},
        hoverinfo="skip",
        showlegend=True,
    )


LABEL_SCRIPT = """
<script>
(function () {
  const gd = document.getElementById(%(id)s);
  if (!gd || !gd.data) { return; }
  const li = gd.data.findIndex(t => t.name === 'labels' && t.meta);
  if (li < 0) { return; }
  const m = gd.data[li].meta;
  function place() {
    const xa = gd._fullLayout.xaxis;
    const lo = Math.min(xa.range[0], xa.range[1]), hi = Math.max(xa.range[0], xa.range[1]);
    const px = xa._length / (hi - lo);
    const x = [], y = [], text = [];
    for (let i = 0; i < m.x.length && text.length < %(max)d; i++) {
      if (m.x[i] < lo || m.x[i] > hi || m.w[i] * px < 6 * m.text[i].length + 4) { continue; }
      x.push(m.x[i]); y.push(m.y[i]); text.push(m.text[i]);
    }
    Plotly.restyle(gd, {x: [x], y: [y], text: [text]}, [li]);
  }
  place();
  gd.on('plotly_relayout', place);
})();
</script>
"""


def figure(g: Gantt) -> go.Figure:
    """The plotly Gantt of ``g``."""
    scale, unit = time_unit(g.makespan)
    bars = g.bars + idle_bars(g)
    fig = go.Figure()
    for kind in KINDS:
        keyed: dict[tuple[bool, str], list[Bar]] = {}
        for b in bars:
            if b.kind == kind:
                key = (b.mirrored, "*merged" if b.merged > 1 else b.detail)
                keyed.setdefault(key, []).append(b)
        for i, ((_, detail), mine) in enumerate(sorted(keyed.items())):
            fig.add_trace(_bar_trace(mine, g, kind, detail, scale, unit, first=i == 0))
    strips = [
        b
        for b in g.bars
        if b.merged > 1 and b.kind != "exchange" and b.exchange_time >= EXCHANGE_MIN * b.duration
    ]
    if strips:  # exchange inside merged phase bars: a strip in its own colour
        fig.add_trace(_exchange_strips(strips, g, scale, unit))
    if any(b.kind in LABELLED for b in g.bars):
        fig.add_trace(_label_trace(g, scale))
    n = len(g.rows)
    shown = min(n, VISIBLE_ROWS)
    groups = g.groups()
    shapes = [
        {
            "type": "line",
            "xref": "paper",
            "x0": 0,
            "x1": 1,
            "y0": first - 0.5,
            "y1": first - 0.5,
            "line": {"color": "#888", "width": 1, "dash": "dot"},
        }
        for _, first, _ in groups[1:]
    ]
    fig.update_layout(
        barmode="overlay",
        height=shown * ROW_PX + 190,
        margin={"l": 10, "r": 10, "t": 50, "b": 50},
        legend={"orientation": "h", "y": 1.02, "x": 1, "xanchor": "right", "yanchor": "bottom"},
        xaxis={"title": {"text": f"time ({unit})"}, "range": [0, g.makespan * scale]},
        yaxis={
            "type": "category",
            "categoryorder": "array",
            "categoryarray": [r.label for r in g.rows],
            "range": [shown - 0.5, -0.5],
            "tickfont": {"size": 10},
            "showgrid": False,
        },
        shapes=shapes,
        updatemenus=[_jump_menu(groups, n)] if len(groups) > 1 else [],
    )
    return fig


def _jump_menu(groups: Sequence[tuple[str, int, int]], n: int) -> dict[str, object]:
    buttons = [
        {
            "label": "all rows",
            "method": "relayout",
            "args": [{"yaxis.range": [min(n, VISIBLE_ROWS) - 0.5, -0.5]}],
        }
    ]
    buttons += [
        {
            "label": name,
            "method": "relayout",
            "args": [{"yaxis.range": [last + 0.5, first - 0.5]}],
        }
        for name, first, last in groups[:100]
    ]
    return {
        "buttons": buttons,
        "direction": "down",
        "x": 0,
        "xanchor": "left",
        "y": 1.02,
        "yanchor": "bottom",
        "showactive": True,
    }


def jump_links(groups: Sequence[tuple[str, int, int]], div_id: str) -> str:
    """HTML links above the figure that scroll its rows to a replica (or the links)."""
    if len(groups) < 2:
        return ""
    links = [
        f"<a href='#{div_id}' onclick=\"Plotly.relayout('{div_id}', "
        f"{{'yaxis.range': [{last + 0.5}, {first - 0.5}]}}); return true;\">"
        f"{html.escape(name)}</a>"
        for name, first, last in groups[:100]
    ]
    more = f" … and {len(groups) - 100} more" if len(groups) > 100 else ""
    return "<nav class='note'>Jump to: " + " ".join(links) + more + "</nav>"


def add_to(page: Page, g: Gantt, div_id: str = "timeline") -> None:
    """Append the timeline (jump links, figure, notes) to ``page``."""
    page.raw(jump_links(g.groups(), div_id))
    page.figure(figure(g), div_id)
    page.raw(LABEL_SCRIPT % {"id": f'"{div_id}"', "max": 600})
    page.notes(
        [
            *g.notes,
            "Zoom: drag a box, scroll, or use the toolbar; double-click to reset. Click a "
            "legend entry to hide a kind. Labels show when a bar is wide enough.",
        ]
    )


def page(g: Gantt, subtitle: str = "") -> Page:
    """A page holding only the timeline."""
    p = Page(f"Timeline: {g.title}", subtitle)
    add_to(p, g)
    return p
