"""Routes without networkx are networkx's routes (issue 16).

:mod:`simulator.hardware.routing` writes out networkx's two bidirectional searches so that
``ipusim run`` need not import networkx; routes (and every result built on them) must not move.
Checked three ways: each search against networkx on random graphs with many ties (small integer
weights), and every shipped system's routes against the routing rule evaluated with networkx
(the code that ran before: domain subgraphs, gateway shortcuts, Dijkstra on the whole graph).
"""

from __future__ import annotations

import random
from itertools import pairwise

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.config import paths
from simulator.hardware.build import load_system
from simulator.hardware.routing import fewest_hops, least_weight, reachable
from simulator.hardware.system import System

SHIPPED = paths.builtin_names("system")


@st.composite
def digraphs(draw):
    """A directed graph on up to 9 nodes with weights 1-3 (ties everywhere), as networkx and
    as the adjacency the searches take (neighbours in insertion order)."""
    n = draw(st.integers(2, 9))
    nodes = [f"n{i}" for i in range(n)]
    edges = draw(
        st.lists(
            st.tuples(st.sampled_from(nodes), st.sampled_from(nodes), st.integers(1, 3)),
            max_size=30,
            unique_by=lambda e: (e[0], e[1]),
        )
    )
    g = nx.DiGraph()
    g.add_nodes_from(nodes)
    succ: dict[str, dict[str, float]] = {}
    pred: dict[str, dict[str, float]] = {}
    for a, b, w in edges:
        if a == b:
            continue
        g.add_edge(a, b, latency=float(w))
        succ.setdefault(a, {})[b] = float(w)
        pred.setdefault(b, {})[a] = float(w)
    return g, succ, pred, nodes


@settings(max_examples=200, deadline=None)
@given(digraphs(), st.data())
def test_searches_match_networkx(graph, data) -> None:
    g, succ, pred, nodes = graph
    src = data.draw(st.sampled_from(nodes))
    dst = data.draw(st.sampled_from(nodes))
    try:
        hops = nx.bidirectional_shortest_path(g, src, dst)
    except nx.NetworkXNoPath:
        hops = None
    assert fewest_hops(succ, pred, src, dst) == hops
    try:
        weighted = nx.bidirectional_dijkstra(g, src, dst, weight="latency")[1]
    except nx.NetworkXNoPath:
        weighted = None
    assert least_weight(succ, pred, src, dst) == weighted
    assert reachable(succ, src) == nx.descendants(g, src)
    assert reachable(pred, src) == nx.ancestors(g, src)


def _domain_graphs(system: System) -> dict[int, nx.DiGraph]:
    """Per IPU-Link domain, its chips and the IPU-Links between them (a switch takes the
    domain of the first chip it is linked with), as the old code built them."""
    chips = {c.node: c for c in system.chips}
    domain_of = {c.node: c.domain for c in system.chips}
    for ch in system.channels:
        if ch.kind == "ipu_link" and (ch.src in chips) != (ch.dst in chips):
            here, other = (ch.src, ch.dst) if ch.src in chips else (ch.dst, ch.src)
            domain_of.setdefault(other, domain_of[here])
    out: dict[int, nx.DiGraph] = {}
    for chip in system.chips:
        out.setdefault(chip.domain, nx.DiGraph()).add_node(chip.node)
    for ch in system.channels:
        d = domain_of.get(ch.src)
        if ch.kind == "ipu_link" and d is not None and domain_of.get(ch.dst) == d:
            out[d].add_edge(ch.src, ch.dst)
    return out


def _reference_path(
    system: System, domains: dict[int, nx.DiGraph], src: str, dst: str
) -> list[str]:
    """The routing rule as it ran on networkx before issue 16 (domain subgraphs, the gateway
    shortcut, Dijkstra on the whole graph)."""
    g = system.graph
    chips = {c.node: c for c in system.chips}
    if g.has_edge(src, dst):
        return [src, dst]
    ca, cb = chips.get(src), chips.get(dst)
    if ca is not None and cb is not None and ca.domain == cb.domain:
        sub = domains[ca.domain]
        if nx.has_path(sub, src, dst):
            return list(nx.shortest_path(sub, src, dst))
    if ca is not None and cb is not None:
        ga, gb = f"gw:{ca.machine}", f"gw:{cb.machine}"
        if g.has_edge(src, ga) and g.has_edge(gb, dst):
            if ga == gb:
                middle = [ga]
            else:
                best = None
                for sw in (n for n in g.successors(ga) if n.startswith("sw:")):
                    if g.has_edge(sw, gb):
                        lat = g[ga][sw]["latency"] + g[sw][gb]["latency"]
                        if best is None or lat < best[0]:
                            best = (lat, sw)
                if best is not None:
                    middle = [ga, best[1], gb]
                else:
                    middle = nx.bidirectional_dijkstra(g, ga, gb, weight="latency")[1]
            return [src, *middle, dst]
    return list(nx.bidirectional_dijkstra(g, src, dst, weight="latency")[1])


def _pairs(system: System, count: int) -> list[tuple[str, str]]:
    """Chip pairs (all of them on small systems, a fixed sample on big ones) and routes to and
    from the other nodes (gateways, memories, hosts, switches; a fixed sample on big ones)."""
    chips = [c.node for c in system.chips]
    others = [n for n in system.nodes if not n.startswith("ipu:")]
    rng = random.Random(16)
    if len(chips) <= 16:
        pairs = [(a, b) for a in chips for b in chips if a != b]
    else:
        pairs = [tuple(rng.sample(chips, 2)) for _ in range(count)]
    for node in others if len(others) <= 64 else rng.sample(others, 64):
        chip = rng.choice(chips)
        pairs += [(node, chip), (chip, node)]
    return pairs  # type: ignore[return-value]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_routes_are_the_networkx_routes(name: str) -> None:
    system = load_system(name)
    reference = load_system(name)
    domains = _domain_graphs(reference)
    for src, dst in _pairs(system, 60 if system.num_chips > 256 else 200):
        try:
            want = _reference_path(reference, domains, src, dst)
        except nx.NetworkXNoPath:
            with pytest.raises(ValueError, match="no route"):
                system.route(src, dst)
            continue
        chans = tuple(system.channel(a, b).id for a, b in pairwise(want))  # type: ignore[union-attr]
        assert system.route(src, dst).channels == chans, (name, src, dst)


@pytest.mark.parametrize("name", SHIPPED)
def test_connectivity_matches_networkx(name: str) -> None:
    system = load_system(name)
    start = system.chips[0].node
    both = nx.descendants(system.graph, start) & nx.ancestors(system.graph, start)
    assert system.unreachable_chips() == tuple(c.id for c in system.chips[1:] if c.node not in both)
