""" "Would help": when a stage does not fit, what tensor parallelism would save.

The memory planner's own suggestions (smaller micro-batch, recomputation, offloading, more
stages) know nothing of splitting layers; this adds, for the first (up to three) degrees T the
model allows above the current one (T dividing its heads and FFN width), what the fullest chip
would need on the same chips as T-chip groups: the same stages with fewer replicas (its stage's
layers split), else the same replicas with fewer stages (placed by FLOPs), else — when the chips
do not divide so — its stage split over T chips (and the chips that would take).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simulator.errors import InputError
from simulator.strategy import PlanContext
from simulator.workloads.layers import Layer
from simulator.workloads.memory import MemoryPlan
from simulator.workloads.model import Model
from strategies import placement
from strategies.schedule import in_flight
from strategies.tensor.keys import TensorCollective
from strategies.tensor.shard import split_model
from strategies.training import TrainingParams, stage_memory

if TYPE_CHECKING:
    from strategies.pipeline import Layout

MIB = 2**20


def _fail(_key: tuple[str | int, ...], message: str) -> Exception:
    return InputError(message)


def would_help(
    ctx: PlanContext,
    model: Model,
    tp: TrainingParams,
    lay: Layout,
    bad: list[tuple[int, MemoryPlan]],
) -> list[str]:
    """Suggestions for an infeasible layout (empty if T cannot grow): for the first degrees T
    the model allows, the same chips as T-chip groups — the same stages and fewer replicas, or
    the same replicas and fewer stages (balanced placement) — or, where the chips do not divide
    so, each stage split over T chips (more chips)."""
    chip = max(bad, key=lambda cp: cp[1].shortfall_bytes)[0]
    mode: TensorCollective = lay.shard.mode if lay.shard is not None else "all_reduce"
    have = ctx.system.num_chips
    out: list[str] = []
    tried = 0
    for t in range(lay.tensor + 1, 33):
        try:
            split, _ = split_model(model, t, mode, _fail)
        except InputError:
            continue
        if tried == 3:
            break
        tried += 1
        if have % (lay.stages * t) == 0:  # the same stages, fewer replicas
            replicas = have // (lay.stages * t)
            plan = _own_stage(ctx, split, tp, lay, chip, replicas)
            where = (
                f"strategy.tensor_parallel: {t} with {lay.stages} stage(s) x {replicas} "
                f"replica(s), the same {have} chips"
            )
        elif have % (lay.replicas * t) == 0 and (
            fewer := _fewer_stages(ctx, split, tp, lay, have // (lay.replicas * t))
        ):  # the same replicas, fewer stages
            plan = fewer
            where = (
                f"strategy.tensor_parallel: {t} with {have // (lay.replicas * t)} stage(s) x "
                f"{lay.replicas} replica(s), the same {have} chips, balanced placement"
            )
        else:
            plan = _own_stage(ctx, split, tp, lay, chip, lay.replicas)
            chips = lay.stages * t * lay.replicas
            where = (
                f"strategy.tensor_parallel: {t}, each stage over {t} chips: {lay.stages} x "
                f"{t} x {lay.replicas} = {chips} chips, {ctx.system.name} has {have}"
            )
        verdict = "fits" if plan.fits else f"still {plan.shortfall_bytes / MIB:,.1f} MiB over"
        out.append(
            f"tensor parallelism ({where}): the fullest chip needs {plan.total / MIB:,.1f} MiB "
            f"({verdict})"
        )
        if plan.fits:
            break
    return out[-2:]


def _memory(
    ctx: PlanContext,
    layers: list[Layer],
    tp: TrainingParams,
    lay: Layout,
    stages: int,
    d: int,
    replicas: int,
) -> MemoryPlan:
    return stage_memory(
        layers,
        tp,
        ctx.system.chips[lay.chips[0][0]].type,
        in_flight=in_flight(lay.schedule, stages, tp.grad_accum, d, lay.chunks),
        rts_factor=replicas if lay.rts else 1,
        micro_batches=tp.grad_accum,
    )


def _own_stage(
    ctx: PlanContext, split: Model, tp: TrainingParams, lay: Layout, chip: int, replicas: int
) -> MemoryPlan:
    """The memory plan of ``chip``'s stage with its layers split."""
    d = next(k for k in range(lay.stages) if lay.chips[0][k] == chip)
    idx = [i for j, ls in enumerate(lay.vstage_layers) if j % lay.stages == d for i in ls]
    return _memory(ctx, [split.layers[i] for i in idx], tp, lay, lay.stages, d, replicas)


def _fewer_stages(
    ctx: PlanContext, split: Model, tp: TrainingParams, lay: Layout, stages: int
) -> MemoryPlan | None:
    """The fullest chip's plan with ``stages`` balanced stages of split layers (None when the
    model cannot be placed so, or the interleaved schedule would not fit the micro-batches)."""
    if lay.chunks > 1:
        return None
    try:
        parts = placement.balanced(split, stages, _fail)
    except InputError:
        return None
    plans = [
        _memory(ctx, [split.layers[i] for i in part], tp, lay, stages, d, lay.replicas)
        for d, part in enumerate(parts)
    ]
    return max(plans, key=lambda p: p.total)


__all__ = ["would_help"]
