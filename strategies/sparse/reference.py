"""NumPy reference run of sparse training: a masked MLP with static, SET and RigL patterns.

The network of :mod:`strategies.reference.nn` (dense layers, ReLU, softmax cross-entropy, SGD)
with block masks on chosen layers' weights, trained on one device. Every operation goes through
:class:`~strategies.reference.nn.Ops` or the instrumented sparse operations below, which charge
the :class:`~strategies.reference.ledger.Ledger` (FLOPs by phase) and an :class:`UpdateCounts`
(the pattern update's work) from the arrays they touch at run time — never from a formula of the
plan. docs/reference_runs.md ("Sparse training") lists the rules; in short:

* sparse products count their non-zero multiply-adds only (2 FLOP each): forward ``x (W∘M)``
  and input gradient ``dy (W∘M)ᵀ`` 2·B·nnz; the weight gradient is *sampled* at the non-zeros
  (computed for them only) 2·B·nnz; SGD updates non-zero weights (2 per non-zero) and biases;
* a RigL update step computes the dense weight gradient (2·B·in·out) instead of the sampled
  one, uses its masked part for SGD and its magnitudes to regrow;
* pattern update of a layer with ``nnz`` non-zero and ``zeros`` zero blocks of side b, dropping
  ``drop = min(zeros, ⌊α·nnz + ½⌋)``: block scores ``b²`` absolute values and ``b² − 1`` adds per
  block; each selection is a bitwise bisection over the scores' bit patterns, one pass per bit
  of the dtype, 2 operations (compare, count) per candidate per pass; SET draws one uniform key per
  zero block; regrown weights start at zero; dynamic kernels move the new pattern's values and
  16-bit row and column indices once (``moved_bytes``).

No ``simulator`` import: the counts are the run's own.
"""

from __future__ import annotations

import itertools
import math
import sys
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from strategies.reference.data import Dataset, blobs, digits, epoch_batches
from strategies.reference.ledger import NUMPY_DTYPES, Ledger, LedgerSummary
from strategies.reference.nn import Dense, Ops, init_mlp, softmax_cross_entropy

Mode = Literal["static", "dynamic"]
Regrow = Literal["random", "gradient"]


@dataclass(frozen=True)
class SparseConfig:
    """One masked-MLP configuration (single device).

    ``sizes``: widths, input first. ``sparse_layers``: indices of the dense layers whose weights
    are masked (None: all). ``density``/``block``: the share of b × b weight blocks kept (exactly
    ``max(1, ⌊density · blocks + ½⌋)`` of them, drawn uniformly from the seed). ``mode`` static
    keeps the initial pattern; dynamic prunes and regrows it every ``update_every_steps`` steps
    (``regrow`` random = SET, gradient = RigL; ``drop_fraction`` α).
    """

    sizes: tuple[int, ...]
    density: float
    block: int = 1
    mode: Mode = "static"
    regrow: Regrow | None = None
    update_every_steps: int | None = None
    drop_fraction: float = 0.3
    sparse_layers: tuple[int, ...] | None = None
    global_batch: int = 32
    learning_rate: float = 0.5
    dtype: str = "fp32"
    seed: int = 0

    @property
    def np_dtype(self) -> type[np.floating]:
        return NUMPY_DTYPES[self.dtype]

    @property
    def masked(self) -> tuple[int, ...]:
        """The masked layers' indices."""
        n = len(self.sizes) - 1
        return tuple(range(n)) if self.sparse_layers is None else self.sparse_layers

    def check(self) -> None:
        if not 0 < self.density <= 1:
            raise ValueError(f"density must be in (0, 1], got {self.density}")
        if self.mode == "dynamic" and (self.regrow is None or not self.update_every_steps):
            raise ValueError("dynamic mode needs regrow and update_every_steps")
        for i in self.masked:
            if self.sizes[i] % self.block or self.sizes[i + 1] % self.block:
                raise ValueError(f"layer {i} ({self.sizes[i]}x{self.sizes[i + 1]}) vs block")


@dataclass
class UpdateCounts:
    """Work of pattern updates, charged by the instrumented update operations."""

    score_ops: int = 0
    select_ops: int = 0
    select_passes: int = 0
    rng_samples: int = 0
    dropped_blocks: int = 0
    moved_bytes: int = 0


def block_mask(
    rows: int, cols: int, block: int, density: float, rng: np.random.Generator
) -> np.ndarray:
    """A (rows/block) × (cols/block) boolean mask with exactly ⌊density·blocks + ½⌋ (≥ 1) set."""
    r, c = rows // block, cols // block
    keep = max(1, math.floor(density * r * c + 0.5))
    flat = np.zeros(r * c, dtype=bool)
    flat[rng.choice(r * c, size=keep, replace=False)] = True
    return flat.reshape(r, c)


def expand(blocks: np.ndarray, block: int) -> np.ndarray:
    """Element mask of a block mask."""
    return np.kron(blocks, np.ones((block, block), dtype=bool)).astype(bool)


class SparseOps:
    """Instrumented sparse products and pattern-update operations."""

    def __init__(self, ops: Ops, counts: UpdateCounts) -> None:
        self.ops = ops
        self.counts = counts

    # Products (FLOPs to the ledger's current phase) ------------------------------------
    # The weights outside the mask are exact zeros (kept so by every update), so NumPy may
    # multiply them densely: the charge is the non-zero products a sparse kernel does.
    def affine(self, x: np.ndarray, w: np.ndarray, mask: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``x (W∘M) + b``: 2·B·nnz (the bias starts the accumulator, as for dense layers)."""
        self.ops.ledger.charge_flops(2 * x.shape[0] * int(np.count_nonzero(mask)))
        return x @ w + b

    def input_grad(self, dy: np.ndarray, w: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """``dy (W∘M)ᵀ``: 2·B·nnz."""
        self.ops.ledger.charge_flops(2 * dy.shape[0] * int(np.count_nonzero(mask)))
        return dy @ w.T

    def sampled_grad_acc(
        self, gw: np.ndarray, x: np.ndarray, dy: np.ndarray, mask: np.ndarray
    ) -> None:
        """``gw[M] += (xᵀ dy)[M]``, the product sampled at the non-zeros: 2·B·nnz (NumPy forms
        the dense product and keeps the non-zeros; a sparse kernel computes only those)."""
        self.ops.ledger.charge_flops(2 * x.shape[0] * int(np.count_nonzero(mask)))
        gw += np.where(mask, x.T @ dy, 0).astype(gw.dtype)

    def sgd(self, w: np.ndarray, g: np.ndarray, mask: np.ndarray, lr: float) -> None:
        """``w[M] -= lr·g[M]``: 2 per non-zero (g is zero outside the mask)."""
        self.ops.ledger.charge_flops(2 * int(np.count_nonzero(mask)))
        w -= w.dtype.type(lr) * np.where(mask, g, 0).astype(w.dtype)

    # Pattern update (UpdateCounts) ------------------------------------------------------
    def block_scores(self, a: np.ndarray, block: int, which: np.ndarray) -> np.ndarray:
        """Σ|a| over each block listed in ``which`` (block indices into the flattened grid):
        b² absolute values and b² − 1 additions per block."""
        r, c = a.shape[0] // block, a.shape[1] // block
        grid = a.reshape(r, block, c, block).transpose(0, 2, 1, 3).reshape(r * c, block * block)
        picked = np.abs(grid[which])
        self.counts.score_ops += picked.size + len(which) * (block * block - 1)
        return picked.sum(axis=1, dtype=a.dtype)

    def select(self, keys: np.ndarray, k: int, largest: bool) -> np.ndarray:
        """Positions of the ``k`` smallest (or largest) non-negative keys, ties by position:
        bitwise bisection over the keys' bit patterns, one pass per bit, each comparing every key
        with the trial threshold and counting (2 operations per key)."""
        bits = keys.dtype.itemsize * 8
        u = keys.view(np.dtype(f"uint{bits}")).astype(np.uint64)
        if largest:
            u = (np.uint64(2**bits - 1) - u).astype(np.uint64)
        prefix = 0
        for bit in reversed(range(bits)):
            trial = prefix | (1 << bit)
            below = int(np.count_nonzero(u < np.uint64(trial)))  # compare and count each key
            self.counts.select_ops += 2 * len(u)
            self.counts.select_passes += 1
            if below <= k:
                prefix = trial
        strict = np.flatnonzero(u < np.uint64(prefix))
        equal = np.flatnonzero(u == np.uint64(prefix))
        return np.concatenate([strict, equal[: k - len(strict)]])

    def uniform(self, rng: np.random.Generator, n: int, dtype: type[np.floating]) -> np.ndarray:
        """``n`` uniform random keys in [0, 1)."""
        self.counts.rng_samples += n
        return rng.random(n).astype(dtype)


@dataclass
class MaskedMLP:
    """A masked MLP on one device (device 0 of the ledger)."""

    config: SparseConfig
    layers: list[Dense]
    masks: list[np.ndarray | None]  # block masks (None: a dense layer)
    emasks: list[np.ndarray | None] = field(default_factory=list)  # their element masks
    ledger: Ledger = field(default_factory=Ledger)
    counts: UpdateCounts = field(default_factory=UpdateCounts)
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    steps: int = 0

    @classmethod
    def build(cls, cfg: SparseConfig) -> MaskedMLP:
        cfg.check()
        layers = init_mlp(cfg.sizes, cfg.seed, cfg.np_dtype)
        rng = np.random.default_rng(cfg.seed + 1)
        masks: list[np.ndarray | None] = []
        for i, (a, b) in enumerate(itertools.pairwise(cfg.sizes)):
            masks.append(block_mask(a, b, cfg.block, cfg.density, rng) if i in cfg.masked else None)
        for layer, m in zip(layers, masks, strict=True):
            if m is not None:  # scaled so a unit's input variance is the dense layer's
                layer.w *= layer.w.dtype.type(1 / math.sqrt(cfg.density))
                layer.w[~expand(m, cfg.block)] = 0
        emasks = [None if m is None else expand(m, cfg.block) for m in masks]
        return cls(cfg, layers, masks, emasks, rng=rng)

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        """One SGD step on the batch; an update step (every N-th, dynamic) also updates the
        pattern. Returns the mean loss."""
        cfg = self.config
        self.steps += 1
        update = cfg.mode == "dynamic" and self.steps % (cfg.update_every_steps or 1) == 0
        ops = Ops(self.ledger)
        sops = SparseOps(ops, self.counts)
        at = self.ledger.at
        n = len(self.layers)
        emasks = self.emasks
        dense_grads: dict[int, np.ndarray] = {}
        with at(device=0, micro_batch=0):
            saved = []
            with at(phase="forward"):
                h = x
                for i, layer in enumerate(self.layers):
                    m = emasks[i]
                    if m is None:
                        z = ops.affine(h, layer.w, layer.b)
                    else:
                        z = sops.affine(h, layer.w, m, layer.b)
                    saved.append((h, z))
                    h = z if i == n - 1 else ops.relu(z)
            with at(phase="loss"):
                loss, dy = softmax_cross_entropy(ops, h, y, 1.0 / len(y))
            for layer in self.layers:
                layer.gw[...] = 0
                layer.gb[...] = 0
            for i in reversed(range(n)):
                layer, (h_in, z) = self.layers[i], saved[i]
                m = emasks[i]
                if i < n - 1:
                    with at(phase="backward_input"):
                        dy = ops.relu_grad(dy, z)
                with at(phase="backward_weight"):
                    if m is None:
                        ops.matmul_acc(layer.gw, h_in.T, dy)
                    elif update and cfg.regrow == "gradient":
                        g = np.zeros_like(layer.w)
                        ops.matmul_acc(g, h_in.T, dy)  # RigL: the dense gradient, 2·B·in·out
                        dense_grads[i] = g
                        layer.gw[m] = g[m]
                    else:
                        sops.sampled_grad_acc(layer.gw, h_in, dy, m)
                    ops.colsum_acc(layer.gb, dy)
                if i > 0:
                    with at(phase="backward_input"):
                        if m is None:
                            dy = ops.matmul(dy, layer.w.T)
                        else:
                            dy = sops.input_grad(dy, layer.w, m)
            with at(phase="optimizer"):
                for i, layer in enumerate(self.layers):
                    m = emasks[i]
                    if m is None:
                        ops.sgd(layer.w, layer.gw, cfg.learning_rate)
                    else:
                        sops.sgd(layer.w, layer.gw, m, cfg.learning_rate)
                    ops.sgd(layer.b, layer.gb, cfg.learning_rate)
        if update:
            for i in cfg.masked:
                self._update_layer(i, sops, dense_grads.get(i))
        return loss / len(y)

    def _update_layer(self, i: int, sops: SparseOps, grad: np.ndarray | None) -> None:
        """Prune the smallest-magnitude blocks and regrow as many (module docstring)."""
        cfg, layer, m = self.config, self.layers[i], self.masks[i]
        assert m is not None
        b = cfg.block
        flat = m.reshape(-1)
        nz, zero = np.flatnonzero(flat), np.flatnonzero(~flat)
        drop = min(len(zero), math.floor(cfg.drop_fraction * len(nz) + 0.5))
        if drop == 0:
            return
        dropped = nz[sops.select(sops.block_scores(layer.w, b, nz), drop, largest=False)]
        if cfg.regrow == "random":
            keys = sops.uniform(self.rng, len(zero), cfg.np_dtype)
        else:
            assert grad is not None
            keys = sops.block_scores(grad, b, zero)
        grown = zero[sops.select(keys, drop, largest=True)]
        flat[dropped] = False
        flat[grown] = True
        sops.counts.dropped_blocks += drop
        emask = expand(m, b)
        self.emasks[i] = emask
        layer.w[~emask] = 0  # dropped weights vanish, regrown ones start at zero
        rows, cols = np.divmod(np.flatnonzero(flat), m.shape[1])
        values = layer.w.reshape(m.shape[0], b, m.shape[1], b)[rows, :, cols, :]
        indices = np.stack([rows, cols]).astype(np.uint16)
        sops.counts.moved_bytes += values.nbytes + indices.nbytes  # re-bucketed once

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class predictions (charged to a throwaway ledger)."""
        h = x
        for i, layer in enumerate(self.layers):
            h = h @ layer.w + layer.b
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0)
        return h.argmax(axis=1)

    def nonzero_weights(self) -> int:
        return sum(
            layer.w.size if m is None else int(np.count_nonzero(m))
            for m, layer in zip(self.emasks, self.layers, strict=True)
        )


@dataclass(frozen=True)
class SparseLedger:
    """One normal step's ledger, one update step's (dynamic) and the update's work."""

    normal: LedgerSummary
    update: LedgerSummary | None
    work: UpdateCounts | None
    nonzero_weights: int


def sparse_ledger(cfg: SparseConfig) -> SparseLedger:
    """Run a normal step and (dynamic) an update step from the same state on generated data."""
    data = blobs(cfg.global_batch, cfg.sizes[0], cfg.sizes[-1], seed=cfg.seed, test_fraction=0.0)
    x, y = data.x_train.astype(cfg.np_dtype), data.y_train
    model = MaskedMLP.build(cfg)
    nnz = model.nonzero_weights()
    model.step(x, y)
    normal = model.ledger.summary(cfg.dtype, ((0,),))
    if cfg.mode != "dynamic":
        return SparseLedger(normal, None, None, nnz)
    model = MaskedMLP.build(cfg)
    model.steps = (cfg.update_every_steps or 1) - 1  # the next step is an update step
    model.step(x, y)
    return SparseLedger(normal, model.ledger.summary(cfg.dtype, ((0,),)), model.counts, nnz)


@dataclass(frozen=True)
class SparseTrainResult:
    """Outcome of :func:`train_sparse`."""

    config: SparseConfig
    train_accuracy: float
    test_accuracy: float
    losses: tuple[float, ...]
    nonzero_weights: int
    updates: int


def train_sparse(cfg: SparseConfig, data: Dataset, epochs: int) -> SparseTrainResult:
    """Train for ``epochs`` passes (seeded shuffles, last partial batch dropped)."""
    model = MaskedMLP.build(cfg)
    data = data.astype(cfg.np_dtype)
    losses = [
        model.step(data.x_train[rows], data.y_train[rows])
        for rows in epoch_batches(len(data.y_train), cfg.global_batch, epochs, cfg.seed)
    ]
    every = cfg.update_every_steps if cfg.mode == "dynamic" else None
    updates = model.steps // every if every else 0
    return SparseTrainResult(
        cfg,
        float(np.mean(model.predict(data.x_train) == data.y_train)),
        float(np.mean(model.predict(data.x_test) == data.y_test)),
        tuple(losses),
        model.nonzero_weights(),
        updates,
    )


#: The accuracy study of docs/strategies/sparsity.md: MLP 64-256-256-10 on digits, every
#: layer masked, 1×1 blocks, 20 epochs, batch 32, SGD 0.2; SET and RigL update every 20 steps.
STUDY = SparseConfig(sizes=(64, 256, 256, 10), density=1.0, global_batch=32, learning_rate=0.2)
STUDY_DENSITIES = (1.0, 0.5, 0.2, 0.1, 0.05, 0.02)
STUDY_EPOCHS = 20


def study_configs(density: float) -> dict[str, SparseConfig]:
    """Static, SET and RigL at ``density``."""
    base = replace(STUDY, density=density)
    return {
        "static": base,
        "SET": replace(base, mode="dynamic", regrow="random", update_every_steps=20),
        "RigL": replace(base, mode="dynamic", regrow="gradient", update_every_steps=20),
    }


def accuracy_table(seeds: tuple[int, ...] = (0,)) -> str:
    """Test accuracy against density for static, SET and RigL (mean over ``seeds``)."""
    data = digits()
    lines = ["| density | sparsity | static | SET | RigL |", "|---:|---:|---:|---:|---:|"]
    for d in STUDY_DENSITIES:
        cells = []
        for cfg in study_configs(d).values():
            acc = [
                train_sparse(replace(cfg, seed=s), data, STUDY_EPOCHS).test_accuracy
                for s in seeds
            ]
            cells.append(f"{np.mean(acc):.1%}")
        lines.append(f"| {d:g} | {1 - d:.0%} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m strategies.sparse.reference
    sys.stdout.write(accuracy_table(tuple(int(s) for s in sys.argv[1:]) or (0,)))
