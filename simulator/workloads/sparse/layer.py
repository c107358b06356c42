"""Sparse linear layers in a training step: which products become block-sparse, what they cost,
and what the layer holds in memory (docs/strategies/sparsity.md, "Sparse training").

A layer's *weight products* (``Layer.matmuls`` that multiply by weights: a dense layer's one,
attention's QKV and output projections, an FFN's two; never attention's score and context
products, which multiply two activations) keep ``density`` of their ``block × block`` weight
blocks. With the weights ``W`` (k × n, ``k`` inputs, ``n`` outputs) and ``T`` = micro-batch ×
tokens, the three phases are:

* forward ``Yᵀ = Wᵀ Xᵀ`` — SpMM with the sparse operand n × k, dense side T;
* input gradient ``dXᵀ = W dYᵀ`` — SpMM, sparse k × n;
* weight gradient ``dW = Xᵀ dY`` at the non-zeros only — SDDMM, contraction T.

Everything else in the layer (activations, norms, softmax, bias gradients) is the dense layer's
element-wise work. Memory: a sparse layer holds its non-zero weights, their gradients and
optimizer state, plus ``metadata_bytes_per_block`` per non-zero block; dynamic patterns hold
their buckets' spare room as well (``bucket_headroom``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from simulator.hardware.model import ChipType
from simulator.workloads.cost import (
    PER_SAMPLE_MATMULS,
    OpCost,
    Phase,
    ProductCost,
    op_cost,
)
from simulator.workloads.gemm import Gemm
from simulator.workloads.layers import DTYPE_BYTES, Layer
from simulator.workloads.sparse.kernel import (
    Sparsity,
    nonzero_blocks,
    plan_sddmm,
    plan_spmm,
    sparse_operand_bytes,
)

#: Layer kinds whose weight products can be block-sparse (the linear layers).
LINEAR_KINDS: tuple[str, ...] = ("dense", "attention", "ffn", "pooler", "lm_head")


def weight_products(layer: Layer) -> tuple[int, ...]:
    """Indices of ``layer.matmuls`` that multiply by weights (empty for non-linear kinds)."""
    if layer.kind not in LINEAR_KINDS:
        return ()
    skip = PER_SAMPLE_MATMULS.get(layer.kind, frozenset())
    return tuple(i for i in range(len(layer.matmuls)) if i not in skip)


def block_misfit(layer: Layer, block: int) -> str | None:
    """Why ``block`` cannot tile the layer's weights (None when it can)."""
    for i in weight_products(layer):
        mm = layer.matmuls[i]
        if mm.k % block or mm.n % block:
            return (
                f"layer {layer.name} ({layer.kind}) has a {mm.k} x {mm.n} weight matrix, "
                f"not a multiple of block {block}"
            )
    return None


@dataclass(frozen=True, slots=True)
class LayerCounts:
    """Weights of one layer's sparse products: dense and non-zero elements, non-zero blocks."""

    dense_weights: int
    nonzero_weights: int
    nonzero_blocks: int
    blocks: int  # all blocks of the products (zero and non-zero)


def layer_counts(layer: Layer, sp: Sparsity) -> LayerCounts:
    """Dense and non-zero weight counts of the layer's weight products (each ``count`` times)."""
    dense = nz = nzb = blocks = 0
    b = sp.block
    for i in weight_products(layer):
        mm = layer.matmuls[i]
        rows, cols = mm.k // b, mm.n // b
        z = nonzero_blocks(rows, cols, sp.density)
        dense += mm.k * mm.n * mm.count
        nz += z * b * b * mm.count
        nzb += z * mm.count
        blocks += rows * cols * mm.count
    return LayerCounts(dense, nz, nzb, blocks)


def _as_cost(plan: object, count: int) -> OpCost:
    from simulator.workloads.sparse.kernel import SparsePlan

    assert isinstance(plan, SparsePlan)
    return OpCost(
        plan.compute_cycles * count,
        plan.exchange_bytes * count,
        plan.exchange_cycles * count,
        plan.syncs * count,
        plan.tiles_used,
        float(plan.flops * count),
        0.0,
    )


def product_cost(
    layer: Layer, phase: Phase, micro_batch: int, sp: Sparsity, dtype: str, ct: ChipType
) -> ProductCost:
    """The :data:`~simulator.workloads.cost.ProductCost` hook that makes the layer's weight
    products block-sparse in ``phase`` (module docstring)."""
    weights = set(weight_products(layer))

    def cost(i: int, _dense: Gemm) -> OpCost | None:
        if i not in weights:
            return None
        mm = layer.matmuls[i]
        tokens = micro_batch * mm.m
        if phase == "fwd":
            plan = plan_spmm(mm.n, mm.k, tokens, sp, dtype, ct)
        elif phase == "bwd_input":
            plan = plan_spmm(mm.k, mm.n, tokens, sp, dtype, ct)
        else:
            plan = plan_sddmm(mm.k, mm.n, tokens, sp, dtype, ct)
        return _as_cost(plan, mm.count)

    return cost


def sparse_op_cost(
    layer: Layer, phase: Phase, micro_batch: int, dtype: str, ct: ChipType, sp: Sparsity
) -> OpCost:
    """:func:`~simulator.workloads.cost.op_cost` of the layer with block-sparse weights."""
    hook = product_cost(layer, phase, micro_batch, sp, dtype, ct)
    return op_cost(layer, phase, micro_batch, dtype, ct, hook)


def _product_nonzeros(layer: Layer, sp: Sparsity) -> list[tuple[int, int]]:
    """(index, non-zero weights of one copy) of each weight product."""
    b = sp.block
    return [
        (i, nonzero_blocks(layer.matmuls[i].k // b, layer.matmuls[i].n // b, sp.density) * b * b)
        for i in weight_products(layer)
    ]


def memory_view(layer: Layer, sp: Sparsity) -> Layer:
    """The layer as the memory planner should see it: parameters and FLOPs of the non-zeros
    (weights, gradients and optimizer state are kept for the non-zeros only)."""
    cut = flop_cut = 0
    for i, nz in _product_nonzeros(layer, sp):
        mm = layer.matmuls[i]
        cut += (mm.k * mm.n - nz) * mm.count
        flop_cut += 2 * mm.m * (mm.k * mm.n - nz) * mm.count
    if not cut:
        return layer
    return dataclasses.replace(
        layer,
        params=layer.params - cut,
        forward_flops=layer.forward_flops - flop_cut,
        backward_input_flops=layer.backward_input_flops - flop_cut,
        backward_weight_flops=layer.backward_weight_flops - flop_cut,
    )


def extra_weight_bytes(layer: Layer, sp: Sparsity, dtype: str, ct: ChipType) -> int:
    """What a sparse layer holds beside its non-zero weights: ``metadata_bytes_per_block`` per
    non-zero block (dynamic: per bucket slot) and, dynamic, the buckets' spare value room."""
    out = 0
    for i, nz in _product_nonzeros(layer, sp):
        mm = layer.matmuls[i]
        values, meta = sparse_operand_bytes(mm.k, mm.n, sp, dtype, ct)
        out += (values - nz * DTYPE_BYTES[dtype] + meta) * mm.count
    return out


def dense_gradient_bytes(layer: Layer, dtype: str) -> int:
    """Bytes of the dense gradient of the layer's weight products (a RigL update step holds
    one layer's at a time)."""
    return sum(
        layer.matmuls[i].k * layer.matmuls[i].n * layer.matmuls[i].count
        for i in weight_products(layer)
    ) * DTYPE_BYTES[dtype]


__all__ = [
    "LINEAR_KINDS",
    "LayerCounts",
    "block_misfit",
    "dense_gradient_bytes",
    "extra_weight_bytes",
    "layer_counts",
    "memory_view",
    "product_cost",
    "sparse_op_cost",
    "weight_products",
]
