"""The NumPy reference of tensor parallelism: a small GPT-style transformer run whole and split
over T workers (Megatron-LM), with a ledger of every collective the split run made.

The model (the layer algebra's names, so ledgers and plans line up)::

    embedding        token table (V x H, tied to the head) + learned positions (S x H)
    decoder.l        x += attention(layernorm(x)); x += ffn(layernorm(x))     (l < L)
    layernorm        final layer norm
    lm_head          logits = h E^T, softmax cross-entropy averaged over every token

Split over T workers (``ReferenceConfig.tensor``): attention heads (columns of Q, K, V and the
rows of the output projection), FFN columns (rows of the down projection), vocabulary rows of
the tied table. ``mode`` ``all_reduce`` keeps the residual stream whole on every worker and
all-reduces the partial outputs of attention, FFN and the embedding (forward) and the partial
input gradients of attention, FFN and the head (backward); ``reduce_scatter`` (sequence
parallelism) keeps the residual stream split over the sequence, all-gathers it before the
split layers and reduce-scatters their outputs (the conjugates in the backward pass), and
all-reduces the gradients of the sequence-split parameters once per step. The loss is computed
from the split logits (the largest logit, then the sum of exponentials and the target's logit,
each all-reduced: Megatron's vocabulary-parallel cross-entropy), in fp32 at least.

Collectives run for real along a ring (:class:`GroupCommunicator`, beside
:class:`~strategies.reference.ledger.CountingCommunicator`'s ring all-reduce) and are recorded
as :class:`~strategies.reference.ledger.CollectiveRecord` with the tag
``"<layer> <F|B> mb<m>: <what>"`` and the buffer bytes per worker (all-reduce and
reduce-scatter: the input; all-gather: the gathered output), as the plan's Collective tasks
carry them. A group of one worker makes no collective. Matrix-product FLOPs are counted by
(worker, layer, phase) as they run. The reference never imports the simulator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from strategies.reference.ledger import NUMPY_DTYPES, CollectiveRecord, Ledger

Mode = Literal["all_reduce", "reduce_scatter"]


@dataclass(frozen=True)
class ReferenceConfig:
    """One reference run: sizes, the split and the dtype the run computes and sends in."""

    vocab: int = 64
    hidden: int = 16
    heads: int = 4
    intermediate: int = 32
    seq: int = 8
    layers: int = 2
    micro_batch: int = 2
    micro_batches: int = 2
    tensor: int = 1
    mode: Mode = "all_reduce"
    dtype: str = "fp64"
    seed: int = 0

    def check(self) -> None:
        for name, n in (
            ("vocab", self.vocab),
            ("heads", self.heads),
            ("intermediate", self.intermediate),
        ):
            if n % self.tensor:
                raise ValueError(f"tensor {self.tensor} does not divide {name} {n}")
        if self.hidden % self.heads:
            raise ValueError(f"heads {self.heads} do not divide hidden {self.hidden}")
        if self.mode == "reduce_scatter" and self.seq % self.tensor:
            raise ValueError(f"tensor {self.tensor} does not divide the sequence {self.seq}")


@dataclass(frozen=True)
class TensorRun:
    """What one step of the reference did and computed."""

    losses: np.ndarray  # (M, B, S) per-token cross-entropy
    grads: dict[str, np.ndarray]  # gradients of the whole model (shards joined)
    collectives: tuple[CollectiveRecord, ...]
    ring_sent: dict[int, int]  # bytes each worker put on the wire
    matmul_flops: dict[tuple[int, str, str], int]  # (worker, layer, F|B) -> FLOPs


# ---- the group's collectives -----------------------------------------------------------------
class GroupCommunicator:
    """Ring collectives over the workers of one group, recorded in a ledger."""

    def __init__(self, ledger: Ledger, workers: int) -> None:
        self.ledger = ledger
        self.group = tuple(range(workers))

    def _record(self, kind: str, tag: str, nbytes: int) -> None:
        self.ledger.collectives.append(CollectiveRecord(kind, self.group, tag, nbytes))

    def _reduce_scatter_chunks(self, bufs: Sequence[np.ndarray], op: str) -> list[list[np.ndarray]]:
        """Ring reduce-scatter of flattened buffers: position i ends with the reduction of chunk
        i (step s: position i sends chunk i - s - 1 to position i + 1, which combines it)."""
        n = len(bufs)
        chunks = [[c.copy() for c in np.array_split(b.ravel(), n)] for b in bufs]
        for step in range(n - 1):
            moves = [(i, (i - step - 1) % n) for i in range(n)]
            payload = [chunks[i][c].copy() for i, c in moves]
            for (i, c), data in zip(moves, payload, strict=True):
                self.ledger.ring_sent[self.group[i]] += data.nbytes
                dst = chunks[(i + 1) % n]
                dst[c] = np.maximum(dst[c], data) if op == "max" else dst[c] + data
        return chunks

    def _all_gather_chunks(self, chunks: list[list[np.ndarray]]) -> None:
        """Ring all-gather in place: position i starts with chunk i (step s: it sends chunk
        i - s to position i + 1)."""
        n = len(chunks)
        for step in range(n - 1):
            moves = [(i, (i - step) % n) for i in range(n)]
            payload = [chunks[i][c].copy() for i, c in moves]
            for (i, c), data in zip(moves, payload, strict=True):
                self.ledger.ring_sent[self.group[i]] += data.nbytes
                chunks[(i + 1) % n][c] = data

    def all_reduce(self, bufs: list[np.ndarray], tag: str, op: str = "sum") -> list[np.ndarray]:
        """Every worker's copy of the sum (or max) of ``bufs``."""
        if len(bufs) == 1:
            return bufs
        self._record("all_reduce", tag, bufs[0].nbytes)
        chunks = self._reduce_scatter_chunks(bufs, op)
        self._all_gather_chunks(chunks)
        return [np.concatenate(c).reshape(bufs[0].shape) for c in chunks]

    def reduce_scatter(self, bufs: list[np.ndarray], tag: str, axis: int = 1) -> list[np.ndarray]:
        """Worker t's 1/T slice (along ``axis``) of the sum of ``bufs``."""
        if len(bufs) == 1:
            return bufs
        n = len(bufs)
        self._record("reduce_scatter", tag, bufs[0].nbytes)
        # put the split axis first so that flat chunks are the slices
        moved = [np.ascontiguousarray(np.moveaxis(b, axis, 0)) for b in bufs]
        chunks = self._reduce_scatter_chunks(moved, "sum")
        shape = (moved[0].shape[0] // n, *moved[0].shape[1:])
        return [np.moveaxis(chunks[i][i].reshape(shape), 0, axis) for i in range(n)]

    def all_gather(self, parts: list[np.ndarray], tag: str, axis: int = 1) -> list[np.ndarray]:
        """Every worker's copy of ``parts`` joined along ``axis``."""
        if len(parts) == 1:
            return parts
        n = len(parts)
        self._record("all_gather", tag, n * parts[0].nbytes)
        moved = [np.ascontiguousarray(np.moveaxis(p, axis, 0)).ravel() for p in parts]
        chunks = [
            [moved[i].copy() if c == i else np.zeros_like(moved[i]) for c in range(n)]
            for i in range(n)
        ]
        self._all_gather_chunks(chunks)
        one = np.moveaxis(parts[0], axis, 0).shape
        shape = (n * one[0], *one[1:])
        return [np.moveaxis(np.concatenate(c).reshape(shape), 0, axis) for c in chunks]


# ---- parameters ---------------------------------------------------------------------------
def init_params(cfg: ReferenceConfig) -> dict[str, np.ndarray]:
    """The whole model's weights (seeded; small random biases so that every gradient path is
    exercised)."""
    rng = np.random.default_rng(cfg.seed)
    dt = NUMPY_DTYPES[cfg.dtype]
    h, f = cfg.hidden, cfg.intermediate

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) / np.sqrt(shape[0])).astype(dt)

    def b(n: int) -> np.ndarray:
        return (0.1 * rng.standard_normal(n)).astype(dt)

    p = {"embedding.tokens": w(cfg.vocab, h), "embedding.positions": w(cfg.seq, h)}
    for layer in range(cfg.layers):
        a, m = f"decoder.{layer}.attention.", f"decoder.{layer}.ffn."
        p |= {
            a + "layernorm.gamma": 1 + b(h),
            a + "layernorm.beta": b(h),
            a + "attention.w_qkv": w(h, 3 * h),
            a + "attention.b_qkv": b(3 * h),
            a + "attention.w_proj": w(h, h),
            a + "attention.b_proj": b(h),
            m + "layernorm.gamma": 1 + b(h),
            m + "layernorm.beta": b(h),
            m + "ffn.w_up": w(h, f),
            m + "ffn.b_up": b(f),
            m + "ffn.w_down": w(f, h),
            m + "ffn.b_down": b(h),
        }
    return p | {"layernorm.gamma": 1 + b(h), "layernorm.beta": b(h)}


def _split_index(name: str, cfg: ReferenceConfig, t: int) -> tuple[int, np.ndarray] | None:
    """(axis, indices) of worker ``t``'s share of parameter ``name``; None: whole everywhere."""
    n = cfg.tensor
    h = cfg.hidden
    if name == "embedding.tokens":
        v = cfg.vocab // n
        return 0, np.arange(t * v, (t + 1) * v)
    if name.endswith(("w_qkv", "b_qkv")):
        q = h // n
        cols = np.concatenate([np.arange(i * h + t * q, i * h + (t + 1) * q) for i in range(3)])
        return (1 if name.endswith("w_qkv") else 0), cols
    if name.endswith("w_proj"):
        return 0, np.arange(t * (h // n), (t + 1) * (h // n))
    if name.endswith(("w_up", "b_up")):
        c = cfg.intermediate // n
        return (1 if name.endswith("w_up") else 0), np.arange(t * c, (t + 1) * c)
    if name.endswith("w_down"):
        c = cfg.intermediate // n
        return 0, np.arange(t * c, (t + 1) * c)
    return None


def shard(p: dict[str, np.ndarray], cfg: ReferenceConfig, t: int) -> dict[str, np.ndarray]:
    """Worker ``t``'s weights."""
    out = {}
    for name, value in p.items():
        idx = _split_index(name, cfg, t)
        out[name] = value.copy() if idx is None else np.take(value, idx[1], axis=idx[0]).copy()
    return out


def join(shards: list[dict[str, np.ndarray]], cfg: ReferenceConfig) -> dict[str, np.ndarray]:
    """The whole model's arrays from the workers' shares (whole ones must agree)."""
    out = {}
    for name in shards[0]:
        if _split_index(name, cfg, 0) is None:
            first = shards[0][name]
            if any(not np.array_equal(s[name], first) for s in shards[1:]):
                raise AssertionError(f"workers disagree on the whole gradient {name}")
            out[name] = first
            continue
        parts = [(_split_index(name, cfg, t), s[name]) for t, s in enumerate(shards)]
        axis = parts[0][0][0]  # type: ignore[index]
        size = sum(p.shape[axis] for _, p in parts)
        shape = list(parts[0][1].shape)
        shape[axis] = size
        whole = np.zeros(shape, dtype=parts[0][1].dtype)
        for idx, p in parts:
            assert idx is not None
            index: list[slice | np.ndarray] = [slice(None)] * len(shape)
            index[axis] = idx[1]
            whole[tuple(index)] = p
        out[name] = whole
    return out


def data(cfg: ReferenceConfig) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and next-token targets, (M, B, S) each (seeded)."""
    rng = np.random.default_rng(cfg.seed + 1)
    shape = (cfg.micro_batches, cfg.micro_batch, cfg.seq)
    return rng.integers(0, cfg.vocab, shape), rng.integers(0, cfg.vocab, shape)


__all__ = [
    "GroupCommunicator",
    "ReferenceConfig",
    "TensorRun",
    "data",
    "init_params",
    "join",
    "shard",
]
