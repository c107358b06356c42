"""What a pipeline x data step does around its forward and backward passes: the input feed
from the hosts, Streaming Memory streams (weights, optimizer state), and the step end (gradient
collectives between replicas, the optimizer update, the hosts' step end).

Split out of :mod:`strategies.pipeline` (which builds the passes themselves); shared by the
strategies that reuse its step end (ensemble, local). With tensor parallelism
(:mod:`strategies.tensor`) a stage is a group of T chips: each chip of the group streams its
own shard, reads its own copy of the input, and all-reduces its own shard's gradients with the
same rank of the other replicas.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal

from simulator.engine.collectives import ring_order
from simulator.engine.graph import TaskGraph
from simulator.engine.tasks import (
    Collective,
    CollectiveKind,
    HostLoad,
    HostSync,
    MemLoad,
    MemStore,
)
from simulator.strategy import PlanContext
from simulator.workloads.cost import LAYERWISE_OPTIMIZERS
from simulator.workloads.layers import DTYPE_BYTES
from strategies.training import StageCost, TrainingParams, add_phase, gradient_bytes

if TYPE_CHECKING:
    from strategies.pipeline import Layout


class InputFeed:
    """Each micro-batch's input, from the hosts to the first stage's chip of replica 0.

    The host writes micro-batch k into the Streaming Memory of the chip's machine (a
    :class:`HostLoad` over Host-Link and gateway, limited by the hosts' data pipeline), while the
    chip works on micro-batch k - 1 (one buffer ahead); the chip reads it in an exchange phase
    (a :class:`MemLoad` that holds the chip) before its forward pass. Micro-batch 0 was written
    during the previous step, and this step writes the next step's first, so a step carries
    exactly ``M`` host writes. Other replicas' first-stage chips on the same machine do the
    same (their traffic shares the machine's Host-Link, gateway and DDR); the replicas fed by
    the same host share its data pipeline. Nothing is fed on a system without hosts. With
    tensor parallelism every chip of the first stage's group reads the micro-batch (each needs
    every token), from the one copy the host wrote for the replica.
    """

    def __init__(self, ctx: PlanContext, lay: Layout, nbytes: float, samples: float) -> None:
        system = ctx.system
        self.ctx, self.lay, self.nbytes, self.samples = ctx, lay, nbytes, samples
        chip = lay.chips[0][0]
        host = system.host_node(chip) if system.hosts is not None else None
        self.on = host is not None and nbytes > 0
        self.ddr = system.streaming_memory is not None
        self.sharing = sum(1 for row in lay.chips if system.host_node(row[0]) == host)
        self._reads: dict[int, int] = {}
        self._writes: dict[int, int] = {}

    def _write(self, g: TaskGraph, mb: int, deps: list[int]) -> int:
        def make(chip: int) -> HostLoad:
            return HostLoad(chip, self.nbytes, self.samples, self.sharing, label=f"input mb{mb}")

        main = g.add(make(self.lay.chips[0][0]), deps)
        for chip in mirror_chips(self.ctx, self.lay, 0, ranks=False):
            g.add(make(chip), deps)
        self._writes[mb] = main
        return main

    def read(self, g: TaskGraph, mb: int, deps: list[int]) -> list[int]:
        """The chip's read of micro-batch ``mb`` (after ``deps``); returns what F waits on."""
        if not self.on:
            return deps
        if self.ddr and mb > 0:
            deps = [*deps, self._writes[mb]]
        label = f"read input mb{mb}"
        source: Literal["ddr", "host"] = "ddr" if self.ddr else "host"

        def make(chip: int) -> MemLoad:
            return MemLoad(chip, self.nbytes, source=source, label=label, hold=True, input=True)

        read = stream(g, self.ctx, self.lay, 0, make, deps)
        self._reads[mb] = read
        if self.ddr:
            self._write(g, mb + 1, [read])
        return [read]

    def pending(self) -> list[int]:
        """The write of the next step's first micro-batch (the step ends after it)."""
        if not self._writes:
            return []
        return [self._writes[max(self._writes)]]


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
    if system.hosts is not None:
        chips = lay.all_chips()
        done = g.add(HostSync(chips, label="step end"), [*ends.values(), *tails, *pending])
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


__all__ = ["InputFeed", "mirror_chips", "step_end", "stream", "weights_in"]
