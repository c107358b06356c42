"""Running one scenario end to end: load, build, plan, execute, summarise.

This and the CLI are the only places that look strategies up by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from simulator.breakdown import step_breakdown
from simulator.config.scenario import (
    LoadedScenario,
    load_baseline,
    load_scenario,
    scenario_from_mapping,
)
from simulator.engine.executor import execute
from simulator.engine.trace import Trace
from simulator.errors import InputError
from simulator.hardware.build import load_system
from simulator.hardware.system import System
from simulator.metrics import Result, TrainingResult, with_baseline
from simulator.runcache import RunCache
from simulator.strategy import Plan, PlanContext, lookup


@dataclass
class Outcome:
    """What one run produced: the result and, for the viewers, what led to it.

    ``result`` is a :class:`~simulator.metrics.TrainingResult` (or a subclass of it) for
    training scenarios and a :class:`~simulator.metrics.CommResult` for ``type: comm``.
    """

    result: Result
    plan: Plan
    trace: Trace | None
    system: System
    context: PlanContext


def build_system(loaded: LoadedScenario) -> System:
    """The scenario's system: a built-in name, a path relative to the scenario, or a mapping."""
    topo = loaded.scenario.topology
    hosts = loaded.scenario.hosts
    host = hosts.system_keys() if hosts is not None else None
    host_at = (loaded.document, ("hosts",))
    if isinstance(topo, str):
        try:
            return load_system(topo, relative_to=loaded.path, host=host, host_at=host_at)
        except InputError as exc:
            if exc.location.file is not None:
                raise
            file, line = loaded.document.location(("topology",))
            raise exc.at(file=file, line=line, key_path="topology") from None
    return load_system(topo, origin=loaded.document, at=("topology",), host=host, host_at=host_at)


def run_loaded(
    loaded: LoadedScenario,
    *,
    fast_collectives: bool = True,
    baseline: bool = True,
    system: System | None = None,
    cache: RunCache | None = None,
) -> Outcome:
    """Plan and simulate an already loaded scenario (and its baseline, for the speedup).

    ``system``: the scenario's System when the caller already has it; built from the scenario
    otherwise. ``cache``: a :class:`~simulator.runcache.RunCache` shared by many runs, which
    reuses the systems and plans (and, if it keeps results, whole runs such as a baseline
    many runs share) that earlier runs built from the same inputs.
    """
    if cache is not None:
        done = cache.outcome(loaded, system, fast_collectives, baseline)
        if done is not None:
            return done
    if system is None:
        system = cache.system(loaded, build_system) if cache is not None else build_system(loaded)
    strategy = lookup(loaded.scenario.strategy.type)
    ctx = PlanContext(loaded, system, loaded.strategy)
    if cache is not None:
        plan = cache.plan(loaded, system, lambda: strategy.plan(ctx))
    else:
        plan = strategy.plan(ctx)
    trace = (
        execute(system, plan.graph, fast_collectives=fast_collectives) if plan.feasible else None
    )
    result = strategy.summarise(ctx, plan, trace)
    if isinstance(result, TrainingResult) and trace is not None and result.feasible:
        causes = step_breakdown(plan.graph, trace, plan.info.get("pipeline_tasks"))
        if result.step_time_s and trace.makespan > 0:
            # a strategy that simulates several steps (local) reports one: scale the path
            share = result.step_time_s / trace.makespan
            causes = {k: v * share for k, v in causes.items()}
        result = replace(result, step_breakdown=causes)
    if baseline and isinstance(result, TrainingResult) and loaded.scenario.baseline is not None:
        try:
            base = load_baseline(loaded)
            base_result = (
                run_loaded(base, fast_collectives=fast_collectives, baseline=False, cache=cache)
                if base is not None
                else None
            )
        except InputError as exc:
            raise InputError(
                f"in the baseline of {loaded.name}: {exc}", key_path=None, file=None
            ) from None
        if base_result is not None and isinstance(base_result.result, TrainingResult):
            result = with_baseline(result, base_result.result)
    outcome = Outcome(result, plan, trace, system, ctx)
    if cache is not None:
        cache.keep(loaded, fast_collectives, baseline, outcome)
    return outcome


def run_scenario(
    scenario: str | Path | Mapping[str, Any],
    overrides: tuple[str, ...] | list[str] = (),
    *,
    fast_collectives: bool = True,
    cache: RunCache | None = None,
) -> Outcome:
    """Load a scenario, plan, simulate and summarise it (the Python API, docs/api.md).

    ``scenario`` is a path to a scenario file, the name of a built-in one (``"quickstart"``,
    ``"mlperf/bert-large-v2.0-bow-pod16"``; ``ipusim examples`` lists them) or a mapping with
    the keys of a scenario file. ``overrides`` are ``--set`` texts (``"strategy.stages=8"``).
    Invalid input raises :class:`~simulator.errors.InputError`; an infeasible plan is a result
    with ``feasible`` false and a ``reason``. ``cache``: a :class:`~simulator.runcache.RunCache`
    shared by many runs (see :func:`run_loaded`).
    """
    if isinstance(scenario, Mapping):
        loaded = scenario_from_mapping(scenario, overrides)
    else:
        loaded = load_scenario(scenario, overrides)
    return run_loaded(loaded, fast_collectives=fast_collectives, cache=cache)
