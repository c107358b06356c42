"""Tensor parallelism in a pipeline x data layout: :func:`split_layout` turns a layout of K
stages x R replicas into one of K stage groups of T chips x R replicas, and :class:`Sharded` is
what the pipeline planner (:mod:`strategies.pipeline`, :mod:`strategies.pipeline_step`,
:mod:`strategies.summary`) asks about the split: the layers one chip holds, its memory, the
passes with their collectives, the boundary bytes, the step-end collectives and the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from simulator.engine.collectives import ring_order
from simulator.engine.graph import TaskGraph
from simulator.engine.tasks import Collective
from simulator.engine.trace import Trace
from simulator.strategy import Plan, PlanContext
from simulator.workloads.cost import LAYERWISE_OPTIMIZERS
from simulator.workloads.layers import DTYPE_BYTES
from simulator.workloads.memory import MemoryPlan
from simulator.workloads.model import Model
from strategies.tensor.keys import TensorCollective
from strategies.tensor.placement import GroupPlacement, place_groups
from strategies.tensor.shard import split_model
from strategies.tensor.split import SplitPlan
from strategies.training import TrainingParams

if TYPE_CHECKING:
    from strategies.pipeline import Layout


@dataclass(kw_only=True)
class Sharded(SplitPlan):
    """A model split over tensor groups of ``tensor`` chips, and its placement."""

    tensor: int
    mode: TensorCollective
    placement: GroupPlacement

    def memory(self, plans: dict[int, MemoryPlan], tp: TrainingParams) -> dict[int, MemoryPlan]:
        """The memory planner's plan of each stage chip (already of the split layers) plus the
        collectives' receive buffers. ASSUMPTION TP-COLLECTIVE-BUFFER (range 0 to 2 M / T): a
        ring collective receives one fragment (M / T of its largest buffer M) per step,
        double-buffered, beside the activation it reduces in place."""
        lay = self.lay
        assert lay is not None
        out = {}
        for d in range(lay.stages):
            chip = lay.chips[0][d]
            biggest = max(
                (
                    c.nbytes(tp.micro_batch, tp.dtype)
                    for i in self.stage_layers(d)
                    for c in self.splits[i].comms("F") + self.splits[i].comms("B")
                ),
                default=0.0,
            )
            extra = int(2 * biggest / self.tensor)
            mp = plans[chip]
            out[chip] = replace(mp, exchange_buffers=mp.exchange_buffers + extra)
        return out

    def _group_collective(
        self,
        g: TaskGraph,
        lay: Layout,
        d: int,
        nbytes: float,
        dtype: str,
        what: str,
        deps: list[int],
    ) -> list[int]:
        """An all-reduce over stage ``d``'s group (replica 0's), labelled for the results."""
        group = tuple(ring_order(self.ctx.system, lay.group(0, d)))
        label = f"tp step s{d}: {what}"
        return [g.add(Collective("all_reduce", group, nbytes, dtype=dtype, label=label), deps)]

    def before_gradients(
        self,
        g: TaskGraph,
        ctx: PlanContext,
        lay: Layout,
        tp: TrainingParams,
        d: int,
        deps: list[int],
    ) -> list[int]:
        """With the sequence split: the group all-reduces the gradients that differ per chip
        (parameters of sequence-split layers, output biases, position tables) once per step."""
        rep = sum(self.splits[i].replicated_params for i in self.stage_layers(d))
        if self.mode != "reduce_scatter" or not rep:
            return deps
        nbytes = float(rep * DTYPE_BYTES[tp.dtype])
        return self._group_collective(g, lay, d, nbytes, tp.dtype, "sequence-split gradients", deps)

    def before_update(
        self,
        g: TaskGraph,
        ctx: PlanContext,
        lay: Layout,
        tp: TrainingParams,
        d: int,
        deps: list[int],
    ) -> list[int]:
        """LAMB/LARS: each chip holds a shard of the split tensors, whose weight and update
        norms are sums over the group (two fp32 partial sums per split tensor)."""
        n = sum(1 for i in self.stage_layers(d) if self.splits[i].split_tensor)
        if tp.optimizer not in LAYERWISE_OPTIMIZERS or not n:
            return deps
        return self._group_collective(g, lay, d, 2 * n * 4.0, "fp32", f"{tp.optimizer} norms", deps)

    # ---- results --------------------------------------------------------------------------
    def result(self, plan: Plan, trace: Trace | None, fields: dict[str, Any]) -> Any:
        from strategies.tensor.result import tensor_result

        return tensor_result(self, plan, trace, fields)


def split_layout(
    ctx: PlanContext,
    lay: Layout,
    model: Model,
    tensor: int,
    mode: TensorCollective,
    chips: Sequence[int] | None = None,
) -> Layout:
    """``lay`` with each stage a group of ``tensor`` chips holding ``model`` split over them
    (invalid input, exit 2, when the split cannot be made); the groups are carved from
    ``chips`` (default: the whole system)."""
    split, splits = split_model(model, tensor, mode, ctx.error)
    placement = place_groups(ctx.system, lay.stages, tensor, lay.replicas, chips)
    sharded = Sharded(
        ctx=ctx,
        full=model,
        model=split,
        splits=splits,
        tensor=tensor,
        mode=mode,
        placement=placement,
    )
    new = replace(
        lay,
        chips=[[grp[0] for grp in row] for row in placement.groups],
        groups=placement.groups,
        tensor=tensor,
        shard=sharded,
        warnings=[*lay.warnings, *placement.warnings],
    )
    sharded.lay = new
    return new


__all__ = ["Sharded", "split_layout"]
