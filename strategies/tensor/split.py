"""What the pipeline planner asks of a layout whose layers are split: the protocol shared by
tensor groups (:class:`strategies.tensor.layout.Sharded`) and experts spread over a stage's
replicas (:class:`strategies.moe.pipeline_experts.ExpertSplit`), with the answers they share.

The planner (:mod:`strategies.pipeline`, :mod:`strategies.pipeline_step`,
:mod:`strategies.summary`) holds one as ``Layout.shard`` and asks it for the layers one chip
holds (``model``), their costs and memory, each pass as segments joined by collectives
(``passes``), the bytes a chip sends across a stage boundary, the step-end collectives before
the gradients leave the chip and before the update, and the result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from simulator.engine.graph import TaskGraph
from simulator.engine.tasks import Collective
from simulator.engine.trace import Trace
from simulator.hardware.model import ChipType
from simulator.strategy import Plan, PlanContext
from simulator.workloads.layers import DTYPE_BYTES
from simulator.workloads.memory import MemoryPlan
from simulator.workloads.model import Model
from strategies.tensor.passes import Parts, ReplicaGroups, TensorPasses
from strategies.tensor.shard import LayerSplit, useful_flops
from strategies.training import StageCost, TrainingParams, stage_cost

if TYPE_CHECKING:
    from strategies.pipeline import Built, Layout


@dataclass(kw_only=True)
class SplitPlan:
    """A model split for a layout: ``full`` as written, ``model`` as one chip holds it."""

    ctx: PlanContext = field(repr=False, compare=False)
    full: Model
    model: Model
    splits: tuple[LayerSplit, ...]
    tp: TrainingParams | None = None
    built: TensorPasses | None = None
    lay: Layout | None = field(default=None, repr=False, compare=False)

    # ---- layers and costs ---------------------------------------------------------------
    def stage_layers(self, d: int) -> list[int]:
        """Layer indices on stage ``d`` (every virtual stage of its chips)."""
        lay = self.lay
        assert lay is not None
        return [i for j, ls in enumerate(lay.vstage_layers) if j % lay.stages == d for i in ls]

    def stage_costs(self, model: Model, tp: TrainingParams, ct: ChipType) -> list[StageCost]:
        """Each virtual stage's cost on one chip (its layers as that chip holds them)."""
        assert self.lay is not None
        grads = model.needs_input_grad
        return [
            stage_cost([model.layers[i] for i in ls], [grads[i] for i in ls], tp, ct)
            for ls in self.lay.vstage_layers
        ]

    def memory(self, plans: dict[int, MemoryPlan], tp: TrainingParams) -> dict[int, MemoryPlan]:
        """Each stage chip's memory plan (the planner's, of the layers one chip holds)."""
        return plans

    @property
    def useful_flops(self) -> float:
        """Forward + backward FLOPs of one micro-batch of the whole model, counted once."""
        assert self.tp is not None
        return useful_flops(self.full, self.tp.micro_batch)

    # ---- the graph ----------------------------------------------------------------------
    def boundary(self, i: int, tp: TrainingParams) -> float:
        """Bytes each chip of a stage sends across a boundary after layer ``i``: what it holds
        of the activation."""
        return float(self.splits[i].held_elems * tp.micro_batch * DTYPE_BYTES[tp.dtype])

    def pass_options(
        self, ctx: PlanContext, tp: TrainingParams, lay: Layout
    ) -> tuple[dict[int, Parts] | None, ReplicaGroups | None]:
        """Layers costed in parts, and the groups of collectives over replicas (none here)."""
        return None, None

    def passes(
        self, ctx: PlanContext, model: Model, tp: TrainingParams, lay: Layout
    ) -> TensorPasses:
        """Every virtual stage's passes as segments and collectives (kept for the results)."""
        self.tp = tp
        parts, groups = self.pass_options(ctx, tp, lay)
        self.built = TensorPasses(ctx, model, self.splits, tp, lay, parts, groups)
        return self.built

    def path_tasks(self, built: Built) -> set[int]:
        """The pipeline passes' tasks without the collectives (for the step breakdown's
        bubble, which compares the path's time in compute with the busiest chip's compute)."""
        nodes = built.graph.nodes
        return {t for t in built.pipeline_tasks if not isinstance(nodes[t].task, Collective)}

    def pass_seconds(self, j: int) -> float:
        """Closed-form seconds of virtual stage ``j``'s collectives per micro-batch."""
        return self.built.seconds[j] if self.built is not None else 0.0

    # ---- the step end ---------------------------------------------------------------------
    def gradient_params(self, d: int, params: int) -> int:
        """Parameters of stage ``d``'s chip all-reduced over the replicas."""
        return params

    def before_gradients(
        self,
        g: TaskGraph,
        ctx: PlanContext,
        lay: Layout,
        tp: TrainingParams,
        d: int,
        deps: list[int],
    ) -> list[int]:
        """Collectives before stage ``d``'s gradients go to the other replicas (none here)."""
        return deps

    def before_update(
        self,
        g: TaskGraph,
        ctx: PlanContext,
        lay: Layout,
        tp: TrainingParams,
        d: int,
        deps: list[int],
    ) -> list[int]:
        """Collectives before stage ``d``'s update (none here)."""
        return deps

    def result(self, plan: Plan, trace: Trace | None, fields: dict[str, Any]) -> Any:
        raise NotImplementedError


__all__ = ["SplitPlan"]
