"""The pattern update of dynamic sparse training (SET, RigL): its work and what it costs on a chip
(docs/strategies/sparsity.md, "Pattern updates").

Every ``update_every_steps`` steps each sparse weight product drops the ``drop`` non-zero blocks
of smallest magnitude and regrows as many among the blocks that were zero, so the density stays
put. ``drop = round_half_up(drop_fraction × non-zero blocks)``, at most the zero blocks.

* **Prune by magnitude**: a block's score is the sum of its elements' magnitudes
  (``b²`` absolute values and ``b² − 1`` additions per block); the ``drop`` smallest are found
  by a bitwise bisection over the scores' bit patterns (non-negative floats order like their
  bits): one pass per bit of the dtype, each comparing every candidate with the trial threshold
  and counting (2 operations per candidate), then one count reduction across tiles.
* **Regrow random** (SET): one uniform random key per zero block, the ``drop`` largest selected
  by the same bisection.
* **Regrow by gradient** (RigL): the update step computes the *dense* weight gradient
  (``2 · T · k · n`` FLOPs for T samples-times-rows instead of the sampled ``2 · T · nnz``; the
  difference is charged), scores the zero blocks by gradient magnitude as above and selects the
  ``drop`` largest; the dense gradient of one layer is held at a time.
* Dynamic kernels then re-bucket the non-zeros: every non-zero block's values and indices are
  exchanged once.

The NumPy reference run (strategies/sparse/reference.py) does exactly this and counts every
operation in its ledger; plans must equal it (tests/test_sparse_reference.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Literal

from simulator.hardware.model import ChipType
from simulator.workloads.cost import op_cost
from simulator.workloads.gemm import vector_cycles
from simulator.workloads.layers import DTYPE_BYTES, Layer
from simulator.workloads.sparse.kernel import Sparsity, nonzero_blocks, sparse_model
from simulator.workloads.sparse.layer import (
    dense_gradient_bytes,
    layer_counts,
    sparse_op_cost,
    weight_products,
)

Regrow = Literal["random", "gradient"]
SELECT_OPS = 2  # per candidate per bisection pass: compare, count


def key_bits(dtype: str) -> int:
    """Bisection passes of one selection: the bits of a score in ``dtype``."""
    return 8 * DTYPE_BYTES[dtype]


def drop_count(nonzero: int, zeros: int, drop_fraction: float) -> int:
    """Blocks dropped (and regrown) per update: ``drop_fraction × nonzero`` rounded half up,
    at most the zero blocks."""
    return min(zeros, math.floor(drop_fraction * nonzero + 0.5))


@dataclass(frozen=True, slots=True)
class UpdateWork:
    """The work of one pattern update (one layer, or a sum). Counts are exact integers."""

    score_ops: int = 0  # magnitudes and block sums (non-zeros; zeros too for gradient regrow)
    select_ops: int = 0  # bisection compares and counts
    select_passes: int = 0  # bisection passes (each ends in a count reduction across tiles)
    rng_samples: int = 0  # random regrow keys
    dense_gradient_flops: int = 0  # extra FLOPs of the dense weight gradient (gradient regrow)
    dropped_blocks: int = 0
    moved_bytes: int = 0  # dynamic: non-zero values and indices re-bucketed

    def __add__(self, other: UpdateWork) -> UpdateWork:
        return UpdateWork(
            *(getattr(self, f.name) + getattr(other, f.name) for f in fields(UpdateWork))
        )

    @property
    def vector_ops(self) -> int:
        """Operations on the vector units (scores and selections)."""
        return self.score_ops + self.select_ops


def layer_update_work(
    layer: Layer,
    sp: Sparsity,
    drop_fraction: float,
    regrow: Regrow,
    dtype: str,
    samples_per_step: int,
    metadata_bytes_per_block: int,
) -> UpdateWork:
    """The work of one update of ``layer``'s weight products (module docstring);
    ``samples_per_step``: samples whose dense gradient a RigL update step computes."""
    b = sp.block
    bits = key_bits(dtype)
    total = UpdateWork()
    for i in weight_products(layer):
        mm = layer.matmuls[i]
        blocks = (mm.k // b) * (mm.n // b)
        nnz = nonzero_blocks(mm.k // b, mm.n // b, sp.density)
        zeros = blocks - nnz
        drop = drop_count(nnz, zeros, drop_fraction)
        per_block = 2 * b * b - 1
        score = nnz * per_block
        select = passes = 0
        if drop:
            select += bits * SELECT_OPS * nnz
            passes += bits
        samples = dense = 0
        if drop and regrow == "random":
            samples = zeros
        elif drop and regrow == "gradient":
            dense = 2 * samples_per_step * mm.m * (mm.k * mm.n - nnz * b * b)
            score += zeros * per_block
        if drop:
            select += bits * SELECT_OPS * zeros
            passes += bits
        moved = nnz * (b * b * DTYPE_BYTES[dtype] + metadata_bytes_per_block)
        one = UpdateWork(
            score, select, passes, samples, dense, drop, moved if sp.mode == "dynamic" else 0
        )
        for _ in range(mm.count):
            total = total + one
    return total


@dataclass(frozen=True, slots=True)
class UpdateCost:
    """One update step's extra time on one chip, by kind, and its work."""

    compute_s: float  # vector scores and selections + the dense-gradient difference
    exchange_s: float  # count reductions and re-bucketing
    syncs: int
    rng_samples: int
    flops: float  # vector operations + dense-gradient FLOPs
    work: UpdateWork
    gradient_bytes: int = 0  # extra gradient bytes a data-parallel RigL update all-reduces


def update_cost(
    layers: list[Layer],
    sp: Sparsity,
    drop_fraction: float,
    regrow: Regrow,
    dtype: str,
    micro_batch: int,
    micro_batches: int,
    ct: ChipType,
) -> UpdateCost:
    """What one pattern update of the sparse ``layers`` on a chip costs (module docstring).

    The RigL dense gradient replaces the sampled one for each of the step's ``micro_batches``
    micro-batches of ``micro_batch`` samples: its extra time is the dense weight-gradient phase
    minus the sparse one, per micro-batch. Scores and selections are vector work spread over the
    tiles (a roofline reading each candidate's key once per operation); each bisection pass adds
    a count reduction (two exchanges with their syncs).
    """
    meta = sparse_model(ct).metadata_bytes_per_block
    work = UpdateWork()
    dense_s = 0.0
    grad_bytes = 0
    for layer in layers:
        one = layer_update_work(
            layer, sp, drop_fraction, regrow, dtype, micro_batch * micro_batches, meta
        )
        work = work + one
        if one.dense_gradient_flops:
            grad_bytes += dense_gradient_bytes(layer, dtype) - (
                layer_counts(layer, sp).nonzero_weights * DTYPE_BYTES[dtype]
            )
            dense = op_cost(layer, "bwd_weight", micro_batch, dtype, ct)
            sparse = sparse_op_cost(layer, "bwd_weight", micro_batch, dtype, ct, sp)
            dense_s += micro_batches * max(0.0, dense.seconds(ct) - sparse.seconds(ct))
    tiles = ct.tiles
    nbytes = DTYPE_BYTES[dtype]
    ops = work.vector_ops
    cycles = (
        vector_cycles(ct, dtype, ops / tiles, ops * nbytes / tiles, 0.0)
        if ops
        else 0.0
    )
    reduce_s = work.select_passes * 2 * ct.exchange_latency_s
    move_s = work.moved_bytes / (tiles * ct.tile_exchange_Bps) if work.moved_bytes else 0.0
    return UpdateCost(
        compute_s=cycles / ct.clock_hz + dense_s,
        exchange_s=reduce_s + move_s,
        syncs=2 * work.select_passes + (1 if work.moved_bytes else 0),
        rng_samples=work.rng_samples,
        flops=float(ops + work.dense_gradient_flops),
        work=work,
        gradient_bytes=grad_bytes,
    )


__all__ = [
    "SELECT_OPS",
    "Regrow",
    "UpdateCost",
    "UpdateWork",
    "drop_count",
    "key_bits",
    "layer_update_work",
    "update_cost",
]
