"""Ensembles and codistillation: N MLP members, one device each.

Member i is an MLP with its own initial weights (seed ``seed + i``) and, unless the batch is
shared, its own shuffle of the data. A step runs M micro-batches of b rows per member, then
SGD. Modes:

* ``none``: independent members, no communication (deep ensembles). Predict with the average
  of the members' probabilities.
* ``checkpoint`` (Anil et al. 2018): every ``exchange_every`` = k steps the members all-gather
  their weights (tag ``checkpoint``: one fused buffer per member, weights then bias per
  layer); from the first exchange on, member i keeps the other N - 1 as stale *teachers*.
  For each of its micro-batches it runs one forward pass per teacher (charged to the
  *teacher* ledger: ``forward`` for the layers, ``loss`` for turning logits into
  probabilities and averaging them, q), then its own pass with the loss
  ``CE(y, p) + alpha x CE(q, p)`` (:func:`distill_cross_entropy`).
* ``online`` (deep mutual learning): members share the batch; after every micro-batch's
  forward pass the members all-gather their probabilities (tag ``predictions``), and each
  distils towards the mean of the *others'* (current, not stale) probabilities.

All-gathers run along a ring (:func:`all_gather`): the ledger's ``ring_sent`` gets what each
device puts on the wire ((N - 1) x its buffer) and the :class:`CollectiveRecord` the gathered
buffer per device (N x the contribution), the size the plan's Collective carries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from strategies.reference.data import Dataset
from strategies.reference.ledger import (
    NUMPY_DTYPES,
    CollectiveRecord,
    CountingCommunicator,
    Ledger,
    LedgerSummary,
)
from strategies.reference.nn import Block, Dense, Ops, init_mlp

Mode = Literal["none", "checkpoint", "online"]


def all_gather(
    comm: CountingCommunicator, buffers: Mapping[int, np.ndarray], tag: str
) -> list[np.ndarray]:
    """Ring all-gather of one equal-shaped buffer per device (mapping order = ring order).

    Every device ends with every buffer (returned in ring order). Step s: position i sends
    the buffer it got s steps ago (its own at s = 0) to position i + 1. Charges
    ``ring_sent[device]`` (N - 1) x nbytes and records the gathered size, N x nbytes.
    """
    group = tuple(buffers)
    n = len(group)
    held = [{i: buffers[d].copy()} for i, d in enumerate(group)]  # position -> {owner: data}
    for step in range(n - 1):
        moves = [(i, (i - step) % n) for i in range(n)]
        payload = [held[i][owner].copy() for i, owner in moves]
        for (i, owner), data in zip(moves, payload, strict=True):
            comm.ledger.ring_sent[group[i]] += data.nbytes
            held[(i + 1) % n][owner] = data
    first = buffers[group[0]]
    comm.ledger.collectives.append(CollectiveRecord("all_gather", group, tag, n * first.nbytes))
    gathered = [held[0][i] for i in range(n)]
    assert all(np.array_equal(held[j][i], gathered[i]) for j in range(n) for i in range(n))
    return gathered


def softmax(ops: Ops, logits: np.ndarray) -> np.ndarray:
    """Row softmax: rowmax, shift, exp, rowsum, normalise (5 FLOP per element)."""
    e = ops.exp(ops.sub(logits, ops.rowmax(logits)[:, None]))
    return ops.div(e, ops.rowsum(e)[:, None])


def distill_cross_entropy(
    ops: Ops,
    logits: np.ndarray,
    labels: np.ndarray,
    q: np.ndarray | None,
    alpha: float,
    scale: float,
) -> tuple[float, float, np.ndarray]:
    """Summed ``CE(y, p)`` and ``CE(q, p) = -sum q log p`` over rows, and ``scale`` x the
    gradient of ``CE(y, p) + alpha CE(q, p)`` with respect to the logits:
    ``scale ((1 + alpha) p - onehot - alpha q)``. ``q`` None: plain cross-entropy."""
    rows = np.arange(len(labels))
    shifted = ops.sub(logits, ops.rowmax(logits)[:, None])
    e = ops.exp(shifted)
    z = ops.rowsum(e)
    probs = ops.div(e, z[:, None])
    logp = ops.sub(shifted, ops.log(z)[:, None])
    ce = -ops.total(logp[rows, labels])
    onehot = np.zeros_like(probs)
    onehot[rows, labels] = 1
    if q is None:
        return ce, 0.0, ops.scale(ops.sub(probs, onehot), scale)
    soft = -ops.total(ops.mul(q, logp))
    grad = ops.sub(ops.sub(ops.scale(probs, 1 + alpha), onehot), ops.scale(q, alpha))
    return ce, soft, ops.scale(grad, scale)


@dataclass(frozen=True)
class EnsembleConfig:
    """One ensemble configuration (see the module docstring)."""

    sizes: tuple[int, ...]
    members: int
    micro_batch: int
    micro_batches: int = 1
    mode: Mode = "none"
    exchange_every: int = 10
    alpha: float = 1.0
    devices: tuple[int, ...] | None = None
    dtype: str = "fp32"
    learning_rate: float = 0.1
    seed: int = 0

    @property
    def batch(self) -> int:
        """Rows per member per step."""
        return self.micro_batch * self.micro_batches

    @property
    def device_ids(self) -> tuple[int, ...]:
        """The devices, filled in."""
        return self.devices or tuple(range(self.members))


@dataclass(frozen=True)
class EnsembleLedger:
    """One step: the members' ledger, the teachers' ledger, the loss terms."""

    member: LedgerSummary
    teacher: LedgerSummary
    cross_entropy: float  # mean over members and rows
    distillation: float  # mean CE(q, p) over members and rows (0 without teachers)
    exchanged: bool  # whether the step ended with a checkpoint exchange


class EnsembleModel:
    """N members trained together under one of the modes."""

    def __init__(self, config: EnsembleConfig) -> None:
        if config.members < 1 or (config.mode != "none" and config.members < 2):
            raise ValueError(f"{config.members} members cannot run mode {config.mode}")
        self.config = config
        dtype = NUMPY_DTYPES[config.dtype]
        self.ledger, self.teacher_ledger = Ledger(), Ledger()
        self.ops, self.teacher_ops = Ops(self.ledger), Ops(self.teacher_ledger)
        self.comm = CountingCommunicator(self.ledger)
        depth = len(config.sizes) - 1
        self.members = [
            Block(self.ops, init_mlp(config.sizes, config.seed + i, dtype), 0, depth, "relu")
            for i in range(config.members)
        ]
        self.teachers: list[list[Block]] | None = None  # teachers[i]: member i's stale copies
        self.steps = 0

    def step(self, xs: Sequence[np.ndarray], ys: Sequence[np.ndarray]) -> EnsembleLedger:
        """One step; ``xs[i]``, ``ys[i]``: member i's rows (the same arrays when shared)."""
        cfg = self.config
        n, b, devices = cfg.members, cfg.micro_batch, cfg.device_ids
        scale = 1.0 / cfg.batch
        ce = soft = 0.0
        for member in self.members:
            member.zero_grad()
        for mb in range(cfg.micro_batches):
            rows = slice(mb * b, (mb + 1) * b)
            logits, targets = {}, {}
            for i, member in enumerate(self.members):
                with self.ledger.at(device=devices[i], micro_batch=mb):
                    if self.teachers is not None:
                        targets[i] = self._teacher_mean(i, xs[i][rows], mb)
                    logits[i] = member.forward(xs[i][rows], mb)
            if cfg.mode == "online":
                probs = {}
                for i in range(n):
                    with self.ledger.at(device=devices[i], micro_batch=mb, phase="loss"):
                        probs[devices[i]] = softmax(self.ops, logits[i])
                gathered = all_gather(self.comm, probs, "predictions")
                for i in range(n):
                    with self.ledger.at(device=devices[i], micro_batch=mb, phase="loss"):
                        others = [p for j, p in enumerate(gathered) if j != i]
                        targets[i] = self.ops.scale(_sum(self.ops, others), 1.0 / (n - 1))
            for i, member in enumerate(self.members):
                with self.ledger.at(device=devices[i], micro_batch=mb):
                    with self.ledger.at(phase="loss"):
                        c, s, grad = distill_cross_entropy(
                            self.ops, logits[i], ys[i][rows], targets.get(i), cfg.alpha, scale
                        )
                    member.backward(grad, mb)
                ce, soft = ce + c, soft + s
        for i, member in enumerate(self.members):
            with self.ledger.at(device=devices[i], phase="optimizer"):
                for lay in member.layers:
                    self.ops.sgd(lay.w, lay.gw, cfg.learning_rate)
                    self.ops.sgd(lay.b, lay.gb, cfg.learning_rate)
        self.steps += 1
        exchanged = cfg.mode == "checkpoint" and self.steps % cfg.exchange_every == 0
        if exchanged:
            self._exchange()
        out = EnsembleLedger(
            self.ledger.summary(cfg.dtype, devices=devices),
            self.teacher_ledger.summary(cfg.dtype, devices=devices),
            ce / (n * cfg.batch),
            soft / (n * cfg.batch),
            exchanged,
        )
        self.ledger, self.teacher_ledger = Ledger(), Ledger()
        self.ops.ledger = self.comm.ledger = self.ledger
        self.teacher_ops.ledger = self.teacher_ledger
        return out

    def _teacher_mean(self, i: int, x: np.ndarray, mb: int) -> np.ndarray:
        """Mean probability of member i's teachers on ``x`` (teacher ledger)."""
        assert self.teachers is not None
        probs = []
        with self.teacher_ledger.at(device=self.config.device_ids[i], micro_batch=mb):
            for teacher in self.teachers[i]:
                logits = teacher.forward(x, mb)
                teacher.stash.clear()  # inference: nothing kept for a backward pass
                with self.teacher_ledger.at(phase="loss"):
                    probs.append(softmax(self.teacher_ops, logits))
            with self.teacher_ledger.at(phase="loss"):
                return self.teacher_ops.scale(_sum(self.teacher_ops, probs), 1.0 / len(probs))

    def _exchange(self) -> None:
        """All-gather every member's weights; each keeps the others as its teachers."""
        devices = self.config.device_ids
        fused = {
            devices[i]: np.concatenate([a.ravel() for lay in m.layers for a in (lay.w, lay.b)])
            for i, m in enumerate(self.members)
        }
        gathered = all_gather(self.comm, fused, "checkpoint")
        copies = [_unfuse(self.members[j].layers, flat) for j, flat in enumerate(gathered)]
        depth = len(self.config.sizes) - 1
        self.teachers = [
            [
                Block(self.teacher_ops, copies[j], 0, depth, "relu")
                for j in range(len(copies))
                if j != i
            ]
            for i in range(len(copies))
        ]

    # ---- evaluation -----------------------------------------------------------------------
    def probabilities(self, x: np.ndarray) -> list[np.ndarray]:
        """Each member's class probabilities on ``x`` (charged to a throwaway ledger)."""
        ops = Ops(Ledger())
        out = []
        with ops.ledger.at(device=0, phase="forward"):
            for m in self.members:
                logits = Block(ops, m.layers, 0, m.depth, "relu").forward(x, key=0)
                out.append(softmax(ops, logits.astype(np.float64)))
        return out


def _sum(ops: Ops, arrays: Sequence[np.ndarray]) -> np.ndarray:
    total = arrays[0]
    for a in arrays[1:]:
        total = ops.add(total, a)
    return total


def _unfuse(like: Sequence[Dense], flat: np.ndarray) -> list[Dense]:
    out, offset = [], 0
    for lay in like:
        w = flat[offset : offset + lay.w.size].reshape(lay.w.shape).copy()
        offset += lay.w.size
        b = flat[offset : offset + lay.b.size].copy()
        offset += lay.b.size
        out.append(Dense(w, b))
    return out


def ensemble_ledgers(config: EnsembleConfig, steps: int) -> list[EnsembleLedger]:
    """Run ``steps`` steps on generated data; the ledger of each."""
    from strategies.reference.data import blobs

    model = EnsembleModel(config)
    rows = config.batch * (1 if config.mode == "online" else config.members)
    data = blobs(rows * steps, config.sizes[0], config.sizes[-1], config.seed, test_fraction=0.0)
    data = data.astype(NUMPY_DTYPES[config.dtype])
    out = []
    for s in range(steps):
        xs, ys = _member_rows(config, data.x_train, data.y_train, s * rows)
        out.append(model.step(xs, ys))
    return out


def _member_rows(
    config: EnsembleConfig, x: np.ndarray, y: np.ndarray, start: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    b = config.batch
    if config.mode == "online":
        return [x[start : start + b]] * config.members, [y[start : start + b]] * config.members
    cuts = [slice(start + i * b, start + (i + 1) * b) for i in range(config.members)]
    return [x[c] for c in cuts], [y[c] for c in cuts]


@dataclass(frozen=True)
class EnsembleEval:
    """Test accuracy and NLL of each member and of the averaged prediction of the first n."""

    member_accuracy: tuple[float, ...]
    member_nll: tuple[float, ...]
    ensemble_accuracy: tuple[float, ...]  # [n - 1]: average of members 0..n-1
    ensemble_nll: tuple[float, ...]


def train_ensemble(config: EnsembleConfig, data: Dataset, epochs: int) -> EnsembleEval:
    """Train every member for ``epochs`` passes (member i shuffles with seed + i unless the
    batch is shared); evaluate members and growing ensembles on the test split."""
    model = EnsembleModel(config)
    data = data.astype(NUMPY_DTYPES[config.dtype])
    n_rows, b = len(data.y_train), config.batch
    shared = config.mode == "online"
    rngs = [
        np.random.default_rng(config.seed + (0 if shared else i)) for i in range(config.members)
    ]
    for _ in range(epochs):
        orders = [rng.permutation(n_rows) for rng in rngs]
        for start in range(0, n_rows - b + 1, b):
            idx = [o[start : start + b] for o in orders]
            model.step([data.x_train[r] for r in idx], [data.y_train[r] for r in idx])
    probs = model.probabilities(data.x_test)
    y = data.y_test

    def acc(p: np.ndarray) -> float:
        return float(np.mean(p.argmax(axis=1) == y))

    def nll(p: np.ndarray) -> float:
        return float(-np.mean(np.log(np.maximum(p[np.arange(len(y)), y], 1e-12))))

    avg = [np.mean(probs[: n + 1], axis=0) for n in range(len(probs))]
    return EnsembleEval(
        tuple(acc(p) for p in probs),
        tuple(nll(p) for p in probs),
        tuple(acc(p) for p in avg),
        tuple(nll(p) for p in avg),
    )


__all__ = [
    "EnsembleConfig",
    "EnsembleEval",
    "EnsembleLedger",
    "EnsembleModel",
    "all_gather",
    "distill_cross_entropy",
    "ensemble_ledgers",
    "train_ensemble",
]
