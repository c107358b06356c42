"""Configured reference runs: the ledger of one step, and training to an accuracy.

:func:`reference_ledger` is what strategy tests call: it *runs* one instrumented training step
for a :class:`ReferenceConfig` and returns the ledger's summary. Counts never come from a
formula here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from strategies.reference.data import Dataset, blobs, epoch_batches
from strategies.reference.data_parallel import ParallelModel, default_grid
from strategies.reference.ledger import NUMPY_DTYPES, Ledger, LedgerSummary
from strategies.reference.nn import Activation, Block, Dense, Ops, init_mlp
from strategies.reference.pipeline import Schedule, balanced_placement


@dataclass(frozen=True)
class ReferenceConfig:
    """One reference configuration.

    * ``sizes``: layer widths, input first: (64, 32, 10) is dense 64->32, activation,
      dense 32->10, softmax cross-entropy. ``len(sizes) - 1`` dense layers.
    * ``global_batch``: samples per step over all replicas.
    * ``micro_batch``: samples per micro-batch per replica (None: ``global_batch //
      replicas``, one micro-batch). M = global_batch / (replicas x micro_batch).
    * ``replicas`` R, ``stages`` K.
    * ``placement``: stage of each dense layer (its activation goes with it); None: balanced
      by layer count (:func:`~strategies.reference.pipeline.balanced_placement`).
    * ``grid``: ``grid[r][s]`` device of replica r, stage s; None: ``r * K + s``.
    * ``schedule``: ``gpipe`` or ``1f1b``. ``activation``: ``relu`` or ``tanh``.
    * ``dtype``: fp16, fp32 or fp64, what the run computes and communicates in (bytes follow).
    """

    sizes: tuple[int, ...]
    global_batch: int
    micro_batch: int | None = None
    replicas: int = 1
    stages: int = 1
    placement: tuple[int, ...] | None = None
    grid: tuple[tuple[int, ...], ...] | None = None
    schedule: Schedule = "gpipe"
    activation: Activation = "relu"
    dtype: str = "fp32"
    learning_rate: float = 0.1
    seed: int = 0

    @property
    def layer_count(self) -> int:
        """Dense layers."""
        return len(self.sizes) - 1

    @property
    def micro_batch_size(self) -> int:
        """Rows per micro-batch."""
        return self.micro_batch or self.global_batch // self.replicas

    @property
    def micro_batches(self) -> int:
        """M, micro-batches per replica per step."""
        return self.global_batch // (self.replicas * self.micro_batch_size)

    @property
    def stage_of_layer(self) -> tuple[int, ...]:
        """The placement, filled in."""
        return self.placement or balanced_placement(self.layer_count, self.stages)

    @property
    def devices(self) -> tuple[tuple[int, ...], ...]:
        """The grid, filled in."""
        return self.grid or default_grid(self.replicas, self.stages)

    @property
    def np_dtype(self) -> type[np.floating]:
        """The NumPy dtype of the run."""
        return NUMPY_DTYPES[self.dtype]

    def check(self) -> None:
        """Raise ValueError for a configuration that cannot run."""
        if self.dtype not in NUMPY_DTYPES:
            raise ValueError(f"dtype {self.dtype!r} not in {sorted(NUMPY_DTYPES)}")
        if len(self.sizes) < 2:
            raise ValueError("sizes needs at least an input and an output width")
        per = self.replicas * self.micro_batch_size
        if self.global_batch % per:
            raise ValueError(
                f"global batch {self.global_batch} is not a multiple of {self.replicas} replicas "
                f"x micro-batch {self.micro_batch_size}"
            )
        if max(self.stage_of_layer) + 1 != self.stages:
            raise ValueError(f"placement {self.stage_of_layer} does not use {self.stages} stages")


def build(config: ReferenceConfig, ledger: Ledger | None = None) -> ParallelModel:
    """The R x K model of ``config`` with seeded initial weights."""
    config.check()
    layers = init_mlp(config.sizes, config.seed, config.np_dtype)
    return ParallelModel(
        layers,
        config.stage_of_layer,
        config.devices,
        ledger or Ledger(),
        config.activation,
        config.schedule,
    )


def reference_ledger(config: ReferenceConfig) -> LedgerSummary:
    """Run one training step of ``config`` on generated data; return what the ledger counted."""
    model = build(config)
    data = blobs(
        config.global_batch, config.sizes[0], config.sizes[-1], seed=config.seed, test_fraction=0.0
    ).astype(config.np_dtype)
    model.step(data.x_train, data.y_train, config.micro_batch_size, config.learning_rate)
    return model.ledger.summary(config.dtype, model.grid)


def predict(layers: list[Dense], x: np.ndarray, activation: Activation = "relu") -> np.ndarray:
    """Class predictions (argmax of the logits); charged to a throwaway ledger."""
    ops = Ops(Ledger())
    block = Block(ops, layers, 0, len(layers), activation)
    with ops.ledger.at(device=0):
        logits = block.forward(x, key=0)
    return logits.argmax(axis=1)


@dataclass(frozen=True)
class TrainResult:
    """Outcome of :func:`train`."""

    train_accuracy: float
    test_accuracy: float
    losses: tuple[float, ...]  # mean loss of each step
    layers: list[Dense]


def train(config: ReferenceConfig, data: Dataset, epochs: int) -> TrainResult:
    """Train ``config`` for ``epochs`` passes (seeded shuffles, last partial batch dropped)."""
    model = build(config)
    data = data.astype(config.np_dtype)
    losses = [
        model.step(
            data.x_train[rows], data.y_train[rows], config.micro_batch_size, config.learning_rate
        )
        for rows in epoch_batches(len(data.y_train), config.global_batch, epochs, config.seed)
    ]
    layers = model.layers(0)
    return TrainResult(
        train_accuracy=float(
            np.mean(predict(layers, data.x_train, config.activation) == data.y_train)
        ),
        test_accuracy=float(
            np.mean(predict(layers, data.x_test, config.activation) == data.y_test)
        ),
        losses=tuple(losses),
        layers=layers,
    )
