"""A matrix product on IPU tiles: how it is split over tiles and what the slowest tile pays.

This is the AMP half of the per-tile cost model (:mod:`simulator.workloads.cost` composes it
with element-wise work into per-layer costs). Every constant comes from the chip YAML through
:class:`~simulator.hardware.model.TileCostModel`; docs/validation.md ("Compute calibration")
gives the sources and the calibration.

**Partition.** ``C[M×N] = A[M×K] · B[K×N]``, repeated over ``groups`` independent instances,
is cut into ``pm × pn × pk`` blocks — rows of C, columns of C, slices of the contraction — one
block per tile (poplin's planner splits the same three dimensions of a convolution: batch and
field, output channels, input channels). Every split is tried and the fastest kept, so more
tiles available is never slower. Independent groups get ``tiles // groups`` tiles each; with
more groups than tiles each tile runs ``ceil(groups / tiles)`` of them one after the other.

**Compute on a tile** (the AMP). A tile's block is ``m_t × n_t × k_t``. The AMP consumes the
contraction in passes of ``k_g`` elements (``amp_input_channels_per_group``) and produces
``n_g`` outputs per pass (``amp_output_channels_per_group``, its conv units); a partial pass
costs a full one. Each pass first loads its ``k_g × n_g`` weights at
``amp_coeff_load_bytes_per_cycle``, then streams the block's ``m_t`` rows through at the ideal
``k_g·n_g / MAC-per-cycle`` cycles a row, reached at ``amp_pipeline_efficiency`` (η, the one
calibrated constant). A compute set costs ``vertex_overhead_cycles`` once::

    cycles = passes × (load + m_t · k_g·n_g / (MAC/cycle) / η) + overhead
    passes = ceil(k_t / k_g) · ceil(n_t / n_g)

For a convolution the contraction is ``kernel positions × input channels``; padding applies to
the channels of each kernel position (``k_channels``), which is what makes a 3-channel input
(ResNet conv1) fill 3 of 16 AMP lanes.

**Exchange.** Operands start spread evenly over the chip (the producer's linear mapping) and
each tile receives its A block and its B block: an input is *replicated* to every tile whose
block needs it (the 1/T share a tile may already hold is ignored). For a convolution A is the
implicit im2col matrix, whose unique elements are just the input tensor: ``a_unique`` (unique
elements / (M·K)) scales the A block's bytes — halos between neighbouring blocks are ignored.
With ``pk > 1`` the FP32 partial sums are reduce-scattered among the ``pk`` tiles of an output
block in a second superstep and added on the vector unit.

**Time** of a plan, in cycles of the chip clock: compute + exchange (received bytes at
``exchange_bytes_per_cycle × exchange_efficiency``) + one sync per superstep.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from simulator.hardware.model import ChipType, TileCostModel
from simulator.workloads.layers import DTYPE_BYTES

PARTIAL_BYTES = DTYPE_BYTES["fp32"]  # AMP partial sums are FP32 (FP16.32 on Mk1, FP32 GEMMs)


@dataclass(frozen=True, slots=True)
class Gemm:
    """One matrix product ``[m×k]·[k×n]`` repeated over ``groups`` independent instances.

    ``k_channels``: the contraction is ``k // k_channels`` kernel positions of ``k_channels``
    channels each, padded per position to the AMP's pass width (None: one run of ``k``).
    ``a_unique`` / ``b_unique``: unique elements of an operand per element of its matrix
    (below 1 for the im2col matrix of a convolution).
    """

    m: int
    n: int
    k: int
    groups: int = 1
    k_channels: int | None = None
    a_unique: float = 1.0
    b_unique: float = 1.0

    def __post_init__(self) -> None:
        for name in ("m", "n", "k", "groups"):
            if getattr(self, name) < 1:
                raise ValueError(f"Gemm.{name} must be >= 1, got {getattr(self, name)}")
        if self.k_channels is not None and self.k % self.k_channels:
            raise ValueError(f"k {self.k} is not a multiple of k_channels {self.k_channels}")
        if not (0 < self.a_unique <= 1 and 0 < self.b_unique <= 1):
            raise ValueError("a_unique and b_unique must be in (0, 1]")

    @property
    def flops(self) -> int:
        """2 FLOP per multiply-add."""
        return 2 * self.m * self.n * self.k * self.groups


@dataclass(frozen=True, slots=True)
class GemmPlan:
    """The chosen split and its cost. Cycles are the slowest tile's; bytes are per chip."""

    pm: int
    pn: int
    pk: int
    groups_per_tile: int  # instances one tile runs in turn (more groups than tiles)
    tiles_used: int
    compute_cycles: float  # AMP passes + partial-sum additions + compute-set overheads
    exchange_bytes: float  # received by all used tiles together
    exchange_cycles: float  # the slowest tile's exchange time
    syncs: int  # supersteps (one, plus one for the partial-sum reduction when pk > 1)
    flops: int


def tile_model(ct: ChipType) -> TileCostModel:
    """The chip's per-tile cost constants; a clear error when its chip file has none."""
    if ct.cost is None:
        raise ValueError(
            f"chip type '{ct.name}' has no per-tile cost model: its chip file needs the "
            "amp_* and vertex_overhead_cycles keys (see topologies/chips/gc2.yaml)"
        )
    return ct.cost


def exchange_bytes_per_cycle(ct: ChipType) -> float:
    """Achieved on-chip exchange bytes one tile receives per cycle."""
    return ct.exchange_bytes_per_cycle * ct.exchange_efficiency


def vector_cycles(
    ct: ChipType, dtype: str, flops: float, read_bytes: float, write_bytes: float
) -> float:
    """Roofline of element-wise work on one tile: the vector unit or local memory, whichever
    is slower, plus one compute set's overhead (zero when there is no work)."""
    if flops <= 0 and read_bytes <= 0 and write_bytes <= 0:
        return 0.0
    busy = max(
        flops / ct.vector_flop_per_cycle[dtype],
        read_bytes / ct.local_read_bytes_per_cycle,
        write_bytes / ct.local_write_bytes_per_cycle,
    )
    return busy + tile_model(ct).vertex_overhead_cycles


def splits(dim: int, limit: int) -> np.ndarray:
    """The fewest parts giving each distinct block size ``ceil(dim / p)`` with ``p <= limit``."""
    out = []
    p = 1
    top = min(dim, limit)
    while p <= top:
        out.append(p)
        block = -(-dim // p)
        if block == 1:
            break
        p = -(-dim // (block - 1))
    return np.array(out, dtype=np.int64)


@dataclass(frozen=True, slots=True)
class _Rates:
    """The chip constants one plan depends on, for one dtype (hashable, for the cache)."""

    in_bytes: int
    k_g: int
    n_g: int
    row_cycles: float  # one row through one AMP pass, at the calibrated efficiency
    load_cycles: float  # loading one pass's weights
    overhead: float  # one compute set
    xbpc: float  # exchange bytes received per cycle per tile
    sync_cycles: float
    vector_fp32: float  # FLOP per cycle per tile (partial-sum additions)
    read_bpc: float
    write_bpc: float


def _rates(ct: ChipType, dtype: str) -> _Rates:
    tm = tile_model(ct)
    k_g = tm.amp_input_channels_per_group[dtype]
    n_g = tm.amp_output_channels_per_group[dtype]
    macs_per_cycle = ct.amp_flop_per_cycle[dtype] / 2
    return _Rates(
        in_bytes=DTYPE_BYTES[dtype],
        k_g=k_g,
        n_g=n_g,
        row_cycles=k_g * n_g / macs_per_cycle / tm.amp_pipeline_efficiency[dtype],
        load_cycles=k_g * n_g * DTYPE_BYTES[dtype] / tm.amp_coeff_load_bytes_per_cycle,
        overhead=tm.vertex_overhead_cycles,
        xbpc=exchange_bytes_per_cycle(ct),
        sync_cycles=ct.sync_latency_s * ct.clock_hz,
        vector_fp32=ct.vector_flop_per_cycle["fp32"],
        read_bpc=ct.local_read_bytes_per_cycle,
        write_bpc=ct.local_write_bytes_per_cycle,
    )


def plan_gemm(g: Gemm, dtype: str, ct: ChipType, tiles: int | None = None) -> GemmPlan:
    """The fastest split of ``g`` over at most ``tiles`` tiles (None: the whole chip)."""
    t = ct.tiles if tiles is None else min(tiles, ct.tiles)
    if t < 1:
        raise ValueError(f"tiles must be >= 1, got {tiles}")
    return _plan(g, _rates(ct, dtype), t)


@functools.lru_cache(maxsize=8192)
def _plan(g: Gemm, r: _Rates, tiles: int) -> GemmPlan:
    k_g, n_g, in_bytes, xbpc, overhead = r.k_g, r.n_g, r.in_bytes, r.xbpc, r.overhead
    channels = g.k_channels or g.k
    positions = g.k // channels
    k_passes = positions * -(-channels // k_g)  # contraction passes before any split

    if g.groups >= tiles:
        per_group, gpt = 1, -(-g.groups // tiles)
    else:
        per_group, gpt = tiles // g.groups, 1
    active_groups = min(g.groups, tiles)

    # For each split of n, every (pk, pm) pair at once: the same arithmetic as a loop over pk
    # and pm, and the same choice — least time, then fewest tiles, then the first in
    # (pn, pk, pm) order.
    best: tuple[float, int, GemmPlan] | None = None
    for pn in splits(g.n, per_group):
        pn = int(pn)
        room = per_group // pn
        n_t = -(-g.n // pn)
        n_pass = -(-n_t // n_g)
        pk = splits(k_passes, room)[:, None]
        pm = splits(g.m, room)[None, :]
        valid = pk * pm <= room
        kp_t = -(-k_passes // pk)
        k_t = -(-g.k // pk)
        m_t = -(-g.m // pm)
        amp = kp_t * n_pass * (r.load_cycles + m_t * r.row_cycles) + overhead
        xbytes = (m_t * k_t * g.a_unique + k_t * n_t * g.b_unique) * in_bytes
        split_k = pk > 1
        share = np.where(split_k, (pk - 1) / pk * m_t * n_t, 0.0)
        red_bytes = share * PARTIAL_BYTES
        red = np.where(
            split_k,
            overhead
            + np.maximum.reduce(
                [
                    share / r.vector_fp32,
                    2 * red_bytes / r.read_bpc,
                    m_t * n_t / pk * in_bytes / r.write_bpc,
                ]
            ),
            0.0,
        )
        syncs = np.where(split_k, 2, 1)
        total = gpt * (amp + red + (xbytes + red_bytes) / xbpc + syncs * r.sync_cycles)
        total = np.where(valid, total, np.inf)
        used = pm * pn * pk * active_groups
        low = total.min()
        ties = total == low
        fewest = np.where(ties, used, np.iinfo(np.int64).max).min()
        i, j = (int(x[0]) for x in np.nonzero(ties & (used == fewest)))
        key = (float(low), int(fewest))
        if best is None or key < best[:2]:
            per_tile_bytes = gpt * float(xbytes[i, j] + red_bytes[i, j])
            plan = GemmPlan(
                pm=int(pm[0, j]),
                pn=pn,
                pk=int(pk[i, 0]),
                groups_per_tile=gpt,
                tiles_used=key[1],
                compute_cycles=gpt * float(amp[i, j] + red[i, j]),
                exchange_bytes=per_tile_bytes * key[1],
                exchange_cycles=per_tile_bytes / xbpc,
                syncs=gpt * int(syncs[i, 0]),
                flops=g.flops,
            )
            best = (key[0], key[1], plan)
    assert best is not None
    return best[2]


class TimedPlan(Protocol):
    """What the BSP time of a one-chip plan depends on (a GemmPlan or a sparse plan)."""

    @property
    def compute_cycles(self) -> float: ...
    @property
    def exchange_cycles(self) -> float: ...
    @property
    def syncs(self) -> int: ...


def gemm_seconds(plan: TimedPlan, ct: ChipType) -> float:
    """Wall time of a plan on one chip: compute, exchange and syncs in turn (BSP)."""
    return (plan.compute_cycles + plan.exchange_cycles) / ct.clock_hz + plan.syncs * (
        ct.sync_latency_s
    )


def achieved_flops(g: Gemm, dtype: str, ct: ChipType, tiles: int | None = None) -> float:
    """FLOP/s the model predicts for ``g`` on one chip (the figure Jia19 reports)."""
    plan = plan_gemm(g, dtype, ct, tiles)
    return g.flops / gemm_seconds(plan, ct)


__all__ = [
    "Gemm",
    "GemmPlan",
    "achieved_flops",
    "exchange_bytes_per_cycle",
    "gemm_seconds",
    "plan_gemm",
    "splits",
    "tile_model",
    "vector_cycles",
]
