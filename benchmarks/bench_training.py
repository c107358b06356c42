"""Simulator speed on training steps (issue: data and pipeline parallelism, benchmark 7).

Times one step of the Bow Pod256 BERT-Large MLPerf configuration (K=8, R=32, M=36: 256 chips)
and of the POD256 ResNet-50 one, in-process after loading the scenario and building the system:
planning (cost model, memory plan, task graph), execution and summary are timed separately. A
cold run (empty cost-model caches) and a warm one are shown. Then the growth of the cost with
chips x micro-batches: BERT on bow-pod16…bow-pod256 at M = 36 and 72.
Targets (issue text): BERT Pod256 <= 1 s, ResNet-50 POD256 <= 0.5 s, growth no faster than
linear in chips x micro-batches. Run:  python benchmarks/bench_training.py
"""

from __future__ import annotations

import time
from pathlib import Path

import strategies  # noqa: F401 - registers the strategies
from simulator.config.scenario import load_scenario
from simulator.engine.executor import execute
from simulator.run import build_system
from simulator.strategy import PlanContext, lookup

ROOT = Path(__file__).resolve().parents[1]


def step(path: Path, overrides: list[str] | None = None) -> tuple[float, float, float, int, int]:
    """(plan s, execute s, summarise s, tasks, events) for one scenario."""
    loaded = load_scenario(path, overrides or [])
    system = build_system(loaded)
    ctx = PlanContext(loaded, system, loaded.strategy)
    strategy = lookup(loaded.scenario.strategy.type)
    t0 = time.perf_counter()
    plan = strategy.plan(ctx)
    t1 = time.perf_counter()
    trace = execute(system, plan.graph)
    t2 = time.perf_counter()
    strategy.summarise(ctx, plan, trace)
    t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2, len(plan.graph), trace.events_processed


def show(label: str, path: Path, overrides: list[str] | None = None) -> float:
    p, e, s, tasks, events = step(path, overrides)
    total = p + e + s
    print(
        f"{label:<46} plan {p:6.3f} s  execute {e:6.3f} s  summary {s:6.3f} s  "
        f"total {total:6.3f} s  ({tasks:,} tasks, {events:,} events)"
    )
    return total


def main() -> int:
    bert = ROOT / "scenarios/mlperf/bert-large-v2.0-bow-pod256.yaml"
    resnet = ROOT / "scenarios/mlperf/resnet50-v1.1-pod256.yaml"
    show("BERT-Large bow-pod256 K=8 R=32 M=36 (cold)", bert)
    show("BERT-Large bow-pod256 K=8 R=32 M=36 (warm)", bert)
    show("ResNet-50 pod256 R=256 (cold)", resnet)
    show("ResNet-50 pod256 R=256 (warm)", resnet)
    print("\ngrowth with chips x micro-batches (BERT-Large, K=8, warm):")
    print(f"{'system':<12} {'R':>4} {'M':>4} {'chips x M':>10} {'seconds':>9} {'s per 1k':>9}")
    for system, replicas in (
        ("bow-pod16", 2),
        ("bow-pod64", 8),
        ("bow-pod128", 16),
        ("bow-pod256", 32),
    ):
        for m in (36, 72):
            t = step(
                bert,
                [
                    f"topology={system}",
                    f"strategy.replicas={replicas}",
                    f"training.grad_accum={m}",
                    "training.global_batch=null",
                ],
            )
            total = t[0] + t[1] + t[2]
            units = replicas * 8 * m
            print(
                f"{system:<12} {replicas:>4} {m:>4} {units:>10,} {total:>9.3f} "
                f"{1000 * total / units:>9.4f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
