"""Trace: what the executor recorded. Spans per chip, per RNG unit and per link channel.

The trace is engine output, not a result: :mod:`simulator.metrics` turns it into a Result.
Spans are appended in event order, which is deterministic for a given graph and system.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SPAN_KINDS = ("compute", "exchange", "sync", "collective", "rng", "memory", "host", "transfer")


@dataclass(frozen=True, slots=True)
class Span:
    """An interval of activity on one row (a chip, an RNG unit or a channel)."""

    row: int  # chip id, or channel id for link spans
    start: float
    end: float
    kind: str  # one of SPAN_KINDS
    task: int  # task id in the graph
    label: str = ""
    bytes: float = 0.0
    flops: float = 0.0

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class Trace:
    """Recorded activity of one execution."""

    makespan: float = 0.0
    chip_spans: list[Span] = field(default_factory=list)
    rng_spans: list[Span] = field(default_factory=list)
    link_spans: list[Span] = field(default_factory=list)
    task_start: dict[int, float] = field(default_factory=dict)
    task_end: dict[int, float] = field(default_factory=dict)
    channel_bytes: np.ndarray = field(default_factory=lambda: np.zeros(0))
    events_processed: int = 0
    flows_started: int = 0
    flow_recomputations: int = 0
    cached_steps: int = 0
    simulated_steps: int = 0
    #: per Collective task: seconds of its steps whose exchange crossed GW-Links
    collective_gw_s: dict[int, float] = field(default_factory=dict)
    #: per task that joined late copies (variability): seconds it held its chips waiting
    #: before it started (``task_start`` is after the wait)
    waits: dict[int, float] = field(default_factory=dict)

    def busy_by_kind(self, num_chips: int) -> dict[str, np.ndarray]:
        """Seconds each chip spent per span kind (overlaps within a kind are not merged)."""
        out = {k: np.zeros(num_chips) for k in SPAN_KINDS}
        for s in self.chip_spans:
            out[s.kind][s.row] += s.duration
        for s in self.rng_spans:
            out["rng"][s.row] += s.duration
        return out
