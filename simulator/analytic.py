"""Closed-form estimates of the same plan the simulator runs — the second fidelity.

Two numbers for a set of BSP exchange steps, computed without the event engine:

* ``estimate_s``: each step lasts as long as the larger of its slowest transfer alone —
  latency + bytes / bottleneck rate of its path — and its busiest resource (latency + the
  bytes crossing it / its capacity), plus the step's reduction. For a ring all-reduce on an
  uncontended ring this is exactly 2(N-1)(alpha + M/(N beta)).
* ``lower_bound_s``: no schedule can beat the larger of the latency bound and, per step, the
  busiest resource's bytes divided by its capacity.

The simulator must agree with ``estimate_s`` where nothing contends and never beat
``lower_bound_s``; where they differ, contention is the reason.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from simulator.engine.collectives import Step
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


class _Counter:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self, _capacity: float) -> int:
        self.n += 1
        return 10**9 + self.n  # ids apart from channel ids


def path_model(system: System) -> PathModel:
    """A PathModel whose extra resources are numbered apart from the system's channels."""
    return PathModel(system, _Counter())


def exchange_estimate(
    paths: PathModel, flows: Iterable[tuple[PathInfo, float]], reduce_s: float = 0.0
) -> Estimate:
    """Estimate of one exchange phase in which all ``flows`` (path, bytes) run together."""
    slowest = 0.0
    latency = 0.0
    load: dict[int, float] = defaultdict(float)
    for info, nbytes in flows:
        latency = max(latency, info[2])
        slowest = max(slowest, info[2] + nbytes / paths.bottleneck(info))
        for r in info[0]:
            load[r] += nbytes
    congestion = max((b / paths.capacity[r] for r, b in load.items()), default=0.0)
    estimate = max(slowest, latency + congestion)
    return Estimate(estimate + reduce_s, max(latency, congestion) + reduce_s)


def transfer_flows(
    paths: PathModel, transfers: Iterable[TransferSpec]
) -> list[tuple[PathInfo, float]]:
    """The (path, bytes) of chip-to-chip transfers."""
    return [
        (paths.path(t.src, t.dst, t.src_tile, t.dst_tile, t.tiles), t.nbytes) for t in transfers
    ]


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
            specs = [TransferSpec(a, b, step.nbytes, tiles=tiles) for a, b in step.pairs]
            red = step.reduce_elems / reduce_rate if step.reduce_elems else 0.0
            est = exchange_estimate(paths, transfer_flows(paths, specs), red)
            est = memo[step.key] = Estimate(est.estimate_s + sync, est.lower_bound_s + sync)
        total = Estimate(total.estimate_s + est.estimate_s, total.lower_bound_s + est.lower_bound_s)
    return total
