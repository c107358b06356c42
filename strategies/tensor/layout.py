"""Tensor parallelism in a pipeline x data layout: :func:`split_layout` turns a layout of K
stages x R replicas into one of K stage groups of T chips x R replicas, and :class:`Sharded` is
what the pipeline planner (:mod:`strategies.pipeline`, :mod:`strategies.pipeline_step`,
:mod:`strategies.summary`) asks about the split: the layers one chip holds, its memory, the
passes with their collectives, the boundary bytes, the step-end collectives and the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from simulator.engine.collectives import ring_order
from simulator.engine.graph import TaskGraph
from simulator.engine.tasks import Collective
from simulator.engine.trace import Trace
from simulator.hardware.model import ChipType
from simulator.strategy import Plan, PlanContext
from simulator.workloads.cost import LAYERWISE_OPTIMIZERS
from simulator.workloads.layers import DTYPE_BYTES
from simulator.workloads.memory import MemoryPlan
from simulator.workloads.model import Model
from strategies.tensor.keys import TensorCollective
from strategies.tensor.passes import TensorPasses
from strategies.tensor.placement import GroupPlacement, place_groups
from strategies.tensor.shard import LayerSplit, split_model, useful_flops
from strategies.training import StageCost, TrainingParams, stage_cost

if TYPE_CHECKING:
    from strategies.pipeline import Built, Layout


@dataclass
class Sharded:
    """A model split over tensor groups of ``tensor`` chips, and its placement."""

    ctx: PlanContext = field(repr=False, compare=False)
    tensor: int
    mode: TensorCollective
    full: Model  # the model as written
    model: Model  # what one chip of a group holds
    splits: tuple[LayerSplit, ...]
    placement: GroupPlacement
    built: TensorPasses | None = None
    tp: TrainingParams | None = None
    lay: Layout | None = field(default=None, repr=False, compare=False)  # the split's layout

    # ---- memory ---------------------------------------------------------------------------
    def stage_layers(self, lay: Layout, d: int) -> list[int]:
        """Layer indices on stage ``d`` (every virtual stage of its chips)."""
        return [i for j, ls in enumerate(lay.vstage_layers) if j % lay.stages == d for i in ls]

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
                    for i in self.stage_layers(lay, d)
                    for c in self.splits[i].comms("F") + self.splits[i].comms("B")
                ),
                default=0.0,
            )
            extra = int(2 * biggest / self.tensor)
            mp = plans[chip]
            out[chip] = replace(mp, exchange_buffers=mp.exchange_buffers + extra)
        return out

    # ---- the graph ------------------------------------------------------------------------
    def stage_costs(self, model: Model, tp: TrainingParams, ct: ChipType) -> list[StageCost]:
        """Each virtual stage's cost on one chip of its group (the split layers)."""
        assert self.lay is not None
        grads = model.needs_input_grad
        return [
            stage_cost([model.layers[i] for i in ls], [grads[i] for i in ls], tp, ct)
            for ls in self.lay.vstage_layers
        ]

    def gradient_params(self, d: int, params: int) -> int:
        """Parameters all-reduced over the replicas: every one a chip holds (its shard)."""
        return params

    def boundary(self, i: int, tp: TrainingParams) -> float:
        """Bytes each chip of a group sends across a stage boundary after layer ``i``: what it
        holds of the activation (all of it, or its 1/T of the sequence with reduce_scatter)."""
        return float(self.splits[i].held_elems * tp.micro_batch * DTYPE_BYTES[tp.dtype])

    def passes(
        self, ctx: PlanContext, model: Model, tp: TrainingParams, lay: Layout
    ) -> TensorPasses:
        self.tp = tp
        self.built = TensorPasses(ctx, model, self.splits, tp, lay)
        return self.built

    def path_tasks(self, built: Built) -> set[int]:
        """The pipeline passes' tasks without the group collectives (for the step breakdown's
        bubble, which compares the path's time in compute with the busiest chip's compute)."""
        nodes = built.graph.nodes
        return {t for t in built.pipeline_tasks if not isinstance(nodes[t].task, Collective)}

    def pass_seconds(self, j: int) -> float:
        """Closed-form seconds of virtual stage ``j``'s group collectives per micro-batch."""
        return self.built.seconds[j] if self.built is not None else 0.0

    def _group(self, lay: Layout, d: int) -> tuple[int, ...]:
        return tuple(ring_order(self.ctx.system, lay.group(0, d)))

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
        rep = sum(self.splits[i].replicated_params for i in self.stage_layers(lay, d))
        if self.mode != "reduce_scatter" or not rep:
            return deps
        task = g.add(
            Collective(
                "all_reduce",
                self._group(lay, d),
                float(rep * DTYPE_BYTES[tp.dtype]),
                dtype=tp.dtype,
                label=f"tp step s{d}: sequence-split gradients",
            ),
            deps,
        )
        return [task]

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
        n = sum(1 for i in self.stage_layers(lay, d) if self.splits[i].split_tensor)
        if tp.optimizer not in LAYERWISE_OPTIMIZERS or not n:
            return deps
        task = g.add(
            Collective(
                "all_reduce",
                self._group(lay, d),
                2 * n * 4.0,
                dtype="fp32",
                label=f"tp step s{d}: {tp.optimizer} norms",
            ),
            deps,
        )
        return [task]

    # ---- results --------------------------------------------------------------------------
    @property
    def useful_flops(self) -> float:
        """Forward + backward FLOPs of one micro-batch of the whole model (once, though the
        replicated layers run on every chip of a group)."""
        assert self.tp is not None
        return useful_flops(self.full, self.tp.micro_batch)

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
    sharded = Sharded(ctx, tensor, mode, model, split, splits, placement)
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


def stage_group_chips(lay: Layout) -> Sequence[tuple[int, ...]]:
    """Every group, replica-major then stage."""
    return [grp for row in (lay.groups or []) for grp in row]


__all__ = ["Sharded", "split_layout", "stage_group_chips"]
