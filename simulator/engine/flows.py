"""Max-min fair sharing of link and port capacity between concurrent flows, inside SimPy.

Resources (links, exchange ports, message engines) have a capacity in units per second. A *flow*
moves bytes across a tuple of resources, optionally with a private rate cap. Each resource has a
cost per byte (1 for links and ports, 0 for engines) and a cost per message (header bytes, a
port's cycles as bytes, an engine's seconds); a flow that carries ``ratio`` messages per byte
uses ``per_byte + per_message × ratio`` units of a resource per byte it moves
(:mod:`simulator.engine.messages`).

Rates are the weighted max-min fair allocation (progressive filling, vectorised with NumPy) and
are recomputed only when the set of flows changes: all arrivals and departures at one instant
are folded into one recomputation, scheduled after every other event of that instant.

Flows are started in **batches** (:class:`FlowSet` → :class:`Batch`): every flow of an exchange
phase or a collective step at once, with one SimPy event when the last of them has sent its
bytes and the time each one finished. The allocation is computed on a prepared structure
(:mod:`simulator.engine.maxmin`) that is rebuilt only when flows arrive.

Owners may *claim* resources (:meth:`FlowNetwork.claim`): a collective that replays identical
steps from a cache claims the resources it uses, and a foreign flow arriving on a claimed
resource calls the owner's ``on_contention`` hook so that it falls back to real flows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import simpy
from simpy.events import EventPriority

from simulator.engine.maxmin import Structure, maxmin_rates, ranges, small_rates

# SimPy priority after NORMAL (1): runs when every other event of the instant is done
LATE = EventPriority(2)
_EMPTY_I = np.zeros(0, dtype=np.int64)
_EMPTY_F = np.zeros(0)
#: at most this many live flows: rates by the plain algorithm in Python (no prepared structure)
SMALL = 12

__all__ = ["Batch", "FlowNetwork", "FlowSet", "maxmin_rates", "on_all"]


class ContentionListener(Protocol):
    def on_contention(self) -> None: ...


@dataclass(frozen=True, slots=True)
class FlowSet:
    """Flows started together, as arrays: flow ``i`` crosses
    ``resources[offsets[i]:offsets[i + 1]]``, moves ``nbytes[i]`` at no more than ``cap[i]``
    B/s and carries ``ratio[i]`` messages per byte; ``latency[i]`` is what its receivers wait
    after its last byte (kept for the caller; the network does not use it)."""

    resources: np.ndarray
    offsets: np.ndarray
    nbytes: np.ndarray
    cap: np.ndarray
    ratio: np.ndarray
    latency: np.ndarray

    def __len__(self) -> int:
        return int(self.nbytes.size)

    @classmethod
    def of(
        cls,
        resources: Sequence[Sequence[int]],
        nbytes: Sequence[float],
        cap: Sequence[float],
        ratio: Sequence[float],
        latency: Sequence[float] | None = None,
    ) -> FlowSet:
        lengths = np.fromiter((len(r) for r in resources), dtype=np.int64, count=len(resources))
        offsets = np.zeros(lengths.size + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        flat = np.fromiter(
            (r for rs in resources for r in rs), dtype=np.int64, count=int(offsets[-1])
        )
        n = len(resources)
        return cls(
            flat,
            offsets,
            np.asarray(nbytes, dtype=float).reshape(n),
            np.asarray(cap, dtype=float).reshape(n),
            np.asarray(ratio, dtype=float).reshape(n),
            np.zeros(n) if latency is None else np.asarray(latency, dtype=float).reshape(n),
        )

    def subset(self, keep: np.ndarray) -> FlowSet:
        """The flows at indices ``keep`` (ascending), in order."""
        lengths = self.offsets[keep + 1] - self.offsets[keep]
        offsets = np.zeros(keep.size + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return FlowSet(
            self.resources[ranges(self.offsets[keep], self.offsets[keep + 1])],
            offsets,
            self.nbytes[keep],
            self.cap[keep],
            self.ratio[keep],
            self.latency[keep],
        )


class Batch:
    """Flows started together: ``event`` succeeds when every one has sent its last byte;
    ``finish[i]`` is the simulated time flow ``i`` did (its start time for an empty flow)."""

    __slots__ = ("event", "finish", "remaining")

    def __init__(self, event: simpy.Event, n: int) -> None:
        self.event = event
        self.finish = np.zeros(n)
        self.remaining = n


class FlowNetwork:
    """Concurrent flows over shared resources; each batch's event fires when its bytes are sent."""

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
        self._tracked: list[bool] = [True] * len(self._capacity)
        self._cap_np = np.asarray(self._capacity, dtype=float)
        self._pb_np = np.asarray(self._per_byte, dtype=float)
        self._pm_np = np.asarray(self._per_msg, dtype=float)
        self._trk_np = np.asarray(self._tracked, dtype=bool)
        self._last = 0.0
        # flows in start order ("slots"; a departed flow stays, dead, until the next arrival)
        self._rem = _EMPTY_F
        self._rate = _EMPTY_F
        self._fcap = _EMPTY_F
        self._batch = _EMPTY_I  # index into self._batches
        self._local = _EMPTY_I  # index of the flow in its batch
        self._inc_flow = _EMPTY_I
        self._inc_res = _EMPTY_I
        self._inc_w = _EMPTY_F
        self._trk_flow = _EMPTY_I  # incidences on resources whose bytes are counted
        self._trk_res = _EMPTY_I
        self._dead = np.zeros(0, dtype=bool)
        self._live = _EMPTY_I  # indices of the live flows
        self._alive = 0
        self._structure: Structure | None = None
        self._batches: list[Batch] = []
        self._pending: list[tuple[Batch, FlowSet, np.ndarray]] = []
        self._pending_res: list[np.ndarray] = []
        self._update_scheduled = False
        self._wake_token = 0
        self._claims: dict[int, ContentionListener] = {}
        self._bytes_per_res = np.zeros(len(self._capacity))
        self.recomputations = 0
        self.flows_started = 0
        self.batches_started = 0

    # ---- resources --------------------------------------------------------------------------
    def add_resource(
        self,
        capacity_Bps: float,
        per_message: float = 0.0,
        per_byte: float = 1.0,
        *,
        tracked: bool = True,
    ) -> int:
        """A new resource with the given capacity and costs per message and per byte (in units
        of the capacity); returns its index. ``tracked``: count the bytes it carries
        (:meth:`bytes_carried`; untracked resources report 0)."""
        if not capacity_Bps > 0:
            raise ValueError(f"resource capacity must be > 0, got {capacity_Bps}")
        self._capacity.append(float(capacity_Bps))
        self._per_byte.append(float(per_byte))
        self._per_msg.append(float(per_message))
        self._tracked.append(tracked)
        return len(self._capacity) - 1

    def add_resources(
        self,
        capacity_Bps: float,
        per_message: float = 0.0,
        per_byte: float = 1.0,
        count: int = 1,
        *,
        tracked: bool = True,
    ) -> int:
        """``count`` new resources alike (see :meth:`add_resource`); returns the first index
        (the others follow it)."""
        if not capacity_Bps > 0:
            raise ValueError(f"resource capacity must be > 0, got {capacity_Bps}")
        first = len(self._capacity)
        self._capacity.extend([float(capacity_Bps)] * count)
        self._per_byte.extend([float(per_byte)] * count)
        self._per_msg.extend([float(per_message)] * count)
        self._tracked.extend([tracked] * count)
        return first

    def _sync_arrays(self) -> None:
        """Grow the NumPy mirrors of the resource list after ``add_resource`` calls."""
        n = len(self._capacity)
        if self._cap_np.size != n:
            self._cap_np = np.asarray(self._capacity, dtype=float)
            self._pb_np = np.asarray(self._per_byte, dtype=float)
            self._pm_np = np.asarray(self._per_msg, dtype=float)
            self._trk_np = np.asarray(self._tracked, dtype=bool)
            grown = np.zeros(n)
            grown[: self._bytes_per_res.size] = self._bytes_per_res
            self._bytes_per_res = grown

    def capacity(self, res: int) -> float:
        return self._capacity[res]

    @property
    def num_resources(self) -> int:
        return len(self._capacity)

    def bytes_carried(self) -> np.ndarray:
        """Bytes each (tracked) resource has carried so far (for utilisation)."""
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
        wanted = np.fromiter(rs, dtype=np.int64, count=len(rs))
        if self._alive:
            live = ~self._dead[self._inc_flow]
            if np.isin(self._inc_res[live], wanted).any():
                return True
        return any(np.isin(p, wanted).any() for p in self._pending_res)

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

    def _contend(self, flows: FlowSet, owner: object | None) -> None:
        """Call the holders of claimed resources that ``flows`` cross (in order, once each)."""
        if self._claims.keys().isdisjoint(flows.resources.tolist()):
            return
        for r in flows.resources.tolist():
            holder = self._claims.get(r)
            if holder is not None and holder is not owner:
                self.release(holder)
                holder.on_contention()

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
        one = FlowSet.of([resources], [nbytes], [rate_cap], [ratio])
        return self.start_set(one, owner).event

    def start_set(self, flows: FlowSet, owner: object | None = None) -> Batch:
        """Start every flow of ``flows`` now; the batch's event succeeds when the last has sent
        its bytes (at once when none has any). Same as starting them one by one, in order."""
        if not np.isfinite(flows.nbytes).all():  # an infinite or NaN remainder never drains
            bad = flows.nbytes[~np.isfinite(flows.nbytes)][0]
            raise ValueError(f"a flow must carry a finite number of bytes, got {bad}")
        n = len(flows)
        batch = Batch(self.env.event(), n)
        self.flows_started += n
        self.batches_started += 1
        if self._claims:
            self._contend(flows, owner)
        real = flows.nbytes > 0
        empty = n - int(np.count_nonzero(real))
        if empty:
            batch.finish[~real] = self.env.now
            batch.remaining -= empty
        if batch.remaining == 0:
            batch.event.succeed()
            return batch
        self._pending.append((batch, flows, real))
        self._pending_res.append(flows.resources)
        self._request_update()
        return batch

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
        if dt > 0 and self._alive:
            sent = np.minimum(self._rate * dt, self._rem)
            self._rem -= sent
            if self._trk_res.size:
                np.add.at(self._bytes_per_res, self._trk_res, sent[self._trk_flow])
        self._last = self.env.now

    def _depart(self) -> list[Batch]:
        """Remove the flows that have sent their bytes; the batches that are now complete, in
        the order their last flows sit in the flow list."""
        # a flow is done when less than a picosecond of sending (or a micro-byte) is left, or
        # less than one step of the float clock at this instant (late in a long run a smaller
        # wake-up would not advance the clock and would re-arm itself forever)
        tick = max(1e-12, float(np.spacing(self.env.now)))
        idx = self._live
        rem = self._rem[idx]
        gone = (rem <= 1e-6) | (rem <= self._rate[idx] * tick)
        done = idx[gone]
        if not done.size:
            return []
        now = self.env.now
        self._live = idx[~gone]
        self._dead[done] = True
        self._rate[done] = 0.0
        self._alive -= int(done.size)
        if self._structure is not None and self._alive:
            self._structure.remove(done)
        ids = self._batch[done]
        complete: list[tuple[int, Batch]] = []
        if ids[0] == ids[-1] and (ids == ids[0]).all():
            groups = [(int(ids[0]), done.size - 1, self._local[done])]
        else:
            order = np.argsort(ids, kind="stable")
            sorted_ids = ids[order]
            cut = (np.flatnonzero(sorted_ids[1:] != sorted_ids[:-1]) + 1).tolist()
            local = self._local[done]
            groups = [
                (int(sorted_ids[s]), int(order[e - 1]), local[order[s:e]])
                for s, e in zip([0, *cut], [*cut, ids.size], strict=True)
            ]
        for bid, last, members in groups:
            batch = self._batches[bid]
            batch.finish[members] = now
            batch.remaining -= members.size
            if batch.remaining == 0:
                complete.append((last, batch))
        if len(complete) > 1:
            complete.sort(key=lambda c: c[0])
        return [b for _, b in complete]

    def _rebuild(self) -> None:
        """Drop dead flows, append the pending ones (in order) and prepare the structure."""
        rem: list[np.ndarray] = []
        cap: list[np.ndarray] = []
        inc_flow: list[np.ndarray] = []
        inc_res: list[np.ndarray] = []
        inc_w: list[np.ndarray] = []
        batch_of: list[np.ndarray] = []
        local: list[np.ndarray] = []
        batches: list[Batch] = []
        n = 0
        if self._alive:  # keep the live flows, in order; running batches keep their flows
            keep = ~self._dead
            index = np.cumsum(keep) - 1
            inc_keep = keep[self._inc_flow]
            rem.append(self._rem[keep])
            cap.append(self._fcap[keep])
            inc_flow.append(index[self._inc_flow[inc_keep]])
            inc_res.append(self._inc_res[inc_keep])
            inc_w.append(self._inc_w[inc_keep])
            kept = self._batch[keep]
            old_ids = np.unique(kept)
            batches = [self._batches[i] for i in old_ids.tolist()]
            batch_of.append(np.searchsorted(old_ids, kept))
            local.append(self._local[keep])
            n = self._alive
        for batch, fs, real in self._pending:
            if real.all():
                part, sel = fs, np.arange(len(fs), dtype=np.int64)
            else:
                sel = np.flatnonzero(real)
                part = fs.subset(sel)
            lengths = np.diff(part.offsets)
            flat = part.resources
            inc_flow.append(n + np.repeat(np.arange(len(part), dtype=np.int64), lengths))
            inc_res.append(flat)
            inc_w.append(self._pb_np[flat] + self._pm_np[flat] * np.repeat(part.ratio, lengths))
            rem.append(part.nbytes)
            cap.append(part.cap)
            batch_of.append(np.full(len(part), len(batches), dtype=np.int64))
            local.append(sel)
            batches.append(batch)
            n += len(part)
        self._pending.clear()
        self._pending_res.clear()

        def join(parts: list[np.ndarray]) -> np.ndarray:
            return parts[0] if len(parts) == 1 else np.concatenate(parts)

        self._rem = join(rem).copy()  # advanced in place
        self._fcap = join(cap)
        self._rate = np.zeros(n)
        self._batch = join(batch_of)
        self._local = join(local)
        self._batches = batches
        self._inc_flow = join(inc_flow)
        self._inc_res = join(inc_res)
        self._inc_w = join(inc_w)
        trk = self._trk_np[self._inc_res]
        if trk.all():
            self._trk_flow, self._trk_res = self._inc_flow, self._inc_res
        else:
            self._trk_flow, self._trk_res = self._inc_flow[trk], self._inc_res[trk]
        self._dead = np.zeros(n, dtype=bool)
        self._live = np.arange(n, dtype=np.int64)
        self._alive = n
        self._structure = (
            Structure(self._inc_flow, self._inc_res, n, self._cap_np, self._fcap, self._inc_w)
            if n > SMALL
            else None
        )

    def _update(self, _event: simpy.Event | None = None) -> None:
        self._update_scheduled = False
        self._sync_arrays()
        self._advance()
        self.recomputations += 1
        finished = self._depart() if self._alive else []
        if self._pending:
            self._rebuild()
        elif self._alive and self._dead.size > 4096 and self._alive * 4 < self._dead.size:
            self._rebuild()  # mostly departed: a smaller structure solves faster, same result
        for batch in finished:
            batch.event.succeed()
        self._wake_token += 1
        if not self._alive:
            self._rate = np.zeros(self._rem.size)
            return
        if self._alive <= SMALL:
            self._rate = self._small_solve()
        else:
            assert self._structure is not None
            self._rate = self._structure.solve(self._alive)
        idx = self._live
        rate = self._rate[idx]
        if rate.min() > 0:
            eta = float(np.min(self._rem[idx] / rate))
        else:
            with np.errstate(divide="ignore"):
                eta = float(np.min(self._rem[idx] / rate))
        token = self._wake_token
        wake = self.env.timeout(max(eta, 0.0))

        def wake_up(_e: simpy.Event, t: int = token) -> None:
            self._on_wake(t)

        wake.callbacks.append(wake_up)

    def _small_solve(self) -> np.ndarray:
        """The rates of a few live flows, by the plain algorithm in Python (same bits)."""
        live = self._live.tolist()
        flows = self._inc_flow.tolist()
        res = self._inc_res.tolist()
        ws = self._inc_w.tolist()
        if self._alive < self._dead.size:
            dead = self._dead
            keep = [k for k, f in enumerate(flows) if not dead[f]]
            flows = [flows[k] for k in keep]
            res = [res[k] for k in keep]
            ws = [ws[k] for k in keep]
        slot = {f: i for i, f in enumerate(live)}
        flow_res: list[list[int]] = [[] for _ in live]
        flow_w: list[list[float]] = [[] for _ in live]
        for f, r, w in zip(flows, res, ws, strict=True):
            i = slot[f]
            flow_res[i].append(r)
            flow_w[i].append(w)
        rates = small_rates(flow_res, flow_w, self._fcap[self._live].tolist(), self._capacity)
        out = np.zeros(self._rem.size)
        out[self._live] = rates
        return out

    def _on_wake(self, token: int) -> None:
        if token == self._wake_token:
            self._request_update()

    @property
    def active_flows(self) -> int:
        return self._alive + sum(int(np.count_nonzero(p[2])) for p in self._pending)


def on_all(events: Sequence[simpy.Event], callback: Callable[[], object]) -> None:
    """Call ``callback`` once every event in ``events`` has been processed (no SimPy AllOf)."""
    remaining = [len(events)]
    if not events:
        callback()
        return

    def tick(_e: simpy.Event) -> None:
        remaining[0] -= 1
        if remaining[0] == 0:
            callback()

    for e in events:
        if e.processed:
            tick(e)
        else:
            e.callbacks.append(tick)
