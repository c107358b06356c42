"""Training in re-drawn random subspaces (``type: random_subspace``; Gressmann et al. 2020).

W workers, each R data-parallel replicas (chip ``w·R + r``), train in d-dimensional random
subspaces. Per step, on one worker chip (counts in :mod:`strategies.subspace_counts`):

1. **forward**: the hardware PRNG draws the bases (an :class:`~simulator.engine.tasks.Rng`
   task of S = Σ_k d_k·D_k samples on the chip's RNG units) and the vector units project
   θ + Eᵀc (a Compute task, 2S FLOPs); then the network's forward pass of every micro-batch
   (:func:`~strategies.training.stage_cost`);
2. **backward**: the network's backward passes, then the bases regenerated (Rng, S samples:
   never stored) and the coordinate gradients g = E∇θ (Compute, 2S FLOPs);
3. **exchange**: replicas of a worker all-reduce their d-vectors; *independent* bases
   all-gather (t, g) — 4 + 4d bytes per worker — over the workers; a *shared* basis
   all-reduces the d-vectors over every chip;
4. **update**: regenerate and apply — W·S samples and W·(2S + d) FLOPs for independent bases
   (every worker's update), S and 2S + d for a shared one.

Generation and projection run one after the other: the worker threads that issue the PRNG
instructions also run the projection, so on a tile they do not overlap. No direction is held
in memory: the SRAM plan is the model's (weights, gradients, activations; no optimizer state,
the optimizer acts on the d coordinates). Identical workers are not simulated one by one: worker
0's chip is, and every chip takes part in the collectives, which start when worker 0 is ready.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import Field

from simulator.analytic import steps_estimate
from simulator.config.base import PositiveInt, StrictModel
from simulator.engine.collectives import ring_order
from simulator.engine.collectives import schedule as collective_steps
from simulator.engine.executor import host_sync_seconds, rng_seconds
from simulator.engine.graph import TaskGraph
from simulator.engine.replicas import Replication
from simulator.engine.tasks import ALGORITHMS, Collective, Compute, Rng
from simulator.engine.trace import Trace
from simulator.hardware.model import ChipType
from simulator.metrics import EngineStats, TrainingAnalytic, TrainingResult
from simulator.strategy import Plan, PlanContext, register
from simulator.workloads.gemm import vector_cycles
from simulator.workloads.layers import DTYPE_BYTES
from strategies.subspace_counts import (
    CompartmentError,
    StepCounts,
    compartments,
    step_counts,
)
from strategies.summary import result_fields
from strategies.training import (
    TrainingParams,
    add_phase,
    describe_memory,
    end_step_on_hosts,
    scenario_model,
    stage_cost,
    stage_memory,
    training_params,
)

KINDS = ("compute", "exchange", "sync", "collective", "rng", "memory", "host")


class RandomSubspaceParams(StrictModel):
    """Keys of ``strategy:`` for ``type: random_subspace``."""

    mode: Literal["rbd", "fpd"] = Field(
        "rbd", description="rbd: bases redrawn every step; fpd: one fixed projection."
    )
    d: PositiveInt = Field(
        description="Total coefficients (subspace dimension) over all compartments."
    )
    compartments: PositiveInt | Literal["layers"] = Field(
        1,
        description="c: equal parts of the parameter vector, or `layers` (one per layer with "
        "parameters); d is split evenly over them.",
    )
    compartment_size: PositiveInt | None = Field(
        None, description="Parameters per compartment (instead of `compartments`)."
    )
    distribution: Literal["gaussian", "uniform", "bernoulli"] = Field(
        "gaussian", description="Distribution of the direction entries."
    )
    workers: int = Field(1, ge=1, description="W: workers, each with its own seeds.")
    basis: Literal["independent", "shared"] = Field(
        "independent",
        description="independent: own bases, all-gather of (step, d coefficients), every "
        "worker regenerates all W bases; shared: one basis, all-reduce of the d-vectors.",
    )
    replicas_per_worker: PositiveInt = Field(
        1, description="R: data-parallel replicas inside each worker (one chip each)."
    )
    collective_algorithm: Literal[ALGORITHMS] = Field(  # type: ignore[valid-type]
        "auto", description="Algorithm of the coefficient collectives."
    )


@dataclass(frozen=True)
class SubspaceResult(TrainingResult):
    """A TrainingResult with the random-subspace fields (docs/strategies/random_subspace.md)."""

    mode: str = "rbd"
    basis: str = "independent"
    workers: int = 1
    d: int = 0
    compartments: int = 1
    distribution: str = "gaussian"
    samples_per_pass: int = 0
    samples_per_step: int = 0
    rng_utilisation: float | None = None
    comm_bytes_per_step: float = 0.0
    dp_sgd_comm_bytes_per_step: float = 0.0
    comm_saved: float | None = None
    scaling_overhead_s: dict[str, float] = field(default_factory=dict)
    limiter: str | None = None

    def text(self) -> str:
        """The training summary plus the random-subspace lines."""
        lines = [
            super().text(),
            f"  subspace        {self.mode.upper()}, d = {self.d:,} over {self.compartments:,} "
            f"compartment(s), {self.distribution}, {self.workers} worker(s), {self.basis} bases",
            f"  random samples  {self.samples_per_step:,} per worker per step "
            f"({self.samples_per_pass:,} per pass)",
        ]
        if self.rng_utilisation is not None:
            lines.append(f"  RNG units busy  {self.rng_utilisation:.1%} of the step")
        lines.append(
            f"  sent per chip   {self.comm_bytes_per_step:,.0f} B/step; data-parallel SGD "
            f"{self.dp_sgd_comm_bytes_per_step:,.0f} B/step"
            + (f" ({self.comm_saved:.2%} saved)" if self.comm_saved is not None else "")
        )
        if self.limiter:
            lines.append(f"  limited by      {self.limiter}")
        return "\n".join(lines)


@dataclass
class SubspaceLayout:
    """Chips, counts and the tasks summarising needs."""

    workers: int
    replicas: int
    chips: list[list[int]]  # chips[w][r]
    counts: StepCounts
    compartments: int
    warnings: list[str] = field(default_factory=list)


# ---- planning ------------------------------------------------------------------------------
def _projection(ct: ChipType, dtype: str, flops: float, samples: float, params: int) -> float:
    """Cycles of a projection on the vector units: 2 FLOP per sample, each sample read once,
    θ (or ∇θ) written once, spread over every tile (a roofline, :func:`vector_cycles`)."""
    b = DTYPE_BYTES[dtype]
    return vector_cycles(ct, dtype, flops / ct.tiles, samples * b / ct.tiles, params * b / ct.tiles)


def _pass(
    g: TaskGraph,
    chip: int,
    ct: ChipType,
    p: RandomSubspaceParams,
    dtype: str,
    samples: int,
    flops: int,
    params: int,
    deps: list[int],
    label: str,
    kind: Literal["compute", "optimizer"] = "compute",
) -> int:
    """Generate ``samples`` on the RNG units, then project on the vector units."""
    r = g.add(Rng(chip, float(samples), p.distribution, label=f"generate {label}"), deps)
    cycles = _projection(ct, dtype, flops, samples, params)
    return g.add(
        Compute(
            chip, float(flops), dtype, "vector", cycles=cycles, label=f"project {label}", kind=kind
        ),
        [r],
    )


def _check(ctx: PlanContext, p: RandomSubspaceParams) -> None:
    if p.compartment_size is not None and p.compartments != 1:
        raise ctx.error(
            ("strategy", "compartment_size"),
            "give compartments or compartment_size, not both",
        )
    need = p.workers * p.replicas_per_worker
    if need > ctx.system.num_chips:
        raise ctx.error(
            ("strategy", "workers"),
            f"{p.workers} worker(s) x {p.replicas_per_worker} replica(s) = {need} chips, but "
            f"{ctx.system.name} has {ctx.system.num_chips}; use at most "
            f"{ctx.system.num_chips // p.replicas_per_worker} workers",
        )


def plan(ctx: PlanContext) -> Plan:
    """The task graph of one step of worker 0, with every chip in the collectives."""
    from strategies.summary import infeasible_plan

    p: RandomSubspaceParams = ctx.params  # type: ignore[assignment]
    _check(ctx, p)
    model = scenario_model(ctx)
    tp = training_params(ctx)
    layer_params = [layer.params for layer in model.layers]
    try:
        parts = compartments(layer_params, p.d, p.compartments, p.compartment_size)
    except CompartmentError as exc:
        key = "compartment_size" if p.compartment_size is not None else "d"
        raise ctx.error(("strategy", key), str(exc)) from None
    w, r = p.workers, p.replicas_per_worker
    expected = tp.micro_batch * tp.grad_accum * w * r * tp.samples_per_input
    if tp.global_batch is not None and abs(tp.global_batch - expected) > 1e-9:
        raise ctx.error(
            ("training", "global_batch"),
            f"global_batch {tp.global_batch} != micro_batch {tp.micro_batch} x grad_accum "
            f"{tp.grad_accum} x workers {w} x replicas_per_worker {r} x samples_per_input "
            f"{tp.samples_per_input:g} = {expected:g}; change one of them so they agree",
        )
    counts = step_counts(parts, w, r, p.basis, DTYPE_BYTES[tp.dtype])
    lay = SubspaceLayout(
        w, r, [[i * r + j for j in range(r)] for i in range(w)], counts, len(parts)
    )
    if w * r < ctx.system.num_chips:
        lay.warnings.append(
            f"random_subspace: {w * r} of the {ctx.system.num_chips} chips of "
            f"{ctx.system.name} are used"
        )
    if tp.optimizer != "sgd":
        lay.warnings.append(
            f"random_subspace: the update is SGD on the d coordinates; training.optimizer "
            f"{tp.optimizer} is not applied (no per-parameter optimizer state is planned)"
        )
    sgd = tp.model_copy(update={"optimizer": "sgd"})
    ct = ctx.system.chips[0].type
    mem = stage_memory(
        model.layers, sgd, ct, in_flight=1, rts_factor=1, micro_batches=tp.grad_accum
    )
    info: dict[str, Any] = {
        "model": model,
        "training": tp,
        "layout": lay,
        "memory": {0: mem},
        "global_batch": expected,
    }
    if not mem.fits:
        return infeasible_plan(info, [(0, mem)])
    cost = stage_cost(model.layers, model.needs_input_grad, sgd, ct)
    info["cost"] = cost
    # every worker chip repeats chip 0's work; they meet in the coefficient collectives
    copies = [[c] for row in lay.chips for c in row]
    graph = _graph(ctx, p, tp, lay, cost, model.params)
    return Plan(graph, info, replication=Replication.of_rows(copies))


def _graph(
    ctx: PlanContext,
    p: RandomSubspaceParams,
    tp: TrainingParams,
    lay: SubspaceLayout,
    cost: Any,
    params: int,
) -> TaskGraph:
    system = ctx.system
    g = TaskGraph()
    ct = system.chips[0].type
    c = lay.counts
    dt = tp.dtype
    last = _pass(g, 0, ct, p, dt, c.samples_forward, c.flops_forward, params, [], "forward")
    for m in range(tp.grad_accum):
        last = add_phase(g, 0, cost.forward, ct, [last], f"F mb{m}")
        last = add_phase(g, 0, cost.backward, ct, [last], f"B mb{m}")
    last = _pass(g, 0, ct, p, dt, c.samples_backward, c.flops_backward, params, [last], "backward")
    deps = [last]
    alg = p.collective_algorithm
    if c.replica_all_reduce_bytes:
        deps = [
            g.add(
                Collective(
                    "all_reduce",
                    ring_order(system, lay.chips[i]),
                    float(c.replica_all_reduce_bytes),
                    alg,
                    dtype="fp32",
                    label=f"all_reduce coefficients worker {i}",
                ),
                [last],
            )
            for i in range(lay.workers)
        ]
    if c.exchange_kind == "all_gather":
        groups = [[lay.chips[i][j] for i in range(lay.workers)] for j in range(lay.replicas)]
    elif c.exchange_kind == "all_reduce":
        groups = [[chip for row in lay.chips for chip in row]]
    else:
        groups = []
    first = None
    for j, group in enumerate(groups):
        tid = g.add(
            Collective(
                c.exchange_kind,  # type: ignore[arg-type]
                ring_order(system, group),
                float(c.exchange_bytes),
                alg,
                dtype="fp32",
                label=f"{c.exchange_kind} coefficients" + (f" replica {j}" if j else ""),
            ),
            deps,
        )
        first = tid if first is None else first
    if first is not None:
        deps = [first]
    done = _pass(
        g, 0, ct, p, dt, c.samples_update, c.flops_update, params, deps, "update", "optimizer"
    )
    end_step_on_hosts(g, ctx, [chip for row in lay.chips for chip in row], [done])
    return g


# ---- results -------------------------------------------------------------------------------
def summarise(ctx: PlanContext, plan_: Plan, trace: Trace | None) -> SubspaceResult:
    """The step's result: TrainingResult fields plus RNG use and bytes against DP-SGD."""
    info = plan_.info
    lay: SubspaceLayout = info["layout"]
    tp: TrainingParams = info["training"]
    p: RandomSubspaceParams = ctx.params  # type: ignore[assignment]
    c = lay.counts
    chips = [chip for row in lay.chips for chip in row]
    memory = {str(chip): describe_memory(info["memory"][0]) for chip in chips}
    common: dict[str, Any] = dict(
        **result_fields(
            ctx,
            "random_subspace",
            info["model"].name,
            tp,
            chips=len(chips),
            stages=1,
            replicas=len(chips),
            schedule=None,
            global_batch=info["global_batch"],
            memory=memory,
            warnings=list(lay.warnings),
        ),
        mode=p.mode,
        basis=p.basis,
        workers=lay.workers,
        d=p.d,
        compartments=lay.compartments,
        distribution=p.distribution,
        samples_per_pass=c.samples_forward,
        samples_per_step=c.samples,
        comm_bytes_per_step=c.sent_bytes,
        dp_sgd_comm_bytes_per_step=c.dp_sgd_sent_bytes,
        comm_saved=1 - c.sent_bytes / c.dp_sgd_sent_bytes if c.dp_sgd_sent_bytes else None,
    )
    if not plan_.feasible or trace is None:
        return SubspaceResult(
            feasible=False,
            reason=plan_.reason,
            step_time_s=None,
            throughput_samples_per_s=None,
            **common,
        )
    step = trace.makespan
    busy = trace.busy_by_kind(ctx.system.num_chips)
    breakdown: dict[str, dict[str, float]] = {}
    for chip in chips:
        row = {k: float(busy[k][0]) for k in KINDS if k != "collective"}
        row["collective"] = float(busy["collective"][chip])
        row["idle"] = max(0.0, step - sum(row.values()))
        breakdown[str(chip)] = {k: row[k] for k in (*KINDS, "idle")}
    mean = {k: float(np.mean([b[k] for b in breakdown.values()])) for k in (*KINDS, "idle")}
    cost = info["cost"]
    useful = (cost.useful_flops * tp.grad_accum + c.projection_flops) * len(chips)
    peak = sum(ctx.system.chips[i].type.peak_flops(tp.dtype) for i in chips)
    overhead = _overhead(ctx, p, tp, lay, float(busy["collective"][0]), params=info["model"].params)
    return SubspaceResult(
        feasible=True,
        reason=None,
        step_time_s=step,
        throughput_samples_per_s=info["global_batch"] / step if step > 0 else None,
        flop_utilisation=useful / (step * peak) if step > 0 else None,
        breakdown=breakdown,
        breakdown_mean=mean,
        analytic=_analytic(ctx, plan_, p, step),
        engine=EngineStats.of(trace, len(plan_.graph)),
        rng_utilisation=float(busy["rng"][0]) / step if step > 0 else None,
        scaling_overhead_s=overhead,
        limiter=_limiter(overhead, step),
        **common,
    )


def _overhead(
    ctx: PlanContext,
    p: RandomSubspaceParams,
    tp: TrainingParams,
    lay: SubspaceLayout,
    collective_s: float,
    params: int,
) -> dict[str, float]:
    """Seconds the W-worker step spends beyond one lone worker's step, by cause: generating
    and applying the other workers' bases (independent bases only) and the collectives."""
    ct = ctx.system.chips[0].type
    c = lay.counts
    extra = c.samples_update - c.samples_forward  # (W - 1)·S for independent bases, else 0
    one = c.flops_update // (lay.workers if p.basis == "independent" else 1)
    rng = rng_seconds(ct, Rng(0, float(extra), p.distribution)) if extra else 0.0
    proj = 0.0
    if extra:
        full = _projection(ct, tp.dtype, c.flops_update, c.samples_update, params)
        alone = _projection(ct, tp.dtype, one, c.samples_forward, params)
        proj = (full - alone) / ct.clock_hz
    host = 0.0
    if ctx.system.hosts is not None:  # the step ends with a sync over every worker's chips
        chips = tuple(sorted(chip for row in lay.chips for chip in row))
        host = host_sync_seconds(ctx.system, chips) - host_sync_seconds(ctx.system, chips[:1])
    return {"rng": rng, "projection": proj, "collective": collective_s, "host": host}


def _limiter(overhead: dict[str, float], step: float) -> str | None:
    """What the W-worker step adds to a lone worker's, largest first (None: nothing added)."""
    if step <= 0 or not any(overhead.values()):
        return None
    names = {
        "rng": "RNG throughput (regenerating the other workers' bases)",
        "projection": "applying the other workers' updates (vector units)",
        "collective": "the coefficient collectives (latency-bound)",
        "host": "the hosts' step end over every worker's chips",
    }
    worst = max(overhead, key=lambda k: overhead[k])
    return (
        f"{names[worst]}: +{overhead[worst] * 1e6:,.1f} us "
        f"({overhead[worst] / step:.0%} of the step)"
    )


def _analytic(
    ctx: PlanContext, plan_: Plan, p: RandomSubspaceParams, simulated: float
) -> TrainingAnalytic:
    """Closed form: the chip's tasks back to back plus the collectives' own closed form."""
    info = plan_.info
    lay: SubspaceLayout = info["layout"]
    tp: TrainingParams = info["training"]
    ct = ctx.system.chips[0].type
    c = lay.counts
    cost = info["cost"]
    params = info["model"].params
    network = tp.grad_accum * (cost.forward.seconds(ct) + cost.backward.seconds(ct))
    rng = sum(
        rng_seconds(ct, Rng(0, float(n), p.distribution))
        for n in (c.samples_forward, c.samples_backward, c.samples_update)
    )
    proj = sum(
        _projection(ct, tp.dtype, f, n, params) / ct.clock_hz
        for f, n in (
            (c.flops_forward, c.samples_forward),
            (c.flops_backward, c.samples_backward),
            (c.flops_update, c.samples_update),
        )
    )
    coll = 0.0
    rate = ct.tiles * ct.clock_hz * ct.vector_flop_per_cycle["fp32"]
    system = ctx.system
    if c.replica_all_reduce_bytes:
        steps = collective_steps(
            system,
            "all_reduce",
            ring_order(system, lay.chips[0]),
            c.replica_all_reduce_bytes,
            p.collective_algorithm,
        )
        coll += steps_estimate(system, steps, None, rate).estimate_s
    if c.exchange_kind is not None:
        group = (
            [lay.chips[i][0] for i in range(lay.workers)]
            if c.exchange_kind == "all_gather"
            else [chip for row in lay.chips for chip in row]
        )
        steps = collective_steps(
            system,
            c.exchange_kind,
            ring_order(system, group),
            c.exchange_bytes,
            p.collective_algorithm,
        )
        coll += steps_estimate(system, steps, None, rate).estimate_s
    est = network + rng + proj + coll
    return TrainingAnalytic(
        est,
        simulated,
        simulated / est - 1 if est > 0 else 0.0,
        "M x (forward + backward) + 3 generation passes (samples / RNG rate) + 3 projections "
        "(vector roofline) + coefficient collectives (closed form)",
        {"network_s": network, "rng_s": rng, "projection_s": proj, "collective_s": coll},
    )


class RandomSubspace:
    """The ``random_subspace`` strategy."""

    name = "random_subspace"
    params = RandomSubspaceParams

    def plan(self, ctx: PlanContext) -> Plan:
        return plan(ctx)

    def summarise(self, ctx: PlanContext, plan_: Plan, trace: Trace | None) -> SubspaceResult:
        return summarise(ctx, plan_, trace)


register(RandomSubspace())

__all__ = ["RandomSubspace", "RandomSubspaceParams", "SubspaceResult"]
