"""Where ``training.sparsity`` enters the shared training code — each a small call from
strategies/training.py, strategies/pipeline.py or strategies/summary.py:

* :func:`layer_cost` — a layer's phase cost (block-sparse weight products for sparse layers);
* :func:`memory_inputs` — what the memory planner sees (non-zero parameters; indices with the
  weights; the RigL update's dense gradient with the gradients);
* :func:`stage_update` and :func:`add_update` — a stage's pattern update and its tasks,
  amortised over ``update_every_steps`` and labelled ``sparsity update`` in the timeline;
* :func:`result_info` — the ``sparsity`` entry of a training result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from simulator.engine.graph import TaskGraph
from simulator.engine.tasks import Collective, Compute, Exchange, Rng
from simulator.hardware.model import ChipType
from simulator.metrics import SparsityInfo
from simulator.strategy import PlanContext
from simulator.workloads.cost import OpCost, Phase, op_cost
from simulator.workloads.layers import Layer
from simulator.workloads.sparse.layer import (
    dense_gradient_bytes,
    extra_weight_bytes,
    layer_counts,
    memory_view,
    sparse_op_cost,
)
from simulator.workloads.sparse.update import UpdateCost, UpdateWork, layer_update_work, update_cost
from strategies.sparse.params import SparsityParams, selected, sparse_layers

UPDATE_LABEL = "sparsity update"


def layer_cost(
    layer: Layer, phase: Phase, mb: int, dtype: str, ct: ChipType, sp: SparsityParams | None
) -> OpCost:
    """The cost model's cost of one phase of ``layer`` (sparse weights when selected)."""
    if sp is not None and selected(layer, sp):
        return sparse_op_cost(layer, phase, mb, dtype, ct, sp.pattern)
    return op_cost(layer, phase, mb, dtype, ct)


def memory_inputs(
    layers: Sequence[Layer], sp: SparsityParams | None, dtype: str, ct: ChipType
) -> tuple[list[Layer], int, int]:
    """(layers as the planner sees them, extra weight bytes, extra gradient bytes)."""
    if sp is None:
        return list(layers), 0, 0
    chosen = [x for x in layers if selected(x, sp)]
    view = [memory_view(x, sp.pattern) if selected(x, sp) else x for x in layers]
    extra_w = sum(extra_weight_bytes(x, sp.pattern, dtype, ct) for x in chosen)
    extra_g = 0
    if sp.mode == "dynamic" and sp.regrow == "gradient" and chosen:
        extra_g = max(dense_gradient_bytes(x, dtype) for x in chosen)
    return view, extra_w, extra_g


def stage_update(
    layers: Sequence[Layer],
    sp: SparsityParams | None,
    dtype: str,
    mb: int,
    m: int,
    ct: ChipType,
    scale: float = 1.0,
) -> UpdateCost | None:
    """One pattern update of the stage's sparse layers (None without pattern updates); its
    compute and exchange time times ``scale`` (training.compute_scale, as every phase)."""
    if sp is None or sp.mode != "dynamic" or sp.regrow is None:
        return None
    chosen = sparse_layers(layers, sp)
    if not chosen:
        return None
    u = update_cost(chosen, sp.pattern, sp.drop_fraction, sp.regrow, dtype, mb, m, ct)
    return replace(u, compute_s=u.compute_s * scale, exchange_s=u.exchange_s * scale)


def add_update(
    g: TaskGraph,
    chip: int,
    ct: ChipType,
    updates: Sequence[UpdateCost | None],
    sp: SparsityParams | None,
    deps: list[int],
    label: str,
    group: tuple[int, ...] = (),
    algorithm: str = "auto",
    dtype: str = "fp16",
) -> list[int]:
    """Append the chip's pattern update, 1/N of it per step (N = update_every_steps): compute
    (scores, selections, RigL's dense-gradient difference), random keys, exchanges and syncs,
    and — with replicas (``group``) and gradient regrow — the all-reduce of the dense
    gradient's extra bytes (1/N of them: the latency is not amortised exactly)."""
    ups = [u for u in updates if u is not None]
    if sp is None or sp.update_every_steps is None or not ups:
        return deps
    n = sp.update_every_steps
    compute_s = sum(u.compute_s for u in ups) / n
    other_s = sum(u.exchange_s + u.syncs * ct.sync_latency_s for u in ups) / n
    samples = sum(u.rng_samples for u in ups) / n
    flops = sum(u.flops for u in ups) / n
    extra = sum(u.gradient_bytes for u in ups) / n
    name = f"{UPDATE_LABEL} {label} (1/{n} of an update)"
    last = deps
    if extra and len(group) > 1:
        last = [
            g.add(
                Collective(
                    "all_reduce",
                    group,
                    extra,
                    algorithm,  # type: ignore[arg-type]
                    dtype=dtype,
                    label=f"{name}: dense gradient",
                ),
                last,
            )
        ]
    if samples:
        last = [g.add(Rng(chip, samples, "uniform", label=name), last)]
    if compute_s:
        last = [
            g.add(
                Compute(
                    chip, flops=flops, cycles=compute_s * ct.clock_hz, label=name, kind="optimizer"
                ),
                last,
            )
        ]
    if other_s:
        last = [g.add(Exchange(chip, 0.0, cycles=other_s * ct.clock_hz, label=name), last)]
    return last


def result_info(ctx: PlanContext, tp: Any) -> SparsityInfo | None:
    """The ``sparsity`` entry of a training result (None without training.sparsity); ``tp`` is
    the scenario's TrainingParams. Update work is one update of the whole model in one replica."""
    sp: SparsityParams | None = tp.sparsity
    if sp is None:
        return None
    from strategies.training import scenario_model

    model = scenario_model(ctx)
    ct = ctx.system.chips[0].type
    chosen = [x for x in model.layers if selected(x, sp)]
    counts = [layer_counts(x, sp.pattern) for x in chosen]
    dense = sparse = 0.0
    for x in model.layers:
        v = memory_view(x, sp.pattern) if selected(x, sp) else x
        dense += x.forward_flops + x.backward_input_flops + x.backward_weight_flops
        sparse += v.forward_flops + v.backward_input_flops + v.backward_weight_flops
    work = UpdateWork()
    if sp.mode == "dynamic" and sp.regrow is not None:
        meta = ct.sparse.metadata_bytes_per_block if ct.sparse else 0
        samples = tp.micro_batch * tp.grad_accum
        for x in chosen:
            work = work + layer_update_work(
                x, sp.pattern, sp.drop_fraction, sp.regrow, tp.dtype, samples, meta
            )
    return SparsityInfo(
        density=sp.density,
        block=sp.block,
        mode=sp.mode,
        regrow=sp.regrow,
        update_every_steps=sp.update_every_steps,
        drop_fraction=sp.drop_fraction if sp.mode == "dynamic" else None,
        sparse_layers=len(chosen),
        dense_weights=sum(c.dense_weights for c in counts),
        nonzero_weights=sum(c.nonzero_weights for c in counts),
        metadata_bytes=sum(extra_weight_bytes(x, sp.pattern, tp.dtype, ct) for x in chosen),
        flops_per_sample={"dense": dense, "nonzero": sparse},
        update_step={
            "vector_ops": float(work.vector_ops),
            "dense_gradient_flops": float(work.dense_gradient_flops),
            "rng_samples": float(work.rng_samples),
            "dropped_blocks": float(work.dropped_blocks),
            "moved_bytes": float(work.moved_bytes),
        }
        if sp.update_every_steps
        else {},
    )


__all__ = [
    "UPDATE_LABEL",
    "UpdateCost",
    "add_update",
    "layer_cost",
    "memory_inputs",
    "result_info",
    "stage_update",
]
