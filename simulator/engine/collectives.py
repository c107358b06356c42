"""Collectives decomposed into BSP steps of point-to-point transfers over real routes.

Every algorithm is a list of :class:`Step`: in one step each listed pair moves ``nbytes`` in the
same exchange phase, then each receiving chip reduces ``reduce_elems`` elements (reduce-scatter
phases). In a ``multicast`` step each source sends its ``nbytes`` once and every chip it is
paired with receives them (hardware multicast, :mod:`simulator.engine.messages`). Steps that
are identical (same pairs, bytes, reduction) share a ``key`` so that the executor can simulate
one and replay the rest while nothing else contends for their links.

Algorithms (GCL names in brackets, see docs/collectives.md):
ring [clockwise_ring], bidirectional_ring [bidirectional_ring_pair], meet_in_middle
[meet_in_middle_ring], hierarchical (ring inside each IPU-Link domain, ring across domains over
GW-Links, ring inside again), direct (every pair in one exchange: all-to-all and the rooted kinds),
broadcast [broadcast] (every chip multicasts its piece to all others in one exchange: all-gather,
and all-reduce with the reduction done locally by every chip). The ``broadcast`` kind is always
one multicast from the root, whatever the algorithm.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass

from simulator.hardware.system import System

Pairs = tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class Step:
    """One exchange phase of a collective."""

    key: int
    pairs: Pairs
    nbytes: float  # per pair (per source, for a multicast step)
    reduce_elems: float = 0.0  # per receiving chip, after the exchange
    multicast: bool = False  # each source's bytes sent once to all its pairs' destinations


# GCL's choice of ring algorithm (graphcore/poplibs lib/popops/ReplicatedCollectives.cpp,
# pickAllGatherMethod / pickReduceScatterMethod, "thresholds determined experimentally").
# Software policy of the collectives library, not hardware: (ranks above, all-gather bytes,
# reduce-scatter bytes) of the per-IPU buffer from which the bidirectional ring pair is used.
_GCL_BIDIR_THRESHOLDS = (
    (8, 19_922_944, 39_845_888),
    (4, 2_490_368, 4_980_736),
    (0, 622_592, 1_245_184),
)
_GCL_MIM_ABOVE_RANKS = 16


def choose_algorithm(
    system: System,
    kind: str,
    group: Sequence[int],
    nbytes: float,
    *,
    tiles: int | None = None,
    elem_bytes: float = 4.0,
) -> str:
    """The algorithm ``auto`` runs: GCL's published ring rule (:func:`gcl_ring_choice`), or
    GCL's ``broadcast`` method for a small all-gather or all-reduce where that is faster.

    GCL offers a broadcast method beside its rings (ipu-hardware §3) but its rule for picking
    it is not public. Here it is considered for small buffers only — where the ring method's
    closed form is at least half latency, so its 2(N−1) steps cost more than their bytes — and
    picked where its own closed form (uncontended, per-message costs included:
    :func:`simulator.engine.messages.steps_seconds`) is faster.
    """
    ring = gcl_ring_choice(system, kind, group, nbytes)
    if kind not in ("all_gather", "all_reduce") or len(group) < 2 or not nbytes > 0:
        return ring
    key = (kind, tuple(group), float(nbytes), tiles, float(elem_bytes))
    memo = _CHOICES.setdefault(system, {})
    hit = memo.get(key)
    if hit is None:
        # messages.py builds on this module's Step, so it is imported here, not at the top
        from simulator.engine.messages import steps_seconds

        def seconds(algorithm: str) -> tuple[float, float]:
            steps = schedule(system, kind, group, nbytes, algorithm, elem_bytes=elem_bytes)
            return steps_seconds(system, steps, tiles, elem_bytes)

        ring_s, ring_latency = seconds(ring)
        # every chip must take in the others' pieces: no faster than its links allow
        pieces = (len(group) - 1) * (nbytes if kind == "all_reduce" else nbytes / len(group))
        floor = max(pieces / _inbound_Bps(system, c) for c in group)
        small = 2 * ring_latency >= ring_s and floor < ring_s
        hit = "broadcast" if small and seconds("broadcast")[0] < ring_s else ring
        memo[key] = hit
    return hit


def _inbound_Bps(system: System, chip: int) -> float:
    """Bytes per second all of a chip's incoming channels carry together."""
    inbound = _INBOUND.get(system)
    if inbound is None:
        inbound = _INBOUND[system] = {}
        for ch in system.channels:
            inbound[ch.dst] = inbound.get(ch.dst, 0.0) + ch.capacity_Bps
    return inbound.get(system.chips[chip].node) or float("inf")


_INBOUND: weakref.WeakKeyDictionary[System, dict[str, float]] = weakref.WeakKeyDictionary()


_CHOICES: weakref.WeakKeyDictionary[System, dict[tuple[object, ...], str]] = (
    weakref.WeakKeyDictionary()
)


def gcl_ring_choice(system: System, kind: str, group: Sequence[int], nbytes: float) -> str:
    """The ring algorithm GCL would pick for a replicated collective (one IPU per rank)."""
    if kind in ("all_to_all", "broadcast", "gather", "scatter"):
        return "direct"
    domains = {system.chips[c].domain for c in group}
    if len(domains) > 1 and _equal_domain_split(system, group):
        return "hierarchical"
    n = len(group)
    if n <= 2:
        return "ring"
    if n > _GCL_MIM_ABOVE_RANKS:
        return "meet_in_middle"
    for above, ag_bytes, rs_bytes in _GCL_BIDIR_THRESHOLDS:
        if n > above:
            threshold = ag_bytes if kind == "all_gather" else rs_bytes
            return "bidirectional_ring" if nbytes >= threshold else "ring"
    return "ring"


def _equal_domain_split(system: System, group: Sequence[int]) -> bool:
    sizes: dict[int, int] = {}
    for c in group:
        d = system.chips[c].domain
        sizes[d] = sizes.get(d, 0) + 1
    return len(set(sizes.values())) == 1 and next(iter(sizes.values())) > 0


def ring_order(system: System, chips: Sequence[int]) -> tuple[int, ...]:
    """A ring through ``chips`` along IPU-Links where possible.

    Inside each IPU-Link domain, tries the ladder ring (up the even rail, down the odd one:
    GCL's "interleaved" order for a mesh); keeps the given order where that ring is not
    link-adjacent. Domains follow each other in id order.
    """
    by_domain: dict[int, list[int]] = {}
    for c in chips:
        by_domain.setdefault(system.chips[c].domain, []).append(c)
    order: list[int] = []
    for d in sorted(by_domain):
        members = sorted(by_domain[d])
        ladder = members[0::2] + members[1::2][::-1]
        if len(members) > 2 and _adjacent_ring(system, ladder):
            order.extend(ladder)
        else:
            order.extend(members)
    return tuple(order)


def _adjacent_ring(system: System, ring: Sequence[int]) -> bool:
    n = len(ring)
    return all(
        system.channel(system.chips[ring[i]].node, system.chips[ring[(i + 1) % n]].node) is not None
        for i in range(n)
    )


class _Keys:
    def __init__(self) -> None:
        self.next = 0

    def new(self) -> int:
        self.next += 1
        return self.next - 1


def _ring_pairs(ring: Sequence[int], reverse: bool = False) -> Pairs:
    n = len(ring)
    if reverse:
        return tuple((ring[(i + 1) % n], ring[i]) for i in range(n))
    return tuple((ring[i], ring[(i + 1) % n]) for i in range(n))


def _ring_phase(
    rings: Sequence[Sequence[int]],
    nbytes: float,
    elem_bytes: float,
    reduce: bool,
    algorithm: str,
    keys: _Keys,
) -> list[Step]:
    """One reduce-scatter (``reduce``) or all-gather phase of ``nbytes`` per chip, run on
    several disjoint rings of equal size at once."""
    n = len(rings[0])
    if n < 2:
        return []
    frag = nbytes / n
    cw = tuple(p for r in rings for p in _ring_pairs(r))
    ccw = tuple(p for r in rings for p in _ring_pairs(r, reverse=True))
    if algorithm == "ring":
        key = keys.new()
        return [Step(key, cw, frag, frag / elem_bytes if reduce else 0.0)] * (n - 1)
    if algorithm == "bidirectional_ring":
        key = keys.new()
        half = frag / 2
        return [Step(key, cw + ccw, half, half / elem_bytes if reduce else 0.0)] * (n - 1)
    if algorithm == "meet_in_middle":
        both = (n - 1) // 2
        red = frag / elem_bytes if reduce else 0.0
        steps = [Step(keys.new(), cw + ccw, frag, 2 * red)] * both if both else []
        if (n - 1) % 2:
            steps.append(Step(keys.new(), cw, frag, red))
        return steps
    raise ValueError(f"not a ring algorithm: {algorithm}")


def schedule(
    system: System,
    kind: str,
    group: Sequence[int],
    nbytes: float,
    algorithm: str,
    *,
    elem_bytes: float = 4.0,
    root: int | None = None,
    tiles: int | None = None,
) -> list[Step]:
    """The steps of collective ``kind`` over ``group`` (ring order) with ``nbytes`` per chip.

    ``nbytes`` is the full buffer of one chip: the input of all-reduce and reduce-scatter, the
    output of all-gather and gather, the input of scatter and all-to-all, the payload of
    broadcast and reduce. ``tiles``: the tiles the buffer is spread over (None: all), which
    ``auto`` weighs (:func:`choose_algorithm`).
    """
    group = tuple(group)
    n = len(group)
    keys = _Keys()
    if n < 2 or nbytes <= 0:
        return []
    if algorithm == "auto":
        algorithm = choose_algorithm(
            system, kind, group, nbytes, tiles=tiles, elem_bytes=elem_bytes
        )
    root = group[0] if root is None else root
    others = tuple(c for c in group if c != root)
    if kind in ("all_to_all", "broadcast", "gather", "scatter") or algorithm == "direct":
        if kind == "all_to_all":
            pairs = tuple((a, b) for a in group for b in group if a != b)
            return [Step(keys.new(), pairs, nbytes / n)]
        if kind == "broadcast":
            return [Step(keys.new(), tuple((root, c) for c in others), nbytes, multicast=True)]
        if kind == "gather":
            return [Step(keys.new(), tuple((c, root) for c in others), nbytes / n)]
        if kind == "scatter":
            return [Step(keys.new(), tuple((root, c) for c in others), nbytes / n)]
        if kind == "reduce":
            return [
                Step(
                    keys.new(),
                    tuple((c, root) for c in others),
                    nbytes,
                    (n - 1) * nbytes / elem_bytes,
                )
            ]
        algorithm = "ring"  # all_reduce / reduce_scatter / all_gather have no direct form here
    if algorithm == "broadcast" and kind in ("all_gather", "all_reduce"):
        everyone = tuple((a, b) for a in group for b in group if a != b)
        if kind == "all_gather":
            return [Step(keys.new(), everyone, nbytes / n, multicast=True)]
        return [Step(keys.new(), everyone, nbytes, (n - 1) * nbytes / elem_bytes, multicast=True)]
    if algorithm == "broadcast":
        algorithm = "ring"  # reduce-scatter and reduce gain nothing from multicast
    if algorithm == "hierarchical":
        return _hierarchical(system, kind, group, nbytes, elem_bytes, keys, root)
    rings = [group]
    if kind == "all_reduce":
        return _ring_phase(rings, nbytes, elem_bytes, True, algorithm, keys) + _ring_phase(
            rings, nbytes, elem_bytes, False, algorithm, keys
        )
    if kind == "reduce_scatter":
        return _ring_phase(rings, nbytes, elem_bytes, True, algorithm, keys)
    if kind == "all_gather":
        return _ring_phase(rings, nbytes, elem_bytes, False, algorithm, keys)
    if kind == "reduce":  # reduce-scatter, then every fragment to the root
        steps = _ring_phase(rings, nbytes, elem_bytes, True, algorithm, keys)
        return [*steps, Step(keys.new(), tuple((c, root) for c in others), nbytes / n)]
    raise ValueError(f"unknown collective kind {kind!r}")


def _hierarchical(
    system: System,
    kind: str,
    group: tuple[int, ...],
    nbytes: float,
    elem_bytes: float,
    keys: _Keys,
    root: int,
) -> list[Step]:
    """Ring inside each IPU-Link domain, ring across domains between matching positions."""
    by_domain: dict[int, list[int]] = {}
    for c in group:
        by_domain.setdefault(system.chips[c].domain, []).append(c)
    if len(by_domain) < 2 or not _equal_domain_split(system, group):
        return schedule(system, kind, group, nbytes, "ring", elem_bytes=elem_bytes, root=root)
    inner = [list(ring_order(system, m)) for _, m in sorted(by_domain.items())]
    local = len(inner[0])
    outer = [[ring[j] for ring in inner] for j in range(local)]
    inner_alg = "ring" if local <= 2 else "bidirectional_ring"
    steps: list[Step] = []
    if kind in ("all_reduce", "reduce_scatter"):
        steps += _ring_phase(inner, nbytes, elem_bytes, True, inner_alg, keys)
        shard = nbytes / local
        steps += _ring_phase(outer, shard, elem_bytes, True, "ring", keys)
        if kind == "all_reduce":
            steps += _ring_phase(outer, shard, elem_bytes, False, "ring", keys)
            steps += _ring_phase(inner, nbytes, elem_bytes, False, inner_alg, keys)
        return steps
    if kind == "all_gather":
        steps += _ring_phase(outer, nbytes / local, elem_bytes, False, "ring", keys)
        steps += _ring_phase(inner, nbytes, elem_bytes, False, inner_alg, keys)
        return steps
    return schedule(system, kind, group, nbytes, "ring", elem_bytes=elem_bytes, root=root)


def minimum_payload(kind: str, n: int, nbytes: float) -> float:
    """Bytes that must reach destinations, whatever the algorithm (docs/metrics.md)."""
    if n < 2:
        return 0.0
    return {
        "all_reduce": 2 * (n - 1) * nbytes,
        "reduce_scatter": (n - 1) * nbytes,
        "all_gather": (n - 1) * nbytes,
        "all_to_all": (n - 1) * nbytes,
        "broadcast": (n - 1) * nbytes,
        "reduce": (n - 1) * nbytes,
        "gather": (n - 1) * nbytes / n,
        "scatter": (n - 1) * nbytes / n,
    }[kind]


def ring_closed_form(n: int, nbytes: float, alpha_s: float, beta_Bps: float) -> float:
    """Ring all-reduce 2(N-1)(alpha + M/(N beta)) — for checks and the analytic estimate."""
    return 2 * (n - 1) * (alpha_s + nbytes / (n * beta_Bps)) if n > 1 else 0.0


__all__ = [
    "Step",
    "choose_algorithm",
    "gcl_ring_choice",
    "minimum_payload",
    "ring_closed_form",
    "ring_order",
    "schedule",
]
