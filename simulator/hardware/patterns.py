"""IPU-Link wiring patterns: the edges a system file's ``fabric:`` block generates in one pod.

A pattern is a pure function of its keys and the chip count; it returns *bundles* — unordered
node pairs with a link count — with parallel links already merged (the :class:`System` contract
wants one channel per direction per node pair). Chip nodes are passed in, so the same code wires
pod 0 and pod 63; the order of the returned bundles is fixed by the pattern, which keeps channel
ids, routes and ``topology show`` output deterministic.

Range checks that need file positions (an explicit edge naming a chip that does not exist) are
done by :mod:`simulator.hardware.generate` before calling these functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from simulator.config.topology import (
    ExplicitPattern,
    FullyConnectedPattern,
    LadderPattern,
    NoLinksPattern,
    RingPattern,
    SwitchPattern,
    Torus2dPattern,
)

Bundle = tuple[str, str, int]  # node a, node b, parallel links


def merge(edges: Iterable[tuple[str, str, int]]) -> list[Bundle]:
    """Merge parallel edges between the same two nodes (either order) into one bundle.

    The first occurrence fixes the bundle's position and endpoint order. Self-loops are a bug in
    the caller (patterns never make them; explicit edges are checked first).
    """
    ends: dict[frozenset[str], tuple[str, str]] = {}
    count: dict[frozenset[str], int] = {}
    for a, b, n in edges:
        assert a != b, f"self-loop at {a}"
        key = frozenset((a, b))
        ends.setdefault(key, (a, b))
        count[key] = count.get(key, 0) + n
    return [(a, b, count[key]) for key, (a, b) in ends.items()]


def _ring(nodes: Sequence[str], links: int) -> list[tuple[str, str, int]]:
    """Neighbours i, i+1 joined, and the last to the first when that adds a new pair (n ≥ 3)."""
    n = len(nodes)
    edges = [(nodes[i], nodes[i + 1], links) for i in range(n - 1)]
    if n >= 3:
        edges.append((nodes[-1], nodes[0], links))
    return edges


def ladder(p: LadderPattern, chips: Sequence[str]) -> list[Bundle]:
    """Rungs (2k, 2k+1), then the even rail, then the odd rail (chip i to i+2, optionally
    closed into rings). With ``wrap`` on 64 chips this is Graphcore's POD64 2D torus."""
    edges = [(chips[k], chips[k + 1], p.rung_links) for k in range(0, len(chips), 2)]
    for parity in (0, 1):
        rail = chips[parity::2]
        if p.wrap:
            edges += _ring(rail, p.rail_links)
        else:
            edges += [(rail[i], rail[i + 1], p.rail_links) for i in range(len(rail) - 1)]
    return merge(edges)


def torus2d(p: Torus2dPattern, chips: Sequence[str]) -> list[Bundle]:
    """Chip r·cols + c; every row and every column closed into a ring."""
    edges: list[tuple[str, str, int]] = []
    for r in range(p.rows):
        edges += _ring(chips[r * p.cols : (r + 1) * p.cols], p.row_links)
    for c in range(p.cols):
        edges += _ring(chips[c :: p.cols], p.col_links)
    return merge(edges)


def ring(p: RingPattern, chips: Sequence[str]) -> list[Bundle]:
    """One ring through the chips in id order."""
    return merge(_ring(chips, p.links))


def fully_connected(p: FullyConnectedPattern, chips: Sequence[str]) -> list[Bundle]:
    """Every pair (i < j) joined by ``links`` links."""
    n = len(chips)
    return merge((chips[i], chips[j], p.links) for i in range(n) for j in range(i + 1, n))


def switch(p: SwitchPattern, chips: Sequence[str], switch_node: str) -> list[Bundle]:
    """Every chip joined to ``switch_node``."""
    return merge((c, switch_node, p.links) for c in chips)


def explicit(p: ExplicitPattern, chips: Sequence[str]) -> list[Bundle]:
    """The listed edges, ids local to the pod (checked by the builder)."""
    return merge((chips[e[0]], chips[e[1]], e[2] if len(e) > 2 else 1) for e in p.edges)


def bundles(
    fabric: LadderPattern
    | Torus2dPattern
    | RingPattern
    | FullyConnectedPattern
    | SwitchPattern
    | ExplicitPattern
    | NoLinksPattern,
    chips: Sequence[str],
    switch_node: str,
) -> list[Bundle]:
    """The IPU-Link bundles of one pod whose chip nodes are ``chips`` (in local id order)."""
    match fabric:
        case LadderPattern():
            return ladder(fabric, chips)
        case Torus2dPattern():
            return torus2d(fabric, chips)
        case RingPattern():
            return ring(fabric, chips)
        case FullyConnectedPattern():
            return fully_connected(fabric, chips)
        case SwitchPattern():
            return switch(fabric, chips, switch_node)
        case ExplicitPattern():
            return explicit(fabric, chips)
        case NoLinksPattern():
            return []
    raise AssertionError(f"unhandled pattern {fabric!r}")
