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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Literal

from pydantic import Field

from simulator.config.base import NonNegativeInt, PositiveInt, StrictModel
from simulator.engine.collectives import ring_order
from simulator.engine.graph import TaskGraph
from simulator.engine.replicas import Replication
from simulator.engine.tasks import (
    ALGORITHMS,
    Collective,
    CollectiveKind,
    MemLoad,
    MemStore,
    Sync,
    Transfer,
)
from simulator.strategy import Plan, PlanContext, register
from simulator.workloads.cost import LAYERWISE_OPTIMIZERS
from simulator.workloads.layers import DTYPE_BYTES
from simulator.workloads.model import Model
from strategies import placement
from strategies.schedule import Schedule, device_orders, in_flight
from strategies.sparse import hooks as sparse_hooks
from strategies.training import (
    InputFeed,
    StageCost,
    TrainingParams,
    add_phase,
    boundary_bytes,
    end_step_on_hosts,
    gradient_bytes,
    scenario_model,
    stage_cost,
    training_params,
)


class PipelineParams(StrictModel):
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
    """Where everything goes: stage layers, chips per replica and stage."""

    stages: int
    replicas: int
    chunks: int
    schedule: Schedule
    vstage_layers: list[list[int]]  # layer indices per virtual stage
    chips: list[list[int]]  # chips[r][k]
    all_reduce: str = "auto"
    rts: bool = False
    warnings: list[str] = field(default_factory=list)

    def chip_of_vstage(self, r: int, j: int) -> int:
        return self.chips[r][j % self.stages]

    def all_chips(self) -> tuple[int, ...]:
        """Every chip of every replica (the scope of the program's syncs)."""
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


def check_chips(ctx: PlanContext, stages: int, replicas: int, key: str) -> None:
    """Stages x replicas must be the system's chips (invalid input otherwise)."""
    n = ctx.system.num_chips
    if stages * replicas != n:
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
    """The task graph of one training step."""
    system = ctx.system
    g = TaskGraph()
    k, m = lay.stages, tp.grad_accum
    vstages = len(lay.vstage_layers)
    grads = model.needs_input_grad
    ct0 = system.chips[lay.chips[0][0]].type
    costs = [
        stage_cost([model.layers[i] for i in ls], [grads[i] for i in ls], tp, ct0)
        for ls in lay.vstage_layers
    ]
    xfer = [
        boundary_bytes(model.layers[max(i for i in ls if i < min(nxt))], tp)
        for ls, nxt in pairwise(lay.vstage_layers)
    ]
    orders = device_orders(lay.schedule, k, m, lay.chunks)
    scope = lay.all_chips()
    feed = input_feed(ctx, lay, model, tp)
    last_on_chip: dict[int, int] = {}
    fwd_out: dict[tuple[int, int], int] = {}  # (micro-batch, vstage) -> task the next F waits on
    bwd_out: dict[tuple[int, int], int] = {}
    pipeline_tasks: set[int] = set()
    pos = [0] * k
    remaining = sum(len(o) for o in orders)
    while remaining:
        progress = False
        for d in range(k):
            while pos[d] < len(orders[d]):
                kind, mb, j = orders[d][pos[d]]
                chip = lay.chip_of_vstage(0, j)
                ct = system.chips[chip].type
                deps = [last_on_chip[chip]] if chip in last_on_chip else []
                if kind == "F":
                    if j > 0 and (mb, j - 1) not in fwd_out:
                        break
                    if j > 0:
                        deps.append(fwd_out[(mb, j - 1)])
                    start = len(g)
                    if j == 0:
                        deps = feed.read(g, mb, deps)
                    deps = _weights_in(g, ctx, lay, j, costs[j], tp, deps, f"F mb{mb} s{j}")
                    done = add_phase(g, chip, costs[j].forward, ct, deps, f"F mb{mb} s{j}")
                    out = done
                    if j < vstages - 1:
                        nxt = lay.chip_of_vstage(0, j + 1)
                        if nxt != chip:
                            out = _send(g, chip, nxt, xfer[j], scope, f"act mb{mb} s{j}", done)
                    fwd_out[(mb, j)] = out
                else:
                    if j < vstages - 1 and (mb, j + 1) not in bwd_out:
                        break
                    if j < vstages - 1:
                        deps.append(bwd_out[(mb, j + 1)])
                    start = len(g)
                    dl = deps
                    if costs[j].recompute.flops or costs[j].recompute.compute_s:
                        dl = _weights_in(g, ctx, lay, j, costs[j], tp, dl, f"R mb{mb} s{j}")
                        done = add_phase(
                            g, chip, costs[j].recompute, ct, dl, f"R mb{mb} s{j}", kind="recompute"
                        )
                        dl = [done]
                    dl = _weights_in(g, ctx, lay, j, costs[j], tp, dl, f"B mb{mb} s{j}")
                    done = add_phase(g, chip, costs[j].backward, ct, dl, f"B mb{mb} s{j}")
                    out = done
                    if j > 0:
                        prv = lay.chip_of_vstage(0, j - 1)
                        if prv != chip:
                            out = _send(g, chip, prv, xfer[j - 1], scope, f"grad mb{mb} s{j}", done)
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
    g: TaskGraph, src: int, dst: int, nbytes: float, scope: tuple[int, ...], label: str, dep: int
) -> int:
    """A pipeline boundary: the sending chip syncs with the whole program (every replica runs
    the same schedule and syncs with it: ASSUMPTION SYNC-REPLICAS-TOGETHER, Poplar's default of
    syncing replicas together), then the bytes cross to the next stage's chip."""
    sync = g.add(Sync((src,), label=f"sync {label}", across=scope), [dep])
    return g.add(Transfer(src, dst, nbytes, label=label), [sync])


def input_feed(ctx: PlanContext, lay: Layout, model: Model, tp: TrainingParams) -> InputFeed:
    """The hosts' feed of a replicated layout's first stage (replica 0 simulated, the others'
    first-stage chips on its machines mirrored)."""
    nbytes = model.input_bytes_per_sample * tp.micro_batch
    feeders = [row[0] for row in lay.chips]
    return InputFeed(ctx, feeders, mirror_chips(ctx, lay, 0), nbytes, tp.micro_batch)


def mirror_chips(ctx: PlanContext, lay: Layout, d: int) -> list[int]:
    """Other replicas' stage-``d`` chips on a machine that one of replica 0's chips uses.

    Only replica 0 is simulated, but replicas that share a machine also share its Streaming
    Memory: their traffic is added beside replica 0's (gating nothing) so the contention on
    the machine's DDR and gateway shows."""
    machines = {ctx.system.chips[c].machine for c in lay.chips[0]}
    return [
        lay.chips[r][d]
        for r in range(1, lay.replicas)
        if ctx.system.chips[lay.chips[r][d]].machine in machines
    ]


def _mem_op(
    op: type[MemLoad] | type[MemStore], nbytes: float, label: str
) -> Callable[[int], MemLoad | MemStore]:
    """``chip -> op(chip, nbytes, label=label)``, for :func:`stream`."""

    def make(chip: int) -> MemLoad | MemStore:
        return op(chip, nbytes, label=label)

    return make


def stream(
    g: TaskGraph,
    ctx: PlanContext,
    lay: Layout,
    d: int,
    make: Callable[[int], MemLoad | MemStore],
    deps: list[int],
) -> int:
    """``make(chip)`` for replica 0's stage-``d`` chip (its id is returned), mirrored on the
    chips of :func:`mirror_chips`."""
    main = g.add(make(lay.chips[0][d]), deps)
    for chip in mirror_chips(ctx, lay, d):
        g.add(make(chip), deps)
    return main


def _weights_in(
    g: TaskGraph,
    ctx: PlanContext,
    lay: Layout,
    j: int,
    cost: StageCost,
    tp: TrainingParams,
    deps: list[int],
    label: str,
) -> list[int]:
    """With weights in Streaming Memory, stream virtual stage ``j``'s weights in before each
    pass over it (forward, recompute, backward), as the memory plan's traffic assumes."""
    if not tp.offload_weights or not cost.params:
        return deps
    nbytes = cost.params * DTYPE_BYTES[tp.dtype]
    return [
        stream(
            g,
            ctx,
            lay,
            j % lay.stages,
            lambda c: MemLoad(c, nbytes, label=f"load weights {label}"),
            deps,
        )
    ]


def step_end(
    ctx: PlanContext,
    g: TaskGraph,
    tp: TrainingParams,
    lay: Layout,
    costs: Sequence[StageCost],
    last_on_chip: dict[int, int],
    pending: Sequence[int] = (),
) -> dict[int, int]:
    """Gradient collectives between replicas, each chip's optimizer update, then the step's
    end on the hosts (:class:`HostSync`, after ``pending`` too).

    Returns the last task of each of replica 0's chips (the host sync on systems with hosts,
    else the update or the weights' all-gather), for strategies that chain another step.
    """
    system = ctx.system
    ends = dict(last_on_chip)
    for d in range(lay.stages):
        chip = lay.chips[0][d]
        ct = system.chips[chip].type
        mine = [c for j, c in enumerate(costs) if j % lay.stages == d]
        params = sum(c.params for c in mine)
        opt = mine[0].optimizer
        for extra in mine[1:]:
            opt = opt + extra.optimizer
        deps = [last_on_chip[chip]] if chip in last_on_chip else []
        if params == 0:
            continue
        nbytes = gradient_bytes(params, tp)
        group = tuple(ring_order(system, [lay.chips[r][d] for r in range(lay.replicas)]))
        share = 1
        if lay.replicas > 1:
            kind: CollectiveKind = "reduce_scatter" if lay.rts else "all_reduce"
            deps = [
                g.add(
                    Collective(
                        kind,
                        group,
                        nbytes,
                        lay.all_reduce,  # type: ignore[arg-type]
                        dtype=tp.dtype,
                        label=f"{kind} stage {d}",
                    ),
                    deps,
                )
            ]
            share = lay.replicas if lay.rts else 1
            tensors = sum(c.tensors for c in mine)
            if lay.rts and tp.optimizer in LAYERWISE_OPTIMIZERS and tensors:
                # each replica holds a shard of every tensor: its weight and update norms are
                # sums over the replicas (two fp32 partial sums per tensor)
                deps = [
                    g.add(
                        Collective(
                            "all_reduce",
                            group,
                            2 * tensors * 4.0,
                            lay.all_reduce,  # type: ignore[arg-type]
                            dtype="fp32",
                            label=f"{tp.optimizer} norms stage {d}",
                        ),
                        deps,
                    )
                ]
        if tp.offload_optimizer_state:
            state = _state_bytes(params, tp) / share
            deps = [
                stream(
                    g,
                    ctx,
                    lay,
                    d,
                    _mem_op(MemLoad, state, f"load optimizer state {d}"),
                    deps,
                )
            ]
        scaled = (
            opt
            if share == 1
            else type(opt)(
                opt.compute_s / share, opt.exchange_s / share, opt.syncs, opt.flops / share
            )
        )
        deps = [add_phase(g, chip, scaled, ct, deps, f"optimizer stage {d}", kind="optimizer")]
        deps = sparse_hooks.add_update(  # a sparse pattern update, 1/N per step (strategies/sparse)
            g, chip, ct, [c.update for c in mine], tp.sparsity, deps, f"stage {d}",
            group if lay.replicas > 1 else (), lay.all_reduce, tp.dtype,
        )  # fmt: skip
        ends[chip] = deps[0]
        if tp.offload_weights:
            wb = params * DTYPE_BYTES[tp.dtype]
            stream(
                g,
                ctx,
                lay,
                d,
                _mem_op(MemStore, wb, f"store weights {d}"),
                deps,
            )
        if tp.offload_optimizer_state:
            sb = _state_bytes(params, tp) / share
            stream(
                g,
                ctx,
                lay,
                d,
                _mem_op(MemStore, sb, f"store optimizer state {d}"),
                deps,
            )
        if lay.replicas > 1 and lay.rts:
            ends[chip] = g.add(
                Collective(
                    "all_gather",
                    group,
                    nbytes,
                    lay.all_reduce,  # type: ignore[arg-type]
                    dtype=tp.dtype,
                    label=f"all_gather weights stage {d}",
                ),
                deps,
            )
    done = end_step_on_hosts(g, ctx, lay.all_chips(), [*ends.values(), *pending])
    if done is not None:
        ends = dict.fromkeys(ends, done)
    return ends


def _state_bytes(params: int, tp: TrainingParams) -> float:
    from simulator.workloads.memory import OPTIMIZER_STATE_SLOTS

    per = OPTIMIZER_STATE_SLOTS[tp.optimizer] * DTYPE_BYTES[tp.optimizer_state_dtype]
    if tp.master_weights and tp.master_weights != tp.dtype:
        per += DTYPE_BYTES[tp.master_weights]
    return params * per


def plan_layout(ctx: PlanContext, lay: Layout, model: Model | None = None) -> Plan:
    """Check memory, build the graph, and pack what the summary needs into a Plan."""
    from strategies.summary import infeasible_plan, memory_plans

    model = model if model is not None else scenario_model(ctx)
    tp = training_params(ctx)
    expected = tp.micro_batch * tp.grad_accum * lay.replicas * tp.samples_per_input
    if tp.global_batch is not None and abs(tp.global_batch - expected) > 1e-9:
        raise ctx.error(
            ("training", "global_batch"),
            f"global_batch {tp.global_batch} != micro_batch {tp.micro_batch} x "
            f"grad_accum {tp.grad_accum} x replicas {lay.replicas} x "
            f"samples_per_input {tp.samples_per_input:g} = {expected:g}; "
            "change one of them so they agree",
        )
    if lay.schedule == "interleaved" and tp.grad_accum % lay.stages:
        raise ctx.error(
            ("training", "grad_accum"),
            f"the interleaved schedule needs micro-batches ({tp.grad_accum}) to be a "
            f"multiple of the stages ({lay.stages})",
        )
    plans = memory_plans(ctx, model, tp, lay)
    info = {
        "model": model,
        "training": tp,
        "layout": lay,
        "memory": plans,
        "global_batch": expected,
    }
    bad = [(chip, p) for chip, p in plans.items() if not p.fits]
    if bad:
        return infeasible_plan(info, bad)
    built = build_graph(ctx, model, tp, lay)
    info["built"] = built
    info["pipeline_tasks"] = built.pipeline_tasks
    return Plan(built.graph, info, replication=Replication.of_rows(lay.chips))


class Pipeline:
    name = "pipeline"
    params = PipelineParams

    def plan(self, ctx: PlanContext) -> Plan:
        p: PipelineParams = ctx.params  # type: ignore[assignment]
        check_chips(ctx, p.stages, p.replicas, "stages")
        if p.chunks > 1 and p.schedule != "interleaved":
            raise ctx.error(
                ("strategy", "chunks"),
                f"chunks {p.chunks} needs schedule interleaved (or set chunks: 1)",
            )
        model = scenario_model(ctx)
        lay = Layout(
            p.stages,
            p.replicas,
            p.chunks if p.schedule == "interleaved" else 1,
            p.schedule,
            stage_layers(ctx, model, p),
            replica_chips(ctx, p.stages, p.replicas),
            p.all_reduce,
            p.replicated_tensor_sharding,
        )
        return plan_layout(ctx, lay, model)

    def summarise(self, ctx, plan, trace):  # type: ignore[no-untyped-def]
        from strategies.summary import summarise

        return summarise(ctx, plan, trace, self.name)


register(Pipeline())

__all__ = ["Layout", "Pipeline", "in_flight"]
