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
from simulator.engine.flows import Batch, FlowSet
from simulator.engine.messages import Flow, flow_set, step_flows
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
        self._sets: dict[int, FlowSet] = {}
        self._reduce: dict[int, float] = {}
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

    def _set_of(self, step: Step) -> FlowSet:
        """The step's flows as one batch for the flow network (cached per step key)."""
        got = self._sets.get(step.key)
        if got is None:
            got = self._sets[step.key] = flow_set(self._flows_of(step))
        return got

    def _reduce_seconds(self, step: Step) -> float:
        """The receivers' reduction after the step's exchange: the slowest chip type's
        (cached per step key)."""
        if step.reduce_elems <= 0:
            return 0.0
        worst = self._reduce.get(step.key)
        if worst is None:
            worst = 0.0
            chips = self.ex.system.chips
            for ct in {chips[b].type.name: chips[b].type for _, b in step.pairs}.values():
                rate = ct.tiles * ct.clock_hz * ct.vector_flop_per_cycle[self.task.dtype]
                worst = max(worst, step.reduce_elems / rate)
            self._reduce[step.key] = worst
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
        flows = self._set_of(step)
        n = len(flows)
        latency = flows.latency
        sent = np.zeros(n)
        if n:
            batch = self.ex.net.start_set(flows, owner=self)
            yield from self._wait(batch)
            sent = batch.finish - t0
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
        restart: list[int] = []
        left_bytes: list[float] = []
        for i, f in enumerate(self._flows_of(step)):
            if m.sent[i] <= elapsed:  # sent in full during the replay
                self.ex.net.add_bytes(f.resources, f.nbytes)
                continue
            left = f.nbytes * (1.0 - elapsed / m.sent[i])
            restart.append(i)
            left_bytes.append(left)
            # bytes already sent in the replay
            self.ex.net.add_bytes(f.resources, f.nbytes - left)
        if restart:
            which = np.asarray(restart, dtype=np.int64)
            part = self._set_of(step).subset(which)
            part = FlowSet(
                part.resources,
                part.offsets,
                np.asarray(left_bytes),
                part.cap,
                part.ratio,
                part.latency,
            )
            batch = self.ex.net.start_set(part, owner=self)
            yield from self._wait(batch)
            finish[which] = batch.finish + part.latency
        end = float(finish.max()) + self._reduce_seconds(step)
        yield env.timeout(max(end - env.now, 0.0))
        self.ex.trace.simulated_steps += 1

    def _wait(self, batch: Batch) -> Generator[simpy.Event, object, None]:
        """Wait for ``batch``: resumed by an event of its own, after the batch's event."""
        done = self.env.event()

        def resume(_e: simpy.Event) -> None:
            done.succeed()

        batch.event.callbacks.append(resume)
        yield done

    def _account_replays(self) -> None:
        by_key = {s.key: s for s in self.steps}
        for key, count in self._replays.items():
            flows = self._flows_of(by_key[key])
            flat = [r for f in flows for r in f.resources]
            amounts = [f.nbytes * count for f in flows for _ in f.resources]
            self.ex.net.add_bytes(flat, amounts)
