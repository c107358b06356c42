"""Pipeline parallelism: K stages of consecutive layers on K devices, M micro-batches.

Stage s runs a :class:`~strategies.reference.nn.Block` on device ``devices[s]``. Activations go
forward from stage s to s+1 and their gradients come back through the
:class:`~strategies.reference.ledger.CountingCommunicator` (tags ``activation`` and
``gradient``, keyed by micro-batch). The last stage computes the loss and its gradient right
after its forward block. Weight gradients accumulate over the micro-batches in each block.

Execution is message-driven in synchronous ticks: in each tick every stage whose next block
has its input waiting (from before the tick) runs that block. Each block takes one tick, so
``ticks`` is the step length in units of one block: 2(M + K - 1) for both schedules.

Schedules (per stage s of K, micro-batches 0..M-1):

* ``gpipe``: F0 .. F(M-1), then B(M-1) .. B0 (all forwards, then all backwards, last
  micro-batch first, as strategies/schedule.py orders them).
* ``1f1b`` (PipeDream-Flush): w = min(K - s - 1, M) warm-up forwards, then alternately one
  forward and one backward, then the remaining backwards. Stage s holds at most w + 1 <= K - s
  micro-batches' activations, against M for GPipe.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from strategies.reference.ledger import CountingCommunicator
from strategies.reference.nn import Block, softmax_cross_entropy

Schedule = Literal["gpipe", "1f1b"]
SCHEDULES: tuple[Schedule, ...] = ("gpipe", "1f1b")


def balanced_placement(layers: int, stages: int) -> tuple[int, ...]:
    """Stage of each layer: consecutive runs as equal in layer count as possible.

    The first ``layers % stages`` stages get one layer more.
    """
    if not 1 <= stages <= layers:
        raise ValueError(f"{stages} stages for {layers} layers: need 1 <= stages <= layers")
    base, extra = divmod(layers, stages)
    return tuple(s for s in range(stages) for _ in range(base + (s < extra)))


def stage_ranges(placement: Sequence[int]) -> list[range]:
    """The layer range of each stage; ``placement`` must step through 0, .., K-1 in order."""
    stages = max(placement) + 1
    if placement[0] != 0 or any(b - a not in (0, 1) for a, b in itertools.pairwise(placement)):
        raise ValueError(f"placement {list(placement)} is not consecutive stages 0..{stages - 1}")
    return [
        range(placement.index(s), len(placement) - placement[::-1].index(s)) for s in range(stages)
    ]


def stage_order(
    schedule: Schedule, stage: int, stages: int, micro_batches: int
) -> list[tuple[str, int]]:
    """The blocks stage ``stage`` runs, in order: ("F", m) forward, ("B", m) backward."""
    m_all = range(micro_batches)
    if schedule == "gpipe":
        return [("F", m) for m in m_all] + [("B", m) for m in reversed(m_all)]
    if schedule != "1f1b":
        raise ValueError(f"schedule {schedule!r} not in {SCHEDULES}")
    warm = min(stages - stage - 1, micro_batches)
    order = [("F", m) for m in range(warm)]
    for m in range(micro_batches - warm):
        order += [("F", warm + m), ("B", m)]
    return order + [("B", m) for m in range(micro_batches - warm, micro_batches)]


@dataclass(frozen=True)
class PipelineRun:
    """What one replica's pipelined pass returns."""

    loss_sum: float  # summed cross-entropy over all micro-batches' samples
    ticks: int  # synchronous ticks until the last block finished


def run_pipeline(
    blocks: Sequence[Block],
    devices: Sequence[int],
    inputs: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    comm: CountingCommunicator,
    schedule: Schedule,
    loss_scale: float,
) -> PipelineRun:
    """Forward and backward every micro-batch through the stages; gradients accumulate.

    ``inputs[m]``, ``labels[m]``: micro-batch m. ``loss_scale`` multiplies the loss gradient
    (1 / global batch for a mean loss).
    """
    ledger = comm.ledger
    k, m_count = len(blocks), len(inputs)
    queues = [deque(stage_order(schedule, s, k, m_count)) for s in range(k)]
    grads_out: dict[int, np.ndarray] = {}
    loss, ticks = 0.0, 0

    def ready(s: int) -> bool:
        kind, m = queues[s][0]
        if kind == "F":
            return s == 0 or comm.ready(devices[s - 1], devices[s], "activation", m)
        return (
            m in grads_out if s == k - 1 else comm.ready(devices[s + 1], devices[s], "gradient", m)
        )

    while any(queues):
        runnable = [s for s in range(k) if queues[s] and ready(s)]
        if not runnable:
            raise RuntimeError(f"pipeline deadlock: next blocks {[q[0] for q in queues if q]}")
        ticks += 1
        for s in runnable:
            kind, m = queues[s].popleft()
            dev = devices[s]
            with ledger.at(device=dev, micro_batch=m):
                ledger.mark(dev, kind, m)
                if kind == "F":
                    x = inputs[m] if s == 0 else comm.recv(devices[s - 1], dev, "activation", m)
                    y = blocks[s].forward(x, m)
                    ledger.note_stash(dev, len(blocks[s].stash))
                    if s < k - 1:
                        comm.send(y, dev, devices[s + 1], "activation", m)
                        continue
                    with ledger.at(phase="loss"):
                        part, grads_out[m] = softmax_cross_entropy(
                            blocks[s].ops, y, labels[m], loss_scale
                        )
                    loss += part
                    continue
                dy = (
                    grads_out.pop(m)
                    if s == k - 1
                    else comm.recv(devices[s + 1], dev, "gradient", m)
                )
                dx = blocks[s].backward(dy, m)
                if s > 0:
                    assert dx is not None
                    comm.send(dx, dev, devices[s - 1], "gradient", m)
    if comm.pending():
        raise RuntimeError("messages left unreceived after the pipeline drained")
    return PipelineRun(loss, ticks)
