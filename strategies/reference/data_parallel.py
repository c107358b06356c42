"""Data parallelism (composed with pipelining): R replicas x K stages on R·K devices.

One training step on a global batch of B samples:

1. Replica r takes rows ``[r·B/R, (r+1)·B/R)`` and cuts them into M micro-batches of
   ``micro_batch`` rows (gradient accumulation; M = B / (R·micro_batch)).
2. Each replica runs its pipeline (:func:`~strategies.reference.pipeline.run_pipeline`); the
   loss gradient is scaled by 1/B, so weight gradients summed over micro-batches *and*
   replicas are the gradient of the mean loss over the global batch.
3. For each stage s, the devices holding stage s in every replica all-reduce (sum) one fused
   buffer: all of the stage's weight and bias gradients, flattened and concatenated in layer
   order (weights then bias per layer). No all-reduce when R = 1.
4. Every device applies SGD to its layers (phase ``optimizer``): replicas stay identical.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from strategies.reference.ledger import CountingCommunicator, Ledger
from strategies.reference.nn import Activation, Block, Dense, Ops
from strategies.reference.pipeline import Schedule, run_pipeline, stage_ranges


def default_grid(replicas: int, stages: int) -> tuple[tuple[int, ...], ...]:
    """Device of replica r, stage s: ``r * stages + s`` (a replica's stages are neighbours)."""
    return tuple(tuple(r * stages + s for s in range(stages)) for r in range(replicas))


class ParallelModel:
    """R replicas of an MLP split into stages; ``grid[r][s]`` is the device of each block."""

    def __init__(
        self,
        layers: Sequence[Dense],
        placement: Sequence[int],
        grid: Sequence[Sequence[int]],
        ledger: Ledger,
        activation: Activation = "relu",
        schedule: Schedule = "gpipe",
    ) -> None:
        ranges = stage_ranges(placement)
        if len(placement) != len(layers):
            raise ValueError(f"placement names {len(placement)} layers, the net has {len(layers)}")
        if any(len(row) != len(ranges) for row in grid):
            raise ValueError(f"every grid row must name {len(ranges)} devices (one per stage)")
        flat = [d for row in grid for d in row]
        if len(set(flat)) != len(flat):
            raise ValueError(f"devices repeat in grid {grid}")
        self.ledger = ledger
        self.ops = Ops(ledger)
        self.comm = CountingCommunicator(ledger)
        self.grid = tuple(tuple(row) for row in grid)
        self.schedule = schedule
        depth = len(layers)
        self.blocks = [
            [
                Block(self.ops, [layers[i].copy() for i in rng], rng.start, depth, activation)
                for rng in ranges
            ]
            for _ in self.grid
        ]

    @property
    def replicas(self) -> int:
        """R."""
        return len(self.grid)

    def gradients(self, x: np.ndarray, y: np.ndarray, micro_batch: int) -> float:
        """Steps 1-3 above: leave the mean-loss gradient in every block; return the mean loss."""
        batch = len(y)
        shard, rest = divmod(batch, self.replicas)
        if rest or shard % micro_batch:
            raise ValueError(
                f"global batch {batch} is not {self.replicas} replicas x whole micro-batches "
                f"of {micro_batch}"
            )
        loss = 0.0
        for r, (row, blocks) in enumerate(zip(self.grid, self.blocks, strict=True)):
            for block in blocks:
                block.zero_grad()
            cuts = range(r * shard, (r + 1) * shard, micro_batch)
            run = run_pipeline(
                blocks,
                row,
                [x[i : i + micro_batch] for i in cuts],
                [y[i : i + micro_batch] for i in cuts],
                self.comm,
                self.schedule,
                1.0 / batch,
            )
            loss += run.loss_sum
        if self.replicas > 1:
            for s in range(len(self.grid[0])):
                self._all_reduce_stage(s)
        return loss / batch

    def _all_reduce_stage(self, s: int) -> None:
        buffers = {
            row[s]: np.concatenate(
                [a.ravel() for lay in blocks[s].layers for a in (lay.gw, lay.gb)]
            )
            for row, blocks in zip(self.grid, self.blocks, strict=True)
        }
        summed = self.comm.all_reduce(buffers, tag="gradients")
        for row, blocks in zip(self.grid, self.blocks, strict=True):
            flat, offset = summed[row[s]], 0
            for lay in blocks[s].layers:
                for a in (lay.gw, lay.gb):
                    a[...] = flat[offset : offset + a.size].reshape(a.shape)
                    offset += a.size

    def update(self, learning_rate: float) -> None:
        """Step 4: SGD on every device."""
        for row, blocks in zip(self.grid, self.blocks, strict=True):
            for dev, block in zip(row, blocks, strict=True):
                with self.ledger.at(device=dev, phase="optimizer"):
                    for lay in block.layers:
                        self.ops.sgd(lay.w, lay.gw, learning_rate)
                        self.ops.sgd(lay.b, lay.gb, learning_rate)

    def step(self, x: np.ndarray, y: np.ndarray, micro_batch: int, learning_rate: float) -> float:
        """One training step; returns the mean loss before the update."""
        loss = self.gradients(x, y, micro_batch)
        self.update(learning_rate)
        return loss

    def layers(self, replica: int = 0) -> list[Dense]:
        """Replica ``replica``'s layers over all stages (live objects, with their gradients)."""
        return [lay for block in self.blocks[replica] for lay in block.layers]
