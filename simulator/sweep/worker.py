"""Running one point, in whatever process the runner chose (local worker or Dask worker).

:func:`run_point` never raises for a problem of the point itself: invalid input, an
infeasible plan and a bug in the simulator are all returned as a :class:`PointRecord` with
status ``error`` / ``infeasible`` / ``ok``, so one bad point never stops the others. The
result JSON is :func:`simulator.metrics.to_json` of the result: deterministic, so the same
point gives byte-identical text on any worker.
"""

from __future__ import annotations

import os
import traceback
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

Status = Literal["ok", "infeasible", "error"]


@dataclass(frozen=True)
class PointTask:
    """What a worker needs: the base file, the overrides, the key, whether to run baselines."""

    key: str
    base: str
    overrides: tuple[str, ...]
    baseline: bool
    band: int = 0  # > 0: also the sensitivity band, on this many processes


@dataclass(frozen=True)
class PointRecord:
    """A finished point as the store keeps it."""

    key: str
    status: Status
    reason: str | None  # the infeasible reason, or the error message
    result: str | None  # result JSON (None for errors)
    chips: int | None
    power_W: float | None


@lru_cache(maxsize=32)
def _system(path: str, stamp: tuple[int, ...]) -> Any:
    from simulator.hardware.build import load_system

    return load_system(path)


def cached_system(loaded: Any) -> Any:
    """The scenario's System, built once per process for a named topology (a System is
    immutable after construction). Keyed by the resolved file and the modification times of
    it and the chip file it names; inline topologies and scenarios that override the hosts
    are built every time."""
    from simulator.config import paths
    from simulator.run import build_system
    from simulator.sweep.points import _chip_name

    topo = loaded.scenario.topology
    if not isinstance(topo, str) or loaded.scenario.hosts is not None:
        return build_system(loaded)
    try:
        path = paths.resolve(topo, "system", relative_to=loaded.path)
        chip = _chip_name(path)
        chip_path = paths.resolve(chip, "chip", relative_to=path) if chip else None
    except Exception:
        return build_system(loaded)  # let the regular path report the problem
    files = [path] + ([chip_path] if chip_path else [])
    stamp = tuple(os.stat(f).st_mtime_ns for f in files)
    return _system(str(path.resolve()), stamp)


def simulate(loaded: Any, baseline: bool) -> Any:
    """:func:`simulator.run.run_loaded` with the system taken from the process cache."""
    from simulator.run import run_loaded

    return run_loaded(loaded, baseline=baseline, system=cached_system(loaded))


def run_point(task: PointTask) -> PointRecord:
    """Load, plan, simulate and summarise one point; every failure becomes a record."""
    from simulator.config.scenario import load_scenario
    from simulator.errors import InputError
    from simulator.metrics import to_json

    sensitivity = None
    try:
        loaded = load_scenario(Path(task.base), task.overrides)  # exactly `ipusim run --set`
        if task.band:
            from simulator.sensitivity.runner import analyse

            outcome, sensitivity = analyse(loaded, jobs=task.band)
        else:
            outcome = simulate(loaded, task.baseline)
    except InputError as exc:
        return PointRecord(task.key, "error", f"invalid input: {exc}", None, None, None)
    except Exception as exc:
        detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return PointRecord(task.key, "error", f"internal error: {detail}", None, None, None)
    result = outcome.result
    status: Status = "ok" if result.feasible else "infeasible"
    text = to_json(result)
    if sensitivity is not None:  # the result JSON gains `sensitivity`, as with `ipusim run`
        import json

        from simulator.sensitivity.cli import clean

        doc = json.loads(text)
        doc["sensitivity"] = clean(sensitivity.to_json())
        text = json.dumps(doc, indent=2) + "\n"
    return PointRecord(
        task.key,
        status,
        result.reason,
        text,
        outcome.system.num_chips,
        float(outcome.system.info.power_W),
    )
