"""``ipusim sweep``: expand, reuse what the store has, run the rest, store each at once."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from simulator.errors import InputError
from simulator.sweep.points import Expansion, Point, canonical, check_keys, expand
from simulator.sweep.runners import (
    dask_target,
    default_jobs,
    run_dask,
    run_local,
    sigterm_as_interrupt,
)
from simulator.sweep.spec import Sweep
from simulator.sweep.store import Store, check_target
from simulator.sweep.worker import PointRecord, PointTask


@dataclass
class Summary:
    """What a sweep run did (counts only: no wall-clock time, so it is reproducible)."""

    sweep: str
    store: str
    runner: str
    combinations: int
    skipped: int  # removed by where:
    points: int
    reused: int  # already in the store
    ran: int = 0
    ok: int = 0
    infeasible: int = 0
    errors: int = 0
    lost: list[str] = field(default_factory=list)  # "key: why" of points whose worker died
    first_errors: list[str] = field(default_factory=list)

    def text(self) -> str:
        """A human summary."""
        lines = [
            f"sweep {self.sweep}: {self.points} points ({self.combinations} combinations, "
            f"{self.skipped} removed by where:) on {self.runner}",
            f"  reused {self.reused} from {self.store}; ran {self.ran}: ok {self.ok}, "
            f"infeasible {self.infeasible}, error {self.errors}",
        ]
        lines += [f"  error: {e}" for e in self.first_errors]
        if self.lost:
            lines.append(f"  {len(self.lost)} point(s) lost with their worker (run again):")
            lines += [f"    {x}" for x in self.lost[:5]]
        return "\n".join(lines)


class Progress:
    """A tqdm bar on stderr: points done of those to run, ok / infeasible / failed, ETA."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar: Any = None
        if enabled and total:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total,
                unit="pt",
                file=sys.stderr,
                dynamic_ncols=True,
                desc="sweep",
                smoothing=0.1,
            )

    def update(self, summary: Summary) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(
                f"ok {summary.ok} infeasible {summary.infeasible} failed "
                f"{summary.errors + len(summary.lost)}",
                refresh=False,
            )
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def band_name(name: str) -> str:
    """The name under which a sweep's points run with their band are stored."""
    return f"{name}:band"


def prepare(sweep: Sweep, band: bool = False) -> Expansion:
    """The points of ``sweep``, checked (no file is written)."""
    expansion = expand(sweep, band)
    if not expansion.points:
        raise InputError(
            f"no points: where: removed all {expansion.combinations} combinations",
            file=sweep.file,
        )
    check_keys(sweep, expansion)
    return expansion


def run_sweep(
    sweep: Sweep,
    store_path: str | Path,
    *,
    jobs: int | None = None,
    dask: str | None = None,
    progress: bool = True,
    expansion: Expansion | None = None,
    band: bool = False,
    indices: set[int] | None = None,
) -> Summary:
    """Run every point of ``sweep`` not yet in the store at ``store_path``.

    ``band``: run each point with its sensitivity analysis (the result JSON gains
    ``sensitivity``; these are other points than the plain ones). ``indices``: only the points
    at these positions of the expansion. Invalid input (the sweep, the store file, an
    unreachable Dask address) raises :class:`InputError` before anything is written.
    """
    store_path = Path(store_path)
    check_target(store_path)  # before the points are made: a bad --out costs nothing
    if band:  # stored as another sweep: NAME:band (docs/sweeps.md)
        sweep = replace(sweep, name=band_name(sweep.name))
    expansion = expansion or prepare(sweep, band)
    if indices is not None:
        kept = [p for p in expansion.points if p.index in indices]
        expansion = Expansion(kept, expansion.skipped, expansion.combinations)
    jobs = jobs or default_jobs()
    with dask_target(dask, jobs) as target, Store.open(store_path) as store:
        runner = f"Dask at {target.address}" if target else f"{jobs} local process(es)"
        stats = sweep.statistics.model_dump_json() if sweep.statistics else None
        store.add_members(sweep.name, expansion.points, stats)
        have = store.keys()
        todo: dict[str, Point] = {}
        for p in expansion.points:
            if p.key not in have:
                todo.setdefault(p.key, p)
        summary = Summary(
            sweep.name,
            str(store_path),
            runner,
            expansion.combinations,
            expansion.skipped,
            len(expansion.points),
            len(expansion.points) - len(todo),
        )
        # a band is many runs: with fewer points than processes, the points run one after
        # the other here and each spreads its runs over every process
        inner = jobs if band and len(todo) < jobs and target is None else 1
        tasks = [
            PointTask(k, str(sweep.base), p.overrides, sweep.baseline, inner if band else 0)
            for k, p in todo.items()
        ]
        bar = Progress(len(tasks), progress)

        def done(record: PointRecord) -> None:
            store.put(record, canonical(todo[record.key].data))
            summary.ran += 1
            if record.status == "ok":
                summary.ok += 1
            elif record.status == "infeasible":
                summary.infeasible += 1
            else:
                summary.errors += 1
                if len(summary.first_errors) < 3:
                    shown = ", ".join(f"{k}={v}" for k, v in todo[record.key].values.items())
                    summary.first_errors.append(f"[{shown}] {record.reason}")
            bar.update(summary)

        def lost(task: PointTask, why: str) -> None:
            summary.lost.append(f"{task.key[:12]}: {why}")
            bar.update(summary)

        try:
            with sigterm_as_interrupt():
                if target is not None:
                    run_dask(tasks, target, done, lost)
                else:
                    run_local(tasks, 1 if inner > 1 else jobs, done, lost)
        except KeyboardInterrupt:
            bar.close()
            print(
                f"ipusim: sweep stopped; {summary.ran} point(s) finished in this run are "
                f"stored in {store_path} (run the sweep again to continue)",
                file=sys.stderr,
            )
            raise
        finally:
            bar.close()
    return summary


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """``fn(*args, **kwargs)`` and the wall-clock seconds it took (for benchmarks)."""
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0
