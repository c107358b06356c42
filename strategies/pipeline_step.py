"""What a pipeline x data step does around its forward and backward passes: the input feed
from the hosts (:class:`strategies.training.InputFeed`), Streaming Memory streams (weights,
optimizer state), and the step end (gradient collectives between replicas, the optimizer
update, the hosts' step end).

Split out of :mod:`strategies.pipeline` (which builds the passes themselves); shared by the
strategies that reuse its step end (ensemble, local). With tensor parallelism
(:mod:`strategies.tensor`) a stage is a group of T chips: each chip of the group streams its
own shard, reads its own copy of the input, and all-reduces its own shard's gradients with the
same rank of the other replicas.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from simulator.engine.collectives import ring_order
from simulator.engine.graph import TaskGraph
from simulator.engine.tasks import Collective, CollectiveKind, MemLoad, MemStore
from simulator.strategy import PlanContext
from simulator.workloads.cost import LAYERWISE_OPTIMIZERS
from simulator.workloads.layers import DTYPE_BYTES
from simulator.workloads.model import Model
from strategies.sparse import hooks as sparse_hooks
from strategies.training import (
    InputFeed,
    StageCost,
    TrainingParams,
    add_phase,
    end_step_on_hosts,
    gradient_bytes,
)

if TYPE_CHECKING:
    from strategies.pipeline import Layout


def input_feed(ctx: PlanContext, lay: Layout, model: Model, tp: TrainingParams) -> InputFeed:
    """The hosts' feed of a replicated layout's first stage: replica 0's first chip simulated,
    the other replicas' first chips on its machines mirrored (they share its Host-Link,
    gateway and DDR). With tensor parallelism every chip of the first stage's group reads the
    micro-batch (each needs every token), from the one copy the host wrote for the replica."""
    nbytes = model.input_bytes_per_sample * tp.micro_batch
    feeders = [row[0] for row in lay.chips]
    return InputFeed(
        ctx,
        feeders,
        mirror_chips(ctx, lay, 0),
        nbytes,
        tp.micro_batch,
        write_mirrors=mirror_chips(ctx, lay, 0, ranks=False),
    )


def mirror_chips(ctx: PlanContext, lay: Layout, d: int, ranks: bool = True) -> list[int]:
    """Chips whose Streaming Memory traffic copies replica 0's stage-``d`` chip's.

    Only replica 0 is simulated, but replicas that share a machine also share its Streaming
    Memory: their traffic is added beside replica 0's (gating nothing) so the contention on
    the machine's DDR and gateway shows. These are the other replicas' stage-``d`` chips on a
    machine that one of replica 0's chips uses and, with ``ranks`` and tensor parallelism, the
    other chips of every such stage group (each streams its own shard).
    """
    system = ctx.system
    machines = {system.chips[c].machine for c in lay.chips[0]}
    if lay.groups is None or not ranks:
        return [
            lay.chips[r][d]
            for r in range(1, lay.replicas)
            if system.chips[lay.chips[r][d]].machine in machines
        ]
    machines |= {system.chips[c].machine for grp in lay.groups[0] for c in grp}
    out = list(lay.groups[0][d][1:])
    for r in range(1, lay.replicas):
        out += [c for c in lay.groups[r][d] if system.chips[c].machine in machines]
    return out


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


def weights_in(
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

    With tensor parallelism each rank of a stage group all-reduces its own shard with the same
    rank of the other replicas (T collectives side by side); the group's first chip runs the
    update once they are all done (the other ranks' updates are the same work on their own
    chips), and :mod:`strategies.tensor` adds the group's own step-end collectives.

    Returns the last task of each of replica 0's chips (the host sync on systems with hosts,
    else the update or the weights' all-gather), for strategies that chain another step.
    """
    system = ctx.system
    ends = dict(last_on_chip)
    tails: list[int] = []  # other ranks' last tasks (tensor parallelism)
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
        shared = params if lay.shard is None else lay.shard.gradient_params(d, params)
        nbytes = gradient_bytes(shared, tp)
        groups = [
            tuple(ring_order(system, [lay.group(r, d)[t] for r in range(lay.replicas)]))
            for t in range(lay.tensor)
        ]
        if lay.shard is not None:
            deps = lay.shard.before_gradients(g, ctx, lay, tp, d, deps)
        share = 1
        if lay.replicas > 1 and shared:
            kind: CollectiveKind = "reduce_scatter" if lay.rts else "all_reduce"
            what = f"{kind} stage {d}"
            deps = _per_rank(g, lay, groups, kind, what, nbytes, tp.dtype, deps, True)
            share = lay.replicas if lay.rts else 1
            tensors = sum(c.tensors for c in mine)
            if lay.rts and tp.optimizer in LAYERWISE_OPTIMIZERS and tensors:
                # each replica holds a shard of every tensor: its weight and update norms are
                # sums over the replicas (two fp32 partial sums per tensor)
                what, norms = f"{tp.optimizer} norms stage {d}", 2 * tensors * 4.0
                deps = _per_rank(g, lay, groups, "all_reduce", what, norms, "fp32", deps)
        if lay.shard is not None:
            deps = lay.shard.before_update(g, ctx, lay, tp, d, deps)
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
            groups[0] if lay.replicas > 1 else (), lay.all_reduce, tp.dtype,
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
            what = f"all_gather weights stage {d}"
            gathers = _per_rank(g, lay, groups, "all_gather", what, nbytes, tp.dtype, deps, True)
            ends[chip] = gathers[0]
            tails += gathers[1:]
    done = end_step_on_hosts(g, ctx, lay.all_chips(), [*ends.values(), *tails, *pending])
    if done is not None:
        ends = dict.fromkeys(ends, done)
    return ends


def _per_rank(
    g: TaskGraph,
    lay: Layout,
    groups: list[tuple[int, ...]],
    kind: CollectiveKind,
    label: str,
    nbytes: float,
    dtype: str,
    deps: list[int],
    shared_deps: bool = False,
) -> list[int]:
    """One collective per rank of a stage's tensor groups, over that rank's chips in every
    replica (a single one without tensor parallelism). Each waits on ``deps`` — all of them
    with ``shared_deps`` or when there is one per rank, else the rank's own."""
    one_each = len(deps) == len(groups) and not shared_deps
    return [
        g.add(
            Collective(
                kind,
                group,
                nbytes,
                lay.all_reduce,  # type: ignore[arg-type]
                dtype=dtype,
                label=label + (f" rank {t}" if t else ""),
            ),
            [deps[t]] if one_each else deps,
        )
        for t, group in enumerate(groups)
    ]


def _state_bytes(params: int, tp: TrainingParams) -> float:
    from simulator.workloads.memory import OPTIMIZER_STATE_SLOTS

    per = OPTIMIZER_STATE_SLOTS[tp.optimizer] * DTYPE_BYTES[tp.optimizer_state_dtype]
    if tp.master_weights and tp.master_weights != tp.dtype:
        per += DTYPE_BYTES[tp.master_weights]
    return params * per


__all__ = ["input_feed", "mirror_chips", "step_end", "stream", "weights_in"]
