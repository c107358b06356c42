"""Ensembles and codistillation (``type: ensemble``).

N members, each on its own group of G chips (G = chips / N unless ``member_chips`` says
otherwise); a member is data-parallel over its group (the ``data`` strategy's layout: one
replica per chip, a gradient all-reduce inside the group). Members never talk to each other
(deep ensembles), except under codistillation (Anil et al. 2018):

* ``checkpoint``: every step, each member adds a distillation loss towards the others'
  predictions *on its own batch*, computed locally — one extra forward pass per teacher
  (N - 1 of them) per micro-batch, with stale copies of the teachers' weights. Every
  ``exchange_every`` = k steps the members swap checkpoints: for each replica index r, the
  chips {member i, replica r} all-gather their weights (N x parameters x dtype bytes per
  chip). The teachers' weights live in SRAM (``teacher_weights: sram``; infeasible if they
  do not fit) or in Streaming Memory (``streaming``: each teacher is streamed in once per
  step, its layers as they are used, all M micro-batches going through each layer; the
  gathered checkpoint is written back after an exchange).
* ``online`` (deep mutual learning, Zhang et al. 2017): members train on a *shared* batch;
  after each micro-batch's forward pass the chips {member i, replica r} all-gather their
  predictions (N x micro-batch x outputs x dtype bytes per chip) before the backward pass.

Like the pipeline's replicas, only member 0's replica 0 is simulated: the others do the same
work on disjoint chips and take part in the collectives (the group all-reduce, the
exchanges), which are simulated in full. The checkpoint exchange is simulated once, after the
step, and amortised: step time = step + exchange / k (docs/strategies/ensemble.md).
Throughput counts the samples of *all* members (N x the member's batch per step).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pydantic import Field

from simulator.config.base import NonNegativeInt, PositiveInt
from simulator.engine.collectives import ring_order
from simulator.engine.graph import TaskGraph
from simulator.engine.replicas import Replication
from simulator.engine.tasks import ALGORITHMS, Collective, MemLoad, MemStore
from simulator.engine.trace import Trace
from simulator.metrics import EngineStats, TrainingAnalytic, TrainingResult
from simulator.strategy import Plan, PlanContext, register
from simulator.workloads.layers import DTYPE_BYTES
from simulator.workloads.memory import MemoryPlan
from simulator.workloads.model import Model
from strategies.pipeline import Layout
from strategies.pipeline_step import input_feed, step_end
from strategies.summary import (
    KINDS,
    describe_memory,
    gradient_collective_estimate,
    infeasible_plan,
    memory_plans,
    result_fields,
)
from strategies.tensor.keys import TensorKeys
from strategies.training import (
    StageCost,
    TrainingParams,
    add_phase,
    scenario_model,
    stage_cost,
    training_params,
)

Codistillation = Literal["none", "checkpoint", "online"]


class EnsembleParams(TensorKeys):
    """Keys of ``strategy:`` for ``type: ensemble``."""

    members: PositiveInt = Field(description="N: independent members (models).")
    member_chips: PositiveInt | None = Field(
        None,
        description="G: chips per member (default: chips / members); data-parallel, or "
        "stages x tensor_parallel x replicas with pipelined members.",
    )
    stages: PositiveInt = Field(
        1,
        description="K: pipeline stages of each member (strategies/ensemble_pipeline.py; "
        "needs codistillation: none above 1).",
    )
    schedule: Literal["gpipe", "1f1b"] = Field("1f1b", description="Pipelined members' order.")
    layers_per_stage: list[NonNegativeInt] | None = Field(
        None, description="Pipelined members: repeated blocks per stage (default: balanced)."
    )
    codistillation: Codistillation = Field(
        "none",
        description="none: independent members; checkpoint: distil towards stale teachers "
        "computed locally (Anil et al.); online: exchange predictions on a shared batch.",
    )
    exchange_every: PositiveInt = Field(
        1000, description="k: steps between checkpoint exchanges (checkpoint codistillation)."
    )
    teacher_weights: Literal["sram", "streaming"] = Field(
        "sram", description="Where the N - 1 teachers' weights live (checkpoint codistillation)."
    )
    all_reduce: Literal[ALGORITHMS] = Field(  # type: ignore[valid-type]
        "auto", description="Gradient all-reduce algorithm inside a member's group."
    )
    replicated_tensor_sharding: bool = Field(False)


@dataclass
class EnsembleBuilt:
    """The graph and what summarising it needs."""

    graph: TaskGraph
    step_tasks: set[int]
    cost: StageCost
    teacher_forward_flops: float  # per chip per step
    teacher_bytes_streamed: float  # per chip per step
    prediction_bytes: float  # all-gather buffer per chip per micro-batch (online)
    exchange_bytes: float  # all-gather buffer per chip per checkpoint exchange
    chip_params: dict[int, int] = field(default_factory=dict)


def member_chips(ctx: PlanContext, p: EnsembleParams) -> list[list[int]]:
    """Chips of each member: consecutive groups of G. Invalid input (exit 2) when the members
    do not get a group each."""
    n = ctx.system.num_chips
    if p.members > n:
        raise ctx.error(
            ("strategy", "members"),
            f"{p.members} members but {ctx.system.name} has {n} chips: more members than chip "
            f"groups (choose at most {n} members, one chip group each)",
        )
    g = p.member_chips or n // p.members
    if p.members * g > n:
        raise ctx.error(
            ("strategy", "member_chips"),
            f"{p.members} members x {g} chips = {p.members * g} chips, but {ctx.system.name} "
            f"has {n}; more members than chip groups of {g} (at most {n // g} members)",
        )
    return [list(range(i * g, (i + 1) * g)) for i in range(p.members)]


def _check(ctx: PlanContext, p: EnsembleParams) -> None:
    if p.codistillation != "none" and p.members < 2:
        raise ctx.error(
            ("strategy", "codistillation"), "codistillation needs at least 2 members (teachers)"
        )
    streaming = p.codistillation == "checkpoint" and p.teacher_weights == "streaming"
    if streaming and ctx.system.streaming_memory is None:
        raise ctx.error(
            ("strategy", "teacher_weights"),
            f"streaming needs Streaming Memory, and {ctx.system.name} has none; "
            "use teacher_weights: sram or a system with Streaming Memory (e.g. m2000)",
        )
    for key in ("exchange_every", "teacher_weights"):
        if key in p.model_fields_set and p.codistillation != "checkpoint":
            raise ctx.error(("strategy", key), f"{key} needs codistillation: checkpoint")
    for key in ("schedule", "layers_per_stage"):
        if key in p.model_fields_set and p.stages == 1:
            raise ctx.error(("strategy", key), f"{key} needs pipelined members (stages > 1)")


def _memory(
    ctx: PlanContext, model: Model, tp: TrainingParams, lay: Layout, p: EnsembleParams
) -> dict[int, MemoryPlan]:
    """Member 0's chips: the data strategy's plan, plus the teachers (checkpoint: their
    weights, or one layer's buffer when streamed) and the gathered predictions (online)."""
    plans = memory_plans(ctx, model, tp, lay)
    nbytes = DTYPE_BYTES[tp.dtype]
    extra_weights = extra_buffers = 0
    if p.codistillation == "checkpoint":
        if p.teacher_weights == "sram":
            extra_weights = (p.members - 1) * model.params * nbytes
        else:
            extra_weights = max(x.params for x in model.layers) * nbytes
    elif p.codistillation == "online":
        extra_buffers = p.members * model.layers[-1].output_elems * tp.micro_batch * nbytes
    return {
        chip: replace(
            mp,
            weights=mp.weights + extra_weights,
            exchange_buffers=mp.exchange_buffers + extra_buffers,
        )
        for chip, mp in plans.items()
    }


def build_graph(
    ctx: PlanContext,
    model: Model,
    tp: TrainingParams,
    lay: Layout,
    groups: list[list[int]],
    p: EnsembleParams,
) -> EnsembleBuilt:
    """One step of member 0's replica 0 (teachers' passes, F, [prediction exchange], B, the
    group all-reduce and update), then one checkpoint exchange (checkpoint codistillation)."""
    g = TaskGraph()
    chip = lay.chips[0][0]
    ct = ctx.system.chips[chip].type
    all_layers = list(range(len(model.layers)))
    cost = stage_cost([model.layers[i] for i in all_layers], model.needs_input_grad, tp, ct)
    nbytes = DTYPE_BYTES[tp.dtype]
    n, m = p.members, tp.grad_accum
    teachers = n - 1 if p.codistillation == "checkpoint" else 0
    streamed = model.params * nbytes if p.teacher_weights == "streaming" else 0.0
    # every chip streams its teachers: the other chips on this machine share its DDR (their
    # traffic is added beside chip's, gating nothing, as strategies.pipeline.stream does)
    here = ctx.system.chips[chip].machine
    mates = [c.id for c in ctx.system.chips if c.machine == here and c.id != chip]
    last: list[int] = []
    for t in range(teachers):
        if streamed:
            for mate in mates:
                g.add(MemLoad(mate, streamed, label=f"load teacher t{t}"), last)
            last = [g.add(MemLoad(chip, streamed, label=f"load teacher t{t}"), last)]
        for mb in range(m):
            last = [add_phase(g, chip, cost.forward, ct, last, f"T mb{mb} t{t}")]
    rings = [tuple(ring_order(ctx.system, [grp[r] for grp in groups])) for r in range(lay.replicas)]
    preds = n * model.layers[-1].output_elems * tp.micro_batch * nbytes
    feed = input_feed(ctx, lay, model, tp)
    for mb in range(m):
        done = add_phase(g, chip, cost.forward, ct, feed.read(g, mb, last), f"F mb{mb} s0")
        if p.codistillation == "online":
            gathers = [
                g.add(
                    Collective(
                        "all_gather", ring, preds, dtype=tp.dtype, label=f"predictions mb{mb} r{r}"
                    ),
                    [done],
                )
                for r, ring in enumerate(rings)
            ]
            done = gathers[0]
        if cost.recompute.flops or cost.recompute.compute_s:
            done = add_phase(g, chip, cost.recompute, ct, [done], f"R mb{mb} s0", "recompute")
        last = [add_phase(g, chip, cost.backward, ct, [done], f"B mb{mb} s0")]
    ends = step_end(ctx, g, tp, lay, [cost], {chip: last[0]}, feed.pending())
    step_tasks = set(range(len(g)))
    exchange = n * model.params * nbytes if p.codistillation == "checkpoint" else 0.0
    if exchange:
        for r, ring in enumerate(rings):
            done = g.add(
                Collective(
                    "all_gather", ring, exchange, dtype=tp.dtype, label=f"checkpoint exchange r{r}"
                ),
                [ends[chip]],
            )
            if streamed and r == 0:
                for c in (chip, *mates):
                    g.add(MemStore(c, teachers * streamed, label="store teachers"), [done])
    return EnsembleBuilt(
        g,
        step_tasks,
        cost,
        teacher_forward_flops=teachers * m * cost.forward.flops,
        teacher_bytes_streamed=teachers * streamed,
        prediction_bytes=preds if p.codistillation == "online" else 0.0,
        exchange_bytes=exchange,
        chip_params={chip: cost.params},
    )


class Ensemble:
    """The ``ensemble`` strategy."""

    name = "ensemble"
    params = EnsembleParams

    def plan(self, ctx: PlanContext) -> Plan:
        p: EnsembleParams = ctx.params  # type: ignore[assignment]
        groups = member_chips(ctx, p)
        _check(ctx, p)
        if p.stages > 1 or p.tensor_parallel > 1:
            from strategies.ensemble_pipeline import plan_pipelined

            return plan_pipelined(ctx, p, groups)
        model = scenario_model(ctx)
        tp = training_params(ctx)
        g = len(groups[0])
        member_batch = tp.micro_batch * tp.grad_accum * g * tp.samples_per_input
        if tp.global_batch is not None and abs(tp.global_batch - p.members * member_batch) > 1e-9:
            raise ctx.error(
                ("training", "global_batch"),
                f"global_batch {tp.global_batch} != members {p.members} x micro_batch "
                f"{tp.micro_batch} x grad_accum {tp.grad_accum} x {g} chips per member x "
                f"samples_per_input {tp.samples_per_input:g} = {p.members * member_batch:g} "
                "(the samples of all members); change one of them so they agree",
            )
        lay = Layout(
            1,
            g,
            1,
            "1f1b",
            [list(range(len(model.layers)))],
            [[c] for c in groups[0]],
            p.all_reduce,
            p.replicated_tensor_sharding,
        )
        idle = ctx.system.num_chips - p.members * g
        if idle:
            lay.warnings.append(f"ensemble: {idle} of {ctx.system.num_chips} chips are idle")
        plans = _memory(ctx, model, tp, lay, p)
        info: dict[str, Any] = {
            "model": model,
            "training": tp,
            "layout": lay,
            "memory": plans,
            "params": p,
            "groups": groups,
            "member_batch": member_batch,
            "global_batch": p.members * member_batch,
        }
        bad = [(chip, mp) for chip, mp in plans.items() if not mp.fits]
        if bad:
            plan = infeasible_plan(info, bad)
            if p.codistillation == "checkpoint" and p.teacher_weights == "sram":
                teachers = (p.members - 1) * model.params * DTYPE_BYTES[tp.dtype] / 2**20
                plan.reason = (
                    f"{plan.reason}; the {p.members - 1} teachers' weights take "
                    f"{teachers:,.1f} MiB: teacher_weights: streaming would move them to "
                    "Streaming Memory"
                )
            return plan
        info["built"] = build_graph(ctx, model, tp, lay, groups, p)
        # every chip of every member repeats member 0's first chip; members wait for each
        # other only where the graph says (codistillation's exchanges)
        copies = [[c] for grp in groups for c in grp]
        return Plan(info["built"].graph, info, replication=Replication.of_rows(copies, len(groups)))

    def summarise(self, ctx: PlanContext, plan: Plan, trace: Trace | None) -> TrainingResult:
        if plan.info.get("pipelined"):
            from strategies.ensemble_pipeline import summarise_pipelined

            return summarise_pipelined(ctx, plan, trace)
        return summarise(ctx, plan, trace)


@dataclass(frozen=True)
class EnsembleResult(TrainingResult):
    """TrainingResult plus the ensemble's own fields (docs/strategies/ensemble.md).

    ``throughput_samples_per_s`` counts every member's samples; ``replicas`` is N x G (every
    copy of the model); ``step_time_s`` includes the checkpoint exchange amortised over k.
    """

    members: int = 1
    member_chips: int = 1
    codistillation: str = "none"
    exchange_every: int | None = None
    teacher_weights: str | None = None
    member_global_batch: float = 0.0
    member_throughput_samples_per_s: float | None = None
    step_without_exchange_s: float | None = None
    exchange_time_s: float | None = None  # one checkpoint exchange, simulated
    exchange_bytes_per_chip: float = 0.0  # all-gather buffer per chip per exchange
    teacher_forward_flops_per_step: float = 0.0  # per chip
    teacher_streamed_bytes_per_step: float = 0.0  # per chip
    prediction_bytes_per_micro_batch: float = 0.0  # all-gather buffer per chip (online)

    def text(self) -> str:
        """TrainingResult's summary plus the ensemble line."""
        lines = super().text().split("\n")
        extra = (
            f"  ensemble        {self.members} members x {self.member_chips} chips, "
            f"codistillation {self.codistillation}"
        )
        if self.feasible and self.member_throughput_samples_per_s is not None:
            extra += f"; one member {self.member_throughput_samples_per_s:,.1f} samples/s"
        if self.exchange_time_s:
            extra += (
                f"; checkpoint exchange {self.exchange_time_s * 1e3:,.3f} ms every "
                f"{self.exchange_every} steps"
            )
        lines.insert(1, extra)
        return "\n".join(lines)


def _breakdown(
    ctx: PlanContext, trace: Trace, twins: dict[int, int], built: EnsembleBuilt, k: int, step: float
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Seconds per step by kind per chip: step tasks count once, the exchange 1/k times."""
    busy: dict[tuple[str, int], float] = {}
    spans = [(s.kind, s) for s in trace.chip_spans] + [("rng", s) for s in trace.rng_spans]
    for kind, s in spans:
        weight = 1.0 if s.task in built.step_tasks else 1.0 / k
        busy[(kind, s.row)] = busy.get((kind, s.row), 0.0) + weight * s.duration
    rows: dict[str, dict[str, float]] = {}
    for chip, twin in sorted(twins.items()):
        row = {kd: busy.get((kd, chip if kd == "collective" else twin), 0.0) for kd in KINDS}
        row["idle"] = max(0.0, step - sum(row.values()))
        rows[str(chip)] = row
    mean = {kd: sum(r[kd] for r in rows.values()) / len(rows) for kd in (*KINDS, "idle")}
    return rows, mean


def summarise(ctx: PlanContext, plan: Plan, trace: Trace | None) -> EnsembleResult:
    """EnsembleResult of a plan and its trace (formulas in docs/strategies/ensemble.md)."""
    info = plan.info
    lay: Layout = info["layout"]
    tp: TrainingParams = info["training"]
    p: EnsembleParams = info["params"]
    groups: list[list[int]] = info["groups"]
    twins = {c: lay.chips[0][0] for grp in groups for c in grp}
    memory = {str(c): describe_memory(info["memory"][lay.chips[0][0]]) for c in sorted(twins)}
    common: dict[str, Any] = dict(
        **result_fields(
            ctx,
            "ensemble",
            info["model"].name,
            tp,
            chips=len(twins),
            stages=1,
            replicas=len(twins),
            schedule=None,
            global_batch=info["global_batch"],
            memory=memory,
            warnings=list(lay.warnings),
        ),
        members=p.members,
        member_chips=len(groups[0]),
        codistillation=p.codistillation,
        exchange_every=p.exchange_every if p.codistillation == "checkpoint" else None,
        teacher_weights=p.teacher_weights if p.codistillation == "checkpoint" else None,
        member_global_batch=info["member_batch"],
    )
    if not plan.feasible or trace is None:
        return EnsembleResult(
            feasible=False,
            reason=plan.reason,
            step_time_s=None,
            throughput_samples_per_s=None,
            **common,
        )
    built: EnsembleBuilt = info["built"]
    k = p.exchange_every if built.exchange_bytes else 1
    bare = max(trace.task_end[t] for t in built.step_tasks)
    exchange = trace.makespan - bare if built.exchange_bytes else 0.0
    step = bare + exchange / k
    breakdown, mean = _breakdown(ctx, trace, twins, built, k, step)
    ct = ctx.system.chips[lay.chips[0][0]].type
    peak = ct.peak_flops(tp.dtype) * len(twins)
    work = (built.cost.useful_flops * tp.grad_accum + built.teacher_forward_flops) * len(twins)
    return EnsembleResult(
        feasible=True,
        reason=None,
        step_time_s=step,
        throughput_samples_per_s=info["global_batch"] / step,
        flop_utilisation=work / (step * peak),
        breakdown=breakdown,
        breakdown_mean=mean,
        analytic=_analytic(ctx, plan, step, exchange / k),
        engine=EngineStats.of(trace, len(plan.graph)),
        member_throughput_samples_per_s=info["member_batch"] / step,
        step_without_exchange_s=bare,
        exchange_time_s=exchange if built.exchange_bytes else None,
        exchange_bytes_per_chip=built.exchange_bytes,
        teacher_forward_flops_per_step=built.teacher_forward_flops,
        teacher_streamed_bytes_per_step=built.teacher_bytes_streamed,
        prediction_bytes_per_micro_batch=built.prediction_bytes,
        **common,
    )


def _analytic(ctx: PlanContext, plan: Plan, simulated: float, amortised: float) -> TrainingAnalytic:
    """M x (F + B) + (N - 1) x M x F (teachers) + the group all-reduce (closed form) + update,
    plus the simulated exchange / k (the prediction all-gathers are left out)."""
    info = plan.info
    lay: Layout = info["layout"]
    tp: TrainingParams = info["training"]
    built: EnsembleBuilt = info["built"]
    ct = ctx.system.chips[lay.chips[0][0]].type
    c = built.cost
    m = tp.grad_accum
    own = m * (c.forward + c.recompute + c.backward).seconds(ct)
    teachers = (
        built.teacher_forward_flops / c.forward.flops * c.forward.seconds(ct)
        if c.forward.flops
        else 0.0
    )
    coll = gradient_collective_estimate(ctx, lay, built.chip_params, tp)
    opt = c.optimizer.seconds(ct) / (lay.replicas if lay.rts else 1)
    mem = _streaming_seconds(ctx, chip=lay.chips[0][0], nbytes=built.teacher_bytes_streamed)
    est = own + teachers + coll + opt + mem + amortised
    return TrainingAnalytic(
        est,
        simulated,
        simulated / est - 1 if est > 0 else 0.0,
        "M x (F + B) + teachers' forward passes + group all-reduce (closed form) + update "
        "+ teachers streamed / min(DDR, route) bandwidth + checkpoint exchange / k (simulated); "
        "prediction exchanges left out",
        {
            "member_s": own,
            "teachers_s": teachers,
            "collective_s": coll,
            "optimizer_s": opt,
            "streaming_s": mem,
            "exchange_s": amortised,
        },
    )


def _streaming_seconds(ctx: PlanContext, chip: int, nbytes: float) -> float:
    """``nbytes`` from the chip's Streaming Memory over the slower of the DDR and the route."""
    system = ctx.system
    if not nbytes or system.streaming_memory is None:
        return 0.0
    route = system.route(f"ddr:{system.chips[chip].machine}", system.chips[chip].node)
    cap = min(system.channels[c].capacity_Bps for c in route.channels)
    return nbytes / min(cap, system.streaming_memory.bandwidth_Bps)


register(Ensemble())

__all__ = ["Ensemble", "EnsembleParams", "EnsembleResult", "member_chips"]
