"""Sweep throughput (issue 7, benchmark): points per minute, locally and on Dask.

Runs scenarios/sweeps/bench-bert-large-500.yaml — BERT-Large over 5 Bow Pod sizes x 4 pipeline
depths x 5 micro-batch sizes x 5 gradient-accumulation counts, 500 points — into a fresh
results store, on local worker processes (every core) and on a 2-worker
``distributed.LocalCluster`` (loopback, worker processes), and prints points per minute for
each (wall clock from the first point submitted to the last stored; expansion and hashing are
timed apart). Then checks the two stores hold byte-identical results. Target (issue text): at
least 200 points per minute locally on a 2-core machine. Run::

    python benchmarks/bench_sweep.py                  # both runners, 500 points
    python benchmarks/bench_sweep.py --runner local --limit 100
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from simulator.sweep.driver import prepare, run_sweep
from simulator.sweep.runners import default_jobs
from simulator.sweep.spec import load_sweep
from simulator.sweep.store import Store

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ROOT / "scenarios" / "sweeps" / "bench-bert-large-500.yaml"
TARGET_PER_MIN = 200


def _results(store: Path) -> dict[str, tuple[str, str | None]]:
    with Store.open(store, create=False, readonly=True) as s:
        return {r["key"]: (r["status"], r["result"]) for r in s.rows()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runner", choices=("both", "local", "dask"), default="both")
    parser.add_argument("--jobs", type=int, default=default_jobs())
    parser.add_argument("--limit", type=int, help="run only the first N points")
    args = parser.parse_args()

    sweep = load_sweep(SWEEP)
    t0 = time.perf_counter()
    expansion = prepare(sweep)
    prep_s = time.perf_counter() - t0
    if args.limit:
        expansion = replace(expansion, points=expansion.points[: args.limit])
    n = len(expansion.points)
    print(f"{SWEEP.relative_to(ROOT)}: {n} points; expansion, checks and hashing {prep_s:.2f} s")
    runners = ["local", "dask"] if args.runner == "both" else [args.runner]
    stores: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        for runner in runners:
            store = Path(tmp) / f"{runner}.sqlite"
            stores[runner] = store
            dask = "local" if runner == "dask" else None
            t0 = time.perf_counter()
            summary = run_sweep(sweep, store, jobs=args.jobs, dask=dask, progress=False,
                                expansion=expansion)  # fmt: skip
            wall = time.perf_counter() - t0
            rate = summary.ran / wall * 60
            print(
                f"{runner:5s} {summary.runner}: {summary.ran} points in {wall:.1f} s = "
                f"{rate:,.0f} points/min (ok {summary.ok}, infeasible {summary.infeasible}, "
                f"error {summary.errors})"
                + (
                    f"  target >= {TARGET_PER_MIN}: {'met' if rate >= TARGET_PER_MIN else 'MISSED'}"
                    if runner == "local"
                    else ""
                )
            )
        if len(stores) == 2:
            same = _results(stores["local"]) == _results(stores["dask"])
            print(f"local and Dask results byte-identical: {same}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
