"""Running a scenario with ``variability:`` — independent seeded steps and their distribution
(docs/variability.md).

The system (derated once, when links are) and the plan are built once; each sample executes
the same graph with its own draws (:class:`~simulator.engine.variability.Variability`). A
sample's step time is the strategy's own (its summary of the trace), taken for every member:
with one member (data, pipeline, local, random subspace) it is the step of the whole job,
which waited for its slowest replica wherever the graph syncs; with several (an ensemble's
members) each member's step counts, at its own pace.

The result is the representative sample's (the median one), with ``step_time_s`` the mean
over samples and members, ``throughput_samples_per_s`` the members' batches over their mean
steps, and the fields ``step_time_mean_s``, ``step_time_p50_s``, ``step_time_p99_s``,
``step_time_samples_s`` and ``variability`` added (docs/metrics.md).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from simulator.breakdown import step_breakdown
from simulator.config.scenario import LoadedScenario
from simulator.config.variability import VariabilitySection
from simulator.engine.executor import execute
from simulator.engine.tasks import chips_of
from simulator.engine.trace import Trace
from simulator.engine.variability import Noise, Profile
from simulator.errors import InputError
from simulator.hardware.derate import derate
from simulator.hardware.system import NoRouteError, System
from simulator.metrics import TrainingAnalytic, TrainingResult
from simulator.present import chip_set
from simulator.strategy import Plan, PlanContext, Strategy


def section_of(loaded: LoadedScenario) -> VariabilitySection | None:
    """The scenario's ``variability:`` when it changes anything; None otherwise (absent, or
    all zeros: the run is then exactly the steady machine's)."""
    section = loaded.scenario.variability
    return section if section is not None and section.active else None


def derated(loaded: LoadedScenario, system: System, section: VariabilitySection) -> System:
    """The system with ``link_derate`` applied, and the slow chips checked against it; bad
    ends are invalid input located at their key."""
    doc = loaded.document
    for chip in section.slow_chips:
        if chip >= system.num_chips:
            file, line = doc.location(("variability", "slow_chips", chip))
            raise InputError(
                f"chip {chip} is not in {system.name} (chips 0..{system.num_chips - 1})",
                file=file,
                line=line,
                key_path=f"variability.slow_chips.{chip}",
            )
    links = []
    for i, d in enumerate(section.link_derate):
        key = "chips" if d.chips is not None else "link"
        file, line = doc.location(("variability", "link_derate", i, key))
        where = f"variability.link_derate[{i}].{key}"
        if d.chips is not None:
            bad = [c for c in d.chips if c >= system.num_chips]
            if bad:
                raise InputError(
                    f"chip {bad[0]} is not in {system.name} (chips 0..{system.num_chips - 1})",
                    file=file,
                    line=line,
                    key_path=where,
                )
            ends = (system.chips[d.chips[0]].node, system.chips[d.chips[1]].node)
        else:
            assert d.link is not None
            ends = (d.link[0], d.link[1])
        links.append((*ends, d.factor))
    try:
        return derate(system, links)
    except ValueError as exc:
        file, line = doc.location(("variability", "link_derate"))
        raise InputError(
            f"{exc} (name two chips joined by a link, or two node names as "
            "`ipusim topology show` lists them)",
            file=file,
            line=line,
            key_path="variability.link_derate",
        ) from None


def cut_off(system: System, plan: Plan) -> str | None:
    """Why a derated system cannot run ``plan``: the chips the plan uses that failed links cut
    off from the others (None when every chip it uses still reaches every other)."""
    used = sorted({c for n in plan.graph.nodes for c in chips_of(n.task)})
    if len(used) < 2:
        return None
    import networkx as nx  # only runs with failed links get here (start-up time of the others)

    component: dict[str, int] = {}
    for i, nodes in enumerate(nx.strongly_connected_components(system.graph)):
        component.update(dict.fromkeys(nodes, i))
    sides: dict[int, list[int]] = {}
    for c in used:
        sides.setdefault(component[system.chips[c].node], []).append(c)
    if len(sides) == 1:
        return None
    parts = sorted(sides.values(), key=lambda g: (-len(g), g))
    shown = " | ".join(chip_set(g) for g in parts)
    return (
        f"link_derate cuts the chips the plan uses into {len(parts)} parts with no route "
        f"between them (chips {shown}): raise a failed link's factor above 0, or use fewer chips"
    )


def infeasible(plan: Plan, reason: str) -> Plan:
    """``plan`` marked infeasible with ``reason`` (nothing of it runs)."""
    return Plan(plan.graph, plan.info, feasible=False, reason=reason, replication=None)


def with_step_breakdown(result: Any, plan: Plan, trace: Trace) -> Any:
    """``result`` with its ``step_breakdown`` (training results; the critical path by cause,
    scaled to the reported step when a strategy simulates several steps)."""
    if not isinstance(result, TrainingResult) or not result.feasible:
        return result
    causes = step_breakdown(plan.graph, trace, plan.info.get("pipeline_tasks"))
    if result.step_time_s and trace.makespan > 0:
        share = result.step_time_s / trace.makespan
        causes = {k: v * share for k, v in causes.items()}
    return replace(result, step_breakdown=causes)


def _shifted(trace: Trace, shift: np.ndarray) -> Trace:
    """``trace`` with every task ending ``shift[task]`` later (a member's slowest copy)."""
    end = {t: e + float(shift[t]) for t, e in trace.task_end.items()}
    start = {t: s + float(shift[t]) for t, s in trace.task_start.items()}
    return replace(trace, task_start=start, task_end=end, makespan=max(end.values(), default=0.0))


def run_samples(
    ctx: PlanContext,
    strategy: Strategy,
    plan: Plan,
    section: VariabilitySection,
    *,
    fast_collectives: bool = True,
) -> tuple[Any, Trace | None]:
    """Execute ``plan`` once per sample and summarise the distribution (module docstring).

    Returns the result and the representative sample's trace (for timelines and reports)."""
    system = ctx.system
    seed = section.seed if section.seed is not None else ctx.scenario.scenario.seed
    noise = Noise(section.compute_cv, dict(section.slow_chips), section.host_jitter, seed)
    profile = Profile(plan.graph, system, noise, plan.replication)
    count = section.effective_samples

    def once(index: int) -> tuple[Any, Trace, list[float]]:
        var = profile.sample(index)
        try:
            trace = execute(system, plan.graph, fast_collectives=fast_collectives, variability=var)
        except NoRouteError as exc:
            raise _Unroutable(str(exc)) from None
        result = strategy.summarise(ctx, plan, trace)
        steps: list[float] = []
        if not isinstance(result, TrainingResult):
            return result, trace, steps
        for shift in var.member_shifts():
            moved = (
                result if not shift.any() else strategy.summarise(ctx, plan, _shifted(trace, shift))
            )
            if moved.step_time_s is None:
                return result, trace, []
            steps.append(float(moved.step_time_s))
        return result, trace, steps

    try:
        first = once(0)
        if not isinstance(first[0], TrainingResult) or first[0].step_time_s is None:
            # a communication scenario: derated links apply, there is no step to sample
            result = first[0]
            if section.random and hasattr(result, "warnings"):
                note = "variability: compute_cv and host_jitter apply to training steps only"
                result = replace(result, warnings=[*result.warnings, note])
            return result, first[1]
        table = [first[2]] + [once(i)[2] for i in range(1, count)]
    except _Unroutable as exc:
        return strategy.summarise(ctx, infeasible(plan, f"link_derate: {exc}"), None), None
    values = np.array(table, dtype=float)  # samples x members
    per_sample = values.mean(axis=1)
    rep = int(np.argsort(per_sample, kind="stable")[(count - 1) // 2])
    result, trace, _ = first if rep == 0 else once(rep)
    result = with_step_breakdown(result, plan, trace)
    return _summary(result, values, rep, section, seed), trace


class _Unroutable(Exception):
    """A sample hit a route that a failed link removed."""


def _summary(
    result: TrainingResult,
    values: np.ndarray,
    rep: int,
    section: VariabilitySection,
    seed: int,
) -> TrainingResult:
    """The representative sample's result with the distribution's fields (docs/metrics.md)."""
    pooled = values.ravel()
    mean = float(pooled.mean())
    members = values.shape[1]
    member_means = values.mean(axis=0)
    per_member = result.global_batch / members
    throughput = float(sum(per_member / m for m in member_means)) if mean > 0 else None
    own = result.step_time_s or mean
    scale = own / mean if mean > 0 else 1.0
    util = result.flop_utilisation
    analytic = result.analytic
    if isinstance(analytic, TrainingAnalytic):
        est = analytic.estimate_s
        analytic = replace(
            analytic, simulated_s=mean, difference=mean / est - 1 if est > 0 else 0.0
        )
    causes = result.step_breakdown
    if causes and own > 0:
        causes = {k: v * mean / own for k, v in causes.items()}
    facts: dict[str, Any] = {
        "samples": int(values.shape[0]),
        "seed": seed,
        "compute_cv": section.compute_cv,
        "host_jitter": section.host_jitter,
        "slow_chips": {str(c): f for c, f in sorted(section.slow_chips.items())},
        "link_derate": [d.model_dump(exclude_none=True) for d in section.link_derate],
        "representative_sample": rep,
        "step_time_min_s": float(pooled.min()),
        "step_time_max_s": float(pooled.max()),
        "step_time_std_s": float(pooled.std()),
    }
    if members > 1:
        facts["members"] = members
        facts["member_step_time_mean_s"] = [float(m) for m in member_means]
    return replace(
        result,
        step_time_s=mean,
        throughput_samples_per_s=throughput,
        flop_utilisation=None if util is None else util * scale,
        analytic=analytic,
        step_breakdown=causes,
        step_time_mean_s=mean,
        step_time_p50_s=float(np.percentile(pooled, 50)),
        step_time_p99_s=float(np.percentile(pooled, 99)),
        step_time_samples_s=[float(v) for v in pooled],
        variability=facts,
    )
