"""Every speed figure of issue 16 beside its target, with the machine's load; writes a JSON.

    python benchmarks/run_all.py                    # everything (about two minutes idle)
    python benchmarks/run_all.py --skip-4096        # without the 4,096-chip cases
    python benchmarks/run_all.py --out figures.json

Figures (each case runs in a fresh process, so its peak memory is its own):

* **start-up** — ``ipusim --help`` and ``ipusim run`` of a small scenario (the ring all-reduce
  of 256 MiB on the 256 chips of a Bow Pod256), wall clock and CPU time of the whole command
  (best of 7 runs; quickstart, a training run, is shown without a target). Python's bytecode
  caches are used, as in any installed package: the commands run with
  ``PYTHONPYCACHEPREFIX=benchmarks/.cache/pycache`` and without ``PYTHONDONTWRITEBYTECODE``
  (which this project's shells set, adding ~0.3 s of compiling to every start);
* **per-transfer speed** — the executor on the 16-IPU random exchange (4 B from every tile of
  mk1-server16 to a random tile) and on ring all-reduces with ``--per-transfer`` (every step
  simulated flow by flow) on 1,024 and 4,096 chips: seconds after loading and planning, CPU
  seconds, events per CPU second (an event is one flow's end, one task's timer, one rate
  recomputation: the SimPy events the engine processed before flows were batched), and the
  process's peak resident memory (interpreter and imports included); the replayed (default)
  ring all-reduces beside them;
* **many runs** — N runs of one scenario each building everything, against the same runs
  sharing a :class:`~simulator.runcache.RunCache` (variability samples: one scenario again;
  sensitivity-like variants sharing a baseline).

Times depend on the machine's load, printed before and after; CPU seconds depend on it less.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / ".cache"
BIG = 256 * 2**20
RING = {"type": "comm", "pattern": "all_reduce", "bytes_per_chip": BIG, "algorithm": "ring"}

#: name -> (topology, strategy, replay identical steps?)
ENGINE_CASES: dict[str, tuple[str, dict[str, Any], bool]] = {
    "random16": ("mk1-server16", {"type": "comm", "pattern": "random", "bytes_per_tile": 4}, True),
    "ring1024-per-transfer": ("bow-pod1024", RING, False),
    "ring4096-per-transfer": ("bow-pod4096", RING, False),
    "ring1024-replayed": ("bow-pod1024", RING, True),
    "ring4096-replayed": ("bow-pod4096", RING, True),
}


def scenario_file(name: str, topology: str, strategy: dict[str, Any]) -> Path:
    """A scenario file for a benchmark case (written under benchmarks/.cache/)."""
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"{name}.yaml"
    doc = {"schema_version": 1, "name": name, "topology": topology, "strategy": strategy}
    path.write_text(json.dumps(doc))  # JSON is YAML
    return path


# ---- child processes ---------------------------------------------------------------------------
def engine_case(name: str) -> dict[str, Any]:
    """Load and plan case ``name``, then time the executor alone."""
    import gc

    from simulator.config.scenario import load_scenario
    from simulator.engine.executor import execute
    from simulator.run import build_system
    from simulator.strategy import PlanContext, lookup

    topology, strategy, fast = ENGINE_CASES[name]
    loaded = load_scenario(scenario_file(name, topology, strategy))
    system = build_system(loaded)
    plan = lookup(loaded.scenario.strategy.type).plan(PlanContext(loaded, system, loaded.strategy))
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    trace = execute(system, plan.graph, fast_collectives=fast)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "events": trace.events_processed,
        "flows": trace.flows_started,
        "simulated_s": trace.makespan,
        "steps_simulated": trace.simulated_steps,
        "steps_replayed": trace.cached_steps,
    }


def reuse_case(runs: int) -> dict[str, Any]:
    """CPU seconds of ``runs`` runs of one scenario, and of variants sharing a baseline, each
    building everything and sharing a RunCache (None where this checkout has no RunCache)."""
    from simulator.config.scenario import load_scenario
    from simulator.metrics import to_json
    from simulator.run import run_loaded

    try:
        from simulator.runcache import RunCache
    except ImportError:  # an older checkout: no reuse to measure
        RunCache = None  # type: ignore[assignment,misc]
    bert = ROOT / "scenarios/mlperf/bert-large-v2.0-bow-pod64.yaml"
    quick = ROOT / "scenarios/quickstart.yaml"
    variants = [(f"topology={t}",) for t in ("pod4", "pod16", "pod64", "pod128", "pod256")]
    out: dict[str, Any] = {"runs": runs, "variants": len(variants)}

    def timed(fn: Any) -> tuple[float, list[str]]:
        t0 = time.process_time()
        texts = fn()
        return time.process_time() - t0, texts

    run_loaded(load_scenario(bert))  # warm the cost model's caches: both sides start equal
    run_loaded(load_scenario(quick, variants[0]))
    for label, path, overrides, results in (
        ("samples", bert, [()] * runs, False),
        ("variants", quick, variants, True),
    ):
        plain, a = timed(
            lambda p=path, o=overrides: [to_json(run_loaded(load_scenario(p, v)).result) for v in o]
        )
        out[f"{label}_plain_cpu_s"] = plain
        if RunCache is not None:
            cache = RunCache(results=results)
            shared, b = timed(
                lambda p=path, o=overrides, c=cache: [
                    to_json(run_loaded(load_scenario(p, v), cache=c).result) for v in o
                ]
            )
            out[f"{label}_cached_cpu_s"] = shared
            out[f"{label}_identical"] = a == b
    return out


# ---- the parent ---------------------------------------------------------------------------------
def child(args: list[str], env: dict[str, str] | None = None) -> tuple[str, float, float, float]:
    """Run a command; (stdout, wall s, CPU s, peak RSS MB) of that process alone."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    assert proc.stdout is not None and proc.stderr is not None
    out = proc.stdout.read().decode()
    err = proc.stderr.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 3):
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {err.strip()[-2000:]}")
    return out, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def startup(repeat: int) -> dict[str, Any]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(CACHE / "pycache")
    found = shutil.which("ipusim", path=str(Path(sys.executable).parent))
    ipusim = [found] if found else [sys.executable, "-m", "simulator.cli"]
    small = scenario_file("startup-ring256", "bow-pod256", RING)
    commands = {
        "help": [*ipusim, "--help"],
        "run_small": [*ipusim, "run", str(small)],
        "run_quickstart": [*ipusim, "run", "quickstart"],
    }
    out: dict[str, Any] = {}
    for name, cmd in commands.items():
        child(cmd, env)  # fills the bytecode cache
        runs = [child(cmd, env) for _ in range(repeat)]
        out[name] = {
            "wall_s": min(r[1] for r in runs),
            "cpu_s": min(r[2] for r in runs),
            "wall_median_s": sorted(r[1] for r in runs)[repeat // 2],
        }
    return out


def row(label: str, value: str, target: str, verdict: str = "") -> str:
    return f"  {label:<46} {value:>30}   {target:<22} {verdict}"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=CACHE / "run_all.json", help="JSON written")
    parser.add_argument("--skip-4096", action="store_true", help="skip the 4,096-chip cases")
    parser.add_argument("--repeat", type=int, default=7, help="runs per start-up command")
    parser.add_argument("--runs", type=int, default=8, help="runs per reuse measurement")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args()
    if args.case == "reuse":
        print(json.dumps(reuse_case(args.runs)))
        return 0
    if args.case:
        print(json.dumps(engine_case(args.case)))
        return 0

    CACHE.mkdir(exist_ok=True)
    load_before = os.getloadavg()
    load = " ".join(f"{x:.2f}" for x in load_before)
    print(f"ipusim benchmarks: {platform.python_version()}, {os.cpu_count()} cores, load {load}")
    figures: dict[str, Any] = {"load_before": load_before, "cores": os.cpu_count()}

    print(f"start-up (best of {args.repeat}; wall / CPU of the whole command)")
    figures["startup"] = s = startup(args.repeat)
    for name, label, target in (
        ("help", "ipusim --help", 0.15),
        ("run_small", "ipusim run: ring all-reduce, 256 chips", 0.3),
        ("run_quickstart", "ipusim run quickstart (training, + baseline)", None),
    ):
        f = s[name]
        verdict = "" if target is None else ("met" if f["wall_s"] <= target else "MISSED")
        print(row(label, f"{f['wall_s']:.3f} s / {f['cpu_s']:.3f} s CPU",
                  f"<= {target} s wall" if target else "", verdict))  # fmt: skip

    print("per-transfer speed (executor after load and plan; peak RSS of the process)")
    figures["engine"] = e = {}
    for name in ENGINE_CASES:
        if args.skip_4096 and "4096" in name:
            continue
        out, _, _, rss = child([sys.executable, __file__, "--case", name])
        e[name] = f = json.loads(out)
        f["peak_rss_MB"] = rss
        f["events_per_cpu_s"] = f["events"] / f["cpu_s"] if f["cpu_s"] else None
        target = ""
        verdict = ""
        if name in ("random16", "ring1024-per-transfer", "ring4096-per-transfer"):
            target = ">= 300,000 events/s"
            verdict = "met" if f["events_per_cpu_s"] >= 300_000 else "MISSED"
        print(row(name, f"{f['events']:,} events, {f['events_per_cpu_s']:,.0f}/s CPU", target,
                  verdict))  # fmt: skip
        limit = {"ring1024-per-transfer": (3.0, None), "ring4096-per-transfer": (60.0, 200.0)}
        if name in limit:
            t, mb = limit[name]
            ok = f["wall_s"] <= t and (mb is None or rss <= mb)
            print(row("", f"{f['wall_s']:.2f} s ({f['cpu_s']:.2f} CPU), {rss:.0f} MB",
                      f"<= {t:g} s" + (f", <= {mb:g} MB" if mb else ""),
                      "met" if ok else "MISSED"))  # fmt: skip
        else:
            print(row("", f"{f['wall_s']:.3f} s ({f['cpu_s']:.3f} CPU), {rss:.0f} MB", ""))

    print(f"many runs of one scenario (CPU s for {args.runs} samples / 5 variants)")
    out, _, _, _ = child([sys.executable, __file__, "--case", "reuse", "--runs", str(args.runs)])
    figures["reuse"] = r = json.loads(out)
    for label in ("samples", "variants"):
        plain = r[f"{label}_plain_cpu_s"]
        cached = r.get(f"{label}_cached_cpu_s")
        what = (
            f"{plain:.2f} s -> {cached:.2f} s ({plain / cached:.1f}x)"
            if cached
            else f"{plain:.2f} s (no RunCache here)"
        )
        same = r.get(f"{label}_identical")
        print(row(f"{label}: rebuilt -> shared RunCache", what, "results identical",
                  "" if same is None else ("yes" if same else "NO")))  # fmt: skip

    figures["load_after"] = load_after = os.getloadavg()
    print(f"load average after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
