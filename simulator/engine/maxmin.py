"""Weighted max-min fair rates by progressive filling, exact and fast for large flow sets.

:func:`maxmin_rates` is the allocation the flow network (:mod:`simulator.engine.flows`) uses.
:class:`Structure` prepares a set of flows once for repeated solves while flows leave: a
resource only one flow crosses acts on that flow like a rate cap and is folded into it, so each
progressive-filling round touches only shared resources and the flows it freezes. Every sum is
taken in the same order as the plain algorithm (documented on :func:`maxmin_rates`), so the
rates are identical to the bit whichever way they are computed.
"""

from __future__ import annotations

import math

import numpy as np

_EMPTY_I = np.zeros(0, dtype=np.int64)


def ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, e)`` for each pair, vectorised."""
    lengths = ends - starts
    total = int(lengths.sum())
    if total == 0:
        return _EMPTY_I
    offsets = np.repeat(ends - lengths.cumsum(), lengths)
    return offsets + np.arange(total, dtype=np.int64)


class Structure:
    """The incidences of a set of flows, prepared for repeated max-min solves.

    A resource that exactly one incidence crosses (one flow, once) can only ever saturate at
    ``capacity / weight`` while its flow is unfrozen: it acts like a rate cap of that flow and
    is folded into the flow's *effective* cap. Only shared resources stay, numbered densely,
    with their incidences in the original order (a CSR by flow and one by resource). Flows
    that leave are marked dead: their shared weights become 0 (adding 0.0 changes no sum), so
    the structure serves until flows arrive.
    """

    def __init__(
        self,
        inc_flow: np.ndarray,
        inc_res: np.ndarray,
        n_flows: int,
        capacity: np.ndarray,
        flow_cap: np.ndarray,
        weight: np.ndarray,
    ) -> None:
        self.n = n_flows
        self.cap = flow_cap
        counts = np.bincount(inc_res, minlength=capacity.size)
        alone = counts[inc_res] == 1
        eff = np.array(flow_cap, dtype=float)
        pi = np.flatnonzero(alone & (weight > 0))  # a weightless resource never constrains
        if pi.size:
            np.minimum.at(eff, inc_flow[pi], capacity[inc_res[pi]] / weight[pi])
        si = np.flatnonzero(~alone)
        s_flow = inc_flow[si]
        used = np.flatnonzero(counts > 1)  # shared resources, numbered densely in id order
        dense = np.zeros(capacity.size, dtype=np.int64)
        dense[used] = np.arange(used.size)
        self.S = int(used.size)
        self.s_flow = s_flow
        self.s_res = dense[inc_res[si]]
        self.s_w = weight[si]
        self.w_live = self.s_w.copy()
        self.avail0 = capacity[used].astype(float)
        self.cnt = np.bincount(self.s_res, minlength=self.S)
        self.f_ptr = np.zeros(n_flows + 1, dtype=np.int64)
        np.cumsum(np.bincount(s_flow, minlength=n_flows), out=self.f_ptr[1:])
        # a stable sort by resource (a radix sort when the ids fit in 16 bits)
        keys = self.s_res.astype(np.uint16) if self.S <= 2**16 else self.s_res
        self.r_flow = s_flow[np.argsort(keys, kind="stable")]
        self.r_ptr = np.zeros(self.S + 1, dtype=np.int64)
        np.cumsum(self.cnt, out=self.r_ptr[1:])
        fin = np.flatnonzero(np.isfinite(eff))
        self.c_order = fin[np.argsort(eff[fin], kind="stable")]
        self.c_sorted = eff[self.c_order]
        self.dead = np.zeros(n_flows, dtype=bool)

    def remove(self, flows: np.ndarray) -> None:
        """Flows ``flows`` have left: they take no share in later solves."""
        self.dead[flows] = True
        if self.S:
            pos = ranges(self.f_ptr[flows], self.f_ptr[flows + 1])
            if pos.size:
                self.w_live[pos] = 0.0
                self.cnt -= np.bincount(self.s_res[pos], minlength=self.S)

    def solve(self, n_alive: int) -> np.ndarray:
        """Weighted max-min rates of the live flows (0 for dead ones): progressive filling,
        with every float operation of :func:`maxmin_rates`' plain form in the same order."""
        rate = np.zeros(self.n)
        frozen = self.dead.copy()
        S = self.S
        if S:
            count = np.bincount(self.s_res, weights=self.w_live, minlength=S)
            counts = self.cnt.copy()
            live = np.flatnonzero(count > 0)
            avail = self.avail0.copy()
        else:
            live = _EMPTY_I
        c_order, c_sorted = self.c_order, self.c_sorted
        nc = c_order.size
        ptr = 0
        left = n_alive
        while left:
            if live.size:
                level_live = avail[live] / count[live]
                level = float(level_live.min())
            else:
                level = math.inf
            while ptr < nc:  # the first unfrozen flow by effective cap
                chunk = frozen[c_order[ptr : ptr + 64]]
                if chunk.all():
                    ptr += chunk.size
                    continue
                ptr += int(chunk.argmin())
                break
            if ptr < nc:
                level = min(level, float(c_sorted[ptr]))
            if not math.isfinite(level):
                raise ValueError("a flow has neither a resource nor a rate cap")
            level = max(level, 0.0)
            top = level + level * 1e-12
            parts = []
            if live.size:
                sat = live[level_live <= top]
                if sat.size:
                    parts.append(self.r_flow[ranges(self.r_ptr[sat], self.r_ptr[sat + 1])])
            if ptr < nc:
                k = int(np.searchsorted(c_sorted, top, side="right"))
                if k > ptr:
                    parts.append(c_order[ptr:k])
            pick = np.zeros(self.n, dtype=bool)
            for part in parts:
                pick[part] = True
            pick &= ~frozen
            newly = np.flatnonzero(pick)
            if newly.size == 0:  # pragma: no cover - guarded by the tolerance above
                raise RuntimeError("progressive filling made no progress")
            frozen[newly] = True
            # level <= every unfrozen flow's effective cap <= its cap: each gets ``level``
            rate[newly] = np.minimum(level, self.cap[newly])
            if S:
                pos = ranges(self.f_ptr[newly], self.f_ptr[newly + 1])
                if pos.size:
                    res = self.s_res[pos]
                    w = self.s_w[pos]
                    avail -= np.bincount(res, weights=level * w, minlength=S)
                    count -= np.bincount(res, weights=w, minlength=S)
                    counts -= np.bincount(res, minlength=S)
                    live = live[counts[live] > 0]
            left -= newly.size
        return rate


def maxmin_rates(
    inc_flow: np.ndarray,
    inc_res: np.ndarray,
    n_flows: int,
    capacity: np.ndarray,
    flow_cap: np.ndarray,
    inc_weight: np.ndarray | None = None,
) -> np.ndarray:
    """Weighted max-min fair rates by progressive filling.

    ``inc_flow[k]``/``inc_res[k]`` list which flow crosses which resource (indices into
    ``capacity``; ``inc_flow`` non-decreasing); ``inc_weight[k]`` (> 0) is how many units of
    that resource the flow uses per byte it moves (None: 1 everywhere); ``flow_cap`` is each
    flow's own ceiling (``inf`` for none). Every flow must cross a resource or have a finite
    cap.

    All unfrozen flows share one rising level (bytes/s), so a resource saturates at level
    ``(capacity - frozen usage) / sum of the unfrozen flows' weights``; each round takes the
    lowest such level (or unfrozen flow cap), ``L``, freezes every flow of a resource (or cap)
    within ``1e-12 × L`` of it at ``min(L, its cap)``, and takes their usage off the resources
    they cross. Sums are taken in incidence order: a resource's weight is the sum of its
    incidences' weights in order, and each round subtracts the sum, in incidence order, of what
    the flows frozen in it use.
    """
    if n_flows == 0:
        return np.zeros(0)
    weight = np.ones(inc_res.size) if inc_weight is None else inc_weight
    capacity = np.asarray(capacity, dtype=float)
    flow_cap = np.asarray(flow_cap, dtype=float)
    return Structure(inc_flow, inc_res, n_flows, capacity, flow_cap, weight).solve(n_flows)


def small_rates(
    flow_res: list[list[int]],
    flow_w: list[list[float]],
    caps: list[float],
    capacity: list[float],
) -> list[float]:
    """:func:`maxmin_rates` for a few flows, in plain Python: flow ``f`` crosses
    ``flow_res[f]`` with weights ``flow_w[f]``. Every operation is the plain algorithm's, in
    its order (sums in incidence order, the same comparisons), so the rates are the same to the
    bit; for a handful of flows this is several times faster than the array form."""
    n = len(flow_res)
    count: dict[int, float] = {}
    counts: dict[int, int] = {}
    for res, ws in zip(flow_res, flow_w, strict=True):
        for r, w in zip(res, ws, strict=True):
            count[r] = count.get(r, 0.0) + w
            counts[r] = counts.get(r, 0) + 1
    live = [r for r in count if count[r] > 0]
    avail = {r: capacity[r] for r in count}
    has_caps = any(math.isfinite(c) for c in caps)
    frozen = [False] * n
    rate = [0.0] * n
    left = n
    while left:
        levels = {r: avail[r] / count[r] for r in live}
        level = min(levels.values()) if live else math.inf
        if has_caps:
            level = min(level, min(c for c, done in zip(caps, frozen, strict=True) if not done))
        if not math.isfinite(level):
            raise ValueError("a flow has neither a resource nor a rate cap")
        level = max(level, 0.0)
        top = level + level * 1e-12
        sat = {r for r in live if levels[r] <= top}
        newly = [
            f
            for f in range(n)
            if not frozen[f]
            and ((has_caps and caps[f] <= top) or any(r in sat for r in flow_res[f]))
        ]
        if not newly:  # pragma: no cover - guarded by the tolerance above
            raise RuntimeError("progressive filling made no progress")
        used: dict[int, float] = {}
        weight: dict[int, float] = {}
        crossings: dict[int, int] = {}
        for f in newly:
            frozen[f] = True
            rate[f] = min(level, caps[f])
            for r, w in zip(flow_res[f], flow_w[f], strict=True):
                used[r] = used.get(r, 0.0) + rate[f] * w
                weight[r] = weight.get(r, 0.0) + w
                crossings[r] = crossings.get(r, 0) + 1
        for r, u in used.items():
            avail[r] -= u
            count[r] -= weight[r]
            counts[r] -= crossings[r]
        live = [r for r in live if counts[r] > 0]
        left -= len(newly)
    return rate
