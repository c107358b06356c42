"""Simulator speed of a sensitivity analysis (issue 13, item 4).

Times ``ipusim run scenarios/mlperf/bert-large-v2.0-bow-pod256.yaml --sensitivity`` in-process
(after imports): the base run with its baseline, then every touched assumption at each end of
its range, on ``--jobs`` forked processes (default 2: the target is "under 30 s on 2 cores").
Prints the wall-clock time, the CPU time of this process and of its workers, what was run and
shared, and the load average before and after (other processes on the machine slow every
figure; the CPU time is the more stable one: on an idle machine the wall time is about the
base run plus half the workers' CPU time on 2 cores).

Run:  python benchmarks/bench_sensitivity.py [--jobs N] [SCENARIO]
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

import strategies  # noqa: F401 - registers the strategies
from simulator.config.scenario import load_scenario
from simulator.sensitivity.runner import analyse, base_run

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios/mlperf/bert-large-v2.0-bow-pod256.yaml"
TARGET_S = 30.0


def _cpu() -> tuple[float, float]:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("scenario", nargs="?", default=str(SCENARIO))
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    load0 = os.getloadavg()[0]
    w0, (c0, k0) = time.perf_counter(), _cpu()
    loaded = load_scenario(args.scenario)
    base = base_run(loaded)
    w1, (c1, _) = time.perf_counter(), _cpu()
    _, sens = analyse(loaded, jobs=args.jobs, base=base)
    w2, (c2, k2) = time.perf_counter(), _cpu()
    assert sens is not None, "the base plan is infeasible"
    n = sens.counts
    lo, hi = sens.band_s
    print(f"scenario        {Path(args.scenario).name}  (--jobs {args.jobs})")
    print(f"band            {sens.value_s * 1e3:.1f} ms: {lo * 1e3:.1f} – {hi * 1e3:.1f} ms")
    print(
        f"assumptions     {len(sens.assumptions)} varied, {len(sens.untouched)} untouched "
        f"(not run), {len(sens.pinned)} pinned"
    )
    print(
        f"runs            {n.executions} simulations ({n.shared_plans} on the shared plan), "
        f"{n.plans} plans, {n.reused} ends reusing the base time"
    )
    print(f"base run        {w1 - w0:6.2f} s wall, {c1 - c0:6.2f} s CPU (incl. the baseline)")
    print(
        f"variants        {w2 - w1:6.2f} s wall, {c2 - c1:6.2f} s CPU here + "
        f"{k2 - k0:6.2f} s CPU in workers"
    )
    total = w2 - w0
    verdict = "meets" if total < TARGET_S else "MISSES"
    print(f"total           {total:6.2f} s wall ({verdict} the {TARGET_S:.0f} s target), "
          f"{(c2 - c0) + (k2 - k0):6.2f} s CPU")  # fmt: skip
    print(f"load average    {load0:.2f} before, {os.getloadavg()[0]:.2f} after")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
