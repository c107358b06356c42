"""Pipeline x data parallelism (``type: pipeline``); its special cases ``data`` and ``single``
are in :mod:`strategies.data`.

R replicas, each a pipeline of K stages on K chips, run M micro-batches per step (M is
``training.grad_accum``) in a GPipe, 1F1B or interleaved order; activations go forward and
gradients back over IPU-Links; then matching stages of the replicas all-reduce their
gradients (or reduce-scatter, update a shard, all-gather with replicated tensor sharding) and
each chip runs its optimizer update.

Identical replicas are not simulated one by one: replica 0's compute and transfers are
simulated, and the other replicas' chips take part in the gradient collectives, which start
when replica 0's stage finishes its backward passes. Replicas use disjoint chips and links for
their own pipelines, so this loses no contention; the collectives between replicas are
simulated in full, and they contend with each other where their rings share links.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Literal

from pydantic import Field

from simulator.config.base import NonNegativeInt, PositiveInt
from simulator.engine.graph import TaskGraph
from simulator.engine.replicas import Replication
from simulator.engine.tasks import ALGORITHMS, Sync, Transfer
from simulator.strategy import Plan, PlanContext, register
from simulator.workloads.model import Model
from strategies import placement
from strategies.moe.pipeline_experts import ExpertKeys
from strategies.pipeline_step import input_feed, step_end, weights_in
from strategies.schedule import Schedule, device_orders, in_flight
from strategies.tensor.keys import TensorKeys
from strategies.training import (
    StageCost,
    TrainingParams,
    add_phase,
    boundary_bytes,
    scenario_model,
    stage_cost,
    training_params,
)


class PipelineParams(TensorKeys, ExpertKeys):
    """Keys of ``strategy:`` for ``type: pipeline``."""

    stages: PositiveInt = Field(description="K: chips per replica, one pipeline stage each.")
    replicas: PositiveInt = Field(
        default=1, description="R: data-parallel replicas of the pipeline."
    )
    schedule: Literal["gpipe", "1f1b", "interleaved"] = Field(default="1f1b")
    chunks: PositiveInt = Field(
        default=1, description="Virtual stages per chip (interleaved only)."
    )
    placement: Literal["auto"] = Field(
        default="auto",
        description="Balance layers by FLOPs, unless "
        "layers_per_stage or attention_ffn_per_stage is given.",
    )
    layers_per_stage: list[NonNegativeInt] | None = Field(
        default=None,
        description="Repeated blocks (e.g. encoder layers) per stage; embedding on stage 0.",
    )
    attention_ffn_per_stage: list[list[NonNegativeInt]] | None = Field(
        default=None, description="[attention parts, FFN parts] per stage (MLPerf BERT configs)."
    )
    all_reduce: Literal[ALGORITHMS] = Field(  # type: ignore[valid-type]
        default="auto", description="Gradient all-reduce algorithm between matching stages."
    )
    replicated_tensor_sharding: bool = Field(
        default=False,
        description="Shard optimizer state over replicas: reduce-scatter, sharded "
        "update, all-gather.",
    )


@dataclass
class Layout:
    """Where everything goes: stage layers, chips per replica and stage.

    With tensor parallelism (``tensor`` = T > 1) a stage is a group of T chips:
    ``groups[r][k]`` lists them in rank order, ``chips[r][k]`` is its first (the chip whose
    compute is simulated, see :mod:`strategies.tensor`), and ``shard`` is the model's split
    (a :class:`strategies.tensor.shard.Sharded`) that builds the stage's passes.
    """

    stages: int
    replicas: int
    chunks: int
    schedule: Schedule
    vstage_layers: list[list[int]]  # layer indices per virtual stage
    chips: list[list[int]]  # chips[r][k]
    all_reduce: str = "auto"
    rts: bool = False
    warnings: list[str] = field(default_factory=list)
    tensor: int = 1
    groups: list[list[tuple[int, ...]]] | None = None
    shard: Any = None
    tensor_key: bool = False  # the strategy has strategy.tensor_parallel (for "would help")

    def chip_of_vstage(self, r: int, j: int) -> int:
        return self.chips[r][j % self.stages]

    def group(self, r: int, k: int) -> tuple[int, ...]:
        """The chips of replica ``r``'s stage ``k``: its tensor group (one chip without)."""
        return self.groups[r][k] if self.groups is not None else (self.chips[r][k],)

    def all_chips(self) -> tuple[int, ...]:
        """Every chip of every replica (the scope of the program's syncs)."""
        if self.groups is not None:
            return tuple(sorted(c for row in self.groups for grp in row for c in grp))
        return tuple(sorted(c for row in self.chips for c in row))


def replica_chips(ctx: PlanContext, stages: int, replicas: int, first: int = 0) -> list[list[int]]:
    """Chips of each replica: consecutive blocks of K chips, each ordered along IPU-Links
    (0, 1, 3, 2, 4, 5, 7, 6 … on a ladder) when that path exists, else in id order."""
    system = ctx.system
    out = []
    for r in range(replicas):
        block = list(range(first + r * stages, first + (r + 1) * stages))
        zig = [
            c
            for i in range(0, len(block), 2)
            for c in (block[i : i + 2] if (i // 2) % 2 == 0 else block[i : i + 2][::-1])
        ]
        ok = all(
            system.channel(system.chips[a].node, system.chips[b].node) is not None
            for a, b in pairwise(zig)
        )
        out.append(zig if ok else block)
    return out


def stage_layers(
    ctx: PlanContext, model: Model, p: PipelineParams, fail: placement.Fail | None = None
) -> list[list[int]]:
    """Layer indices of each virtual stage (K x chunks of them).

    ``fail(key_path, message)`` makes the InputError for bad input (default ``ctx.error``); a
    strategy that calls its stages something else (local learning's blocks) passes its own.
    """
    fail = fail or ctx.error
    v = p.chunks if p.schedule == "interleaved" else 1
    total = p.stages * v
    if p.layers_per_stage is not None and p.attention_ffn_per_stage is not None:
        raise fail(
            ("strategy", "layers_per_stage"),
            "give layers_per_stage or attention_ffn_per_stage, not both",
        )
    for key, given in (
        ("layers_per_stage", p.layers_per_stage),
        ("attention_ffn_per_stage", p.attention_ffn_per_stage),
    ):
        if given is not None and len(given) != total:
            raise fail(
                ("strategy", key),
                f"{len(given)} entries for {total} stages "
                f"(give one entry per stage{' and chunk' if v > 1 else ''})",
            )
    if p.attention_ffn_per_stage is not None:
        for i, pair in enumerate(p.attention_ffn_per_stage):
            if len(pair) != 2:
                raise fail(
                    ("strategy", "attention_ffn_per_stage", i),
                    f"each entry is [attention parts, ffn parts] (got {pair})",
                )
        layers = placement.by_part_counts(model, p.attention_ffn_per_stage, fail)
    elif p.layers_per_stage is not None:
        layers = placement.by_block_counts(model, p.layers_per_stage, fail)
    else:
        layers = placement.balanced(model, total, fail)
    for j, ls in enumerate(layers):
        if not ls:
            raise fail(
                ("strategy",), f"stage {j} would hold no layer; give every stage at least one layer"
            )
    return layers


def check_chips(ctx: PlanContext, stages: int, replicas: int, key: str, tensor: int = 1) -> None:
    """Stages x tensor x replicas must be the system's chips (invalid input otherwise)."""
    n = ctx.system.num_chips
    if tensor > 1 and stages * tensor * replicas != n:
        raise ctx.error(
            ("strategy", "tensor_parallel" if n % tensor else key),
            f"{stages} stage(s) x {tensor} tensor-parallel chips x {replicas} replica(s) = "
            f"{stages * tensor * replicas} chips, but {ctx.system.name} has {n}; choose them "
            f"so that the product is {n}",
        )
    if tensor == 1 and stages * replicas != n:
        divisors = [d for d in range(1, n + 1) if n % d == 0]
        raise ctx.error(
            ("strategy", key),
            f"{stages} stage(s) x {replicas} replica(s) = {stages * replicas} "
            f"chips, but {ctx.system.name} has {n}; choose them so that the product "
            f"is {n} (stages from {divisors})",
        )


@dataclass
class Built:
    """The graph and what summarising it needs."""

    graph: TaskGraph
    pipeline_tasks: set[int]
    costs: list[StageCost]  # per virtual stage
    transfer_bytes: list[float]  # per boundary between virtual stages
    chip_params: dict[int, int]


def build_graph(ctx: PlanContext, model: Model, tp: TrainingParams, lay: Layout) -> Built:
    """The task graph of one training step.

    With tensor parallelism ``model`` is the split model (each layer as one chip of a group
    holds it) and ``lay.shard`` builds each pass as segments joined by the group's collectives.
    """
    system = ctx.system
    g = TaskGraph()
    k, m = lay.stages, tp.grad_accum
    vstages = len(lay.vstage_layers)
    grads = model.needs_input_grad
    ct0 = system.chips[lay.chips[0][0]].type
    costs = (
        [
            stage_cost([model.layers[i] for i in ls], [grads[i] for i in ls], tp, ct0)
            for ls in lay.vstage_layers
        ]
        if lay.shard is None
        else lay.shard.stage_costs(model, tp, ct0)
    )
    ends = [max(i for i in ls if i < min(nxt)) for ls, nxt in pairwise(lay.vstage_layers)]
    xfer = [
        boundary_bytes(model.layers[i], tp) if lay.shard is None else lay.shard.boundary(i, tp)
        for i in ends
    ]
    passes = lay.shard.passes(ctx, model, tp, lay) if lay.shard is not None else None

    def run_pass(j: int, phase: Literal["F", "R", "B"], deps: list[int], label: str) -> int:
        """Virtual stage ``j``'s forward, recompute or backward pass: one phase on its chip,
        or, with a split layout, segments joined by the split's collectives."""
        if passes is not None:
            return passes.run(g, j, phase, deps, label)
        chip = lay.chip_of_vstage(0, j)
        c = costs[j]
        cost = c.forward if phase == "F" else c.recompute if phase == "R" else c.backward
        kind: Literal["compute", "recompute"] = "recompute" if phase == "R" else "compute"
        return add_phase(g, chip, cost, system.chips[chip].type, deps, label, kind=kind)

    orders = device_orders(lay.schedule, k, m, lay.chunks)
    scope = lay.all_chips()
    feed = input_feed(ctx, lay, model, tp)
    last_on_chip: dict[int, int] = {}
    fwd_out: dict[tuple[int, int], list[int]] = {}  # (micro-batch, vstage) -> what F waits on
    bwd_out: dict[tuple[int, int], list[int]] = {}
    pipeline_tasks: set[int] = set()
    pos = [0] * k
    remaining = sum(len(o) for o in orders)
    while remaining:
        progress = False
        for d in range(k):
            while pos[d] < len(orders[d]):
                kind, mb, j = orders[d][pos[d]]
                chip = lay.chip_of_vstage(0, j)
                deps = [last_on_chip[chip]] if chip in last_on_chip else []
                here = lay.group(0, j % k)
                if kind == "F":
                    if j > 0 and (mb, j - 1) not in fwd_out:
                        break
                    if j > 0:
                        deps.extend(fwd_out[(mb, j - 1)])
                    start = len(g)
                    if j == 0:
                        deps = feed.read(g, mb, deps)
                    label = f"F mb{mb} s{j}"
                    deps = weights_in(g, ctx, lay, j, costs[j], tp, deps, label)
                    done = run_pass(j, "F", deps, label)
                    out = [done]
                    if j < vstages - 1:
                        nxt = lay.group(0, (j + 1) % k)
                        if nxt != here:
                            out = _send(g, here, nxt, xfer[j], scope, f"act mb{mb} s{j}", done)
                    fwd_out[(mb, j)] = out
                else:
                    if j < vstages - 1 and (mb, j + 1) not in bwd_out:
                        break
                    if j < vstages - 1:
                        deps.extend(bwd_out[(mb, j + 1)])
                    start = len(g)
                    dl = deps
                    if costs[j].recompute.flops or costs[j].recompute.compute_s:
                        label = f"R mb{mb} s{j}"
                        dl = weights_in(g, ctx, lay, j, costs[j], tp, dl, label)
                        done = run_pass(j, "R", dl, label)
                        dl = [done]
                    label = f"B mb{mb} s{j}"
                    dl = weights_in(g, ctx, lay, j, costs[j], tp, dl, label)
                    done = run_pass(j, "B", dl, label)
                    out = [done]
                    if j > 0:
                        prv = lay.group(0, (j - 1) % k)
                        if prv != here:
                            out = _send(g, here, prv, xfer[j - 1], scope, f"grad mb{mb} s{j}", done)
                    bwd_out[(mb, j)] = out
                pipeline_tasks.update(range(start, len(g)))
                last_on_chip[chip] = done
                pos[d] += 1
                remaining -= 1
                progress = True
        if not progress:
            raise RuntimeError("pipeline schedule deadlocked (a bug in the schedule)")
    chip_params: dict[int, int] = {}
    for j, c in enumerate(costs):
        chip = lay.chip_of_vstage(0, j)
        chip_params[chip] = chip_params.get(chip, 0) + c.params
    step_end(ctx, g, tp, lay, costs, last_on_chip, feed.pending())
    return Built(g, pipeline_tasks, costs, xfer, chip_params)


def _send(
    g: TaskGraph,
    src: tuple[int, ...],
    dst: tuple[int, ...],
    nbytes: float,
    scope: tuple[int, ...],
    label: str,
    dep: int,
) -> list[int]:
    """A pipeline boundary: the sending chip syncs with the whole program (every replica runs
    the same schedule and syncs with it: ASSUMPTION SYNC-REPLICAS-TOGETHER, Poplar's default of
    syncing replicas together), then the bytes cross to the next stage's chip — with tensor
    parallelism, from each chip of the sending group to the chip of the same rank in the next
    (``nbytes`` each: what one chip holds of the boundary tensor)."""
    sync = g.add(Sync((src[0],), label=f"sync {label}", across=scope), [dep])
    pairs = zip(src, dst, strict=True)
    return [g.add(Transfer(a, b, nbytes, label=label), [sync]) for a, b in pairs]


def plan_layout(
    ctx: PlanContext, lay: Layout, model: Model | None = None, *, copies: int = 1
) -> Plan:
    """Check memory, build the graph, and pack what the summary needs into a Plan.

    ``copies``: independent copies of the whole layout that the step's samples count (an
    ensemble's members); 1 for a plain pipeline."""
    from strategies.summary import infeasible_plan, memory_plans

    model = model if model is not None else scenario_model(ctx)
    tp = training_params(ctx)
    expected = tp.micro_batch * tp.grad_accum * lay.replicas * tp.samples_per_input * copies
    if tp.global_batch is not None and abs(tp.global_batch - expected) > 1e-9:
        raise ctx.error(
            ("training", "global_batch"),
            f"global_batch {tp.global_batch} != micro_batch {tp.micro_batch} x "
            f"grad_accum {tp.grad_accum} x replicas {lay.replicas} x "
            f"samples_per_input {tp.samples_per_input:g}"
            + (f" x members {copies}" if copies > 1 else "")
            + f" = {expected:g}; change one of them so they agree",
        )
    if lay.schedule == "interleaved" and tp.grad_accum % lay.stages:
        raise ctx.error(
            ("training", "grad_accum"),
            f"the interleaved schedule needs micro-batches ({tp.grad_accum}) to be a "
            f"multiple of the stages ({lay.stages})",
        )
    full = model  # with tensor parallelism, the layers one chip of a group holds:
    model = lay.shard.model if lay.shard is not None else model
    plans = memory_plans(ctx, model, tp, lay)
    if lay.shard is not None:
        plans = lay.shard.memory(plans, tp)
    info = {
        "model": full,
        "training": tp,
        "layout": lay,
        "memory": plans,
        "global_batch": expected,
    }
    bad = [(chip, p) for chip, p in plans.items() if not p.fits]
    if bad:
        extra: list[str] = []
        if lay.tensor_key:
            from strategies.tensor.advice import would_help

            extra = would_help(ctx, full, tp, lay, bad)
        return infeasible_plan(info, bad, extra)
    built = build_graph(ctx, model, tp, lay)
    info["built"] = built
    info["pipeline_tasks"] = (
        built.pipeline_tasks if lay.shard is None else lay.shard.path_tasks(built)
    )
    return Plan(built.graph, info, replication=Replication.of_rows(lay.chips))


def split_check(ctx: PlanContext, tensor: int, mode: str) -> Model | None:
    """With tensor parallelism, the scenario's model once it is known to split T ways (a bad
    split is reported before the chip count, being the more basic fault); None at T = 1."""
    if tensor == 1:
        return None
    from strategies.tensor.shard import check

    model = scenario_model(ctx)
    check(model, tensor, mode, ctx.error)  # type: ignore[arg-type]
    return model


class Pipeline:
    name = "pipeline"
    params = PipelineParams

    def plan(self, ctx: PlanContext) -> Plan:
        p: PipelineParams = ctx.params  # type: ignore[assignment]
        t = p.tensor_parallel
        model = split_check(ctx, t, p.tensor_collective)
        check_chips(ctx, p.stages, p.replicas, "stages", t)
        if p.chunks > 1 and p.schedule != "interleaved":
            raise ctx.error(
                ("strategy", "chunks"),
                f"chunks {p.chunks} needs schedule interleaved (or set chunks: 1)",
            )
        model = model or scenario_model(ctx)
        lay = Layout(
            p.stages,
            p.replicas,
            p.chunks if p.schedule == "interleaved" else 1,
            p.schedule,
            stage_layers(ctx, model, p),
            replica_chips(ctx, p.stages, p.replicas) if t == 1 else [],
            p.all_reduce,
            p.replicated_tensor_sharding,
            tensor_key=True,
        )
        if t > 1:
            from strategies.tensor import split_layout

            lay = split_layout(ctx, lay, model, t, p.tensor_collective)
        if p.expert_parallel:
            from strategies.moe.pipeline_experts import split_experts

            lay = split_experts(ctx, lay, model, training_params(ctx), p.capacity_factor)
        elif "capacity_factor" in p.model_fields_set:
            raise ctx.error(
                ("strategy", "capacity_factor"), "capacity_factor needs expert_parallel: true"
            )
        return plan_layout(ctx, lay, model)

    def summarise(self, ctx, plan, trace):  # type: ignore[no-untyped-def]
        from strategies.summary import summarise

        return summarise(ctx, plan, trace, self.name)


register(Pipeline())

__all__ = ["Layout", "Pipeline", "in_flight"]
