"""Running a sensitivity analysis: the base run, then each touched assumption at each end.

1. The base run executes on a recording copy of the System (:mod:`.footprint`): its result is
   the one printed, and what it read and routed over is its footprint.
2. Each assumption of the scenario's files (:mod:`.variants`) is built at its low and its high
   end. An end equal to the value, or whose System differs from the base only in things the
   footprint does not hold, needs no run. An assumption neither end of which touches the run
   is left out (listed as untouched). Pinned assumptions (low = high) are never varied.
3. The ends that do touch the run are simulated, sharing what does not change: the base plan
   when the System differs only in link, sync or host values or in chip constants not read
   while planning (then only the execution runs); the base time when a new plan has the same
   task graph and nothing the execution reads changed (chip constants of the memory planner);
   the built System for scenario-level assumptions that do not name the topology or hosts.
   The runs are spread over ``jobs`` processes (forked, so they inherit the base plan);
   results are collected in a fixed order, so the output does not depend on ``jobs``.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from simulator.config.scenario import LoadedScenario
from simulator.hardware.system import System
from simulator.run import Outcome, run_loaded, system_source_of
from simulator.sensitivity.footprint import Footprint, diff, recording_system
from simulator.sensitivity.result import Counts, Effect, Sensitivity, envelope, ranked
from simulator.sensitivity.variants import Variant, assumptions_of, build_variant, variants
from simulator.strategy import Plan


def time_of(result: Any) -> float | None:
    """The time a sensitivity varies: ``step_time_s`` (training) or ``time_s`` (comm)."""
    if not result.feasible:
        return None
    value = getattr(result, "step_time_s", None)
    return float(value if value is not None else result.time_s)


def metric_of(result: Any) -> str:
    return "step_time_s" if hasattr(result, "step_time_s") else "time_s"


@dataclass
class _Job:
    """One variant end to simulate."""

    variant: Variant
    loaded: LoadedScenario
    system: System
    plan: Plan | None  # the base plan when it is shared
    check_graph: bool  # a new plan with the base graph and nothing executed changed: reuse


@dataclass(frozen=True)
class _Done:
    time_s: float | None
    reason: str | None
    planned: bool
    executed: bool


_JOBS: list[_Job] = []
_BASE: dict[str, Any] = {}


def _run(i: int) -> _Done:
    """Simulate job ``i`` of :data:`_JOBS` (in this process or a forked worker)."""
    job = _JOBS[i]
    fast = _BASE["fast"]
    if job.plan is not None:
        out = run_loaded(job.loaded, system=job.system, plan=job.plan, baseline=False,
                         details=False, fast_collectives=fast)  # fmt: skip
        return _Done(time_of(out.result), out.result.reason, False, True)
    from simulator.strategy import PlanContext, lookup

    strategy = lookup(job.loaded.scenario.strategy.type)
    ctx = PlanContext(job.loaded, job.system, job.loaded.strategy)
    plan = strategy.plan(ctx)
    base_graph = _BASE["graph"]
    if job.check_graph and (not plan.feasible or list(plan.graph.nodes) == base_graph):
        if not plan.feasible:
            return _Done(None, plan.reason, True, False)
        return _Done(_BASE["time"], None, True, False)
    out = run_loaded(job.loaded, system=job.system, plan=plan, baseline=False, details=False,
                     fast_collectives=fast)  # fmt: skip
    return _Done(time_of(out.result), out.result.reason, True, True)


def _execute(jobs: list[_Job], workers: int) -> list[_Done]:
    """Every job's outcome, in job order; forked workers when there are several."""
    global _JOBS
    _JOBS = jobs
    try:
        if workers <= 1 or len(jobs) <= 1 or "fork" not in multiprocessing.get_all_start_methods():
            return [_run(i) for i in range(len(jobs))]
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx) as pool:
            return list(pool.map(_run, range(len(jobs))))
    finally:
        _JOBS = []


def default_jobs() -> int:
    """Every core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def base_run(
    loaded: LoadedScenario, *, fast_collectives: bool = True
) -> tuple[Outcome, System, Footprint]:
    """The scenario's run (with its baseline) on a recording System: the outcome, the plain
    System and the run's footprint."""
    from simulator.hardware.build import build_source

    system = build_source(system_source_of(loaded))
    rec = recording_system(system)
    outcome = run_loaded(
        loaded, system=rec.system, phase=rec.log.set_phase, fast_collectives=fast_collectives
    )
    footprint = Footprint.of(rec, outcome.plan.graph, outcome.trace)
    return outcome, system, footprint


#: An assumption's two ends: (variant, its time if known without a run, or its job's index).
Ends = list[tuple[Variant, float | None, int | None]]


def _schedule(
    loaded: LoadedScenario,
    system: System,
    outcome: Outcome,
    fp: Footprint,
    records: list[Any],
) -> tuple[list[tuple[Any, Ends]], list[str], list[_Job]]:
    """Decide for every end of every assumption: the base time (an end equal to the value, or
    one touching nothing the run used), or a job. Returns the touched assumptions with their
    ends, the untouched ones' names and the jobs."""
    src = system_source_of(loaded)
    t0 = time_of(outcome.result)
    touched_records: list[tuple[Any, Ends]] = []
    untouched: list[str] = []
    work: list[_Job] = []
    for record in records:
        ends: Ends = []
        for v in variants(record):
            if record.value is not None and v.value == record.value:
                ends.append((v, t0, None))
                continue
            v_loaded, v_system = build_variant(loaded, src, system, v)
            if v_loaded is loaded:
                d = diff(system, v_system)
                if not fp.touches(d):
                    ends.append((v, t0, None))
                    continue
                shared = fp.plan_shared(d)
                job = _Job(v, loaded, v_system, outcome.plan if shared else None,
                           check_graph=not shared and not fp.needs_execution(d))  # fmt: skip
            else:  # a scenario-level assumption: planned again
                job = _Job(v, v_loaded, v_system, None, check_graph=False)
            ends.append((v, None, len(work)))
            work.append(job)
        if not ends:
            continue  # pinned
        if all(i is None for _, _, i in ends):
            untouched.append(record.name)
        else:
            touched_records.append((record, ends))
    return touched_records, untouched, work


def _effect(record: Any, ends: Ends, done: list[_Done]) -> Effect:
    times: dict[str, float | None] = {}
    reasons: dict[str, str | None] = {}
    for v, t, i in ends:
        times[v.end], reasons[v.end] = (t, None) if i is None else (done[i].time_s, done[i].reason)
    return Effect(
        record.name, record.label, record.value, record.low, record.high, record.unit,
        times["low"], times["high"],
        reasons["low"] if times["low"] is None else None,
        reasons["high"] if times["high"] is None else None,
    )  # fmt: skip


def analyse(
    loaded: LoadedScenario,
    *,
    jobs: int | None = None,
    fast_collectives: bool = True,
    base: tuple[Outcome, System, Footprint] | None = None,
) -> tuple[Outcome, Sensitivity | None]:
    """Run ``loaded`` and its sensitivity analysis (None when the base plan is infeasible);
    ``base``: a :func:`base_run` already made. The outcome carries the analysis too
    (``outcome.sensitivity``, for the report page)."""
    outcome, system, fp = base or base_run(loaded, fast_collectives=fast_collectives)
    t0 = time_of(outcome.result)
    if t0 is None:
        return outcome, None
    records = assumptions_of(loaded, system)
    touched, untouched, work = _schedule(loaded, system, outcome, fp, records)
    _BASE.update(fast=fast_collectives, graph=list(outcome.plan.graph.nodes), time=t0)
    try:
        done = _execute(work, jobs or default_jobs())
    finally:
        _BASE.clear()
    effects = [_effect(record, ends, done) for record, ends in touched]
    counts = Counts(
        plans=sum(1 for d in done if d.planned),
        executions=sum(1 for d in done if d.executed),
        shared_plans=sum(1 for j in work if j.plan is not None),
        reused=sum(1 for _, ends in touched for _, _, i in ends if i is None)
        + sum(1 for d in done if not d.executed),
    )
    varied = {r.name for r in records}
    calibrated = tuple(c.name for c in system.info.calibrations if c.name not in varied) + tuple(
        k for k in loaded.scenario.calibrated if k not in varied
    )
    sens = Sensitivity(
        metric_of(outcome.result),
        t0,
        envelope(t0, effects),
        ranked(effects, t0),
        tuple(untouched),
        tuple(r.name for r in records if r.pinned),
        calibrated,
        counts,
    )
    outcome.sensitivity = sens
    return outcome, sens


def time_at(loaded: LoadedScenario, name: str, value: bool | int | float) -> float | None:
    """The time of ``loaded`` with the assumption ``name`` set to ``value`` (the others at
    their values); None when the plan is then infeasible. For threshold searches."""
    from simulator.hardware.build import build_source

    src = system_source_of(loaded)
    system = build_source(src)
    record = next(r for r in assumptions_of(loaded, system) if r.name == name)
    v_loaded, v_system = build_variant(loaded, src, system, Variant(record, "value", value))
    out = run_loaded(v_loaded, system=v_system, baseline=False, details=False)
    return time_of(out.result)
