"""Local parallelism: K blocks of an MLP, each with an auxiliary head and a local loss.

Block d (a consecutive range of dense layers, ``placement`` gives the block of each) runs on
device ``devices[d]``. Every block but the last ends in an auxiliary head — one dense layer
from the block's output width to the classes — and trains on the softmax cross-entropy of
that head; the last block ends with the network's output layer and its loss. Per
micro-batch m a device runs

* ``F``: the block's forward pass; it sends block d+1's input (tag ``activation``);
* ``B``: the head's forward and backward pass (on the *head* ledger, so the head's work stays
  apart from the block's), then the block's backward pass — input gradients only inside the
  block: its first layer computes none, and **nothing is sent backward**.

Variant ``overlapping`` (Laskin et al. 2020): block d also holds a copy of the last
``overlap`` dense layers of block d-1 and starts from *their* input, so those layers are
trained by both local losses. At the end of the step the two neighbours swap their gradients
of the shared layers (tag ``shared_gradient``: one fused buffer, weights then bias per
layer), each adds the other's (charged to ``optimizer``, one FLOP per element) and both
apply the same SGD update, so the copies stay identical.

Execution is message-driven in synchronous ticks like :mod:`.pipeline`: a device's next
block of work runs when its input arrived before the tick. No device ever waits for a later
one, so one step takes ``2M + K - 1`` ticks against ``2(M + K - 1)`` for a pipeline.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from strategies.reference.data import Dataset
from strategies.reference.ledger import NUMPY_DTYPES, CountingCommunicator, Ledger, LedgerSummary
from strategies.reference.nn import Activation, Block, Dense, Ops, init_mlp, softmax_cross_entropy
from strategies.reference.pipeline import stage_ranges

Variant = Literal["greedy", "overlapping"]


@dataclass(frozen=True)
class LocalConfig:
    """One local-learning configuration.

    * ``sizes``: MLP widths, input first; ``placement``: the block of each dense layer
      (consecutive, 0..K-1).
    * ``micro_batch`` rows, ``micro_batches`` M per step.
    * ``variant``: greedy or overlapping; ``overlap``: dense layers shared by neighbours.
    * ``devices``: device of each block (default 0..K-1).
    """

    sizes: tuple[int, ...]
    placement: tuple[int, ...]
    micro_batch: int
    micro_batches: int = 1
    variant: Variant = "greedy"
    overlap: int = 1
    devices: tuple[int, ...] | None = None
    activation: Activation = "relu"
    dtype: str = "fp32"
    learning_rate: float = 0.1
    seed: int = 0

    @property
    def blocks(self) -> int:
        """K."""
        return max(self.placement) + 1

    @property
    def batch(self) -> int:
        """Samples per step."""
        return self.micro_batch * self.micro_batches

    @property
    def device_ids(self) -> tuple[int, ...]:
        """The devices, filled in."""
        return self.devices or tuple(range(self.blocks))

    def check(self) -> None:
        """Raise ValueError for a configuration that cannot run."""
        if len(self.placement) != len(self.sizes) - 1:
            raise ValueError(
                f"placement names {len(self.placement)} of {len(self.sizes) - 1} layers"
            )
        ranges = stage_ranges(self.placement)
        if self.variant == "overlapping" and any(len(r) <= self.overlap for r in ranges[:-1]):
            raise ValueError(f"overlap {self.overlap} leaves a block with no layer of its own")
        if len(self.device_ids) != self.blocks:
            raise ValueError(f"{len(self.device_ids)} devices for {self.blocks} blocks")


@dataclass(frozen=True)
class LocalLedger:
    """What one step did: the blocks' ledger and the heads' ledger, and the ticks it took."""

    block: LedgerSummary
    head: LedgerSummary
    ticks: int
    losses: tuple[float, ...]  # mean local loss of each block (the last: the network's)


class LocalModel:
    """An MLP cut into blocks with auxiliary heads, trained with local losses."""

    def __init__(self, config: LocalConfig) -> None:
        config.check()
        self.config = config
        dtype = NUMPY_DTYPES[config.dtype]
        self.ledger, self.head_ledger = Ledger(), Ledger()
        self.ops, self.head_ops = Ops(self.ledger), Ops(self.head_ledger)
        self.comm = CountingCommunicator(self.ledger)
        layers = init_mlp(config.sizes, config.seed, dtype)
        ranges = stage_ranges(config.placement)
        k = config.blocks
        self.shared = [0] * k
        self.blocks: list[Block] = []
        self.heads: list[Block | None] = []
        for d, rng in enumerate(ranges):
            own = [layers[i] for i in rng]
            copies: list[Dense] = []
            if config.variant == "overlapping" and d > 0:
                copies = [x.copy() for x in self.blocks[d - 1].layers[-config.overlap :]]
            self.shared[d] = len(copies)
            chain = copies + own
            last = d == k - 1
            # first=0: the block's first layer computes no input gradient; depth one past the
            # end keeps an activation on the block's last layer (the network's last has none).
            self.blocks.append(
                Block(self.ops, chain, 0, len(chain) + (0 if last else 1), config.activation)
            )
            if last:
                self.heads.append(None)
            else:
                width, classes = config.sizes[rng.stop], config.sizes[-1]
                head = init_mlp((width, classes), config.seed + 1000 + d, dtype)
                self.heads.append(Block(self.head_ops, head, 1, 2, config.activation))

    # ---- one step -------------------------------------------------------------------------
    def step(self, x: np.ndarray, y: np.ndarray) -> LocalLedger:
        """One step on ``x`` (rows = M micro-batches): local gradients, swap, update."""
        cfg = self.config
        k, m, b = cfg.blocks, cfg.micro_batches, cfg.micro_batch
        if len(y) != m * b:
            raise ValueError(f"a step takes {m * b} rows, got {len(y)}")
        devices = cfg.device_ids
        for block, head in zip(self.blocks, self.heads, strict=True):
            block.zero_grad()
            if head is not None:
                head.zero_grad()
        queues = [deque(o for mb in range(m) for o in (("F", mb), ("B", mb))) for _ in range(k)]
        outputs: dict[tuple[int, int], np.ndarray] = {}
        losses = [0.0] * k
        ticks = 0
        while any(queues):
            runnable = [
                d
                for d in range(k)
                if queues[d]
                and (
                    queues[d][0][0] == "B"
                    or d == 0
                    or self.comm.ready(devices[d - 1], devices[d], "activation", queues[d][0][1])
                )
            ]
            if not runnable:
                raise RuntimeError("local learning deadlocked (a bug)")
            ticks += 1
            for d in runnable:
                kind, mb = queues[d].popleft()
                rows = slice(mb * b, (mb + 1) * b)
                self._run(d, kind, mb, x[rows], y[rows], outputs, losses)
        if self.comm.pending():
            raise RuntimeError("messages left unreceived")
        self._swap_shared()
        self._update()
        summary = self.ledger.summary(cfg.dtype, (devices,))
        heads = self.head_ledger.summary(cfg.dtype, ((),), devices)
        self.ledger, self.head_ledger = Ledger(), Ledger()
        self.ops.ledger = self.comm.ledger = self.ledger
        self.head_ops.ledger = self.head_ledger
        return LocalLedger(summary, heads, ticks, tuple(v / len(y) for v in losses))

    def _run(
        self,
        d: int,
        kind: str,
        mb: int,
        x: np.ndarray,
        y: np.ndarray,
        outputs: dict[tuple[int, int], np.ndarray],
        losses: list[float],
    ) -> None:
        cfg = self.config
        devices, block, head = cfg.device_ids, self.blocks[d], self.heads[d]
        dev = devices[d]
        scale = 1.0 / cfg.batch
        with self.ledger.at(device=dev, micro_batch=mb):
            self.ledger.mark(dev, kind, mb)
            if kind == "F":
                inp = x if d == 0 else self.comm.recv(devices[d - 1], dev, "activation", mb)
                outputs[(d, mb)] = block.forward(inp, mb)
                self.ledger.note_stash(dev, len(block.stash))
                if d + 1 < cfg.blocks:
                    share = self.shared[d + 1]
                    sent = (
                        block.stash[mb][len(block.layers) - share][0] if share else outputs[(d, mb)]
                    )
                    self.comm.send(sent, dev, devices[d + 1], "activation", mb)
                return
            out = outputs.pop((d, mb))
            if head is None:
                with self.ledger.at(phase="loss"):
                    loss, grad = softmax_cross_entropy(self.ops, out, y, scale)
            else:
                with self.head_ledger.at(device=dev, micro_batch=mb):
                    logits = head.forward(out, mb)
                    with self.head_ledger.at(phase="loss"):
                        loss, g = softmax_cross_entropy(self.head_ops, logits, y, scale)
                    back = head.backward(g, mb)
                    assert back is not None
                    grad = back
            losses[d] += loss
            block.backward(grad, mb)

    def _swap_shared(self) -> None:
        """Neighbours swap the shared layers' gradients and each adds the other's."""
        devices = self.config.device_ids
        for d in range(1, self.config.blocks):
            n = self.shared[d]
            if not n:
                continue
            mine, theirs = self.blocks[d - 1].layers[-n:], self.blocks[d].layers[:n]
            a, b = devices[d - 1], devices[d]
            self.comm.send(_fuse(theirs), b, a, "shared_gradient")
            self.comm.send(_fuse(mine), a, b, "shared_gradient")
            for dev, src, layers in ((a, b, mine), (b, a, theirs)):
                got = self.comm.recv(src, dev, "shared_gradient")
                with self.ledger.at(device=dev, phase="optimizer"):
                    total = self.ops.add(_fuse(layers), got)
                _unfuse(layers, total)

    def _update(self) -> None:
        lr = self.config.learning_rate
        for dev, block, head in zip(self.config.device_ids, self.blocks, self.heads, strict=True):
            with self.ledger.at(device=dev, phase="optimizer"):
                for lay in block.layers:
                    self.ops.sgd(lay.w, lay.gw, lr)
                    self.ops.sgd(lay.b, lay.gb, lr)
            if head is not None:
                with self.head_ledger.at(device=dev, phase="optimizer"):
                    for lay in head.layers:
                        self.head_ops.sgd(lay.w, lay.gw, lr)
                        self.head_ops.sgd(lay.b, lay.gb, lr)

    # ---- evaluation -----------------------------------------------------------------------
    def predict(self, x: np.ndarray, exit_at: int | None = None) -> np.ndarray:
        """Class predictions of the network (``exit_at`` = d: of block d's auxiliary head)."""
        ops = Ops(Ledger())
        last = self.config.blocks - 1 if exit_at is None else exit_at
        with ops.ledger.at(device=0):
            for d in range(last + 1):
                block = self.blocks[d]
                chain = block.layers[self.shared[d] :]  # shared copies equal the owner's layers
                run = Block(ops, chain, 0, block.depth - self.shared[d], block.activation)
                x = run.forward(x, key=0)
            head = self.heads[last]
            if head is not None:
                x = Block(ops, head.layers, 1, 2, head.activation).forward(x, key=0)
        return x.argmax(axis=1)


def _fuse(layers: Sequence[Dense]) -> np.ndarray:
    return np.concatenate([a.ravel() for lay in layers for a in (lay.gw, lay.gb)])


def _unfuse(layers: Sequence[Dense], flat: np.ndarray) -> None:
    offset = 0
    for lay in layers:
        for a in (lay.gw, lay.gb):
            a[...] = flat[offset : offset + a.size].reshape(a.shape)
            offset += a.size


def local_ledger(config: LocalConfig) -> LocalLedger:
    """Run one step of ``config`` on generated data; return what the ledgers counted."""
    from strategies.reference.data import blobs

    model = LocalModel(config)
    data = blobs(config.batch, config.sizes[0], config.sizes[-1], config.seed, test_fraction=0.0)
    data = data.astype(NUMPY_DTYPES[config.dtype])
    return model.step(data.x_train, data.y_train)


@dataclass(frozen=True)
class LocalTrainResult:
    """Outcome of :func:`train_local`."""

    test_accuracy: float  # the whole network (last block's output)
    exit_accuracy: tuple[float, ...]  # each auxiliary head as an early exit
    losses: tuple[tuple[float, ...], ...]  # per step: each block's mean local loss


def train_local(config: LocalConfig, data: Dataset, epochs: int) -> LocalTrainResult:
    """Train for ``epochs`` passes (seeded shuffles, last partial batch dropped)."""
    model = LocalModel(config)
    data = data.astype(NUMPY_DTYPES[config.dtype])
    rng = np.random.default_rng(config.seed)
    n, batch = len(data.y_train), config.batch
    losses = []
    for _ in range(epochs):
        order = rng.permutation(n)
        for start in range(0, n - batch + 1, batch):
            rows = order[start : start + batch]
            losses.append(model.step(data.x_train[rows], data.y_train[rows]).losses)
    acc = float(np.mean(model.predict(data.x_test) == data.y_test))
    exits = tuple(
        float(np.mean(model.predict(data.x_test, d) == data.y_test))
        for d in range(config.blocks - 1)
    )
    return LocalTrainResult(acc, exits, tuple(losses))


__all__ = [
    "LocalConfig",
    "LocalLedger",
    "LocalModel",
    "LocalTrainResult",
    "local_ledger",
    "train_local",
]
