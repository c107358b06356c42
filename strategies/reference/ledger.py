"""The work ledger of a reference run and the counting communicator that feeds it.

A :class:`Ledger` is charged *while a NumPy run executes*: FLOPs by the instrumented
operations of :mod:`strategies.reference.nn`, bytes by :class:`CountingCommunicator`, random
samples by :meth:`Ops.rng_normal <strategies.reference.nn.Ops.rng_normal>`. Nothing here
computes a count from a formula; the counts are whatever the run did.

Every charge lands on the ledger's current :class:`Where` — (device, phase, micro-batch) — set
with the :meth:`Ledger.at` context manager. Work charged outside any device is an error, so
no work goes unattributed.

Counting conventions (docs/reference_runs.md has the full list):

* **Bytes** are ``ndarray.nbytes`` of the arrays actually moved, so they are in the dtype the
  run computes in (fp32 by default; ask a float16 run for fp16 bytes).
* **Point-to-point**: :meth:`CountingCommunicator.send` charges ``nbytes`` to
  ``sent[(src, dst, tag)]``; :meth:`~CountingCommunicator.recv` charges the same array to
  ``received[(src, dst, tag)]``.
* **All-reduce** (sum) over a group of N devices, each contributing a buffer of ``nbytes``:
  ``all_reduced[device] += nbytes`` (the algorithm-independent size each device contributes)
  and ``ring_sent[device]`` += the bytes the device puts on the wire in a unidirectional ring
  (reduce-scatter then all-gather over N chunks from :func:`numpy.array_split`): it sends
  every chunk but chunk ``i+1`` in the reduce-scatter and every chunk but chunk ``i+2`` in the
  all-gather (indices mod N, i its ring position), i.e. ``2(N-1)/N x nbytes`` when N divides
  the element count. The sum really is computed along that ring. Its additions are not
  charged as FLOPs: they belong to the collective, whose size the plan already carries.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

Phase = Literal["forward", "loss", "backward_input", "backward_weight", "optimizer"]

#: Phases FLOPs are charged to, in step order. ``loss`` is the softmax cross-entropy (value and
#: gradient with respect to the logits), kept apart because model layer tables have no loss.
PHASES: tuple[Phase, ...] = ("forward", "loss", "backward_input", "backward_weight", "optimizer")

#: Names of the dtypes a run can compute in (keys of :data:`NUMPY_DTYPES`).
DTYPES = ("fp16", "fp32", "fp64")
NUMPY_DTYPES: dict[str, type[np.floating]] = {
    "fp16": np.float16,
    "fp32": np.float32,
    "fp64": np.float64,
}


@dataclass(frozen=True, slots=True)
class Where:
    """Where a charge lands: a device, a phase and the micro-batch (None: per-step work)."""

    device: int | None = None
    phase: Phase | None = None
    micro_batch: int | None = None


@dataclass(frozen=True, slots=True)
class CollectiveRecord:
    """One collective call: its kind, group (ring order), tag and buffer bytes per device."""

    kind: str
    group: tuple[int, ...]
    tag: str
    nbytes: int


@dataclass(frozen=True)
class LedgerSummary:
    """What one training step did, per device; the form strategy plans are compared with.

    All counts are for **one step** (every micro-batch of every replica, then the update).

    * ``dtype``: the dtype the run computed and communicated in; every byte count is in it.
    * ``flops[device][phase]``: FLOPs charged, every phase of :data:`PHASES` present.
    * ``flops_per_micro_batch[(device, phase, micro_batch)]``: the same split by micro-batch
      (micro-batch indices are per replica, 0..M-1; ``None`` for per-step work: optimizer).
    * ``transfers[(src, dst, tag)]``: point-to-point bytes sent (tags ``activation``,
      ``gradient``).
    * ``activation_bytes[i]`` / ``gradient_bytes[i]``: bytes sent forward from stage i to
      i+1 / backward from stage i+1 to i, in one replica (every replica sends the same).
    * ``all_reduce_bytes[device]``: buffer bytes the device contributed to all-reduces.
    * ``ring_bytes[device]``: bytes the device sent on the wire in those all-reduces (ring).
    * ``collectives``: every collective call in call order.
    * ``samples[device]``: random samples drawn.
    * ``order[device]``: the compute blocks the device ran, in order: ("F"|"B", micro_batch).
    * ``peak_stash[device]``: most micro-batches whose activations the device held at once.
    """

    dtype: str
    flops: dict[int, dict[str, int]]
    flops_per_micro_batch: dict[tuple[int, str, int | None], int]
    transfers: dict[tuple[int, int, str], int]
    activation_bytes: tuple[int, ...]
    gradient_bytes: tuple[int, ...]
    all_reduce_bytes: dict[int, int]
    ring_bytes: dict[int, int]
    collectives: tuple[CollectiveRecord, ...]
    samples: dict[int, int]
    order: dict[int, tuple[tuple[str, int], ...]] = field(default_factory=dict)
    peak_stash: dict[int, int] = field(default_factory=dict)

    def total_flops(self, phase: Phase | None = None) -> int:
        """FLOPs over all devices, of one phase or of all."""
        return sum(n for per in self.flops.values() for p, n in per.items() if phase in (None, p))


class Ledger:
    """Mutable counters charged during a run; :meth:`summary` freezes them."""

    def __init__(self) -> None:
        self.where = Where()
        self.flops: defaultdict[tuple[int, Phase, int | None], int] = defaultdict(int)
        self.sent: defaultdict[tuple[int, int, str], int] = defaultdict(int)
        self.received: defaultdict[tuple[int, int, str], int] = defaultdict(int)
        self.all_reduced: defaultdict[int, int] = defaultdict(int)
        self.ring_sent: defaultdict[int, int] = defaultdict(int)
        self.collectives: list[CollectiveRecord] = []
        self.samples: defaultdict[int, int] = defaultdict(int)
        self.order: defaultdict[int, list[tuple[str, int]]] = defaultdict(list)
        self.peak_stash: defaultdict[int, int] = defaultdict(int)

    @contextmanager
    def at(
        self,
        device: int | None = None,
        phase: Phase | None = None,
        micro_batch: int | None = None,
    ) -> Iterator[None]:
        """Charge work inside the block to ``device``/``phase``/``micro_batch``.

        Arguments left as None keep the enclosing block's value, so a caller can set the device
        and micro-batch once and an inner block only the phase.
        """
        outer = self.where
        changes: dict[str, Any] = {"device": device, "phase": phase, "micro_batch": micro_batch}
        self.where = replace(outer, **{k: v for k, v in changes.items() if v is not None})
        try:
            yield
        finally:
            self.where = outer

    def _device(self) -> int:
        if self.where.device is None:
            raise RuntimeError("work charged outside any device: wrap it in ledger.at(device=...)")
        return self.where.device

    def charge_flops(self, n: int) -> None:
        """Add ``n`` FLOPs at the current device, phase and micro-batch."""
        device = self._device()
        if self.where.phase is None:
            raise RuntimeError("FLOPs charged outside any phase: wrap them in ledger.at(phase=...)")
        self.flops[(device, self.where.phase, self.where.micro_batch)] += int(n)

    def charge_samples(self, n: int) -> None:
        """Add ``n`` random samples drawn at the current device."""
        self.samples[self._device()] += int(n)

    def mark(self, device: int, kind: str, micro_batch: int) -> None:
        """Record that ``device`` starts compute block ``kind`` (F or B) of ``micro_batch``."""
        self.order[device].append((kind, micro_batch))

    def note_stash(self, device: int, held: int) -> None:
        """Record that ``device`` holds the activations of ``held`` micro-batches."""
        self.peak_stash[device] = max(self.peak_stash[device], held)

    def summary(
        self, dtype: str, grid: Sequence[Sequence[int]] = ((),), devices: Sequence[int] = ()
    ) -> LedgerSummary:
        """Freeze the counts; ``grid[r][s]`` is the device of replica r, stage s.

        ``devices`` lists devices that must appear in the per-device maps even when idle.
        """
        every = sorted({d for row in grid for d in row} | set(devices))
        every += sorted({k[0] for k in self.flops} - set(every))
        flops: dict[int, dict[str, int]] = {d: dict.fromkeys(PHASES, 0) for d in every}
        for (d, p, _), n in self.flops.items():
            flops[d][p] += n
        per_replica = [_boundaries(self.sent, row) for row in grid]
        if any(b != per_replica[0] for b in per_replica):
            raise AssertionError(f"replicas sent different boundary bytes: {per_replica}")
        act, grad = per_replica[0] if per_replica else ((), ())
        return LedgerSummary(
            dtype=dtype,
            flops=flops,
            flops_per_micro_batch={k: n for k, n in self.flops.items()},
            transfers=dict(self.sent),
            activation_bytes=act,
            gradient_bytes=grad,
            all_reduce_bytes={d: self.all_reduced.get(d, 0) for d in every},
            ring_bytes={d: self.ring_sent.get(d, 0) for d in every},
            collectives=tuple(self.collectives),
            samples={d: self.samples.get(d, 0) for d in every},
            order={d: tuple(self.order.get(d, ())) for d in every},
            peak_stash={d: self.peak_stash.get(d, 0) for d in every},
        )


def _boundaries(
    sent: Mapping[tuple[int, int, str], int], row: Sequence[int]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    act = tuple(sent.get((row[i], row[i + 1], "activation"), 0) for i in range(len(row) - 1))
    grad = tuple(sent.get((row[i + 1], row[i], "gradient"), 0) for i in range(len(row) - 1))
    return act, grad


class CountingCommunicator:
    """Message passing between simulated devices that charges every byte to a ledger.

    Point-to-point messages wait in a mailbox keyed by (src, dst, tag, key) until received.
    """

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._mailbox: dict[tuple[int, int, str, int], np.ndarray] = {}

    def send(self, array: np.ndarray, src: int, dst: int, tag: str, key: int = 0) -> None:
        """Post a copy of ``array`` from ``src`` to ``dst``; charges its nbytes as sent."""
        slot = (src, dst, tag, key)
        if slot in self._mailbox:
            raise RuntimeError(f"message {slot} sent twice before it was received")
        self._mailbox[slot] = np.array(array, copy=True)
        self.ledger.sent[(src, dst, tag)] += array.nbytes

    def ready(self, src: int, dst: int, tag: str, key: int = 0) -> bool:
        """Whether a message is waiting."""
        return (src, dst, tag, key) in self._mailbox

    def recv(self, src: int, dst: int, tag: str, key: int = 0) -> np.ndarray:
        """Take the message; charges its nbytes as received."""
        array = self._mailbox.pop((src, dst, tag, key))
        self.ledger.received[(src, dst, tag)] += array.nbytes
        return array

    def pending(self) -> int:
        """Messages sent and not yet received."""
        return len(self._mailbox)

    def all_reduce(self, buffers: Mapping[int, np.ndarray], tag: str) -> dict[int, np.ndarray]:
        """Sum equal-shaped buffers over a ring of their devices (in mapping order).

        Returns each device's copy of the sum. Charges ``all_reduced`` and ``ring_sent`` as the
        module docstring states, and records a :class:`CollectiveRecord`.
        """
        group = tuple(buffers)
        first = buffers[group[0]]
        if any(b.shape != first.shape or b.dtype != first.dtype for b in buffers.values()):
            raise ValueError("all_reduce buffers differ in shape or dtype")
        n = len(group)
        for d in group:
            self.ledger.all_reduced[d] += first.nbytes
        self.ledger.collectives.append(CollectiveRecord("all_reduce", group, tag, first.nbytes))
        # chunks[i][c]: device at ring position i, its copy of chunk c (flattened views split).
        chunks = [[c.copy() for c in np.array_split(buffers[d].ravel(), n)] for d in group]
        for step in range(n - 1):  # reduce-scatter: position i sends chunk i - step to i + 1
            moves = [(i, (i - step) % n) for i in range(n)]
            payload = [chunks[i][c].copy() for i, c in moves]
            for (i, c), data in zip(moves, payload, strict=True):
                self.ledger.ring_sent[group[i]] += data.nbytes
                chunks[(i + 1) % n][c] += data
        for step in range(n - 1):  # all-gather: position i sends chunk i + 1 - step to i + 1
            moves = [(i, (i + 1 - step) % n) for i in range(n)]
            payload = [chunks[i][c].copy() for i, c in moves]
            for (i, c), data in zip(moves, payload, strict=True):
                self.ledger.ring_sent[group[i]] += data.nbytes
                chunks[(i + 1) % n][c] = data
        return {d: np.concatenate(chunks[i]).reshape(first.shape) for i, d in enumerate(group)}
