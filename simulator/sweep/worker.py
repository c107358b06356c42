"""Running one point, in whatever process the runner chose (local worker or Dask worker).

:func:`run_point` never raises for a problem of the point itself: invalid input, an
infeasible plan and a bug in the simulator are all returned as a :class:`PointRecord` with
status ``error`` / ``infeasible`` / ``ok``, so one bad point never stops the others. The
result JSON is :func:`simulator.metrics.to_json` of the result: deterministic, so the same
point gives byte-identical text on any worker.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
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


#: per worker process: systems and plans of earlier points, and the results of baselines
#: that several points share (a sweep's runs depend on nothing but their scenario data)
_CACHE: Any = None


def simulate(loaded: Any, baseline: bool) -> Any:
    """:func:`simulator.run.run_loaded` with this process's run cache
    (:class:`~simulator.runcache.RunCache`)."""
    global _CACHE
    from simulator.run import run_loaded
    from simulator.runcache import RunCache

    if _CACHE is None:
        _CACHE = RunCache(size=32, results=True)
    return run_loaded(loaded, baseline=baseline, cache=_CACHE)


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
