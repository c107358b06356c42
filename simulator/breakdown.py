"""Where a step goes: the critical path of an executed task graph, attributed by cause.

The critical path is walked back from the task that ends last. From a task, the walk moves to
what made it start when it did: the dependency that finished last, or — when the task started
later than its dependencies allowed — the task that held its chip (or RNG unit) until then.
Every second of ``[0, makespan]`` on that chain is attributed to one cause (docs/metrics.md,
``step_breakdown``), so the causes sum to the step time.

Causes: ``compute`` (forward, backward and recomputation on the tiles), ``bubble`` (the path's
time in pipeline passes beyond what the busiest stage works: the fill and drain), ``exchange``
(on-chip exchange phases), ``sync`` (BSP syncs), ``transfer`` (chip-to-chip activations and
gradients), ``collective_ipu_link`` and ``collective_gw_link`` (collective steps inside IPU-Link
domains and those that cross GW-Links), ``optimizer`` (the weight update), ``streaming_memory``
(Streaming Memory loads and stores), ``host_io`` (input from the hosts), ``host`` (the hosts'
per-step work and the sync with them), ``rng`` and ``other`` (time on the path no task covers).
With variability (docs/variability.md) a sync, collective or step end that held its chips
waiting for late replicas adds ``stragglers`` (the key appears only then).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from simulator.engine.graph import TaskGraph
from simulator.engine.tasks import (
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
    Transfer,
)
from simulator.engine.trace import Trace

CAUSES = (
    "compute",
    "bubble",
    "exchange",
    "sync",
    "transfer",
    "collective_ipu_link",
    "collective_gw_link",
    "optimizer",
    "streaming_memory",
    "host_io",
    "host",
    "rng",
    "other",
)

_EPS = 1e-12


def _held(task: Task) -> tuple[tuple[str, int], ...]:
    """Resources the executor holds for ``task`` (chips, or a chip's RNG unit)."""
    if isinstance(task, Compute | Exchange) or (isinstance(task, MemLoad) and task.hold):
        return (("chip", task.chip),)
    if isinstance(task, Rng):
        return (("rng", task.chip),)
    if isinstance(task, Collective | Sync | HostSync):
        return tuple(("chip", c) for c in set(task.group))
    return ()


def _cause(task: Task) -> str:
    if isinstance(task, Compute):
        return "optimizer" if task.kind == "optimizer" else "compute"
    if isinstance(task, Exchange | Sync):
        if task.label.startswith("optimizer"):
            return "optimizer"
        return "exchange" if isinstance(task, Exchange) else "sync"
    if isinstance(task, Transfer):
        return "transfer"
    if isinstance(task, MemLoad):
        return "host_io" if task.input or task.source == "host" else "streaming_memory"
    if isinstance(task, MemStore):
        return "streaming_memory"
    if isinstance(task, HostLoad):
        return "host_io"
    if isinstance(task, HostSync):
        return "host"
    if isinstance(task, Rng):
        return "rng"
    return "collective_ipu_link"  # Collective: split by the trace below


def critical_path(graph: TaskGraph, trace: Trace) -> list[int]:
    """Task ids on the critical path, last first."""
    if not trace.task_end:
        return []
    ends: dict[tuple[str, int], tuple[list[float], list[int]]] = {}
    for done in sorted(trace.task_end, key=lambda t: (trace.task_end[t], t)):
        for res in _held(graph.nodes[done].task):
            times, ids = ends.setdefault(res, ([], []))
            times.append(trace.task_end[done])
            ids.append(done)
    start, end, waits = trace.task_start, trace.task_end, trace.waits
    tid: int | None = max(end, key=lambda t: (end[t], t))
    path: list[int] = []
    seen: set[int] = set()
    while tid is not None and tid not in seen:
        seen.add(tid)
        path.append(tid)
        node = graph.nodes[tid]
        s = start[tid] - waits.get(tid, 0.0)  # it held its chips from there (stragglers)
        ready = max((end[d] for d in node.deps), default=0.0)
        nxt: int | None = max(node.deps, key=lambda d: (end[d], d)) if node.deps else None
        if s - ready > _EPS * max(1.0, s):
            holder = _holder(ends, _held(node.task), s, tid)
            if holder is not None:
                nxt = holder
        tid = nxt
    return path


def _holder(
    ends: dict[tuple[str, int], tuple[list[float], list[int]]],
    resources: Iterable[tuple[str, int]],
    at: float,
    tid: int,
) -> int | None:
    """The task that released one of ``resources`` at ``at`` (the latest ending by then)."""
    best: tuple[float, int] | None = None
    for res in resources:
        times, ids = ends.get(res, ([], []))
        i = bisect.bisect_right(times, at + _EPS * max(1.0, at)) - 1
        while i >= 0 and ids[i] == tid:
            i -= 1
        if i >= 0 and (best is None or (times[i], ids[i]) > best):
            best = (times[i], ids[i])
    return None if best is None else best[1]


def step_breakdown(
    graph: TaskGraph, trace: Trace, pipeline_tasks: Iterable[int] | None = None
) -> dict[str, float]:
    """Seconds of the critical path by cause (:data:`CAUSES`); they sum to the makespan.

    ``pipeline_tasks``: the tasks of a pipeline's forward and backward passes. The path's time
    in them beyond the busiest stage chip's own work in them is the pipeline ``bubble`` (the
    busiest stage waiting for the others to fill and drain); the rest keeps its causes, scaled
    down in proportion.
    """
    out = dict.fromkeys(CAUSES, 0.0)
    if trace.waits:
        out["stragglers"] = 0.0
    path = critical_path(graph, trace)
    if not path:
        return out
    start, end = trace.task_start, trace.task_end
    pipe = set(pipeline_tasks or ())
    piped = dict.fromkeys(CAUSES, 0.0)  # the path's time in pipeline tasks, by cause
    covered_to = trace.makespan
    for tid in path:  # last first
        task = graph.nodes[tid].task
        s, e = start[tid], min(end[tid], covered_to)
        out["other"] += max(0.0, covered_to - end[tid])
        span = max(0.0, e - s)
        wait = trace.waits.get(tid, 0.0)
        if wait:
            out["stragglers"] += max(0.0, min(s, covered_to) - max(0.0, s - wait))
            s -= wait
        if isinstance(task, Collective):
            gw = min(span, trace.collective_gw_s.get(tid, 0.0))
            out["collective_gw_link"] += gw
            out["collective_ipu_link"] += span - gw
        else:
            in_pipe = tid in pipe and isinstance(task, Compute | Exchange | Sync | Transfer)
            (piped if in_pipe else out)[_cause(task)] += span
        covered_to = min(covered_to, s)
    out["other"] += max(0.0, covered_to)
    on_path = sum(piped.values())
    if on_path > 0:
        busiest = _busiest_chip_seconds(trace, pipe)
        keep = min(1.0, busiest / on_path)
        for cause, seconds in piped.items():
            out[cause] += seconds * keep
        out["bubble"] += on_path * (1.0 - keep)
    return out


def _busiest_chip_seconds(trace: Trace, tasks: set[int]) -> float:
    """The most seconds one chip spends in ``tasks``."""
    busy: dict[int, float] = {}
    for span in trace.chip_spans:
        if span.task in tasks:
            busy[span.row] = busy.get(span.row, 0.0) + span.duration
    return max(busy.values(), default=0.0)


__all__ = ["CAUSES", "critical_path", "step_breakdown"]
