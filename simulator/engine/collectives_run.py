"""Executing a Collective task: its steps as real flows, or replayed from a cache.

Fast path ("identical concurrent steps simulated once"): a collective claims every resource its
steps use. While the claim holds, a step identical to one already simulated (same ``key``)
is replayed as a single timeout of the measured duration. A foreign flow on a claimed resource
ends the claim (:meth:`CollectiveRun.on_contention`): a replay in progress resumes as real flows
carrying the bytes not yet sent (each flow assumed to have run at its average rate), and every
later step is simulated flow by flow, so contention is never lost.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import simpy

from simulator.engine.collectives import Step, schedule
from simulator.engine.flows import on_all
from simulator.engine.messages import Flow, step_flows
from simulator.engine.tasks import Collective

if TYPE_CHECKING:
    from simulator.engine.executor import Executor

ELEM_BYTES = {"fp16": 2.0, "fp32": 4.0}


@dataclass(frozen=True, slots=True)
class _Measured:
    duration: float  # whole step: exchange and reduction
    sent: np.ndarray  # per flow: seconds from step start until its last byte was sent
    latency: np.ndarray  # per flow: latency added after the last byte


class CollectiveRun:
    """One Collective task in flight."""

    def __init__(self, ex: Executor, tid: int, task: Collective) -> None:
        self.ex = ex
        self.env = ex.env
        self.tid = tid
        self.task = task
        self.elem_bytes = ELEM_BYTES.get(task.dtype, 4.0)
        self.steps: list[Step] = schedule(
            ex.system,
            task.kind,
            task.group,
            task.bytes,
            task.algorithm,
            elem_bytes=self.elem_bytes,
            root=task.root,
            tiles=task.tiles,
        )
        self.fast = ex.fast_collectives
        # every step opens with a sync of the whole group (its scope's cost) before its exchange
        self.sync_s = ex.system.sync_latency_s(task.group) if len(set(task.group)) > 1 else 0.0
        self._gw_steps: dict[int, bool] = {}
        self._cache: dict[int, _Measured] = {}
        self._flows: dict[int, list[Flow]] = {}
        self._replays: dict[int, int] = {}
        self._replaying = False
        self._proc: simpy.Process | None = None

    def start(self) -> None:
        if not self.steps:
            self.ex.finish(self.tid)
            return
        if self.fast:
            resources: set[int] = set()
            for key_step in {s.key: s for s in self.steps}.values():
                for f in self._flows_of(key_step):
                    resources.update(f.resources)
            self.fast = self.ex.net.claim(self, sorted(resources))
        self._proc = self.env.process(self._run())

    def on_contention(self) -> None:
        """A foreign flow arrived on a claimed resource: stop replaying."""
        self.fast = False
        if self._replaying and self._proc is not None and self._proc.is_alive:
            self._proc.interrupt()

    # ---- internals --------------------------------------------------------------------------
    def _flows_of(self, step: Step) -> list[Flow]:
        """The step's flows (message costs, multicast and delivery spread included)."""
        flows = self._flows.get(step.key)
        if flows is None:
            flows = self._flows[step.key] = step_flows(self.ex.paths, step, self.task.tiles)
        return flows

    def _reduce_seconds(self, step: Step) -> float:
        if step.reduce_elems <= 0:
            return 0.0
        worst = 0.0
        for ct in {
            self.ex.system.chips[b].type.name: self.ex.system.chips[b].type for _, b in step.pairs
        }.values():
            rate = ct.tiles * ct.clock_hz * ct.vector_flop_per_cycle[self.task.dtype]
            worst = max(worst, step.reduce_elems / rate)
        return worst

    def _crosses_gw(self, step: Step) -> bool:
        """Does the step's exchange cross a GW-Link (for the step breakdown)?"""
        hit = self._gw_steps.get(step.key)
        if hit is None:
            channels = self.ex.system.channels
            hit = any(
                channels[c].kind == "gw_link"
                for a, b in step.pairs
                for c in self.ex.system.chip_route(a, b).channels
            )
            self._gw_steps[step.key] = hit
        return hit

    def _run(self) -> Generator[simpy.Event, object, None]:
        env = self.env
        gw = self.ex.trace.collective_gw_s
        for step in self.steps:
            t_step = env.now
            if self.sync_s:
                yield env.timeout(self.sync_s)
            measured = self._cache.get(step.key) if self.fast else None
            if measured is not None:
                t0 = env.now
                self._replaying = True
                try:
                    yield env.timeout(measured.duration)
                    self._replays[step.key] = self._replays.get(step.key, 0) + 1
                    self.ex.trace.cached_steps += 1
                except simpy.Interrupt:
                    yield from self._resume(step, measured, env.now - t0)
                finally:
                    self._replaying = False
            else:
                yield from self._simulate(step)
            if self._crosses_gw(step):
                gw[self.tid] = gw.get(self.tid, 0.0) + env.now - t_step
        self._account_replays()
        self.ex.net.release(self)
        self.ex.finish(self.tid)

    def _simulate(self, step: Step) -> Generator[simpy.Event, object, None]:
        env = self.env
        t0 = env.now
        clean = self.fast
        flows = self._flows_of(step)
        n = len(flows)
        sent = np.zeros(n)
        latency = np.zeros(n)
        events = []
        for i, f in enumerate(flows):
            latency[i] = f.latency
            ev = self.ex.net.start(f.resources, f.nbytes, f.cap, owner=self, ratio=f.ratio)

            def record_sent(_e: simpy.Event, i: int = i) -> None:
                sent[i] = env.now - t0

            ev.callbacks.append(record_sent)
            events.append(ev)
        yield from self._wait_all(events)
        delivered = float((sent + latency).max()) if n else 0.0
        yield env.timeout(max(delivered - (env.now - t0), 0.0) + self._reduce_seconds(step))
        self.ex.trace.simulated_steps += 1
        if clean and self.fast:
            self._cache[step.key] = _Measured(env.now - t0, sent, latency)

    def _resume(
        self, step: Step, m: _Measured, elapsed: float
    ) -> Generator[simpy.Event, object, None]:
        env = self.env
        t0 = env.now - elapsed
        finish = t0 + m.sent + m.latency
        events = []
        for i, f in enumerate(self._flows_of(step)):
            if m.sent[i] <= elapsed:  # sent in full during the replay
                self.ex.net.add_bytes(f.resources, f.nbytes)
                continue
            left = f.nbytes * (1.0 - elapsed / m.sent[i])
            ev = self.ex.net.start(f.resources, left, f.cap, owner=self, ratio=f.ratio)

            def record_finish(_e: simpy.Event, i: int = i, lat: float = f.latency) -> None:
                finish[i] = env.now + lat

            ev.callbacks.append(record_finish)
            events.append(ev)
            # bytes already sent in the replay
            self.ex.net.add_bytes(f.resources, f.nbytes - left)
        yield from self._wait_all(events)
        end = float(finish.max()) + self._reduce_seconds(step)
        yield env.timeout(max(end - env.now, 0.0))
        self.ex.trace.simulated_steps += 1

    def _wait_all(self, events: list[simpy.Event]) -> Generator[simpy.Event, object, None]:
        if not events:
            return
        done = self.env.event()
        on_all(events, done.succeed)
        yield done

    def _account_replays(self) -> None:
        by_key = {s.key: s for s in self.steps}
        for key, count in self._replays.items():
            flows = self._flows_of(by_key[key])
            flat = [r for f in flows for r in f.resources]
            amounts = [f.nbytes * count for f in flows for _ in f.resources]
            self.ex.net.add_bytes(flat, amounts)
