"""Closed forms of a tensor group's collectives, beside the simulation.

Bytes (what each chip of a T-chip group puts on the wire for a buffer of M bytes, ring
algorithms, every step one hop):

* all-reduce: 2 (T - 1) / T x M (a reduce-scatter then an all-gather of M / T fragments);
* reduce-scatter, all-gather: (T - 1) / T x M each (so the sequence-parallel pair moves what
  one all-reduce moves).

A transformer layer (attention + FFN) runs two all-reduces of its activation (sequence x hidden
x micro-batch x dtype bytes) forward and two backward (Megatron-LM's f and g operators), so
per layer and micro-batch each chip sends 4 x 2 (T - 1) / T x M.

Time: the collective's BSP steps as the engine schedules them (ring, or the bidirectional ring
GCL picks for larger buffers), each ``sync + latency + fragment / bandwidth (+ reduction)``,
without contention — :func:`simulator.analytic.steps_estimate`. The simulation must agree where
nothing else uses the links (tests/test_tensor_closed_forms.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from simulator.analytic import steps_estimate
from simulator.engine.collectives import schedule
from simulator.hardware.system import System

ELEM_BYTES = {"fp16": 2.0, "fp32": 4.0}


def wire_bytes(kind: str, n: int, nbytes: float) -> float:
    """Bytes one chip of an ``n``-chip ring sends in collective ``kind`` of ``nbytes``."""
    if n < 2:
        return 0.0
    if kind == "all_reduce":
        return 2 * (n - 1) / n * nbytes
    if kind in ("reduce_scatter", "all_gather"):
        return (n - 1) / n * nbytes
    raise ValueError(f"no tensor-group closed form for {kind!r}")


def layer_wire_bytes(n: int, activation_bytes: float) -> float:
    """Bytes one chip sends per transformer layer (attention + FFN) per micro-batch: two
    all-reduces of the activation forward, two backward."""
    return 4 * wire_bytes("all_reduce", n, activation_bytes)


def collective_seconds(
    system: System, kind: str, group: Sequence[int], nbytes: float, dtype: str
) -> float:
    """Uncontended time of one collective over ``group`` (ring order), the engine's steps."""
    steps = schedule(system, kind, group, nbytes, "auto", elem_bytes=ELEM_BYTES[dtype])
    if not steps:
        return 0.0
    ct = system.chips[group[0]].type
    rate = ct.tiles * ct.clock_hz * ct.vector_flop_per_cycle[dtype]
    return steps_estimate(system, steps, None, rate).estimate_s


__all__ = ["collective_seconds", "layer_wire_bytes", "wire_bytes"]
