"""Running one scenario end to end: load, build, plan, execute, summarise.

This and the CLI are the only places that look strategies up by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulator import samples
from simulator.config.scenario import (
    LoadedScenario,
    load_baseline,
    load_scenario,
    scenario_from_mapping,
)
from simulator.engine.executor import execute
from simulator.engine.trace import Trace
from simulator.errors import InputError
from simulator.hardware.build import SystemSource, build_source, system_source
from simulator.hardware.system import NoRouteError, System
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
    sensitivity: Any = None  # a simulator.sensitivity.Sensitivity when one was asked for


def build_system(loaded: LoadedScenario) -> System:
    """The scenario's system: a built-in name, a path relative to the scenario, or a mapping."""
    return build_source(system_source_of(loaded))


def system_source_of(loaded: LoadedScenario) -> SystemSource:
    """The files the scenario's system is built from (with the scenario's ``hosts:``)."""
    topo = loaded.scenario.topology
    hosts = loaded.scenario.hosts
    host = hosts.system_keys() if hosts is not None else None
    host_at = (loaded.document, ("hosts",))
    if isinstance(topo, str):
        try:
            return system_source(topo, relative_to=loaded.path, host=host, host_at=host_at)
        except InputError as exc:
            if exc.location.file is not None:
                raise
            file, line = loaded.document.location(("topology",))
            raise exc.at(file=file, line=line, key_path="topology") from None
    return system_source(topo, origin=loaded.document, at=("topology",), host=host, host_at=host_at)


def run_loaded(
    loaded: LoadedScenario,
    *,
    fast_collectives: bool = True,
    baseline: bool = True,
    system: System | None = None,
    plan: Plan | None = None,
    details: bool = True,
    phase: Callable[[str], None] | None = None,
    cache: RunCache | None = None,
) -> Outcome:
    """Plan and simulate an already loaded scenario (and its baseline, for the speedup).

    ``system``: the scenario's System when the caller already has it (sweeps keep one per
    process); built from the scenario otherwise. ``plan``: a plan made earlier for the same
    scenario on a system of the same structure and chip types, to execute again (sensitivity
    runs share it); planned here otherwise. ``details``: False skips the critical-path
    ``step_breakdown``. ``phase``: called with ``"plan"``, ``"execute"`` and ``"summarise"``
    as each starts (sensitivity records what each phase reads). ``cache``: a
    :class:`~simulator.runcache.RunCache` shared by many runs, which reuses the systems and
    plans (and, if it keeps results, whole runs such as a baseline many runs share) that
    earlier runs built from the same inputs; a run given its ``plan`` or asked for fewer
    ``details`` neither takes nor leaves a whole result there.
    """
    whole = cache is not None and plan is None and details and phase is None
    if whole and cache is not None:
        done = cache.outcome(loaded, system, fast_collectives, baseline)
        if done is not None:
            return done
    if system is None:
        system = cache.system(loaded, build_system) if cache is not None else build_system(loaded)
    strategy = lookup(loaded.scenario.strategy.type)
    section = samples.section_of(loaded)  # None: the steady machine, exactly as without it
    steady = system
    if section is not None:
        system = samples.derated(loaded, system, section)
    ctx = PlanContext(loaded, system, loaded.strategy)
    if plan is None:
        if phase is not None:
            phase("plan")
        try:
            plan = (
                cache.plan(loaded, system, lambda: strategy.plan(ctx))
                if cache is not None
                else strategy.plan(ctx)
            )
        except NoRouteError as exc:  # a failed link: plan on the intact system, then refuse
            plan = strategy.plan(PlanContext(loaded, steady, loaded.strategy))
            plan = samples.infeasible(plan, f"link_derate: {exc}")
    cut = samples.cut_off(system, plan) if system is not steady and plan.feasible else None
    if cut is not None:
        plan = samples.infeasible(plan, cut)
    if phase is not None:
        phase("execute")
    trace: Trace | None
    if section is not None and plan.feasible:
        result, trace = samples.run_samples(
            ctx, strategy, plan, section, fast_collectives=fast_collectives
        )
    else:
        trace = (
            execute(system, plan.graph, fast_collectives=fast_collectives)
            if plan.feasible
            else None
        )
        if phase is not None:
            phase("summarise")
        result = strategy.summarise(ctx, plan, trace)
        if details and trace is not None:
            result = samples.with_step_breakdown(result, plan, trace)
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
    if whole and cache is not None:
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
