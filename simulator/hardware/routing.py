"""Path searches over a system's channels, without networkx.

Routes must not depend on which library finds them: the two searches the system uses — the
fewest-hops path inside an IPU-Link domain and the least-latency path elsewhere — are the
bidirectional searches networkx 3 runs (``bidirectional_shortest_path`` and
``bidirectional_dijkstra``), written out here step for step, so that ties between equal paths
are broken the same way (by the order the channels were added) and the routes, their latencies
and every result built on them stay what they were. tests/test_routing.py compares both with
networkx on every built-in system. Keeping networkx out of routing also keeps it out of
``ipusim run``'s start-up (it is imported where a networkx graph is really wanted: drawings,
cycle reports).

An adjacency is ``{node: {neighbour: weight}}`` with neighbours in channel order; ``succ`` holds
the channels out of each node and ``pred`` the channels into it.
"""

from __future__ import annotations

from heapq import heappop, heappush
from itertools import count

Adjacency = dict[str, dict[str, float]]


def fewest_hops(succ: Adjacency, pred: Adjacency, source: str, target: str) -> list[str] | None:
    """A path with the fewest hops from ``source`` to ``target`` (None if there is none):
    breadth-first from both ends, always extending the smaller frontier."""
    if source == target:
        return [source]
    before: dict[str, str | None] = {source: None}  # node -> its predecessor from the source
    after: dict[str, str | None] = {target: None}  # node -> its successor towards the target
    forward, backward = [source], [target]
    meet: str | None = None
    while forward and backward and meet is None:
        if len(forward) <= len(backward):
            level, forward = forward, []
            for v in level:
                for w in succ.get(v, {}):
                    if w not in before:
                        forward.append(w)
                        before[w] = v
                    if w in after:
                        meet = w
                        break
                if meet is not None:
                    break
        else:
            level, backward = backward, []
            for v in level:
                for w in pred.get(v, {}):
                    if w not in after:
                        after[w] = v
                        backward.append(w)
                    if w in before:
                        meet = w
                        break
                if meet is not None:
                    break
    if meet is None:
        return None
    path: list[str] = []
    node: str | None = meet
    while node is not None:
        path.append(node)
        node = before[node]
    path.reverse()
    node = after[path[-1]]
    while node is not None:
        path.append(node)
        node = after[node]
    return path


def least_weight(succ: Adjacency, pred: Adjacency, source: str, target: str) -> list[str] | None:
    """A path of least total weight from ``source`` to ``target`` (None if there is none):
    Dijkstra from both ends in turn, stopping when a node is settled from both."""
    if source == target:
        return [source]
    dists: tuple[dict[str, float], dict[str, float]] = ({}, {})
    preds: tuple[dict[str, str | None], dict[str, str | None]] = ({source: None}, {target: None})
    seen: tuple[dict[str, float], dict[str, float]] = ({source: 0}, {target: 0})
    fringe: tuple[list[tuple[float, int, str]], list[tuple[float, int, str]]] = ([], [])
    ties = count()
    heappush(fringe[0], (0, next(ties), source))
    heappush(fringe[1], (0, next(ties), target))
    neighbours = (succ, pred)
    best: float | None = None
    meet: str | None = None
    direction = 1
    while fringe[0] and fringe[1]:
        direction = 1 - direction
        dist, _, v = heappop(fringe[direction])
        if v in dists[direction]:
            continue
        dists[direction][v] = dist
        if v in dists[1 - direction]:
            assert meet is not None
            return _walk(preds[0], meet)[::-1] + _walk(preds[1], preds[1][meet])
        for w, cost in neighbours[direction].get(v, {}).items():
            length = dist + cost
            if w in dists[direction]:
                continue  # settled already (weights are not negative)
            if w not in seen[direction] or length < seen[direction][w]:
                seen[direction][w] = length
                heappush(fringe[direction], (length, next(ties), w))
                preds[direction][w] = v
                if w in seen[1 - direction]:
                    through = length + seen[1 - direction][w]
                    if best is None or best > through:
                        best, meet = through, w
    return None


def _walk(pred: dict[str, str | None], node: str | None) -> list[str]:
    out: list[str] = []
    while node is not None:
        out.append(node)
        node = pred[node]
    return out


def reachable(adjacent: Adjacency, start: str) -> set[str]:
    """Nodes reachable from ``start`` along ``adjacent``, ``start`` excluded (networkx's
    ``descendants`` over ``succ``, ``ancestors`` over ``pred``)."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in adjacent.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    seen.discard(start)
    return seen
