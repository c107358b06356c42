"""Several training jobs on one system: each on its own chips, their traffic sharing whatever
their routes share — IPU-Links they pass through, GW-Links, gateways, Host-Links and Streaming
Memory — and each job's slowdown against running alone (docs/variability.md).

How a shared run works:

1. Each job plans on the shared system's chips assigned to it (:func:`~simulator.hardware.
   derate.subsystem`: its chips renumbered 0..n-1, every gateway, host, DDR and switch kept),
   so the strategy's checks and memory plan are the job's own.
2. Its task graph is relabelled onto the shared system's chip ids and run **alone** there: its
   step time (the strategy's own summary) and the length of one run of its graph.
3. The graphs run **together** in one execution, each job's graph repeated (back to back, a
   barrier between repeats) about as many times as fit in one run of the longest job, so
   every job is measured while the others are busy. A job's shared time per repeat is the
   mean over the repeats that ended while every job was still running.
4. Its slowdown is shared time per repeat ÷ alone time per repeat; its shared step time and
   throughput are the alone ones scaled by it.

Variability in a job's scenario is not applied in a shared run (a warning says so): the
comparison is of the steady machine with and without the neighbours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from simulator.config import paths
from simulator.config.jobs import JobsFile, PerMachine, parse_chips
from simulator.config.load import check_kind, validate
from simulator.config.scenario import LoadedScenario, load_scenario
from simulator.config.yamlio import Document, load_document
from simulator.engine.executor import execute
from simulator.engine.graph import TaskGraph
from simulator.engine.tasks import (
    Collective,
    HostSync,
    Sync,
    Task,
    TileMessages,
    TileMulticast,
    Transfer,
)
from simulator.engine.trace import Span, Trace
from simulator.errors import InputError
from simulator.hardware.build import load_system
from simulator.hardware.derate import subsystem
from simulator.hardware.system import System
from simulator.metrics import TrainingResult
from simulator.present import chip_set, line, plural
from simulator.strategy import Plan, PlanContext, lookup


@dataclass(frozen=True)
class JobSpec:
    """One job, validated: its scenario, chips on the shared system and where it was given."""

    name: str
    loaded: LoadedScenario
    chips: tuple[int, ...]


@dataclass(frozen=True)
class JobResult:
    """One job of a shared run (docs/metrics.md, "Shared runs")."""

    name: str
    strategy: str
    model: str
    chips: str  # chip set on the shared system, e.g. "0-31,64-95"
    feasible: bool
    reason: str | None
    step_time_alone_s: float | None = None
    step_time_shared_s: float | None = None
    slowdown: float | None = None
    throughput_alone_samples_per_s: float | None = None
    throughput_shared_samples_per_s: float | None = None
    repeats: int = 0
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SharedResult:
    """Every job of a shared run."""

    name: str
    system: str
    chips: int
    feasible: bool
    reason: str | None
    jobs: list[JobResult]
    idle_chips: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 0 if self.feasible else 3

    def text(self) -> str:
        """A human summary: one block per job."""
        lines = [f"{self.name}: {plural(len(self.jobs), 'job')} sharing {self.system}"]
        for j in self.jobs:
            lines.append(f"  {j.name}: {j.model} {j.strategy} on chips {j.chips}")
            if not j.feasible:
                lines.append(line("  INFEASIBLE", str(j.reason), wrap=True))
                continue
            assert j.step_time_alone_s is not None and j.step_time_shared_s is not None
            lines.append(
                line(
                    "  step time",
                    f"{j.step_time_alone_s * 1e3:,.3f} ms alone, "
                    f"{j.step_time_shared_s * 1e3:,.3f} ms shared: slowdown {j.slowdown:.4f}x "
                    f"({plural(j.repeats, 'repeat')} run)",
                )
            )
            if j.throughput_shared_samples_per_s is not None:
                lines.append(
                    line(
                        "  throughput",
                        f"{j.throughput_alone_samples_per_s:,.1f} samples/s alone, "
                        f"{j.throughput_shared_samples_per_s:,.1f} shared",
                    )
                )
            lines.extend(f"    warning: {w}" for w in j.warnings)
        if self.idle_chips:
            lines.append(line("idle chips", self.idle_chips))
        lines.extend(f"  warning: {w}" for w in self.warnings)
        return "\n".join(lines)


# ---- input ----------------------------------------------------------------------------------
def load_jobs_file(path: str | Path) -> tuple[JobsFile, Document, Path]:
    """Read and validate a jobs file (file:line errors, exit 2)."""
    file = Path(path)
    if not file.is_file():
        file = paths.resolve(path, "scenario")
    doc = load_document(file)
    check_kind(doc, "jobs")
    return validate(doc, JobsFile), doc, file


def job_specs(spec: JobsFile, doc: Document, file: Path, system: System) -> list[JobSpec]:
    """Each job's scenario and chips; bad chips are invalid input at their key."""
    out: list[JobSpec] = []
    taken: dict[int, str] = {}
    pending: list[tuple[int, LoadedScenario, str]] = []
    for i, job in enumerate(spec.jobs):
        where = ("jobs", i)
        try:
            scenario = paths.resolve(job.scenario, "scenario", relative_to=file)
            loaded = load_scenario(scenario, job.set)
        except InputError as exc:
            if exc.location.file not in (None, "--set"):
                raise
            at_file, at_line = doc.location((*where, "scenario"))
            raise exc.at(file=at_file, line=at_line, key_path=f"jobs[{i}].scenario") from None
        name = job.name or loaded.name
        if any(s.name == name for s in out):
            name = f"{name}#{i + 1}"  # the same scenario twice: jobs keep apart in results
        if job.chips is None:
            pending.append((i, loaded, name))
            out.append(JobSpec(name, loaded, ()))
            continue
        chips = _explicit_chips(job.chips, doc, (*where, "chips"), system)
        for c in chips:
            if c in taken:
                raise _error(
                    doc, (*where, "chips"), f"chip {c} is already {taken[c]}'s: jobs need their own"
                )
            taken[c] = name
        out.append(JobSpec(name, loaded, tuple(chips)))
    free = [c for c in range(system.num_chips) if c not in taken]
    for i, loaded, name in pending:
        size = _own_size(loaded)
        if size > len(free):
            raise _error(
                doc,
                ("jobs", i),
                f"{name} needs {size} chips (its scenario's system) but only {len(free)} of "
                f"{system.name}'s {system.num_chips} are free; give chips: explicitly",
            )
        mine, free = free[:size], free[size:]
        out[i] = JobSpec(name, loaded, tuple(mine))
    return out


def _explicit_chips(
    given: str | list[int] | PerMachine, doc: Document, at: tuple[str | int, ...], system: System
) -> list[int]:
    try:
        if isinstance(given, PerMachine):
            chips = per_machine(system, given)
        else:
            chips = parse_chips(given) if isinstance(given, str) else list(given)
    except ValueError as exc:
        raise _error(doc, at, str(exc)) from None
    if len(set(chips)) != len(chips):
        raise _error(doc, at, "a chip is named twice")
    bad = [c for c in chips if c >= system.num_chips]
    if bad:
        raise _error(
            doc, at, f"chip {bad[0]} is not in {system.name} (chips 0..{system.num_chips - 1})"
        )
    return chips


def per_machine(system: System, pick: PerMachine) -> list[int]:
    """The chips at positions ``pick.per_machine`` of each machine (ValueError when a machine
    has fewer chips or is not in the system)."""
    by_machine: dict[int, list[int]] = {}
    for chip in system.chips:
        by_machine.setdefault(chip.machine, []).append(chip.id)
    if pick.machines is None:
        machines = sorted(by_machine)
    elif isinstance(pick.machines, str):
        machines = parse_chips(pick.machines)
    else:
        machines = list(pick.machines)
    out = []
    for m in machines:
        if m not in by_machine:
            raise ValueError(
                f"machine {m} is not in {system.name} (machines 0..{len(by_machine) - 1})"
            )
        ids = sorted(by_machine[m])
        for p in pick.per_machine:
            if p >= len(ids):
                raise ValueError(f"machine {m} has {len(ids)} chips: no position {p}")
            out.append(ids[p])
    return out


def _own_size(loaded: LoadedScenario) -> int:
    """Chips of the scenario's own system (how many a job without ``chips:`` takes)."""
    from simulator.run import build_system

    return build_system(loaded).num_chips


def scenario_specs(files: Sequence[str], system: System) -> list[JobSpec]:
    """Jobs given as scenario files (``ipusim shared A.yaml B.yaml --topology T``): each takes
    as many chips as its own system has, the next free ones in id order."""
    out: list[JobSpec] = []
    free = list(range(system.num_chips))
    names: set[str] = set()
    for f in files:
        loaded = load_scenario(f)
        size = _own_size(loaded)
        if size > len(free):
            raise InputError(
                f"{f}: needs {size} chips (its scenario's system) but only {len(free)} of "
                f"{system.name}'s {system.num_chips} are free; use a jobs file with chips:",
                file=None,
            )
        name = loaded.name if loaded.name not in names else f"{loaded.name}#{len(out) + 1}"
        names.add(name)
        out.append(JobSpec(name, loaded, tuple(free[:size])))
        free = free[size:]
    return out


def _error(doc: Document, at: tuple[str | int, ...], message: str) -> InputError:
    file, line_no = doc.location(at)
    rendered = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in at)
    return InputError(message, file=file, line=line_no, key_path=rendered.replace(".[", "["))


# ---- graphs ---------------------------------------------------------------------------------
def relabel(task: Task, chips: Sequence[int], cache: dict[int, tuple[int, ...]]) -> Task:
    """``task`` with chip ``i`` of its job renamed ``chips[i]`` of the shared system."""

    def many(ids: tuple[int, ...]) -> tuple[int, ...]:
        hit = cache.get(id(ids))
        if hit is None:
            hit = cache[id(ids)] = tuple(chips[c] for c in ids)
        return hit

    if isinstance(task, Transfer):
        return replace(task, src=chips[task.src], dst=chips[task.dst])
    if isinstance(task, Collective):
        root = None if task.root is None else chips[task.root]
        return replace(task, group=many(task.group), root=root)
    if isinstance(task, Sync | HostSync):
        return replace(task, group=many(task.group), across=many(task.across))
    if isinstance(task, TileMessages):
        sends = tuple((chips[a], ta, chips[b], tb) for a, ta, b, tb in task.sends)
        return replace(task, sends=sends)
    if isinstance(task, TileMulticast):
        return replace(task, src=chips[task.src], dsts=many(task.dsts))
    return replace(task, chip=chips[task.chip])


def add_repeated(
    out: TaskGraph, graph: TaskGraph, chips: Sequence[int], repeats: int, label: str
) -> list[list[int]]:
    """Append ``graph`` (relabelled onto ``chips``) ``repeats`` times to ``out``, each repeat
    after a zero-cost barrier over the job's chips that waits for the previous one; returns
    the ids of each repeat's tasks."""
    cache: dict[int, tuple[int, ...]] = {}
    tasks = [relabel(n.task, chips, cache) for n in graph.nodes]
    has_dependents = {d for n in graph.nodes for d in n.deps}
    sinks = [n.id for n in graph.nodes if n.id not in has_dependents]
    group = tuple(sorted(chips))
    ids: list[list[int]] = []
    barrier: int | None = None
    for k in range(repeats):
        base = len(out)
        for n, task in zip(graph.nodes, tasks, strict=True):
            deps = [base + d for d in n.deps]
            if not deps and barrier is not None:
                deps = [barrier]
            out.add(task, deps)
        ids.append(list(range(base, base + len(graph))))
        if k + 1 < repeats:
            barrier = out.add(
                Sync(group, count=0, label=f"{label} repeat {k + 1}"), [base + s for s in sinks]
            )
    return ids


def localise(trace: Trace, ids: Sequence[int], chips: Sequence[int]) -> Trace:
    """The part of a shared trace that is one job's (tasks ``ids``, renumbered 0..; chips
    renamed back to the job's own ids). Link spans and bytes are left out (they are the
    shared system's channels)."""
    local = {t: i for i, t in enumerate(ids)}
    back = {c: i for i, c in enumerate(chips)}

    def spans(items: list[Span]) -> list[Span]:
        return [
            replace(s, row=back[s.row], task=local[s.task])
            for s in items
            if s.task in local and s.row in back
        ]

    def mine(values: dict[int, float]) -> dict[int, float]:
        return {local[t]: v for t, v in values.items() if t in local}

    end = mine(trace.task_end)
    return replace(
        trace,
        makespan=max(end.values(), default=0.0),
        chip_spans=spans(trace.chip_spans),
        rng_spans=spans(trace.rng_spans),
        link_spans=[],
        task_start=mine(trace.task_start),
        task_end=end,
        channel_bytes=np.zeros(0),
        collective_gw_s=mine(trace.collective_gw_s),
        waits=mine(trace.waits),
    )


# ---- running --------------------------------------------------------------------------------
@dataclass
class _Job:
    spec: JobSpec
    ctx: PlanContext
    plan: Plan
    strategy: Any
    result: Any = None
    alone_s: float = 0.0  # one run of its graph, alone on the shared system
    repeats: int = 1
    warnings: list[str] = field(default_factory=list)


def run_shared(
    name: str,
    system: System,
    specs: Sequence[JobSpec],
    *,
    max_repeats: int = 16,
    fast_collectives: bool = True,
) -> SharedResult:
    """Plan each job on its chips, run each alone and all together (module docstring)."""
    jobs: list[_Job] = []
    for spec in specs:
        loaded = spec.loaded
        strategy = lookup(loaded.scenario.strategy.type)
        sub = subsystem(system, spec.chips, name=f"{system.name}[{chip_set(list(spec.chips))}]")
        ctx = PlanContext(loaded, sub, loaded.strategy)
        job = _Job(spec, ctx, strategy.plan(ctx), strategy)
        variability = loaded.scenario.variability
        if variability is not None and variability.active:
            job.warnings.append("its variability: section is not applied in a shared run")
        if loaded.scenario.hosts is not None:
            job.warnings.append(f"its hosts: section is not applied (the hosts of {system.name})")
        jobs.append(job)
    for job in jobs:
        if not job.plan.feasible:
            job.result = job.strategy.summarise(job.ctx, job.plan, None)
            continue
        g = TaskGraph()
        (ids,) = add_repeated(g, job.plan.graph, job.spec.chips, 1, job.spec.name)
        trace = execute(system, g, fast_collectives=fast_collectives)
        job.alone_s = trace.makespan
        job.result = job.strategy.summarise(job.ctx, job.plan, localise(trace, ids, job.spec.chips))
    running = [j for j in jobs if j.plan.feasible and j.alone_s > 0]
    shared: dict[int, float] = {}
    if running:
        longest = max(j.alone_s for j in running)
        g = TaskGraph()
        ids_of = {}
        for j in running:
            j.repeats = max(1, min(max_repeats, round(longest / j.alone_s)))
            ids_of[id(j)] = add_repeated(g, j.plan.graph, j.spec.chips, j.repeats, j.spec.name)
        trace = execute(system, g, fast_collectives=fast_collectives)
        ends = {
            id(j): [max(trace.task_end[t] for t in rep) for rep in ids_of[id(j)]] for j in running
        }
        window = min(e[-1] for e in ends.values())  # every job still running until here
        for j in running:
            e = ends[id(j)]
            gaps = [b - a for a, b in zip([0.0, *e[:-1]], e, strict=True)]
            inside = [gap for gap, end in zip(gaps, e, strict=True) if end <= window * (1 + 1e-12)]
            shared[id(j)] = sum(inside or gaps[:1]) / len(inside or gaps[:1])
    results = [_job_result(j, shared.get(id(j))) for j in jobs]
    used = {c for s in specs for c in s.chips}
    idle = [c for c in range(system.num_chips) if c not in used]
    bad = [r for r in results if not r.feasible]
    return SharedResult(
        name=name,
        system=system.name,
        chips=system.num_chips,
        feasible=not bad,
        reason="; ".join(f"{r.name}: {r.reason}" for r in bad) or None,
        jobs=results,
        idle_chips=chip_set(idle) if idle else None,
    )


def _job_result(job: _Job, shared_s: float | None) -> JobResult:
    r = job.result
    strategy = getattr(r, "strategy", job.spec.loaded.scenario.strategy.type)
    model = getattr(r, "model", "")
    common: dict[str, Any] = dict(
        name=job.spec.name,
        strategy=strategy,
        model=model,
        chips=chip_set(list(job.spec.chips)),
        warnings=[*job.warnings, *getattr(r, "warnings", [])],
    )
    if not isinstance(r, TrainingResult) or not r.feasible or r.step_time_s is None:
        reason = getattr(r, "reason", None) or "not a training scenario: nothing to share"
        return JobResult(feasible=False, reason=reason, **common)
    slowdown = shared_s / job.alone_s if shared_s and job.alone_s > 0 else 1.0
    tput = r.throughput_samples_per_s
    return JobResult(
        feasible=True,
        reason=None,
        step_time_alone_s=r.step_time_s,
        step_time_shared_s=r.step_time_s * slowdown,
        slowdown=slowdown,
        throughput_alone_samples_per_s=tput,
        throughput_shared_samples_per_s=None if tput is None else tput / slowdown,
        repeats=job.repeats,
        **common,
    )


def run_jobs_file(path: str | Path, *, fast_collectives: bool = True) -> SharedResult:
    """Run a jobs file (``kind: jobs``)."""
    spec, doc, file = load_jobs_file(path)
    try:
        system = load_system(spec.topology, relative_to=file)
    except InputError as exc:
        if exc.location.file is not None:
            raise
        at_file, at_line = doc.location(("topology",))
        raise exc.at(file=at_file, line=at_line, key_path="topology") from None
    specs = job_specs(spec, doc, file, system)
    return run_shared(
        spec.name or file.stem,
        system,
        specs,
        max_repeats=spec.max_repeats,
        fast_collectives=fast_collectives,
    )


__all__ = [
    "JobResult",
    "JobSpec",
    "SharedResult",
    "add_repeated",
    "job_specs",
    "load_jobs_file",
    "localise",
    "relabel",
    "run_jobs_file",
    "run_shared",
]
