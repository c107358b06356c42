"""Closed-form estimates of the same plan the simulator runs — the second fidelity.

Two numbers for a set of BSP exchange steps, computed without the event engine:

* ``estimate_s``: each step lasts as long as the larger of its slowest transfer alone —
  latency + its time on the slowest resource of its path — and its busiest resource (latency
  + the load crossing it / its capacity), plus the step's reduction. A flow of ``b`` bytes in
  ``m`` messages loads a resource with ``b + m·h`` (``h``: the resource's per-message cost,
  header bytes on a link, cycles' worth of bytes on a tile port) or, on a message engine,
  ``m·c`` seconds (:mod:`simulator.engine.messages`): the per-message term of the closed
  form. For a ring all-reduce on an uncontended ring with no message costs this is exactly
  2(N-1)(alpha + M/(N beta)).
* ``lower_bound_s``: no schedule can beat the larger of the latency bound and, per step, the
  busiest resource's load divided by its capacity.

The simulator must agree with ``estimate_s`` where nothing contends and never beat
``lower_bound_s``; where they differ, contention is the reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from simulator.engine.collectives import Step
from simulator.engine.messages import (
    Flow,
    ResourceIds,
    phase,
    phase_seconds,
    step_flows,
    transfer,
)
from simulator.engine.paths import PathInfo, PathModel
from simulator.hardware.system import System


@dataclass(frozen=True)
class TransferSpec:
    """A transfer as the estimate sees it."""

    src: int
    dst: int
    nbytes: float
    src_tile: int | None = None
    dst_tile: int | None = None
    tiles: int | None = None


@dataclass(frozen=True)
class Estimate:
    estimate_s: float
    lower_bound_s: float


def path_model(system: System) -> PathModel:
    """A PathModel whose extra resources are numbered apart from the system's channels."""
    return PathModel(system, ResourceIds())


def exchange_estimate(paths: PathModel, flows: Iterable[Flow], reduce_s: float = 0.0) -> Estimate:
    """Estimate of one exchange phase in which all ``flows`` run together (the closed form
    :func:`simulator.engine.messages.phase_seconds`), plus its reduction."""
    estimate, lower = phase_seconds(paths, flows)
    return Estimate(estimate + reduce_s, lower + reduce_s)


def transfer_flows(paths: PathModel, transfers: Iterable[TransferSpec]) -> list[Flow]:
    """The flows of chip-to-chip transfers that run in one exchange phase."""
    return phase(
        paths,
        [
            transfer(paths, t.src, t.dst, t.nbytes, t.src_tile, t.dst_tile, t.tiles)
            for t in transfers
        ],
    )


def stream_flow(info: PathInfo, nbytes: float) -> Flow:
    """A host or Streaming Memory stream (a DMA: no message costs) as a flow."""
    resources, cap, latency = info
    return Flow(resources, nbytes, 0.0, cap, latency)


def steps_estimate(
    system: System, steps: Sequence[Step], tiles: int | None, reduce_rate: float
) -> Estimate:
    """Estimate of a collective's steps (``reduce_rate``: elements reduced per second).

    Every step opens with a sync over the collective's chips (those its steps name), as the
    engine runs it."""
    paths = path_model(system)
    total = Estimate(0.0, 0.0)
    memo: dict[int, Estimate] = {}
    group = sorted({c for step in steps for pair in step.pairs for c in pair})
    sync = system.sync_latency_s(group) if len(group) > 1 else 0.0
    for step in steps:
        est = memo.get(step.key)
        if est is None:
            red = step.reduce_elems / reduce_rate if step.reduce_elems else 0.0
            est = exchange_estimate(paths, step_flows(paths, step, tiles), red)
            est = memo[step.key] = Estimate(est.estimate_s + sync, est.lower_bound_s + sync)
        total = Estimate(total.estimate_s + est.estimate_s, total.lower_bound_s + est.lower_bound_s)
    return total
