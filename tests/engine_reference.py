"""The flow network as it was before issue 16: the bit-exact reference for the fast one.

A verbatim copy of ``simulator/engine/flows.py`` at commit 993ea1e (one flow, one SimPy event;
progressive filling over every resource in every round), kept only so that
tests/test_engine_exact.py can check that the batched network and the prepared solver of
:mod:`simulator.engine.maxmin` give the same rates, times and bytes to the last bit.
Not used by the simulator.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import simpy
from simpy.events import EventPriority

# SimPy priority after NORMAL (1): runs when every other event of the instant is done
LATE = EventPriority(2)
_REL_TOL = 1e-12


class ContentionListener(Protocol):
    def on_contention(self) -> None: ...


def _ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, e)`` for each pair, vectorised."""
    lengths = ends - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(ends - lengths.cumsum(), lengths)
    return offsets + np.arange(total, dtype=np.int64)


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
    ``(capacity - frozen usage) / sum of the unfrozen flows' weights``; each round freezes the
    flows of the resources (or caps) that saturate first and updates only the resources those
    flows cross.
    """
    rate = np.zeros(n_flows)
    if n_flows == 0:
        return rate
    n_res = capacity.size
    weight = np.ones(inc_res.size) if inc_weight is None else inc_weight
    count = np.bincount(inc_res, weights=weight, minlength=n_res)
    counts = np.bincount(inc_res, minlength=n_res)
    live = np.nonzero(count > 0)[0]  # resources that still carry unfrozen flows
    avail = capacity.astype(float).copy()
    flow_ptr = np.searchsorted(inc_flow, np.arange(n_flows + 1))
    by_res = np.argsort(inc_res, kind="stable")
    res_ptr = np.concatenate([[0], np.cumsum(counts)])
    frozen = np.zeros(n_flows, dtype=bool)
    has_caps = bool(np.isfinite(flow_cap).any())
    left = n_flows
    while left:
        level_live = avail[live] / count[live]
        level = float(level_live.min()) if live.size else np.inf
        if has_caps:
            level = min(level, float(flow_cap[~frozen].min()))
        if not np.isfinite(level):
            raise ValueError("a flow has neither a resource nor a rate cap")
        level = max(level, 0.0)
        tol = level * 1e-12
        sat = live[level_live <= level + tol]
        mark = np.zeros(n_flows, dtype=bool)
        mark[inc_flow[by_res[_ranges(res_ptr[sat], res_ptr[sat + 1])]]] = True
        if has_caps:
            mark |= flow_cap <= level + tol
        newly = np.nonzero(mark & ~frozen)[0]
        if newly.size == 0:  # pragma: no cover - guarded by the tolerance above
            raise RuntimeError("progressive filling made no progress")
        frozen[newly] = True
        rate[newly] = np.minimum(level, flow_cap[newly])
        pos = _ranges(flow_ptr[newly], flow_ptr[newly + 1])
        res = inc_res[pos]
        w = weight[pos]
        avail -= np.bincount(res, weights=rate[inc_flow[pos]] * w, minlength=n_res)
        count -= np.bincount(res, weights=w, minlength=n_res)
        counts -= np.bincount(res, minlength=n_res)
        live = live[counts[live] > 0]
        left -= newly.size
    return rate


class FlowNetwork:
    """Concurrent flows over shared resources; each flow's event fires when its bytes are sent."""

    def __init__(
        self,
        env: simpy.Environment,
        capacities: Sequence[float] = (),
        per_message: Sequence[float] | None = None,
    ) -> None:
        self.env = env
        self._capacity: list[float] = list(capacities)
        self._per_byte: list[float] = [1.0] * len(self._capacity)
        self._per_msg: list[float] = (
            [0.0] * len(self._capacity) if per_message is None else list(per_message)
        )
        if len(self._per_msg) != len(self._capacity):
            raise ValueError("per_message must give one value per resource")
        self._cap_np = np.asarray(self._capacity, dtype=float)
        self._pb_np = np.asarray(self._per_byte, dtype=float)
        self._pm_np = np.asarray(self._per_msg, dtype=float)
        self._last = 0.0
        # active flows, aligned arrays
        self._rem = np.zeros(0)
        self._rate = np.zeros(0)
        self._fcap = np.zeros(0)
        self._inc_flow = np.zeros(0, dtype=np.int64)
        self._inc_res = np.zeros(0, dtype=np.int64)
        self._inc_w = np.zeros(0)
        self._events = np.zeros(0, dtype=object)
        self._pending: list[tuple[tuple[int, ...], float, float, simpy.Event, float]] = []
        self._update_scheduled = False
        self._wake_token = 0
        self._claims: dict[int, ContentionListener] = {}
        self._bytes_per_res = np.zeros(len(self._capacity))
        self.recomputations = 0
        self.flows_started = 0

    # ---- resources --------------------------------------------------------------------------
    def add_resource(
        self, capacity_Bps: float, per_message: float = 0.0, per_byte: float = 1.0
    ) -> int:
        """A new resource with the given capacity and costs per message and per byte (in units
        of the capacity); returns its index."""
        if not capacity_Bps > 0:
            raise ValueError(f"resource capacity must be > 0, got {capacity_Bps}")
        self._capacity.append(float(capacity_Bps))
        self._per_byte.append(float(per_byte))
        self._per_msg.append(float(per_message))
        return len(self._capacity) - 1

    def _sync_arrays(self) -> None:
        """Grow the NumPy mirrors of the resource list after ``add_resource`` calls."""
        n = len(self._capacity)
        if self._cap_np.size != n:
            self._cap_np = np.asarray(self._capacity, dtype=float)
            self._pb_np = np.asarray(self._per_byte, dtype=float)
            self._pm_np = np.asarray(self._per_msg, dtype=float)
            grown = np.zeros(n)
            grown[: self._bytes_per_res.size] = self._bytes_per_res
            self._bytes_per_res = grown

    def capacity(self, res: int) -> float:
        return self._capacity[res]

    @property
    def num_resources(self) -> int:
        return len(self._capacity)

    def bytes_carried(self) -> np.ndarray:
        """Bytes each resource has carried so far (for utilisation)."""
        self._sync_arrays()
        self._advance()
        return self._bytes_per_res.copy()

    def add_bytes(self, resources: Sequence[int], nbytes: float | Sequence[float]) -> None:
        """Account bytes on resources without simulating them (used by cached replays):
        ``nbytes`` on each, or one amount per resource."""
        self._sync_arrays()
        amounts = nbytes if isinstance(nbytes, float | int) else np.asarray(nbytes, dtype=float)
        np.add.at(self._bytes_per_res, np.asarray(resources, dtype=np.int64), amounts)

    # ---- claims -------------------------------------------------------------------------------
    def busy(self, resources: Sequence[int]) -> bool:
        """Whether any active or pending flow, or another claim, uses one of ``resources``."""
        rs = set(resources)
        if any(r in self._claims for r in rs):
            return True
        if self._inc_res.size and np.isin(self._inc_res, np.fromiter(rs, dtype=np.int64)).any():
            return True
        return any(rs.intersection(p[0]) for p in self._pending)

    def claim(self, owner: ContentionListener, resources: Sequence[int]) -> bool:
        """Claim ``resources`` for ``owner`` if none is busy; return whether it succeeded."""
        if self.busy(resources):
            return False
        for r in resources:
            self._claims[r] = owner
        return True

    def release(self, owner: ContentionListener) -> None:
        """Drop every claim of ``owner``."""
        self._claims = {r: o for r, o in self._claims.items() if o is not owner}

    # ---- flows --------------------------------------------------------------------------------
    def start(
        self,
        resources: tuple[int, ...],
        nbytes: float,
        rate_cap: float = np.inf,
        owner: object | None = None,
        ratio: float = 0.0,
    ) -> simpy.Event:
        """Start a flow; the returned event succeeds when its last byte has been sent.

        ``ratio``: messages per byte the flow carries (its per-message costs on each resource
        are paid in proportion to the bytes it moves). Every resource it crosses must cost it
        something (a per-byte cost, or a per-message cost with ``ratio`` > 0).
        """
        if not math.isfinite(nbytes):  # an infinite or NaN remainder never drains: no end event
            raise ValueError(f"a flow must carry a finite number of bytes, got {nbytes}")
        ev = self.env.event()
        self.flows_started += 1
        if self._claims:
            for r in resources:
                holder = self._claims.get(r)
                if holder is not None and holder is not owner:
                    self.release(holder)
                    holder.on_contention()
        if nbytes <= 0:
            ev.succeed()
            return ev
        self._pending.append((resources, float(nbytes), float(rate_cap), ev, float(ratio)))
        self._request_update()
        return ev

    def _request_update(self) -> None:
        if self._update_scheduled:
            return
        self._update_scheduled = True
        ev = simpy.Event(self.env)
        ev._ok = True
        ev._value = None
        ev.callbacks.append(self._update)
        self.env.schedule(ev, priority=LATE)

    def _advance(self) -> None:
        dt = self.env.now - self._last
        if dt > 0 and self._rem.size:
            sent = np.minimum(self._rate * dt, self._rem)
            self._rem -= sent
            np.add.at(self._bytes_per_res, self._inc_res, sent[self._inc_flow])
        self._last = self.env.now

    def _update(self, _event: simpy.Event | None = None) -> None:
        self._update_scheduled = False
        self._sync_arrays()
        self._advance()
        self.recomputations += 1
        # departures
        # a flow is done when less than a picosecond of sending (or a micro-byte) is left, or
        # less than one step of the float clock at this instant (late in a long run a smaller
        # wake-up would not advance the clock and would re-arm itself forever)
        tick = max(1e-12, float(np.spacing(self.env.now)))
        done = (self._rem <= 1e-6) | (self._rem <= self._rate * tick)
        finished: list[simpy.Event] = []
        if done.any():
            keep = ~done
            finished = self._events[done].tolist()
            new_index = np.cumsum(keep) - 1
            inc_keep = keep[self._inc_flow]
            self._inc_flow = new_index[self._inc_flow[inc_keep]]
            self._inc_res = self._inc_res[inc_keep]
            self._inc_w = self._inc_w[inc_keep]
            self._rem = self._rem[keep]
            self._fcap = self._fcap[keep]
            self._events = self._events[keep]
        # arrivals
        if self._pending:
            base = self._rem.size
            res_lists = [p[0] for p in self._pending]
            lengths = np.fromiter((len(r) for r in res_lists), dtype=np.int64, count=len(res_lists))
            flat = np.fromiter(
                itertools.chain.from_iterable(res_lists), dtype=np.int64, count=int(lengths.sum())
            )
            self._inc_flow = np.concatenate(
                [self._inc_flow, base + np.repeat(np.arange(len(res_lists)), lengths)]
            )
            self._inc_res = np.concatenate([self._inc_res, flat])
            ratio = np.repeat(np.fromiter((p[4] for p in self._pending), dtype=float), lengths)
            self._inc_w = np.concatenate(
                [self._inc_w, self._pb_np[flat] + self._pm_np[flat] * ratio]
            )
            self._rem = np.concatenate([self._rem, [p[1] for p in self._pending]])
            self._fcap = np.concatenate([self._fcap, [p[2] for p in self._pending]])
            new_events = np.empty(len(self._pending), dtype=object)
            new_events[:] = [p[3] for p in self._pending]
            self._events = np.concatenate([self._events, new_events])
            self._pending.clear()
        for ev in finished:
            ev.succeed()
        self._wake_token += 1
        if not self._rem.size:
            self._rate = np.zeros(0)
            return
        self._rate = maxmin_rates(
            self._inc_flow, self._inc_res, self._rem.size, self._cap_np, self._fcap, self._inc_w
        )
        with np.errstate(divide="ignore"):
            eta = float(np.min(self._rem / self._rate))
        token = self._wake_token
        wake = self.env.timeout(max(eta, 0.0))

        def wake_up(_e: simpy.Event, t: int = token) -> None:
            self._on_wake(t)

        wake.callbacks.append(wake_up)

    def _on_wake(self, token: int) -> None:
        if token == self._wake_token:
            self._request_update()

    @property
    def active_flows(self) -> int:
        return self._rem.size + len(self._pending)
