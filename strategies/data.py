"""Data parallelism (``type: data``) and one IPU (``type: single``).

Both are the pipeline x data planner of :mod:`strategies.pipeline` with one stage: ``data``
runs R replicas of the whole model (one chip each), accumulates ``grad_accum`` micro-batches,
all-reduces the gradients between replicas (or reduce-scatters them, updates a shard and
all-gathers the weights with replicated tensor sharding) and updates; ``single`` is one replica
on one chip. Micro-batches run forward then backward one at a time (1F1B order with one stage),
so one micro-batch's activations are held at once.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from simulator.config.base import NonNegativeInt, PositiveInt, StrictModel
from simulator.engine.tasks import ALGORITHMS
from simulator.strategy import Plan, PlanContext, register
from strategies.pipeline import Layout, Pipeline, check_chips, plan_layout, split_check
from strategies.tensor.keys import TensorKeys
from strategies.training import scenario_model


class DataParams(TensorKeys):
    """Keys of ``strategy:`` for ``type: data``."""

    replicas: PositiveInt | None = Field(
        None, description="R (default: every chip, or chips / tensor_parallel)."
    )
    all_reduce: Literal[ALGORITHMS] = Field("auto")  # type: ignore[valid-type]
    replicated_tensor_sharding: bool = Field(False)


class SingleParams(StrictModel):
    """Keys of ``strategy:`` for ``type: single`` (one IPU)."""

    chip: NonNegativeInt = Field(0, description="Which chip of the system runs the model.")


class Data(Pipeline):
    name = "data"
    params = DataParams  # type: ignore[assignment]

    def plan(self, ctx: PlanContext) -> Plan:
        p: DataParams = ctx.params  # type: ignore[assignment]
        t = p.tensor_parallel
        model = split_check(ctx, t, p.tensor_collective)
        replicas = p.replicas or max(1, ctx.system.num_chips // t)
        check_chips(ctx, 1, replicas, "replicas", t)
        model = model or scenario_model(ctx)
        lay = Layout(
            1,
            replicas,
            1,
            "1f1b",
            [list(range(len(model.layers)))],
            [[r] for r in range(replicas)] if t == 1 else [],
            p.all_reduce,
            p.replicated_tensor_sharding,
            tensor_key=True,
        )
        if t > 1:
            from strategies.tensor import split_layout

            lay = split_layout(ctx, lay, model, t, p.tensor_collective)
        return plan_layout(ctx, lay, model)


class Single(Pipeline):
    name = "single"
    params = SingleParams  # type: ignore[assignment]

    def plan(self, ctx: PlanContext) -> Plan:
        p: SingleParams = ctx.params  # type: ignore[assignment]
        if p.chip >= ctx.system.num_chips:
            raise ctx.error(
                ("strategy", "chip"),
                f"chip {p.chip} does not exist "
                f"({ctx.system.name} has chips 0..{ctx.system.num_chips - 1})",
            )
        model = scenario_model(ctx)
        lay = Layout(1, 1, 1, "1f1b", [list(range(len(model.layers)))], [[p.chip]])
        if ctx.system.num_chips > 1:
            lay.warnings.append(
                f"single: one of the {ctx.system.num_chips} chips of "
                f"{ctx.system.name} is used (chip {p.chip})"
            )
        return plan_layout(ctx, lay, model)


register(Data())
register(Single())

__all__ = ["Data", "DataParams", "Single", "SingleParams"]
