"""From a training plan and its trace to a TrainingResult (formulas in docs/metrics.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from simulator.analytic import (
    TransferSpec,
    exchange_estimate,
    path_model,
    steps_estimate,
    transfer_flows,
)
from simulator.engine.collectives import schedule as collective_steps
from simulator.engine.executor import host_sync_seconds
from simulator.engine.trace import Trace
from simulator.metrics import EngineStats, TrainingAnalytic, TrainingResult
from simulator.strategy import Plan, PlanContext
from simulator.workloads.memory import MemoryPlan
from simulator.workloads.model import Model
from strategies.schedule import in_flight
from strategies.sparse import hooks as sparse_hooks
from strategies.training import TrainingParams, describe_memory, gradient_bytes, stage_memory

KINDS = ("compute", "exchange", "sync", "collective", "rng", "memory", "host")


def memory_plans(
    ctx: PlanContext, model: Model, tp: TrainingParams, lay: Any
) -> dict[int, MemoryPlan]:
    """SRAM plan of each chip of replica 0 (the other replicas hold the same)."""
    out = {}
    for d in range(lay.stages):
        chip = lay.chips[0][d]
        layers = [
            model.layers[i]
            for j, ls in enumerate(lay.vstage_layers)
            if j % lay.stages == d
            for i in ls
        ]
        depth = in_flight(lay.schedule, lay.stages, tp.grad_accum, d, lay.chunks)
        out[chip] = stage_memory(
            layers,
            tp,
            ctx.system.chips[chip].type,
            in_flight=depth,
            rts_factor=lay.replicas if lay.rts else 1,
            micro_batches=tp.grad_accum,
        )
    return out


def infeasible_plan(
    info: dict[str, Any], bad: list[tuple[int, MemoryPlan]], extra: Sequence[str] = ()
) -> Plan:
    """A plan that does not fit: the reason says by how much and what would help (the memory
    planner's suggestions, then ``extra`` ones the strategy adds)."""
    chip, worst = max(bad, key=lambda cp: cp[1].shortfall_bytes)
    mib = 2**20
    reason = (
        f"does not fit in SRAM: chip {chip} needs {worst.total / mib:,.1f} MiB of "
        f"{worst.capacity / mib:,.1f} MiB ({worst.shortfall_bytes / mib:,.1f} MiB over"
        + (f"; {len(bad)} chips over" if len(bad) > 1 else "")
        + ")"
    )
    helps = [*worst.suggestions, *extra]
    if helps:
        reason += "; would help: " + "; ".join(helps)
    from simulator.engine.graph import TaskGraph

    return Plan(TaskGraph(), info, feasible=False, reason=reason)


def _all_chips_memory(plan: Plan) -> dict[str, dict[str, int]]:
    lay = plan.info["layout"]
    plans: dict[int, MemoryPlan] = plan.info["memory"]
    out = {}
    for r in range(lay.replicas):
        for d in range(lay.stages):
            for chip in lay.group(r, d):
                out[str(chip)] = describe_memory(plans[lay.chips[0][d]])
    return dict(sorted(out.items(), key=lambda kv: int(kv[0])))


def result_fields(
    ctx: PlanContext,
    strategy: str,
    model: str,
    tp: TrainingParams,
    *,
    chips: int,
    stages: int,
    replicas: int,
    schedule: str | None,
    global_batch: float,
    memory: dict[str, dict[str, int]],
    warnings: list[str],
) -> dict[str, Any]:
    """The fields every TrainingResult shares (docs/metrics.md), for any training strategy."""
    return dict(
        name=ctx.scenario.name,
        strategy=strategy,
        system=ctx.system.name,
        model=model,
        chips=chips,
        stages=stages,
        replicas=replicas,
        schedule=schedule,
        global_batch=global_batch,
        micro_batch=tp.micro_batch,
        grad_accum=tp.grad_accum,
        dtype=tp.dtype,
        memory=memory,
        warnings=warnings,
        sparsity=sparse_hooks.result_info(ctx, tp),  # training.sparsity (strategies/sparse)
    )


def summarise(ctx: PlanContext, plan: Plan, trace: Trace | None, strategy: str) -> TrainingResult:
    info = plan.info
    lay = info["layout"]
    tp: TrainingParams = info["training"]
    model: Model = info["model"]
    chips = lay.stages * lay.replicas * lay.tensor
    common: dict[str, Any] = dict(
        **result_fields(
            ctx,
            strategy,
            model.name,
            tp,
            chips=chips,
            stages=lay.stages,
            replicas=lay.replicas,
            schedule=lay.schedule if lay.stages > 1 else None,
            global_batch=info["global_batch"],
            memory=_all_chips_memory(plan),
            warnings=list(lay.warnings),
        ),
    )
    if not plan.feasible or trace is None:
        fields: dict[str, Any] = dict(
            feasible=False,
            reason=plan.reason,
            step_time_s=None,
            throughput_samples_per_s=None,
            **common,
        )
        if lay.shard is not None:
            return lay.shard.result(plan, None, fields)  # type: ignore[no-any-return]
        return TrainingResult(**fields)
    built = info["built"]
    step = trace.makespan
    twins = {
        c: lay.chips[0][d]
        for r in range(lay.replicas)
        for d in range(lay.stages)
        for c in lay.group(r, d)
    }
    breakdown, mean = chip_breakdown(ctx, trace, twins, step)
    samples = info["global_batch"]
    per_mb = (
        sum(c.useful_flops for c in built.costs) if lay.shard is None else lay.shard.useful_flops
    )
    useful = per_mb * tp.grad_accum * lay.replicas
    peak = sum(ctx.system.chips[c].type.peak_flops(tp.dtype) for c in lay.all_chips())
    analytic = _analytic(ctx, plan, step)
    fields = dict(
        feasible=True,
        reason=None,
        step_time_s=step,
        throughput_samples_per_s=samples / step if step > 0 else None,
        bubble_fraction=_bubble(trace, built.pipeline_tasks, lay),
        flop_utilisation=useful / (step * peak) if step > 0 else None,
        breakdown=breakdown,
        breakdown_mean=mean,
        analytic=analytic,
        engine=EngineStats.of(trace, len(plan.graph)),
        **common,
    )
    if lay.shard is not None:
        return lay.shard.result(plan, trace, fields)  # type: ignore[no-any-return]
    return TrainingResult(**fields)


def chip_breakdown(
    ctx: PlanContext, trace: Trace, twins: dict[int, int], step: float, steps: int = 1
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Seconds per step by kind on every chip of ``twins``, and their mean over the chips.

    ``twins[chip]`` is the simulated chip whose work ``chip`` repeats (itself when simulated):
    its compute, exchange, sync, rng and memory time are the twin's; collectives are the chip's
    own. ``steps`` is how many steps the trace holds (busy time is divided by it); idle is
    ``step`` minus the rest.
    """
    busy = trace.busy_by_kind(ctx.system.num_chips)
    breakdown: dict[str, dict[str, float]] = {}
    for chip, twin in twins.items():
        row = {k: float(busy[k][twin]) / steps for k in KINDS if k != "collective"}
        row["collective"] = float(busy["collective"][chip]) / steps
        row["idle"] = max(0.0, step - sum(row.values()))
        breakdown[str(chip)] = {k: row[k] for k in (*KINDS, "idle")}
    breakdown = dict(sorted(breakdown.items(), key=lambda kv: int(kv[0])))
    mean = {k: float(np.mean([b[k] for b in breakdown.values()])) for k in (*KINDS, "idle")}
    return breakdown, mean


def _bubble(trace: Trace, tasks: set[int], lay: Any) -> float | None:
    """Mean idle share of the pipeline window over replica 0's stage chips (docs/metrics.md)."""
    if not tasks:
        return None
    start = min(trace.task_start[t] for t in tasks)
    end = max(trace.task_end[t] for t in tasks)
    window = end - start
    if window <= 0:
        return 0.0
    busy: dict[int, float] = {}
    for s in trace.chip_spans:
        if s.task in tasks:
            busy[s.row] = busy.get(s.row, 0.0) + s.duration
    idle = [window - busy.get(c, 0.0) for c in lay.chips[0]]
    return float(np.mean(idle) / window)


def _analytic(ctx: PlanContext, plan: Plan, simulated: float) -> TrainingAnalytic:
    """Closed form: (M - 1) x slowest stage + sum of stages + boundary transfers, then the
    largest stage's gradient collective (its own closed form) and the slowest update."""
    info = plan.info
    lay = info["layout"]
    tp: TrainingParams = info["training"]
    built = info["built"]
    system = ctx.system
    ct = system.chips[lay.chips[0][0]].type
    per_vstage = [
        c.forward.seconds(ct) + c.recompute.seconds(ct) + c.backward.seconds(ct)
        for c in built.costs
    ]
    if lay.shard is not None:  # each pass's tensor-group collectives, closed form
        per_vstage = [s + lay.shard.pass_seconds(j) for j, s in enumerate(per_vstage)]
    per_chip = [
        sum(per_vstage[j] for j in range(len(per_vstage)) if j % lay.stages == d)
        for d in range(lay.stages)
    ]
    m = tp.grad_accum
    xfer = 0.0
    boundary_sync = system.sync_latency_s(lay.all_chips())
    paths = path_model(system)
    for j, nbytes in enumerate(built.transfer_bytes):
        a, b = lay.chip_of_vstage(0, j), lay.chip_of_vstage(0, j + 1)
        if a != b:  # sync + latency + (bytes + its messages' costs) / bottleneck, as run
            flows = transfer_flows(paths, [TransferSpec(a, b, nbytes)])
            xfer += 2 * (boundary_sync + exchange_estimate(paths, flows).estimate_s)
    pipe = (m - 1) * max(per_chip) + sum(per_vstage) + xfer
    coll = gradient_collective_estimate(ctx, lay, built.chip_params, tp)
    opt = max(c.optimizer.seconds(ct) for c in built.costs) / (lay.replicas if lay.rts else 1)
    mem = memory_seconds(ctx, plan)
    host = host_sync_seconds(system, lay.all_chips()) if system.hosts is not None else 0.0
    est = pipe + coll + opt + mem + host
    formula = (
        "(M-1) x slowest stage + sum of stages + 2 x boundary (sync + transfer), "
        "+ largest gradient collective (closed form) + slowest optimizer update "
        "+ busiest machine's Streaming Memory traffic / its bandwidth + the hosts' step end"
    )
    terms = {
        "pipeline_s": pipe,
        "collective_s": coll,
        "optimizer_s": opt,
        "memory_s": mem,
        "host_s": host,
    }
    if lay.shard is not None:
        formula += "; a stage's passes include its tensor-group collectives (closed form)"
        terms["tensor_per_micro_batch_s"] = max(
            lay.shard.pass_seconds(j) for j in range(len(built.costs))
        )
    return TrainingAnalytic(
        est, simulated, simulated / est - 1 if est > 0 else 0.0, formula, terms
    )


def gradient_collective_estimate(
    ctx: PlanContext, lay: Any, chip_params: dict[int, int], tp: TrainingParams
) -> float:
    """Closed form of the largest gradient collective between replicas (0 for one replica):
    all-reduce, or reduce-scatter plus all-gather with replicated tensor sharding."""
    from simulator.engine.collectives import ring_order

    system = ctx.system
    ct = system.chips[lay.chips[0][0]].type
    coll = 0.0
    if lay.replicas > 1:
        for d in range(lay.stages):
            group = [lay.chips[r][d] for r in range(lay.replicas)]
            nbytes = gradient_bytes(chip_params.get(lay.chips[0][d], 0), tp)
            kind = "reduce_scatter" if lay.rts else "all_reduce"
            steps = collective_steps(
                system,
                kind,
                ring_order(system, group),
                nbytes,
                lay.all_reduce,
                elem_bytes=2 if tp.dtype == "fp16" else 4,
            )
            rate = ct.tiles * ct.clock_hz * ct.vector_flop_per_cycle[tp.dtype]
            est = steps_estimate(system, steps, None, rate).estimate_s
            coll = max(coll, est * (2 if lay.rts else 1))
    return coll


def memory_seconds(ctx: PlanContext, plan: Plan) -> float:
    """Streaming Memory traffic of replica 0's chips: the larger of each machine's bytes over
    its DDR bandwidth and each chip's bytes over the bottleneck of its route to the DDR."""
    from simulator.engine.tasks import MemLoad, MemStore

    system = ctx.system
    sm = system.streaming_memory
    if sm is None:
        return 0.0
    per_machine: dict[int, float] = {}
    per_chip: dict[int, float] = {}
    for node in plan.graph.nodes:
        t = node.task
        if isinstance(t, MemLoad | MemStore):
            m = system.chips[t.chip].machine
            per_machine[m] = per_machine.get(m, 0.0) + t.bytes
            per_chip[t.chip] = per_chip.get(t.chip, 0.0) + t.bytes
    worst = max(per_machine.values(), default=0.0) / sm.bandwidth_Bps
    for chip, nbytes in per_chip.items():
        route = system.route(f"ddr:{system.chips[chip].machine}", system.chips[chip].node)
        cap = min(system.channels[c].capacity_Bps for c in route.channels)
        worst = max(worst, nbytes / cap)
    return worst
