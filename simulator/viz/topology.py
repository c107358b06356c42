"""The system drawn: chips, gateways, hosts, Streaming Memory and switches, joined by links.

Positions come from networkx: Kamada-Kawai for small systems (ladders and tori come out as
such); for large ones a spring layout started from a grid of machines (chips around their
machine's gateway), so pods stay together. Link width grows with bandwidth (log scale);
colour is the link kind, or, given a run, the link's utilisation in that run (the busier
direction). Deterministic: fixed seeds, fixed orders.
"""

from __future__ import annotations

import math
from typing import Any

import networkx as nx
import numpy as np
import plotly.graph_objects as go

from simulator.hardware.describe import describe, link_bundles
from simulator.hardware.system import System
from simulator.viz.page import Page
from simulator.viz.plots import percent_format

NODE_STYLE = {
    "ipu": ("IPU", "#3b75c4", 9, "square"),
    "gw": ("gateway", "#f2a02d", 8, "diamond"),
    "host": ("host", "#59a14f", 11, "circle"),
    "ddr": ("Streaming Memory", "#8c5a3c", 6, "triangle-up"),
    "sw": ("switch", "#7f7f7f", 12, "hexagon"),
}
LINK_COLOURS = {
    "ipu_link": "#3b75c4",
    "gw_link": "#d8403a",
    "pcie": "#f2a02d",
    "host_link": "#59a14f",
    "ddr": "#8c5a3c",
}
LOAD_BINS = 10
MAX_EDGE_HOVER = 2500
SMALL = 200


def _kind(node: str) -> str:
    return node.split(":", 1)[0]


def _machine_of(system: System) -> dict[str, int]:
    """Machine of every node that has one: chips, and nodes linked only to one machine's chips."""
    out = {c.node: c.machine for c in system.chips}
    for n in system.graph.nodes:
        kind, _, rest = n.partition(":")
        if kind in ("gw", "ddr") and rest.isdigit():
            out[n] = int(rest)
    return out


def layout(system: System) -> dict[str, tuple[float, float]]:
    """Node positions (deterministic)."""
    g = nx.Graph()
    g.add_nodes_from(system.graph.nodes)
    g.add_edges_from((ch.src, ch.dst) for ch in system.channels)
    if g.number_of_nodes() <= SMALL:
        pos = nx.kamada_kawai_layout(g)
    else:
        machine = _machine_of(system)
        machines = max(machine.values(), default=0) + 1
        side = math.ceil(math.sqrt(machines))
        init: dict[str, Any] = {}
        rank: dict[int, int] = {}
        for n in g.nodes:
            m = machine.get(n)
            if m is None:
                init[n] = np.array([side / 2, -1.0 - 0.2 * len(init) % 3])
                continue
            i = rank[m] = rank.get(m, -1) + 1
            angle = 2 * math.pi * i / 6
            init[n] = np.array(
                [m % side + 0.3 * math.cos(angle), m // side + 0.3 * math.sin(angle)]
            )
        pos = nx.spring_layout(g, pos=init, iterations=15, seed=0, k=0.6 / side)
    return {n: (float(p[0]), float(p[1])) for n, p in pos.items()}


def link_load(system: System, trace: Any) -> dict[frozenset[str], float]:
    """Utilisation of each link bundle in a run: the busier direction's bytes / (capacity x
    step)."""
    out: dict[frozenset[str], float] = {}
    step = trace.makespan
    if step <= 0:
        return out
    for ch, b in zip(system.channels, trace.channel_bytes.tolist(), strict=False):
        key = frozenset((ch.src, ch.dst))
        out[key] = max(out.get(key, 0.0), float(b) / (ch.capacity_Bps * step))
    return out


def figure(
    system: System, load: dict[frozenset[str], float] | None = None, load_name: str = ""
) -> go.Figure:
    """The drawing; with ``load``, links are coloured by utilisation."""
    pos = layout(system)
    bundles = link_bundles(system)
    gbps = [b["achieved_GBps"] for b in bundles] or [1.0]
    lo = min(g for g in gbps if g > 0) if any(g > 0 for g in gbps) else 1.0

    def width(v: float) -> float:
        return round(0.6 + 1.2 * math.log10(max(v, lo) / lo + 1) * 2, 1)

    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    top = max(load.values(), default=0.0) if load else 0.0
    for b in bundles:
        if load is not None:
            u = load.get(frozenset(b["endpoints"]), 0.0)
            key = f"load {min(LOAD_BINS - 1, int(u / top * LOAD_BINS)) if top > 0 else 0}"
        else:
            key = b["kind"]
        groups.setdefault((key, width(b["achieved_GBps"])), []).append(b)
    fig = go.Figure()
    seen: set[str] = set()
    colours = _load_colours() if load is not None else LINK_COLOURS
    for (key, w), items in sorted(groups.items()):
        xs: list[float | None] = []
        ys: list[float | None] = []
        for b in items:
            (x0, y0), (x1, y1) = pos[b["endpoints"][0]], pos[b["endpoints"][1]]
            xs += [x0, x1, None]
            ys += [y0, y1, None]
        name = _load_name(key, top) if load is not None else key.replace("_", "-")
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                line={"width": w, "color": colours[key]},
                name=name,
                legendgroup=key,
                showlegend=key not in seen,
                hoverinfo="skip",
            )
        )
        seen.add(key)
    if len(bundles) <= MAX_EDGE_HOVER:
        fig.add_trace(_edge_hover(bundles, pos, load))
    for kind, (title, colour, size, symbol) in NODE_STYLE.items():
        nodes = [n for n in system.graph.nodes if _kind(n) == kind]
        if not nodes:
            continue
        fig.add_trace(
            go.Scatter(
                x=[pos[n][0] for n in nodes],
                y=[pos[n][1] for n in nodes],
                mode="markers",
                name=title,
                marker={"color": colour, "size": size, "symbol": symbol, "line": {"width": 0}},
                text=[_node_text(system, n) for n in nodes],
                hovertemplate="%{text}<extra></extra>",
            )
        )
    fig.update_layout(
        height=820 if system.num_chips > 64 else 680,
        xaxis={"visible": False, "scaleanchor": "y"},
        yaxis={"visible": False},
        # the legend sits under the drawing so that the title above never covers it
        legend={"orientation": "h", "y": -0.02, "yanchor": "top", "x": 0.0},
        title={
            "text": f"link utilisation in {load_name}" if load is not None else "",
            "x": 0.01,
            "y": 0.99,
            "yanchor": "top",
        },
        margin={"l": 10, "r": 10, "t": 50 if load is not None else 10, "b": 60},
    )
    return fig


def _load_colours() -> dict[str, str]:
    from plotly.colors import sample_colorscale

    cs = sample_colorscale("YlOrRd", [0.15 + 0.85 * i / (LOAD_BINS - 1) for i in range(LOAD_BINS)])
    out = {f"load {i}": c for i, c in enumerate(cs)}
    out["load 0"] = "#cccccc"
    return out


def _load_name(key: str, top: float) -> str:
    i = int(key.split()[1])
    fmt = percent_format(top)
    edge = (i + 1) / LOAD_BINS * top if i else top / LOAD_BINS
    return f"{'≤' if i else '<'} {edge:{fmt}} busy"


def _node_text(system: System, node: str) -> str:
    kind = _kind(node)
    if kind == "ipu":
        c = system.chips[int(node.split(":")[1])]
        return f"{node}<br>{c.type.name}, machine {c.machine}, IPU-Link domain {c.domain}"
    return f"{node} ({NODE_STYLE.get(kind, (kind,))[0]})"


def _edge_hover(
    bundles: list[dict[str, Any]],
    pos: dict[str, tuple[float, float]],
    load: dict[frozenset[str], float] | None,
) -> go.Scatter:
    text = []
    for b in bundles:
        t = (
            f"{b['endpoints'][0]} ↔ {b['endpoints'][1]}<br>{b['kind']} × {b['links']}: "
            f"{b['achieved_GBps']:,.1f} GB/s per direction (nominal {b['nominal_GBps']:,.1f}), "
            f"{b['latency_ns']:,.0f} ns"
        )
        if load is not None:
            t += f"<br>utilisation {load.get(frozenset(b['endpoints']), 0.0):.1%}"
        text.append(t)
    return go.Scatter(
        x=[(pos[b["endpoints"][0]][0] + pos[b["endpoints"][1]][0]) / 2 for b in bundles],
        y=[(pos[b["endpoints"][0]][1] + pos[b["endpoints"][1]][1]) / 2 for b in bundles],
        mode="markers",
        marker={"size": 6, "opacity": 0},
        text=text,
        hovertemplate="%{text}<extra></extra>",
        showlegend=False,
        name="links",
    )


def page(
    system: System, load: dict[frozenset[str], float] | None = None, load_name: str = ""
) -> Page:
    """The topology page: the drawing and the summary numbers."""
    desc = describe(system)
    p = Page(f"Topology: {system.name}", system.info.description)
    p.figure(figure(system, load, load_name), "topology")
    rows = [
        ("chips", f"{desc['num_chips']:,} in {system.info.machines:,} machine(s)"),
        ("links", f"{len(desc['links']):,} bundles"),
        ("bisection", f"{desc['bisection_GBps']:,.1f} GB/s per direction"),
        ("power", f"{desc['power_W']:,.0f} W"),
    ]
    rows += [(f"peak {dt}", f"{v / 1e12:,.1f} TFLOP/s") for dt, v in desc["peak_flops"].items()]
    p.table(rows)
    notes = [
        "Link width grows with achieved bandwidth per direction (log scale). Positions: "
        + (
            "Kamada-Kawai layout."
            if system.graph.number_of_nodes() <= SMALL
            else "spring layout started from a grid of machines."
        )
    ]
    if len(desc["links"]) > MAX_EDGE_HOVER:
        notes.append(f"More than {MAX_EDGE_HOVER:,} links: hover on links is off; nodes keep it.")
    if load is not None:
        notes.append(
            "Colour: the busier direction's bytes ÷ (capacity × step time) in the run; only "
            "simulated traffic counts (replicas that were not simulated are not shown)."
        )
    p.notes(notes)
    return p
