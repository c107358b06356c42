"""Compute cost of one layer on one chip's tiles, by training phase (BSP supersteps).

:func:`op_cost` maps a :class:`~simulator.workloads.layers.Layer`'s work for one phase and
micro-batch onto tiles and returns an :class:`OpCost`: the slowest tile's compute cycles, the
bytes exchanged to bring operands to the tiles, the BSP syncs, the tiles used, the FLOPs and
the efficiency reached. Its time (:meth:`OpCost.seconds`) is compute, then exchange, then
syncs, one after the other, as a BSP superstep runs them.

* **Matrix work** (``Layer.matmuls``; convolutions are implicit GEMMs) goes to the AMP through
  :mod:`simulator.workloads.gemm` (partition over tiles, AMP passes, operand exchange, the one
  calibrated constant). Backward: the input gradient is the product with the weights
  transposed (for a convolution a stride-1 transposed convolution over the output positions,
  same FLOPs); the weight gradient contracts over the batch and positions. The attention score
  and context products hold no weights: both their operand gradients are input gradients, and
  every sample (and head) is its own product.
* **Element-wise work** (the rest of the phase's FLOPs: norms, activations, pooling, bias
  gradients, softmax) runs on the vector units spread over all tiles, as a roofline of the
  vector rate and the local-memory read/write ports (:func:`.gemm.vector_cycles`). It uses
  the data where its producer left it (no exchange), except batch-norm statistics (reduced
  across tiles and sent back) and embedding rows (gathered from where the table lives).

:func:`optimizer_cost` is the weight update (vector work per parameter, :data:`OPTIMIZER_FLOP`);
:func:`chip_memory` gives the memory planner its :class:`~simulator.workloads.memory.ChipMemory`.
All hardware numbers come from the chip YAML (docs/validation.md, "Compute calibration").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from simulator.hardware.model import ChipType
from simulator.workloads.gemm import (
    Gemm,
    exchange_bytes_per_cycle,
    plan_gemm,
    tile_model,
    vector_cycles,
)
from simulator.workloads.layers import DTYPE_BYTES, Layer
from simulator.workloads.memory import OPTIMIZER_STATE_SLOTS, ChipMemory

Phase = Literal["fwd", "bwd_input", "bwd_weight"]
PHASES: tuple[str, ...] = ("fwd", "bwd_input", "bwd_weight")

#: Vector FLOPs per parameter of one weight update (learning-rate and bias-correction factors
#: are per-step scalars, folded into one multiply):
#: sgd ``w -= lr·g`` (mul, sub) = 2; momentum ``v = μv + g`` (2) then ``w -= lr·v`` (2) = 4;
#: adam ``m = β1·m + (1-β1)·g`` (3), ``v = β2·v + (1-β2)·g²`` (4), ``u = m / (√v + ε)``
#: (sqrt, add, div = 3), ``w -= lr·u`` (2) = 12; lamb: adam's moments and ``u`` (10), weight
#: decay ``u += λw`` (2), the squares summed for ‖w‖ and ‖u‖ (4), ``w -= lr·r·u`` (2) = 18.
OPTIMIZER_FLOP: dict[str, int] = {"sgd": 2, "momentum": 4, "adam": 12, "lamb": 18, "lars": 10}

#: Optimizers that scale each weight tensor's update by a ratio of norms (LAMB, LARS): their
#: update needs every tensor's weight and update norms first (a reduction superstep, and with
#: replicated tensor sharding an all-reduce of the partial norms between replicas).
LAYERWISE_OPTIMIZERS = frozenset({"lamb", "lars"})

#: Matmuls of a layer kind that multiply two activations (no weights), by position in
#: ``Layer.matmuls`` — attention's scores (Q·Kᵀ) and context (P·V), see layers.attention.
PER_SAMPLE_MATMULS: dict[str, frozenset[int]] = {"attention": frozenset({1, 2})}

NORM_STATS = 2  # batch-norm statistics per channel (mean and variance), FP32 partials


@dataclass(frozen=True, slots=True)
class OpCost:
    """What one op costs on one chip. Cycles are the slowest tile's; bytes are per chip.

    ``exchange_bytes`` are spread over ``tiles_used`` tiles; ``exchange_cycles`` is the
    slowest tile's exchange time, ``exchange_bytes / (tiles_used × bytes per cycle)`` for a
    single product, the sum of its parts' for a layer that runs several. ``efficiency`` is
    ``flops / (seconds × chip peak)`` of the path doing most of the work (AMP or vector).
    """

    compute_cycles: float
    exchange_bytes: float
    exchange_cycles: float
    syncs: int
    tiles_used: int
    flops: float
    efficiency: float

    def seconds(self, ct: ChipType) -> float:
        """compute / clock + exchange / clock + syncs × internal sync latency."""
        return (self.compute_cycles + self.exchange_cycles) / ct.clock_hz + (
            self.syncs * ct.sync_latency_s
        )


ZERO = OpCost(0.0, 0.0, 0.0, 0, 0, 0.0, 0.0)


def _check(phase: str, dtype: str, micro_batch: int) -> None:
    if phase not in PHASES:
        raise ValueError(f"phase {phase!r} is not one of {PHASES}")
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"dtype {dtype!r} is not one of {sorted(DTYPE_BYTES)}")
    if micro_batch < 1:
        raise ValueError(f"micro_batch must be >= 1, got {micro_batch}")


def indexed_gemms(layer: Layer, phase: Phase, micro_batch: int) -> tuple[tuple[int, Gemm], ...]:
    """The products one phase of ``layer`` runs for ``micro_batch`` samples, each with the
    index of the ``layer.matmuls`` entry it comes from (a sparse layer replaces the weight
    products by block-sparse ones, :mod:`simulator.workloads.sparse.layer`)."""
    b = micro_batch
    per_sample = PER_SAMPLE_MATMULS.get(layer.kind, frozenset())
    conv = layer.kind == "conv2d"
    out: list[tuple[int, Gemm]] = []
    for i, mm in enumerate(layer.matmuls):
        if i in per_sample:  # two activations: each sample and head its own product
            g = mm.count * b
            if phase == "fwd":
                out.append((i, Gemm(mm.m, mm.n, mm.k, g)))
            elif phase == "bwd_input":  # dA = dC·Bᵀ and dB = Aᵀ·dC
                out += [(i, Gemm(mm.m, mm.k, mm.n, g)), (i, Gemm(mm.k, mm.n, mm.m, g))]
            continue
        channels = layer.input_shape[0] if conv else mm.k
        positions = mm.k // channels  # kernel positions (1 for a dense product)
        # im2col reuse: unique input elements per element of the M×K matrix
        a_fwd = min(1.0, layer.input_elems / (mm.m * mm.k)) if conv else 1.0
        if phase == "fwd":
            out.append((i, Gemm(b * mm.m, mm.n, mm.k, mm.count, channels, a_fwd)))
        elif phase == "bwd_input":  # dX from dY and Wᵀ: contraction over positions × out chans
            a_in = 1.0 / positions
            out.append((i, Gemm(b * mm.m, channels, positions * mm.n, mm.count, mm.n, a_in)))
        else:  # dW = im2col(X)ᵀ · dY: contraction over batch × output positions
            out.append((i, Gemm(mm.k, mm.n, b * mm.m, mm.count, None, a_fwd)))
    return tuple(out)


def layer_gemms(layer: Layer, phase: Phase, micro_batch: int) -> tuple[Gemm, ...]:
    """The products one phase of ``layer`` runs for ``micro_batch`` samples."""
    return tuple(g for _, g in indexed_gemms(layer, phase, micro_batch))


def _phase_flops(layer: Layer, phase: Phase) -> int:
    return {
        "fwd": layer.forward_flops,
        "bwd_input": layer.backward_input_flops,
        "bwd_weight": layer.backward_weight_flops,
    }[phase]


def _combine(parts: Iterable[OpCost], flops: float, peak: float, ct: ChipType) -> OpCost:
    """Parts run one after the other: cycles, bytes and syncs add; efficiency is recomputed."""
    ps = [p for p in parts if p.tiles_used]
    if not ps:
        return ZERO
    total = OpCost(
        compute_cycles=sum(p.compute_cycles for p in ps),
        exchange_bytes=sum(p.exchange_bytes for p in ps),
        exchange_cycles=sum(p.exchange_cycles for p in ps),
        syncs=sum(p.syncs for p in ps),
        tiles_used=max(p.tiles_used for p in ps),
        flops=flops,
        efficiency=0.0,
    )
    return _with_efficiency(total, peak, ct)


def _with_efficiency(c: OpCost, peak: float, ct: ChipType) -> OpCost:
    s = c.seconds(ct)
    eff = c.flops / (s * peak) if s > 0 and peak > 0 else 0.0
    return OpCost(
        c.compute_cycles, c.exchange_bytes, c.exchange_cycles, c.syncs, c.tiles_used, c.flops, eff
    )


def _vector_part(
    ct: ChipType,
    dtype: str,
    flops: float,
    elements: int,
    tensors_read: int,
    exchange_per_tile: float = 0.0,
    extra_syncs: int = 0,
) -> OpCost:
    """Element-wise work over ``elements`` spread evenly on the tiles (one compute set)."""
    if flops <= 0 and exchange_per_tile <= 0:
        return ZERO
    tiles = max(1, min(ct.tiles, elements))
    per_tile = math.ceil(elements / tiles)
    nbytes = DTYPE_BYTES[dtype]
    cycles = vector_cycles(
        ct, dtype, flops / tiles, tensors_read * per_tile * nbytes, per_tile * nbytes
    )
    return OpCost(
        compute_cycles=cycles,
        exchange_bytes=exchange_per_tile * tiles,
        exchange_cycles=exchange_per_tile / exchange_bytes_per_cycle(ct),
        syncs=1 + extra_syncs,
        tiles_used=tiles,
        flops=flops,
        efficiency=0.0,
    )


#: A replacement cost for the product of ``layer.matmuls[i]`` in one phase (``gemm`` is the dense
#: product it replaces), or None to keep the dense one: how a sparse layer's weight products
#: come in (:mod:`simulator.workloads.sparse.layer`).
ProductCost = Callable[[int, Gemm], "OpCost | None"]


def op_cost(
    layer: Layer,
    phase: Phase,
    micro_batch: int,
    dtype: str,
    ct: ChipType,
    product: ProductCost | None = None,
) -> OpCost:
    """Cost of ``phase`` of ``layer`` for ``micro_batch`` samples on one chip of type ``ct``.

    ``product`` may replace some matrix products (:data:`ProductCost`); the element-wise work
    is the dense layer's either way, and the FLOPs are what the products really do.
    """
    _check(phase, dtype, micro_batch)
    b = micro_batch
    parts: list[OpCost] = []
    amp_flops: float = 0
    dense_amp_flops = 0
    for i, g in indexed_gemms(layer, phase, b):
        dense_amp_flops += g.flops
        c = product(i, g) if product is not None else None
        if c is None:
            p = plan_gemm(g, dtype, ct)
            c = OpCost(
                p.compute_cycles,
                p.exchange_bytes,
                p.exchange_cycles,
                p.syncs,
                p.tiles_used,
                p.flops,
                0.0,
            )
        amp_flops += c.flops
        parts.append(c)
    dense_total = _phase_flops(layer, phase) * b
    vec_flops = max(0, dense_total - dense_amp_flops)
    parts.append(_elementwise(layer, phase, b, dtype, ct, vec_flops))
    peak = ct.peak_flops(dtype) if amp_flops else ct.peak_vector_flops(dtype)
    total = dense_total if product is None else amp_flops + vec_flops
    return _combine(parts, total, peak, ct)


def _elementwise(
    layer: Layer, phase: Phase, b: int, dtype: str, ct: ChipType, flops: float
) -> OpCost:
    """The vector share of a phase: roofline on the tiles plus the few exchanges it needs."""
    elements = b * max(layer.input_elems, layer.output_elems)
    reads = 1 if phase == "fwd" else 2  # backward reads the gradient and a saved tensor
    if layer.kind == "batchnorm" and phase != "bwd_weight" and flops > 0:
        # per-channel statistics: each tile's FP32 partials go to the channel's owner and
        # the result comes back (two extra supersteps)
        positions = b * layer.input_elems // layer.input_shape[0]
        per_tile = math.ceil(elements / max(1, min(ct.tiles, elements)))
        channels_spanned = math.ceil(per_tile / positions) + 1
        stats_bytes = 2 * NORM_STATS * channels_spanned * DTYPE_BYTES["fp32"]
        return _vector_part(ct, dtype, flops, elements, reads, stats_bytes, 2)
    if layer.kind == "embedding" and phase in ("fwd", "bwd_weight"):
        # rows gathered from (or gradients scattered to) the tiles holding the tables
        out = b * layer.output_elems
        per_tile = math.ceil(out / max(1, min(ct.tiles, out))) * DTYPE_BYTES[dtype]
        return _vector_part(ct, dtype, flops, out, reads, per_tile, 1)
    return _vector_part(ct, dtype, flops, elements, reads)


def layer_seconds(layer: Layer, phase: Phase, micro_batch: int, dtype: str, ct: ChipType) -> float:
    """Seconds of ``op_cost(layer, phase, micro_batch, dtype, ct)``."""
    return op_cost(layer, phase, micro_batch, dtype, ct).seconds(ct)


def optimizer_cost(params: int, optimizer: str, dtype: str, ct: ChipType) -> OpCost:
    """One weight update of ``params`` parameters, state and arithmetic in ``dtype``.

    Vector work (:data:`OPTIMIZER_FLOP` per parameter) spread over the tiles that hold the
    weights; reads weight, gradient and state, writes weight and state (a roofline). No
    exchange: each tile updates the weights it holds. LAMB and LARS add one superstep to
    reduce their per-tensor norms (their few bytes are not counted here; across replicas the
    plan adds their all-reduce).
    """
    if optimizer not in OPTIMIZER_FLOP:
        raise ValueError(f"optimizer {optimizer!r} is not one of {sorted(OPTIMIZER_FLOP)}")
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"dtype {dtype!r} is not one of {sorted(DTYPE_BYTES)}")
    if params < 0:
        raise ValueError(f"params must be >= 0, got {params}")
    if params == 0:
        return ZERO
    tiles = min(ct.tiles, params)
    per_tile = math.ceil(params / tiles)
    slots = OPTIMIZER_STATE_SLOTS[optimizer]
    nbytes = DTYPE_BYTES[dtype]
    flops = OPTIMIZER_FLOP[optimizer] * params
    cycles = vector_cycles(
        ct,
        dtype,
        OPTIMIZER_FLOP[optimizer] * per_tile,
        (2 + slots) * per_tile * nbytes,
        (1 + slots) * per_tile * nbytes,
    )
    c = OpCost(cycles, 0.0, 0.0, 2 if optimizer in LAYERWISE_OPTIMIZERS else 1, tiles, flops, 0.0)
    return _with_efficiency(c, ct.peak_vector_flops(dtype), ct)


def chip_memory(ct: ChipType) -> ChipMemory:
    """The memory planner's view of a chip type (capacity and the per-tile assumptions)."""
    tm = tile_model(ct)
    return ChipMemory(
        capacity_bytes=ct.sram_bytes,
        tiles=ct.tiles,
        code_base_per_tile_bytes=tm.code_base_per_tile_bytes,
        vertex_state_per_layer_per_tile_bytes=tm.vertex_state_per_layer_per_tile_bytes,
        exchange_buffer_fraction=tm.exchange_buffer_fraction,
    )


__all__ = [
    "OPTIMIZER_FLOP",
    "PHASES",
    "OpCost",
    "Phase",
    "ProductCost",
    "chip_memory",
    "indexed_gemms",
    "layer_gemms",
    "layer_seconds",
    "op_cost",
    "optimizer_cost",
]
