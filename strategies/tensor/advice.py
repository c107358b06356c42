""" "Would help": when a stage does not fit, what tensor parallelism would save.

The memory planner's own suggestions (smaller micro-batch, recomputation, offloading, more
stages) know nothing of splitting layers; this adds, for the fullest chip, the memory plan of its
stage's layers split over the first (up to three) degrees T the model allows above the current
one (T dividing its heads and FFN width), with the chips that layout would need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simulator.errors import InputError
from simulator.strategy import PlanContext
from simulator.workloads.memory import MemoryPlan
from simulator.workloads.model import Model
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
    """Suggestions for the fullest chip of an infeasible layout (empty if T cannot grow)."""
    chip, worst = max(bad, key=lambda cp: cp[1].shortfall_bytes)
    d = next(k for k in range(lay.stages) if lay.chips[0][k] == chip)
    mode: TensorCollective = lay.shard.mode if lay.shard is not None else "all_reduce"
    layers_idx = [i for j, ls in enumerate(lay.vstage_layers) if j % lay.stages == d for i in ls]
    depth = in_flight(lay.schedule, lay.stages, tp.grad_accum, d, lay.chunks)
    ct = ctx.system.chips[chip].type
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
        plan = stage_memory(
            [split.layers[i] for i in layers_idx],
            tp,
            ct,
            in_flight=depth,
            rts_factor=lay.replicas if lay.rts else 1,
            micro_batches=tp.grad_accum,
        )
        saved = worst.total - plan.total
        chips = lay.stages * t * lay.replicas
        verdict = "fits" if plan.fits else f"still {plan.shortfall_bytes / MIB:,.1f} MiB over"
        have = ctx.system.num_chips
        out.append(
            f"tensor parallelism over {t} chips per stage (strategy.tensor_parallel: {t}; "
            f"{lay.stages} x {t} x {lay.replicas} = {chips} chips"
            + ("" if chips == have else f", {ctx.system.name} has {have}")
            + f"): saves {saved / MIB:,.1f} MiB ({verdict})"
        )
        if plan.fits:
            break
    return out[-2:]


__all__ = ["would_help"]
