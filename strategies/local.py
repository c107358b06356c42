"""Local parallelism (``type: local``): K blocks with auxiliary heads and local losses.

The network is cut into K blocks placed like pipeline stages (the pipeline's placement:
balanced by FLOPs, or ``layers_per_block``), one chip each, R replicas of that chain
(Laskin et al. 2020; Belilovsky et al. 2019). Every block but the last ends in an
*auxiliary head* — a small classifier sized from the block's output (:func:`aux_head`),
written as model layers so the tile cost model prices it like any other layer — and trains
on its own local loss. The last block keeps the network's own output and loss.

Per micro-batch, block d's chip runs

* ``F``: the block's forward pass; its output (the activations block d+1 starts from) is sent
  forward over IPU-Links, exactly as in the pipeline;
* ``H``: the auxiliary head's forward and backward pass (the local loss itself is not costed,
  as no strategy costs its loss: docs/reference_runs.md);
* ``B``: the block's backward pass, input gradients only inside the block: the first layer
  with weights computes none, because **no gradient crosses a block boundary**.

So a chip never waits for a later chip: there is no backward locking and no pipeline flush.
After its M micro-batches a chip all-reduces its gradients with its replicas (R > 1) and
updates its weights, then starts the next step at once, while later chips are still finishing
the previous one. Two consecutive steps are simulated; the step time is the difference of
their end times — the steady state, limited by the slowest block (and its links), not by the
fill and drain that a synchronous pipeline pays on every step. The first step's end (from an
idle system, fill included) is reported as ``first_step_s``.

``variant: overlapping`` (Laskin et al.'s overlapping local updates): block d also computes
the last ``overlap`` placement units of block d-1 (a copy of those layers), so those layers
get gradients from two local losses. Each chip computes the shared layers' forward and
backward again (costed), and at the end of a step the two neighbours swap their gradients of
the shared layers (one Transfer each way, the layers' parameters in the compute dtype), add
them (a vector add, costed) and apply the same sum, so the two copies stay identical. That
swap is the only gradient crossing a block boundary, once per step, and it makes a chip's
update wait for its right-hand neighbour's last backward pass of the step.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from simulator.config import workload as spec
from simulator.config.base import NonNegativeInt, PositiveInt, StrictModel
from simulator.engine.graph import TaskGraph
from simulator.engine.replicas import Replication
from simulator.engine.tasks import ALGORITHMS, Transfer
from simulator.engine.trace import Trace
from simulator.hardware.model import ChipType
from simulator.metrics import EngineStats, TrainingAnalytic, TrainingResult
from simulator.strategy import Plan, PlanContext, register
from simulator.workloads import layers as L
from simulator.workloads.memory import MemoryPlan
from simulator.workloads.model import Model
from strategies import placement
from strategies.pipeline import Layout, PipelineParams, replica_chips, stage_layers
from strategies.pipeline_step import input_feed, step_end
from strategies.summary import (
    _all_chips_memory,
    chip_breakdown,
    gradient_collective_estimate,
    infeasible_plan,
    result_fields,
)
from strategies.training import (
    ZERO,
    PhaseCost,
    StageCost,
    TrainingParams,
    add_phase,
    boundary_bytes,
    gradient_bytes,
    scenario_model,
    stage_cost,
    stage_memory,
    training_params,
)

#: Steps simulated back to back; the step time is the difference of the last two end times.
SIMULATED_STEPS = 2


class LocalParams(StrictModel):
    """Keys of ``strategy:`` for ``type: local``."""

    blocks: PositiveInt = Field(description="K: blocks per replica, one chip each.")
    replicas: PositiveInt = Field(1, description="R: data-parallel replicas of the chain.")
    variant: Literal["greedy", "overlapping"] = Field(
        "greedy",
        description="greedy: disjoint blocks; overlapping: each block also computes the last "
        "`overlap` units of the previous block (shared layers, trained by both losses).",
    )
    overlap: PositiveInt = Field(
        1, description="Placement units (layers or named blocks) shared by neighbours."
    )
    layers_per_block: list[NonNegativeInt] | None = Field(
        None,
        description="Repeated blocks (e.g. encoder layers) per block; default: balanced by FLOPs.",
    )
    aux_classes: PositiveInt | None = Field(
        None,
        description="Outputs of each auxiliary head (default: the width of the model's output).",
    )
    all_reduce: Literal[ALGORITHMS] = Field(  # type: ignore[valid-type]
        "auto", description="Gradient all-reduce algorithm between replicas of a block."
    )
    replicated_tensor_sharding: bool = Field(False)


# ---- the blocks -----------------------------------------------------------------------------
def _layer(name: str, kind: str, shape: tuple[int, ...], cost: L.Cost) -> L.Layer:
    return L.Layer.from_cost(name, kind, name, shape, cost)


def aux_head(
    shape: tuple[int, ...], final: tuple[int, ...], classes: int, name: str
) -> tuple[L.Layer, ...]:
    """The auxiliary head on a block output of per-sample ``shape``, as layers.

    It reduces the output to the rank of the network's output ``final`` and projects it onto
    ``classes``: images (C, H, W) -> global average pool + dense; sequences (S, H) -> the BERT
    pooler (dense + tanh on the first token) + dense when the network outputs a vector, a
    per-token dense (no bias) when it outputs per-token scores (a language-model head);
    vectors -> dense. Raises ValueError for shapes it cannot reduce.
    """
    layers: list[L.Layer] = []
    if len(shape) == 3 and len(final) == 1:
        cost = L.global_pool(spec.GlobalPoolSpec(), shape)
        layers.append(_layer(f"{name}.pool", "global_pool", shape, cost))
        shape = cost.output_shape
    elif len(shape) == 2 and len(final) == 1:
        cost = L.pooler(spec.PoolerSpec(), shape)
        layers.append(_layer(f"{name}.pooler", "pooler", shape, cost))
        shape = cost.output_shape
    elif not (len(shape) == len(final) and len(shape) in (1, 2)):
        raise ValueError(
            f"no auxiliary head for a block output of shape {list(shape)} when the network "
            f"outputs {list(final)}"
        )
    bias = len(shape) == 1
    cost = L.dense(spec.DenseSpec(out=classes, bias=bias), shape)
    layers.append(_layer(f"{name}.dense", "dense", shape, cost))
    return tuple(layers)


def local_input_grads(layers: Sequence[L.Layer]) -> list[bool]:
    """Per layer of one block: is its input gradient computed? Only after a layer with
    weights *in the same block* — nothing flows back into the previous block."""
    flags, seen = [], False
    for layer in layers:
        flags.append(seen)
        seen = seen or layer.params > 0
    return flags


@dataclass(frozen=True)
class Block:
    """One block: its model layers (shared copies first), the head, what it receives."""

    layers: tuple[int, ...]  # model layer indices the block computes
    shared: int  # how many of them are copies of the previous block's last layers
    head: tuple[L.Layer, ...]  # auxiliary head (empty for the last block)
    receives: int | None  # model layer whose output the block starts from (None: the input)

    def all_layers(self, model: Model) -> list[L.Layer]:
        """The block's layers, then its head's."""
        return [model.layers[i] for i in self.layers] + list(self.head)


def _renamed(ctx: PlanContext) -> placement.Fail:
    """``ctx.error`` that speaks of blocks where the pipeline placement speaks of stages."""
    keys = {"stages": "blocks", "layers_per_stage": "layers_per_block"}

    def fail(path: tuple[str | int, ...], message: str) -> Exception:
        renamed = tuple(keys.get(p, p) if isinstance(p, str) else p for p in path)
        text = re.sub(r"\bstage(s?)\b", r"block\1", message.replace("layers_per_stage", "blocks"))
        return ctx.error(renamed, text)

    return fail


def plan_blocks(ctx: PlanContext, model: Model, p: LocalParams) -> list[Block]:
    """Place the blocks (the pipeline's placement), add overlaps and auxiliary heads."""
    pp = PipelineParams(stages=p.blocks, layers_per_stage=p.layers_per_block)
    own = stage_layers(ctx, model, pp, fail=_renamed(ctx))
    unit_of = {i: u for u, members in enumerate(placement.units(model)) for i in members}
    overlapping = p.variant == "overlapping"
    if "overlap" in p.model_fields_set and not overlapping:
        raise ctx.error(("strategy", "overlap"), "overlap needs variant: overlapping")
    final = model.layers[-1].output_shape
    classes = p.aux_classes or final[-1]
    blocks = []
    for d, ls in enumerate(own):
        shared: list[int] = []
        if overlapping and d > 0:
            prev_units = sorted({unit_of[i] for i in own[d - 1]})
            if p.overlap >= len(prev_units):
                raise ctx.error(
                    ("strategy", "overlap"),
                    f"overlap {p.overlap} would share all of block {d - 1}'s "
                    f"{len(prev_units)} placement unit(s); choose at most {len(prev_units) - 1} "
                    "or fewer blocks",
                )
            keep = set(prev_units[-p.overlap :])
            shared = [i for i in own[d - 1] if unit_of[i] in keep]
        layers = (*shared, *ls)
        head: tuple[L.Layer, ...] = ()
        if d < p.blocks - 1:
            try:
                head = aux_head(model.layers[ls[-1]].output_shape, final, classes, f"aux{d}")
            except ValueError as exc:
                raise ctx.error(("strategy", "blocks"), str(exc)) from None
        receives = layers[0] - 1 if layers[0] > 0 else None
        blocks.append(Block(layers, len(shared), head, receives))
    return blocks


# ---- costs ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class BlockCost:
    """Per micro-batch phases of one block, and its per-step update."""

    forward: PhaseCost  # F: the block's layers
    recompute: PhaseCost  # the block's forward again before B (checkpointing)
    head: PhaseCost  # H: auxiliary head forward + backward
    backward: PhaseCost  # B: the block's backward (local input gradients only)
    stage: StageCost  # block + head: parameters and the optimizer update (for step_end)
    shared_params: int  # parameters of the shared copies (overlapping)
    shared_sum: PhaseCost  # adding the neighbour's gradient of the shared layers
    head_flops: float  # H's FLOPs per micro-batch
    shared_flops: float  # forward + backward FLOPs of the shared copies per micro-batch


def _sum_cost(elems: int, tp: TrainingParams, ct: ChipType) -> PhaseCost:
    """A vector add of ``elems`` gradient elements, priced as an ``add`` layer."""
    if elems == 0:
        return ZERO
    add = _layer("shared_grad_sum", "add", (elems,), L.add((elems,)))
    one = TrainingParams(micro_batch=1, dtype=tp.dtype, compute_scale=tp.compute_scale)
    return stage_cost([add], [False], one, ct).forward


def block_cost(
    model: Model, block: Block, neighbour_shared: int, tp: TrainingParams, ct: ChipType
) -> BlockCost:
    """Cost ``block`` on chip type ``ct``; ``neighbour_shared``: parameters it shares with the
    next block (their gradients are added too)."""
    layers = [model.layers[i] for i in block.layers]
    grads = local_input_grads(layers)
    own = stage_cost(layers, grads, tp, ct)
    head = stage_cost(block.head, [True] * len(block.head), tp, ct) if block.head else None
    everything = block.all_layers(model)
    whole = stage_cost(everything, local_input_grads(everything), tp, ct)
    shared_layers = layers[: block.shared]
    shared_flops = 0.0
    if shared_layers:
        part = stage_cost(shared_layers, grads[: block.shared], tp, ct)
        shared_flops = part.useful_flops
    shared_params = sum(x.params for x in shared_layers)
    head_phase = ZERO if head is None else head.forward + head.backward
    return BlockCost(
        forward=own.forward,
        recompute=own.recompute,
        head=head_phase,
        backward=own.backward,
        stage=whole,
        shared_params=shared_params,
        shared_sum=_sum_cost(shared_params + neighbour_shared, tp, ct),
        head_flops=head_phase.flops,
        shared_flops=shared_flops,
    )


# ---- the graph ------------------------------------------------------------------------------
@dataclass
class LocalBuilt:
    """The graph and what summarising it needs."""

    graph: TaskGraph
    steps: list[set[int]]  # task ids of each simulated step
    costs: list[BlockCost]
    transfer_bytes: list[float]  # activations per micro-batch into block d+1
    shared_bytes: list[float]  # shared-layer gradient bytes swapped between d and d+1
    chip_params: dict[int, int] = field(default_factory=dict)


def build_graph(
    ctx: PlanContext,
    model: Model,
    tp: TrainingParams,
    lay: Layout,
    blocks: Sequence[Block],
    costs: Sequence[BlockCost],
) -> LocalBuilt:
    """SIMULATED_STEPS steps of replica 0's chain (the other replicas join the collectives)."""
    g = TaskGraph()
    k, m = lay.stages, tp.grad_accum
    chips = lay.chips[0]
    cts = [ctx.system.chips[c].type for c in chips]
    xfer = [boundary_bytes(model.layers[b.receives], tp) for b in blocks[1:]]  # type: ignore[index]
    shared = [gradient_bytes(b.shared_params, tp) for b in costs[1:]]
    last: dict[int, int] = {}
    steps: list[set[int]] = []
    feed = input_feed(ctx, lay, model, tp)
    for s in range(SIMULATED_STEPS):
        first = len(g)
        arrived: dict[tuple[int, int], int] = {}  # (block, micro-batch) -> activation transfer
        for d, chip in enumerate(chips):
            c, ct = costs[d], cts[d]
            for mb in range(m):
                deps = [last[chip]] if chip in last else []
                if d > 0:
                    deps.append(arrived[(d, mb)])
                else:
                    deps = feed.read(g, s * m + mb, deps)
                tag = f"mb{mb} s{d} step{s}"
                done = add_phase(g, chip, c.forward, ct, deps, f"F {tag}")
                if d < k - 1:
                    arrived[(d + 1, mb)] = g.add(
                        Transfer(chip, chips[d + 1], xfer[d], label=f"act {tag}"), [done]
                    )
                if c.head.flops or c.head.compute_s:
                    done = add_phase(g, chip, c.head, ct, [done], f"H {tag}")
                if c.recompute.flops or c.recompute.compute_s:
                    done = add_phase(g, chip, c.recompute, ct, [done], f"R {tag}", "recompute")
                last[chip] = add_phase(g, chip, c.backward, ct, [done], f"B {tag}")
        _swap_shared(g, chips, cts, costs, shared, last, s)
        ends = step_end(ctx, g, tp, lay, [c.stage for c in costs], last, feed.pending())
        last = {chip: ends[chip] for chip in chips}
        steps.append(set(range(first, len(g))))
    chip_params = {chip: costs[d].stage.params for d, chip in enumerate(chips)}
    return LocalBuilt(g, steps, list(costs), xfer, shared, chip_params)


def _swap_shared(
    g: TaskGraph,
    chips: Sequence[int],
    cts: Sequence[ChipType],
    costs: Sequence[BlockCost],
    shared: Sequence[float],
    last: dict[int, int],
    step: int,
) -> None:
    """Overlapping: neighbours swap the shared layers' gradients and add them (in place)."""
    incoming: dict[int, list[int]] = {chip: [] for chip in chips}
    for d, nbytes in enumerate(shared):
        if nbytes <= 0:
            continue
        a, b = chips[d], chips[d + 1]
        incoming[a].append(
            g.add(Transfer(b, a, nbytes, label=f"shared b{d + 1} step{step}"), [last[b]])
        )
        incoming[b].append(
            g.add(Transfer(a, b, nbytes, label=f"shared b{d} step{step}"), [last[a]])
        )
    for d, chip in enumerate(chips):
        if incoming[chip]:
            last[chip] = add_phase(
                g,
                chip,
                costs[d].shared_sum,
                cts[d],
                [last[chip], *incoming[chip]],
                f"shared sum b{d} step{step}",
                kind="optimizer",
            )


# ---- planning -------------------------------------------------------------------------------
def _memory(
    ctx: PlanContext, model: Model, tp: TrainingParams, lay: Layout, blocks: Sequence[Block]
) -> dict[int, MemoryPlan]:
    """SRAM of each chip of replica 0: block and head layers, one micro-batch in flight."""
    return {
        chip: stage_memory(
            b.all_layers(model),
            tp,
            ctx.system.chips[chip].type,
            in_flight=1,
            rts_factor=lay.replicas if lay.rts else 1,
            micro_batches=tp.grad_accum,
        )
        for chip, b in zip(lay.chips[0], blocks, strict=True)
    }


class Local:
    """The ``local`` strategy."""

    name = "local"
    params = LocalParams

    def plan(self, ctx: PlanContext) -> Plan:
        p: LocalParams = ctx.params  # type: ignore[assignment]
        n = ctx.system.num_chips
        if p.blocks * p.replicas != n:
            divisors = [x for x in range(1, n + 1) if n % x == 0]
            raise ctx.error(
                ("strategy", "blocks"),
                f"{p.blocks} block(s) x {p.replicas} replica(s) = {p.blocks * p.replicas} chips, "
                f"but {ctx.system.name} has {n}; make the product {n} (blocks from {divisors})",
            )
        model = scenario_model(ctx)
        tp = training_params(ctx)
        blocks = plan_blocks(ctx, model, p)
        expected = tp.micro_batch * tp.grad_accum * p.replicas * tp.samples_per_input
        if tp.global_batch is not None and abs(tp.global_batch - expected) > 1e-9:
            raise ctx.error(
                ("training", "global_batch"),
                f"global_batch {tp.global_batch} != micro_batch {tp.micro_batch} x grad_accum "
                f"{tp.grad_accum} x replicas {p.replicas} x samples_per_input "
                f"{tp.samples_per_input:g} = {expected:g}; change one of them so they agree",
            )
        lay = Layout(
            p.blocks,
            p.replicas,
            1,
            "1f1b",
            [list(b.layers) for b in blocks],
            replica_chips(ctx, p.blocks, p.replicas),
            p.all_reduce,
            p.replicated_tensor_sharding,
        )
        plans = _memory(ctx, model, tp, lay, blocks)
        info: dict[str, Any] = {
            "model": model,
            "training": tp,
            "layout": lay,
            "memory": plans,
            "global_batch": expected,
            "params": p,
            "blocks": blocks,
        }
        bad = [(chip, mp) for chip, mp in plans.items() if not mp.fits]
        if bad:
            return infeasible_plan(info, bad)
        chips = lay.chips[0]
        costs = [
            block_cost(
                model,
                b,
                _params(model, blocks[d + 1]) if d + 1 < len(blocks) else 0,
                tp,
                ctx.system.chips[chips[d]].type,
            )
            for d, b in enumerate(blocks)
        ]
        built = build_graph(ctx, model, tp, lay, blocks, costs)
        info["built"] = built
        return Plan(built.graph, info, replication=Replication.of_rows(lay.chips))

    def summarise(self, ctx: PlanContext, plan: Plan, trace: Trace | None) -> LocalResult:
        return summarise(ctx, plan, trace)


def _params(model: Model, block: Block) -> int:
    """Parameters of ``block``'s shared copies."""
    return sum(model.layers[i].params for i in block.layers[: block.shared])


# ---- results --------------------------------------------------------------------------------
@dataclass(frozen=True)
class LocalResult(TrainingResult):
    """TrainingResult plus what local learning adds (docs/strategies/local.md).

    ``step_time_s`` is the steady state (end of step 2 minus end of step 1);
    ``first_step_s`` the first step from an idle system (fill included).
    """

    variant: str | None = None
    overlap: int = 0
    first_step_s: float | None = None
    block_layers: list[list[str]] = field(default_factory=list)
    block_seconds: list[float] = field(default_factory=list)  # F + H + (R) + B per micro-batch
    aux_head_flops_fraction: float | None = None  # head FLOPs / all FLOPs per step
    shared_flops_fraction: float | None = None  # shared copies' FLOPs / all FLOPs per step
    activation_bytes: list[float] = field(default_factory=list)  # per micro-batch, per boundary
    shared_gradient_bytes: list[float] = field(default_factory=list)  # per step, each way

    def text(self) -> str:
        """TrainingResult's summary plus the local-learning lines."""
        lines = super().text().split("\n")
        if self.feasible and self.first_step_s is not None:
            at = next(i for i, line in enumerate(lines) if line.startswith("  throughput"))
            lines.insert(
                at + 1,
                f"  local           {self.variant}, {self.stages} blocks"
                + (f", overlap {self.overlap}" if self.overlap else "")
                + f"; first step {self.first_step_s * 1e3:,.3f} ms (fill), steady state above; "
                f"aux heads {self.aux_head_flops_fraction:.1%} of FLOPs",
            )
        return "\n".join(lines)


def summarise(ctx: PlanContext, plan: Plan, trace: Trace | None) -> LocalResult:
    """LocalResult of a plan and its trace (formulas in docs/strategies/local.md)."""
    info = plan.info
    lay: Layout = info["layout"]
    tp: TrainingParams = info["training"]
    model: Model = info["model"]
    p: LocalParams = info["params"]
    blocks: list[Block] = info["blocks"]
    common: dict[str, Any] = dict(
        **result_fields(
            ctx,
            "local",
            model.name,
            tp,
            chips=lay.stages * lay.replicas,
            stages=lay.stages,
            replicas=lay.replicas,
            schedule=None,
            global_batch=info["global_batch"],
            memory=_all_chips_memory(plan),
            warnings=list(lay.warnings),
        ),
        variant=p.variant,
        overlap=p.overlap if p.variant == "overlapping" else 0,
        block_layers=[[model.layers[i].name for i in b.layers] for b in blocks],
    )
    if not plan.feasible or trace is None:
        return LocalResult(
            feasible=False,
            reason=plan.reason,
            step_time_s=None,
            throughput_samples_per_s=None,
            **common,
        )
    built: LocalBuilt = info["built"]
    ends = [max(trace.task_end[t] for t in ids) for ids in built.steps]
    step = ends[-1] - ends[-2]
    twins = {
        lay.chips[r][d]: lay.chips[0][d] for r in range(lay.replicas) for d in range(lay.stages)
    }
    breakdown, mean = chip_breakdown(ctx, trace, twins, step, steps=SIMULATED_STEPS)
    ct = ctx.system.chips[lay.chips[0][0]].type
    m = tp.grad_accum
    per_block = [(c.forward + c.head + c.recompute + c.backward).seconds(ct) for c in built.costs]
    work = sum(c.stage.useful_flops + c.recompute.flops for c in built.costs)
    head = sum(c.head_flops for c in built.costs)
    shared = sum(c.shared_flops for c in built.costs)
    peak = sum(ctx.system.chips[c].type.peak_flops(tp.dtype) for row in lay.chips for c in row)
    return LocalResult(
        feasible=True,
        reason=None,
        step_time_s=step,
        throughput_samples_per_s=info["global_batch"] / step if step > 0 else None,
        flop_utilisation=work * m * lay.replicas / (step * peak) if step > 0 else None,
        breakdown=breakdown,
        breakdown_mean=mean,
        analytic=_analytic(ctx, plan, per_block, step),
        engine=EngineStats.of(trace, len(plan.graph)),
        first_step_s=ends[0],
        block_seconds=per_block,
        aux_head_flops_fraction=head / work if work else 0.0,
        shared_flops_fraction=shared / work if work else 0.0,
        activation_bytes=list(built.transfer_bytes),
        shared_gradient_bytes=list(built.shared_bytes),
        **common,
    )


def _analytic(
    ctx: PlanContext, plan: Plan, per_block: Sequence[float], simulated: float
) -> TrainingAnalytic:
    """Steady state: the busiest chip's M x (F + H + B) + gradient collective + its update."""
    info = plan.info
    lay: Layout = info["layout"]
    tp: TrainingParams = info["training"]
    built: LocalBuilt = info["built"]
    ct = ctx.system.chips[lay.chips[0][0]].type
    m = tp.grad_accum
    chip_s = [
        m * s
        + c.stage.optimizer.seconds(ct) / (lay.replicas if lay.rts else 1)
        + c.shared_sum.seconds(ct)
        for s, c in zip(per_block, built.costs, strict=True)
    ]
    coll = gradient_collective_estimate(ctx, lay, built.chip_params, tp)
    est = max(chip_s) + coll
    return TrainingAnalytic(
        est,
        simulated,
        simulated / est - 1 if est > 0 else 0.0,
        "max over blocks of M x (F + H + R + B) + update (+ shared-gradient sum) "
        "+ largest gradient collective (closed form); links and neighbour waits left out",
        {"slowest_block_s": max(chip_s), "collective_s": coll, "blocks": float(len(chip_s))},
    )


register(Local())

__all__ = ["Block", "BlockCost", "Local", "LocalParams", "LocalResult", "aux_head", "plan_blocks"]
