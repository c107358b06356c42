"""Simulator speed on communication (issue: foundation, benchmark 9).

(a) ring all-reduce of 256 MiB per chip over bow-pod1024 and over the hypothetical 4,096-chip
    bow-pod4096 (flat ring and the hierarchical algorithm);
(b) 16-IPU random traffic on mk1-server16, every tile sending 4 bytes (19,456 transfers);
(c) building the systems themselves from their YAML (chips, links, routes), imports warm.

Each case is timed in-process after imports, loading and planning; peak memory is measured in
a second, traced run (tracemalloc slows the run, so it is not timed). Prints a table; exits 0.
Targets (issue text): (a) <= 0.3 s at 1,024 chips, <= 1.2 s at 4,096 within 200 MB;
(b) <= 2 s; (c) <= 1 s at 1,024 chips, <= 4 s at 4,096. Run:  python benchmarks/bench_comm.py
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import strategies  # noqa: F401 - registers the strategies
from simulator.config.scenario import load_scenario
from simulator.engine.executor import execute
from simulator.run import build_system
from simulator.strategy import PlanContext, lookup

ROOT = Path(__file__).resolve().parents[1]


def _scenario(topology: str, strategy: dict[str, object]) -> Path:
    import yaml

    path = ROOT / "benchmarks" / ".cache" / f"{topology}-{strategy['pattern']}-"
    path = path.with_name(path.name + str(strategy.get("algorithm", "x")) + ".yaml")
    path.parent.mkdir(exist_ok=True)
    path.write_text(
        yaml.safe_dump(
            {"schema_version": 1, "topology": topology, "strategy": {"type": "comm", **strategy}}
        )
    )
    return path


def _prepare(path: Path) -> Callable[[], object]:
    loaded = load_scenario(path)
    system = build_system(loaded)
    ctx = PlanContext(loaded, system, loaded.strategy)
    plan = lookup("comm").plan(ctx)
    return lambda: execute(system, plan.graph)


def measure(label: str, path: Path) -> None:
    run = _prepare(path)
    gc.collect()
    t0 = time.perf_counter()
    trace = run()
    seconds = time.perf_counter() - t0
    run2 = _prepare(path)
    gc.collect()
    tracemalloc.start()
    run2()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    ev = trace.events_processed  # type: ignore[attr-defined]
    print(
        f"{label:<44} {seconds:8.3f} s {peak / 1e6:8.1f} MB {ev:>9,} events "
        f"{ev / seconds:>10,.0f} ev/s  simulated time {trace.makespan * 1e3:9.3f} ms "  # type: ignore[attr-defined]
        f"(steps: {trace.simulated_steps} simulated, {trace.cached_steps} replayed)"
    )  # type: ignore[attr-defined]


def measure_build(name: str) -> None:
    """(c): one build of ``name`` (systems are not cached, so each call builds)."""
    from simulator.hardware.build import load_system

    load_system("m2000")  # imports and the chip files, not part of a system's build
    gc.collect()
    t0 = time.perf_counter()
    system = load_system(name)
    seconds = time.perf_counter() - t0
    print(f"{'(c) build ' + name + f' ({system.num_chips:,} chips)':<44} {seconds:8.3f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-4096", action="store_true", help="skip the 4,096-chip cases")
    args = parser.parse_args()
    print(f"{'case':<44} {'sim time':>10} {'peak mem':>11} {'events':>16} {'rate':>14}")
    big = 256 * 2**20
    systems = ["bow-pod1024"] + ([] if args.skip_4096 else ["bow-pod4096"])
    for topo in systems:
        for alg in ("ring", "hierarchical"):
            measure(
                f"(a) all_reduce 256 MiB/chip {alg} {topo}",
                _scenario(topo, {"pattern": "all_reduce", "bytes_per_chip": big, "algorithm": alg}),
            )
    measure(
        "(b) random 4 B/tile mk1-server16 (19,456)",
        _scenario("mk1-server16", {"pattern": "random", "bytes_per_tile": 4}),
    )
    for topo in systems:
        measure_build(topo)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
