"""Block-sparse matrix products on IPU tiles: how the non-zero blocks are spread over the tiles
and what the slowest tile pays (docs/strategies/sparsity.md, "The kernel model").

Two products, each with a sparse operand of ``b × b`` blocks at density ``d``:

* **SpMM** ``Y[m×n] = S[m×k] · X[k×n]`` — the sparse operand times a dense one (a sparse
  layer's forward pass and input gradient);
* **SDDMM** ``S[m×k] = A[m×n] · B[n×k]`` at S's non-zeros only — a dense-dense product sampled
  at the pattern (a sparse layer's weight gradient), contracting over ``n``.

**Partition.** The ``(m/b) × (k/b)`` block grid is cut into ``pm × pk`` regions and ``n`` into
``pn`` slices, one (region, slice) per tile; every split is tried and the fastest kept, as
:mod:`simulator.workloads.gemm` does for dense products, under the same assumption (no per-tile
memory limit on the split). A region of ``R × C`` blocks holds ``nnz / (pm·pk)`` non-zero blocks
(static: the planner knows the pattern and balances it). In **dynamic** mode the pattern is not
known when the program is compiled: each tile owns a *bucket* of ``bucket_headroom`` times that
many blocks and is timed full; its non-zeros travel with their indices
(``metadata_bytes_per_block``).

**Per-block work on a tile.** The AMP takes ``k_g`` contraction elements into ``n_g`` outputs per
pass (chip keys). A block smaller than a pass is padded; the non-zero blocks of one block-row of a
region are stacked along the contraction into one pass (their dense rows are laid out side by side
by the exchange), so a ``4×4`` FP16 block fills 4 of 16 outputs of a pass whose 16 inputs hold
four blocks. Each pass loads its coefficients and streams the dense operand's columns at the dense
rate divided by ``sparse.amp_efficiency`` (the block-sparse vertex's streaming, calibrated). A
static planner that finds a tile's whole region non-zero runs the dense vertex there, so the factor
applies to the ``1 − d^(R·C)`` share of regions that hold a zero block: a density-1 static product
costs what the dense one does, and any sparser one pays the factor almost everywhere (dynamic
products never know and always pay it). The vector path (the roofline of
:func:`~simulator.workloads.gemm.vector_cycles` with ``sparse.vector_efficiency`` of the vector
rate) is the alternative; the faster of the two is taken for each block size. Dynamic mode adds
``sparse.dynamic_mac_cycles`` per non-zero multiply-add: operands addressed through the bucket's
indices at run time.

**Exchange.** Each tile receives the rows of the dense operand its region's columns touch
(static: only the columns holding a non-zero, expected ``C (1 − (1 − d)^R)``; dynamic: every
column of the region, the compiled exchange cannot know), its non-zero blocks (dynamic: the full
bucket with indices) and, when the contraction is split, reduce-scatters FP32 partial sums as
:mod:`~simulator.workloads.gemm` does. Dynamic SpMM with ``pk > 1`` **propagates** the buckets
around the ``pk`` tiles of a row-range, one exchange and sync per step, so each meets the slices
of the dense operand it needs (the layout's price for not knowing the pattern).

Time: compute, then exchange, then syncs, in cycles of the chip clock (BSP), as for dense products.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from simulator.hardware.model import ChipType, SparseCostModel
from simulator.workloads.gemm import PARTIAL_BYTES, _Rates, _rates, gemm_seconds, splits

Mode = Literal["static", "dynamic"]
Kind = Literal["spmm", "sddmm"]
BLOCKS: tuple[int, ...] = (1, 4, 8, 16)
MODES: tuple[str, ...] = ("static", "dynamic")


@dataclass(frozen=True, slots=True)
class Sparsity:
    """A block-sparse pattern: ``density`` of ``block × block`` blocks are non-zero."""

    density: float
    block: int = 1
    mode: Mode = "static"

    def __post_init__(self) -> None:
        if not 0 < self.density <= 1:
            raise ValueError(f"density must be in (0, 1], got {self.density}")
        if self.block < 1:
            raise ValueError(f"block must be >= 1, got {self.block}")
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r} is not one of {MODES}")


def nonzero_blocks(rows: int, cols: int, density: float) -> int:
    """Non-zero blocks of a ``rows × cols`` block grid: ``density × blocks`` rounded half up,
    at least one. The NumPy reference runs draw exactly this many (docs/reference_runs.md)."""
    return max(1, math.floor(density * rows * cols + 0.5))


@dataclass(frozen=True, slots=True)
class SparsePlan:
    """The chosen partition of a sparse product and its cost (cycles: the slowest tile's)."""

    kind: Kind
    mode: Mode
    pm: int  # block-row parts
    pk: int  # block-column parts
    pn: int  # parts of the dense dimension (SpMM) or of the contraction (SDDMM)
    tiles_used: int
    path: Literal["amp", "vector"]
    nonzero_blocks: int  # in the whole operand
    blocks_per_tile: int  # static: the balanced share; dynamic: the bucket capacity
    compute_cycles: float
    exchange_bytes: float  # received by all used tiles together
    exchange_cycles: float  # the slowest tile's exchange time
    syncs: int
    flops: int  # non-zero FLOPs: 2 per multiply-add at a non-zero


def sparse_model(ct: ChipType) -> SparseCostModel:
    """The chip's sparse constants; a clear error when its chip file has none."""
    if ct.sparse is None:
        raise ValueError(
            f"chip type '{ct.name}' has no block-sparse model: its chip file needs a `sparse:` "
            "section (see topologies/chips/bow.yaml)"
        )
    return ct.sparse


@dataclass(frozen=True, slots=True)
class _SparseRates:
    """The chip's sparse constants for one dtype (hashable, for the cache)."""

    base: _Rates
    amp_efficiency: float
    vector_flop: float  # achieved vector FLOP per cycle per tile (sparse multiply-adds)
    dynamic_mac_cycles: float
    headroom: float
    meta: int
    tiles: int


def _sparse_rates(ct: ChipType, dtype: str) -> _SparseRates:
    sm = sparse_model(ct)
    return _SparseRates(
        base=_rates(ct, dtype),
        amp_efficiency=sm.amp_efficiency,
        vector_flop=ct.vector_flop_per_cycle[dtype] * sm.vector_efficiency,
        dynamic_mac_cycles=sm.dynamic_mac_cycles,
        headroom=sm.bucket_headroom,
        meta=sm.metadata_bytes_per_block,
        tiles=ct.tiles,
    )


def _grid(m: int, k: int, sp: Sparsity) -> tuple[int, int]:
    b = sp.block
    if m % b or k % b:
        raise ValueError(
            f"the sparse operand's sides ({m} x {k}) must be multiples of the block ({b})"
        )
    return m // b, k // b


def _product(
    kind: Kind, m: int, k: int, n: int, sp: Sparsity, dtype: str, ct: ChipType
) -> SparsePlan:
    for name, v in (("m", m), ("k", k), ("n", n)):
        if v < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")
    mb, kb = _grid(m, k, sp)
    return _plan(kind, mb, kb, n, sp, _sparse_rates(ct, dtype))


def plan_spmm(m: int, k: int, n: int, sp: Sparsity, dtype: str, ct: ChipType) -> SparsePlan:
    """The fastest partition of ``Y[m×n] = S[m×k]·X[k×n]`` (S sparse) on one chip."""
    return _product("spmm", m, k, n, sp, dtype, ct)


def plan_sddmm(m: int, k: int, n: int, sp: Sparsity, dtype: str, ct: ChipType) -> SparsePlan:
    """The fastest partition of ``S[m×k] = A[m×n]·B[n×k]`` at S's non-zeros (contraction n)."""
    return _product("sddmm", m, k, n, sp, dtype, ct)


def _amp_passes(
    nzt: np.ndarray, rows: np.ndarray, b: int, across: int, along: int, shared: float
) -> np.ndarray:
    """AMP passes for ``nzt`` blocks in ``rows`` block-rows: the blocks of a row stacked
    ``along`` a pass's contraction (``along`` elements); ``across`` its outputs (``across``
    elements) a pass holds one block-row, plus each other block-row it covers that needs exactly
    the pass's inputs — a non-zero in every stacked column, probability ``shared`` to the power
    of the stacked blocks (``shared``: the density when the pattern is known, 0 when it is not)
    — so a density-1 static product fills every pass."""
    if b >= along and b >= across:
        return nzt * (-(-b // along)) * (-(-b // across))
    stack = np.maximum(1.0, nzt / np.maximum(rows, 1.0))
    fill_along = np.minimum(1.0, b * stack / along) if b < along else 1.0
    same = shared ** max(1, along // b)
    fill_across = b / across + (1.0 - b / across) * same if b < across else 1.0
    return np.ceil(nzt * b * b / (along * across * fill_along * fill_across))


@functools.lru_cache(maxsize=4096)
def _plan(kind: Kind, mb: int, kb: int, n: int, sp: Sparsity, r: _SparseRates) -> SparsePlan:
    base, b, d = r.base, sp.block, sp.density
    dynamic = sp.mode == "dynamic"
    nnz = nonzero_blocks(mb, kb, d)
    d_eff = nnz / (mb * kb)
    in_b = base.in_bytes
    penalty = 1.0 / r.amp_efficiency - 1.0
    best: tuple[float, int, SparsePlan] | None = None
    for pn in splits(n, r.tiles):
        pn = int(pn)
        room = r.tiles // pn
        n_t = -(-n // pn)
        pk = splits(kb, room)[:, None].astype(float)
        pm = splits(mb, room)[None, :].astype(float)
        valid = pk * pm <= room
        rows_t = np.ceil(mb / pm)
        cols_t = np.ceil(kb / pk)
        share = nnz / (pm * pk)
        nzt = np.ceil(share * r.headroom) if dynamic else np.ceil(share)
        # regions holding a zero block stream through the sparse vertex (module docstring)
        sparse_share = 1.0 if dynamic else 1.0 - d_eff ** (rows_t * cols_t)
        row = base.row_cycles * (1.0 + penalty * sparse_share)
        if dynamic:
            r_t, c_t = rows_t + 0 * pk, cols_t + 0 * pm
        else:
            r_t = rows_t * (1.0 - (1.0 - d_eff) ** cols_t)
            c_t = cols_t * (1.0 - (1.0 - d_eff) ** rows_t)
        macs = nzt * b * b * n_t
        if kind == "spmm":  # coefficients: the block; streamed: n_t columns of X
            passes = _amp_passes(nzt, r_t, b, base.n_g, base.k_g, 0.0 if dynamic else d_eff)
            amp = passes * (base.load_cycles + n_t * row)
            reads = nzt * (b * n_t * in_b + b * b * in_b + b * n_t * PARTIAL_BYTES)
            writes = nzt * b * n_t * PARTIAL_BYTES
            dense_in = c_t * b * n_t * in_b  # rows of X for the touched block-columns
            split = pk > 1
            red_elems = np.where(split, (pk - 1) / pk * r_t * b * n_t, 0.0)
            out_elems = r_t * b * n_t / pk
        else:  # coefficients: a k_g × n_g slice of B; streamed: the rows of A that need it
            # Static: a pass group is g block-columns (b < n_g) or one (b >= n_g, in b / n_g
            # passes) and streams the rows of the block-rows with a non-zero in the group, so a
            # density-1 SDDMM is the dense product. Dynamic: one group per non-zero block (the
            # rows to share are known only at run time), streaming its b rows.
            g = max(1, base.n_g // b)
            per_group = -(-b // base.n_g)
            if dynamic:
                live, rows_streamed = nzt, nzt * b
            else:
                groups = np.ceil(cols_t / g)
                live = groups * (1.0 - (1.0 - d_eff) ** (rows_t * g))
                rows_streamed = groups * rows_t * (1.0 - (1.0 - d_eff) ** g) * b
            k_chunks = -(-n_t // base.k_g)
            amp = k_chunks * per_group * (live * base.load_cycles + rows_streamed * row)
            reads = nzt * 2 * b * n_t * in_b
            writes = nzt * b * b * PARTIAL_BYTES
            dense_in = (r_t + c_t) * b * n_t * in_b  # rows of A and columns of B
            split = np.full_like(pk * pm, pn > 1, dtype=bool)
            red_elems = np.where(split, (pn - 1) / pn * nzt * b * b, 0.0)
            out_elems = nzt * b * b / pn
        vec = np.maximum.reduce(
            [2 * macs / r.vector_flop, reads / base.read_bpc, writes / base.write_bpc]
        )
        use_amp = amp <= vec
        compute = np.minimum(amp, vec) + base.overhead
        if dynamic:
            compute = compute + r.dynamic_mac_cycles * macs
        red_bytes = red_elems * PARTIAL_BYTES
        red = np.where(
            split,
            base.overhead
            + np.maximum.reduce(
                [
                    red_elems / base.vector_fp32,
                    2 * red_bytes / base.read_bpc,
                    out_elems * in_b / base.write_bpc,
                ]
            ),
            0.0,
        )
        block_bytes = b * b * in_b + (r.meta if dynamic else 0)
        if kind == "spmm":
            sparse_in = nzt * block_bytes
            steps = pk if dynamic else 1 + 0 * pk  # bucket visits (propagation: steps - 1)
        else:
            sparse_in = nzt * r.meta if dynamic else 0 * nzt  # the outputs' indices
            steps = 1 + 0 * pk
        xbytes = dense_in + red_bytes + sparse_in * steps
        syncs = np.where(split, 2, 1) + steps + 0 * pm  # + the sparse operand's own exchange
        total = compute + red + xbytes / base.xbpc + syncs * base.sync_cycles
        total = np.where(valid, total, np.inf)
        used = pm * pk * pn
        low = total.min()
        ties = total == low
        fewest = np.where(ties, used, np.inf).min()
        i, j = (int(x[0]) for x in np.nonzero(ties & (used == fewest)))
        key = (float(low), int(fewest))
        if best is None or key < best[:2]:
            per_tile = float(xbytes[i, j])
            plan = SparsePlan(
                kind=kind,
                mode=sp.mode,
                pm=int(pm[0, j]),
                pk=int(pk[i, 0]),
                pn=pn,
                tiles_used=key[1],
                path="amp" if bool(use_amp[i, j]) else "vector",
                nonzero_blocks=nnz,
                blocks_per_tile=int(nzt[i, j]),
                compute_cycles=float(compute[i, j] + red[i, j]),
                exchange_bytes=per_tile * key[1],
                exchange_cycles=per_tile / base.xbpc,
                syncs=int(syncs[i, j]),
                flops=2 * nnz * b * b * n,
            )
            best = (key[0], key[1], plan)
    assert best is not None
    return best[2]


def sparse_seconds(plan: SparsePlan, ct: ChipType) -> float:
    """Wall time of a plan on one chip: compute, exchange and syncs in turn (BSP), as for a
    dense product (:func:`~simulator.workloads.gemm.gemm_seconds`)."""
    return gemm_seconds(plan, ct)


def sparse_operand_bytes(
    m: int, k: int, sp: Sparsity, dtype: str, ct: ChipType, *, with_values: bool = True
) -> tuple[int, int]:
    """(value bytes, index bytes) a chip holds for a sparse ``m × k`` operand: the non-zero
    blocks and ``metadata_bytes_per_block`` each; dynamic buckets are ``bucket_headroom``
    times larger (their spare room is allocated)."""
    from simulator.workloads.layers import DTYPE_BYTES

    sm = sparse_model(ct)
    mb, kb = _grid(m, k, sp)
    nnz = nonzero_blocks(mb, kb, sp.density)
    slots = math.ceil(nnz * sm.bucket_headroom) if sp.mode == "dynamic" else nnz
    values = slots * sp.block**2 * DTYPE_BYTES[dtype] if with_values else 0
    return values, slots * sm.metadata_bytes_per_block


__all__ = [
    "BLOCKS",
    "MODES",
    "SparsePlan",
    "Sparsity",
    "nonzero_blocks",
    "plan_sddmm",
    "plan_spmm",
    "sparse_model",
    "sparse_operand_bytes",
    "sparse_seconds",
]
