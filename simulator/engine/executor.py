"""One SimPy executor for any task graph.

A task is released when its dependencies are done and the resources it holds are free:
chip-held tasks (Compute, Exchange, Sync, Collective) run one at a time per chip (a chip runs
one BSP program); several chips are acquired in ascending id order, so acquisition can never
deadlock. Rng tasks hold the chip's RNG unit. Transfers and Streaming Memory traffic hold no
chip: they are flows in the :class:`~simulator.engine.flows.FlowNetwork`, and their ordering
with compute is whatever the graph's dependencies say.

No process per task: readiness is counted and tasks start from callbacks, so the events
processed are those the model needs (timeouts, flow completions, deliveries).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from functools import partial

import simpy

from simulator.engine.collectives_run import CollectiveRun
from simulator.engine.flows import Batch, FlowNetwork, FlowSet
from simulator.engine.graph import TaskGraph
from simulator.engine.messages import Flow, flow_set, multicast, phase, tile_messages, transfer
from simulator.engine.paths import PathModel
from simulator.engine.tasks import (
    TASK_KIND,
    Collective,
    Compute,
    Exchange,
    HostLoad,
    HostSync,
    MemLoad,
    MemStore,
    Rng,
    Sync,
    Task,
    TileMessages,
    TileMulticast,
    Transfer,
)
from simulator.engine.trace import Span, Trace
from simulator.engine.variability import Variability
from simulator.hardware.model import ChipType
from simulator.hardware.system import System


class CountingEnvironment(simpy.Environment):
    """A SimPy environment that counts the events it processes (for benchmarks)."""

    def __init__(self) -> None:
        super().__init__()
        self.events_processed = 0

    def step(self) -> None:
        self.events_processed += 1
        super().step()


def compute_seconds(ct: ChipType, task: Compute) -> float:
    """Time of a Compute task on the tiles it uses (the slowest tile bounds the superstep)."""
    if task.cycles is not None:
        return task.cycles / ct.clock_hz
    tiles = min(task.tiles or ct.tiles, ct.tiles)
    per_cycle = ct.amp_flop_per_cycle if task.unit == "amp" else ct.vector_flop_per_cycle
    rate = tiles * ct.clock_hz * per_cycle[task.dtype] * task.efficiency
    return task.flops / rate if task.flops else 0.0


def host_sync_seconds(system: System, chips: tuple[int, ...]) -> float:
    """The step's end on the hosts: each instance's host-side work, a barrier between the
    instances (a dissemination barrier: ceil(log2 I) rounds, each one message from a host to
    another and its reply over the Host-Links), then the chips' sync with the hosts (the sync
    of their scope plus a message from the nearest host and back)."""
    hosts = system.hosts
    sync = system.sync_latency_s(chips)
    if hosts is None:
        return sync
    node = system.host_node(chips[0])
    one_way = system.route(node, system.chips[chips[0]].node).latency_s if node else 0.0
    rounds = math.ceil(math.log2(hosts.instances)) if hosts.instances > 1 else 0
    return hosts.step_overhead_s + rounds * 4 * one_way + sync + 2 * one_way


def rng_seconds(ct: ChipType, task: Rng) -> float:
    """Time for the chip's per-tile PRNGs to produce ``task.samples`` samples."""
    tiles = min(task.tiles or ct.tiles, ct.tiles)
    draws = ct.gaussian_uniform_draws if task.distribution == "gaussian" else 1.0
    return task.samples * draws / (ct.uniform_samples_per_s() * tiles / ct.tiles)


class Executor:
    """Runs a TaskGraph on a System and records a Trace."""

    def __init__(
        self,
        system: System,
        graph: TaskGraph,
        *,
        fast_collectives: bool = True,
        variability: Variability | None = None,
    ) -> None:
        graph.validate(system.num_chips)
        self.system = system
        self.graph = graph
        self.fast_collectives = fast_collectives
        self.var = variability
        self.env = CountingEnvironment()
        self.net = FlowNetwork(
            self.env,
            [c.capacity_Bps for c in system.channels],
            [c.message_overhead_bytes for c in system.channels],
        )
        n = system.num_chips
        # ports and engines: only the channels' bytes are reported
        self.paths = PathModel(
            system,
            partial(self.net.add_resource, tracked=False),
            partial(self.net.add_resources, tracked=False),
        )
        self._busy = [False] * n
        self._waiting: list[deque[Callable[[], None]]] = [deque() for _ in range(n)]
        self._rng_busy = [False] * n
        self._rng_waiting: list[deque[Callable[[], None]]] = [deque() for _ in range(n)]
        self._pending = [len(node.deps) for node in graph.nodes]
        self._dependents: list[list[int]] = [[] for _ in graph.nodes]
        for node in graph.nodes:
            for d in node.deps:
                self._dependents[d].append(node.id)
        self.trace = Trace()
        self._done = 0
        if variability is not None:
            variability.bind(self.trace.task_end)

    # ---- public ---------------------------------------------------------------------------
    def run(self) -> Trace:
        for node in self.graph.nodes:
            if not node.deps:
                self._release(node.id)
        self.env.run()
        if self._done != len(self.graph):
            stuck = [i for i, p in enumerate(self._pending) if p > 0][:5]
            raise RuntimeError(f"executor stopped with tasks not run (e.g. {stuck})")
        t = self.trace
        t.makespan = max(t.task_end.values(), default=0.0)
        # every flow's end is one event of the model, though flows that start together are
        # ended by one SimPy event for their whole batch
        net = self.net
        t.events_processed = self.env.events_processed - net.batches_started + net.flows_started
        t.flows_started = self.net.flows_started
        t.flow_recomputations = self.net.recomputations
        t.channel_bytes = self.net.bytes_carried()[: len(self.system.channels)]
        return t

    # ---- chip ownership -------------------------------------------------------------------
    def acquire(self, chips: tuple[int, ...], then: Callable[[], None], rng: bool = False) -> None:
        """Call ``then`` once every chip (or RNG unit) in ``chips`` is held, taken in id order."""
        busy, waiting = (self._rng_busy, self._rng_waiting) if rng else (self._busy, self._waiting)
        if len(chips) == 1:  # the common case: one chip, held at once or handed over when freed
            c = chips[0]
            if busy[c]:
                waiting[c].append(then)
            else:
                busy[c] = True
                then()
            return
        order = sorted(set(chips))

        def take(i: int) -> None:
            while i < len(order):
                c = order[i]
                if busy[c]:

                    def take_next(i: int = i) -> None:
                        take(i + 1)

                    waiting[c].append(take_next)
                    return
                busy[c] = True
                i += 1
            then()

        take(0)

    def free(self, chips: tuple[int, ...], rng: bool = False) -> None:
        busy, waiting = (self._rng_busy, self._rng_waiting) if rng else (self._busy, self._waiting)
        for c in chips if len(chips) == 1 else sorted(set(chips)):
            if waiting[c]:
                waiting[c].popleft()()
            else:
                busy[c] = False

    # ---- task lifecycle -------------------------------------------------------------------
    def _release(self, tid: int) -> None:
        task = self.graph.nodes[tid].task
        if isinstance(task, MemLoad) and task.hold:
            self.acquire((task.chip,), lambda: self._start(tid))
        elif isinstance(
            task, Transfer | TileMessages | TileMulticast | MemLoad | MemStore | HostLoad
        ):
            self._start(tid)
        elif isinstance(task, Rng):
            self.acquire((task.chip,), lambda: self._start(tid), rng=True)
        elif isinstance(task, Collective | Sync | HostSync):
            self.acquire(task.group, lambda: self._start(tid))
        else:
            self.acquire((task.chip,), lambda: self._start(tid))

    def _start(self, tid: int) -> None:
        if self.var is not None:  # variability: first wait for copies that are late
            wait = self.var.begin(tid)
            if wait > 0:
                self.trace.waits[tid] = wait
                ev = self.env.timeout(wait)
                ev.callbacks.append(lambda _e: self._run(tid))
                return
        self._run(tid)

    def _run(self, tid: int) -> None:
        env = self.env
        task = self.graph.nodes[tid].task
        self.trace.task_start[tid] = env.now
        ct_of = self.system.chips
        var = self.var
        if isinstance(task, Compute):
            seconds = compute_seconds(ct_of[task.chip].type, task)
            self._after(seconds if var is None else var.compute(tid, task.chip, seconds), tid)
        elif isinstance(task, Exchange):
            ct = ct_of[task.chip].type
            if task.cycles is not None:
                self._after(task.cycles / ct.clock_hz, tid)
            else:
                rate = min(task.tiles or ct.tiles, ct.tiles) * ct.tile_exchange_Bps
                self._after(ct.exchange_latency_s + task.bytes / rate, tid)
        elif isinstance(task, Sync):
            scope = task.group + task.across if task.across else task.group
            self._after(self.system.sync_latency_s(scope) * task.count, tid)
        elif isinstance(task, HostSync):
            seconds = host_sync_seconds(self.system, task.group + task.across)
            self._after(seconds if var is None else seconds + var.host_extra(tid), tid)
        elif isinstance(task, HostLoad):
            res, cap, lat = self.paths.host_load_path(task.chip, task.bytes, task.samples)
            ev = self.net.start(res, task.bytes, cap / max(1, task.sharing))
            ev.callbacks.append(lambda _e: self._after(lat, tid))
        elif isinstance(task, Rng):
            self._after(rng_seconds(ct_of[task.chip].type, task), tid)
        elif isinstance(task, Transfer):
            p = self.paths
            one = transfer(
                p, task.src, task.dst, task.bytes, task.src_tile, task.dst_tile, task.tiles
            )
            self._flows(tid, phase(p, [one]))
        elif isinstance(task, TileMessages):
            if task.sends:
                self._flow_set(tid, tile_messages(self.paths, task.sends, task.bytes))
            else:
                self._after(0.0, tid)
        elif isinstance(task, TileMulticast):
            p = self.paths
            one = multicast(
                p, task.src, task.dsts, task.bytes, src_tile=task.src_tile, tiles=task.tiles
            )
            self._flows(tid, phase(p, [one]))
        elif isinstance(task, MemLoad | MemStore):
            self._memory(tid, task)
        elif isinstance(task, Collective):
            CollectiveRun(self, tid, task).start()
        else:  # pragma: no cover - the Task union is closed
            raise TypeError(f"unknown task type {type(task).__name__}")

    def _flows(self, tid: int, flows: list[Flow]) -> None:
        """Start ``flows`` together; the task ends when the last one's receivers have it."""
        if not flows:
            self._after(0.0, tid)
            return
        self._flow_set(tid, flow_set(flows))

    def _flow_set(self, tid: int, flows: FlowSet) -> None:
        batch = self.net.start_set(flows)
        env = self.env

        def landed(_e: simpy.Event, b: Batch = batch) -> None:
            self._after(float((b.finish + flows.latency).max()) - env.now, tid)

        batch.event.callbacks.append(landed)

    def _memory(self, tid: int, task: MemLoad | MemStore) -> None:
        chip = self.system.chips[task.chip]
        inbound = isinstance(task, MemLoad)
        host = inbound and task.source == "host"  # type: ignore[union-attr]
        node = self.system.host_node(task.chip) if host else f"ddr:{chip.machine}"
        what = "host" if host else "Streaming Memory"
        if node is None:
            raise ValueError(f"system {self.system.name} has no {what} for chip {task.chip}")
        try:
            res, cap, lat = self.paths.stream_path(
                node, task.chip, inbound=inbound, tile=getattr(task, "tile", None)
            )
        except ValueError as exc:
            raise ValueError(
                f"system {self.system.name} has no {what} path for chip {task.chip}"
            ) from exc
        ev = self.net.start(res, task.bytes, cap)
        ev.callbacks.append(lambda _e: self._after(lat, tid))

    def _after(self, seconds: float, tid: int) -> None:
        if seconds <= 0:
            self.finish(tid)
            return
        ev = self.env.timeout(seconds)
        ev.callbacks.append(lambda _e: self.finish(tid))

    def finish(self, tid: int) -> None:
        """Mark task ``tid`` done: record it, free what it held, release its dependents."""
        now = self.env.now
        node = self.graph.nodes[tid]
        task = node.task
        self.trace.task_end[tid] = now
        self._record(tid, task, self.trace.task_start[tid], now)
        if isinstance(task, Rng):
            self.free((task.chip,), rng=True)
        elif isinstance(task, Collective | Sync | HostSync):
            self.free(task.group)
        elif isinstance(task, Compute | Exchange) or (isinstance(task, MemLoad) and task.hold):
            self.free((task.chip,))
        self._done += 1
        for d in self._dependents[tid]:
            self._pending[d] -= 1
            if self._pending[d] == 0:
                self._release(d)

    def _record(self, tid: int, task: Task, start: float, end: float) -> None:
        kind = TASK_KIND[type(task)]
        label = getattr(task, "label", "")
        tr = self.trace
        if isinstance(task, Compute):
            tr.chip_spans.append(
                Span(task.chip, start, end, kind, tid, label or task.kind, flops=task.flops)
            )
        elif isinstance(task, Exchange):
            tr.chip_spans.append(Span(task.chip, start, end, kind, tid, label, bytes=task.bytes))
        elif isinstance(task, Rng):
            tr.rng_spans.append(Span(task.chip, start, end, kind, tid, label))
        elif isinstance(task, Sync | Collective | HostSync):
            nbytes = task.bytes if isinstance(task, Collective) else 0.0
            tr.chip_spans.extend(
                Span(c, start, end, kind, tid, label, bytes=nbytes) for c in sorted(set(task.group))
            )
        elif isinstance(task, HostLoad):
            res = self.paths.host_load_path(task.chip, task.bytes, task.samples)[0]
            n = len(self.system.channels)
            tr.link_spans.extend(
                Span(r, start, end, "transfer", tid, label, bytes=task.bytes) for r in res if r < n
            )
        elif isinstance(task, MemLoad | MemStore):
            tr.chip_spans.append(Span(task.chip, start, end, kind, tid, label, bytes=task.bytes))
        elif isinstance(task, Transfer):
            route = self.system.chip_route(task.src, task.dst)
            tr.link_spans.extend(
                Span(ch, start, end, "transfer", tid, label, bytes=task.bytes)
                for ch in route.channels
            )
        elif isinstance(task, TileMessages | TileMulticast):
            per: dict[int, float] = {}
            if isinstance(task, TileMessages):
                per = tile_message_bytes(self.system, task)
            else:
                for d in task.dsts:
                    for ch in self.system.chip_route(task.src, d).channels:
                        per[ch] = task.bytes  # a multicast crosses each channel once
            tr.link_spans.extend(
                Span(ch, start, end, "transfer", tid, label, bytes=b)
                for ch, b in sorted(per.items())
            )


def tile_message_bytes(system: System, task: TileMessages) -> dict[int, float]:
    """Bytes each channel carries for ``task``: the sum, send by send, of ``task.bytes`` over
    the channels of each send's route (counted per chip pair; a whole number of bytes, as
    every tile pattern sends, is summed exactly by multiplying)."""
    per: dict[int, float] = {}
    nbytes = float(task.bytes)
    n = len(system.chips)
    keys = [a * n + d for a, _, d, _ in task.sends]
    exact = nbytes.is_integer() and len(keys) * abs(nbytes) < 2.0**52
    if not exact:
        for key in keys:
            for ch in system.chip_route(key // n, key % n).channels:
                per[ch] = per.get(ch, 0.0) + nbytes
        return per
    counts: dict[int, int] = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    sends: dict[int, int] = {}
    for key, k in counts.items():
        for ch in system.chip_route(key // n, key % n).channels:
            sends[ch] = sends.get(ch, 0) + k
    return {ch: k * nbytes for ch, k in sends.items()}


def execute(
    system: System,
    graph: TaskGraph,
    *,
    fast_collectives: bool = True,
    variability: Variability | None = None,
) -> Trace:
    """Run ``graph`` on ``system``; the same inputs always give the same Trace.

    ``variability``: one sample's draws (:mod:`simulator.engine.variability`); None is the
    steady machine."""
    return Executor(system, graph, fast_collectives=fast_collectives, variability=variability).run()
