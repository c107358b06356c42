"""The ``sweep``, ``results export`` and ``plan`` commands of ``ipusim`` (docs/sweeps.md).

Registered by :func:`simulator.cli.build_parser`; the sweep machinery (and pandas, dask) is
imported only when a command runs. This module lives outside :mod:`simulator.sweep` so that
building the parser (``ipusim --help``) does not import that package. Exit codes follow
DESIGN.md § Contracts: 2 for invalid input (the sweep or plan file, the store, an unreachable
Dask address) with nothing written; 1 when a worker process died (the finished points are
stored; run again to continue). ``ipusim plan`` exits 0 when a configuration meets the target
and 3 when none does.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any

EXIT_OK, EXIT_INTERNAL, EXIT_NONE_MEETS = 0, 1, 3


def _jobs(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def _runner_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--jobs", "-j", type=_jobs, metavar="N",
        help="local worker processes (default: every core), or LocalCluster workers",
    )  # fmt: skip
    p.add_argument(
        "--dask", metavar="ADDRESS",
        help="run on a Dask cluster: a scheduler address (tcp://host:8786) or 'local' to start "
        "a distributed.LocalCluster of --jobs worker processes",
    )  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def _cmd_sweep(args: argparse.Namespace) -> int:
    from simulator.sweep.driver import run_sweep
    from simulator.sweep.spec import load_sweep

    summary = run_sweep(
        load_sweep(args.file), args.out, jobs=args.jobs, dask=args.dask,
        progress=not args.no_progress, band=args.band,
    )  # fmt: skip
    if args.json:
        sys.stdout.write(json.dumps(asdict(summary), indent=2) + "\n")
    else:
        print(summary.text())
    return EXIT_INTERNAL if summary.lost else EXIT_OK


def _cmd_results_export(args: argparse.Namespace) -> int:
    from simulator.sweep.export import export

    rows = export(args.store, args.out, args.format, args.sweep, force=args.force)
    print(f"wrote {rows} rows to {args.out}", file=sys.stderr)
    return EXIT_OK


def _cmd_plan(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    from simulator.capacity.plan import format_text, load_plan, run_plan

    question = load_plan(args.file)
    kwargs: dict[str, Any] = {
        "jobs": args.jobs, "dask": args.dask, "progress": not args.no_progress,
        "band": not args.no_band,
    }  # fmt: skip
    if args.store:
        answer = run_plan(question, args.store, **kwargs)
    else:
        with tempfile.TemporaryDirectory(prefix="ipusim-plan-") as tmp:
            answer = run_plan(question, Path(tmp) / "plan.sqlite", **kwargs)
    if args.json:
        sys.stdout.write(answer.to_json())
    else:
        print(format_text(answer))
    return EXIT_OK if answer.best is not None else EXIT_NONE_MEETS


def add_sweep(sub: Any) -> None:
    """``ipusim sweep FILE --out STORE``."""
    p = sub.add_parser(
        "sweep",
        help="run every point of a sweep file into a results store (resumable)",
        description="Expand a sweep file (base scenario + axes over key paths) and run the "
        "points not yet in the results store, on local processes or a Dask cluster. Each "
        "finished point is stored at once; run again to resume.",
        epilog="Example: ipusim sweep scenarios/sweeps/mlperf-bert-bow.yaml --out bert.sqlite",
    )
    p.add_argument("file", help="sweep file (kind: sweep)")
    p.add_argument(
        "--out",
        "-o",
        required=True,
        metavar="STORE",
        help="results store (SQLite); created if missing, reused if present",
    )
    _runner_options(p)
    p.add_argument(
        "--band",
        action="store_true",
        help="store each point with its sensitivity band (every assumption it uses at each end "
        "of its range, as `ipusim run --sensitivity`): many runs per point; stored apart from "
        "the plain points",
    )
    p.add_argument("--json", action="store_true", help="print the summary as one JSON document")
    p.set_defaults(func=_cmd_sweep)


def add_results_export(rsub: Any) -> None:
    """``ipusim results export STORE --out FILE``."""
    p = rsub.add_parser(
        "export",
        help="write a results store as CSV or Parquet",
        description="One row per (sweep, point): status, swept keys, the result's scalar "
        "fields and time-to-train (docs/sweeps.md).",
        epilog="Example: ipusim results export bert.sqlite --out bert.parquet",
    )
    p.add_argument("store", help="results store written by `ipusim sweep`")
    p.add_argument("--out", "-o", required=True, metavar="FILE", help=".csv or .parquet file")
    p.add_argument("--format", choices=("csv", "parquet"), help="default: from --out's suffix")
    p.add_argument(
        "--force",
        action="store_true",
        help="replace an existing --out file even if ipusim did not write it",
    )
    p.add_argument("--sweep", metavar="NAME", help="only this sweep's points")
    p.set_defaults(func=_cmd_results_export)


def add_plan(sub: Any) -> None:
    """``ipusim plan FILE``."""
    p = sub.add_parser(
        "plan",
        help="answer a capacity-planning question (smallest / cheapest / fastest setup)",
        description="Run a plan file's candidates, keep those meeting its target (step time, "
        "throughput or time-to-train), rank them by IPUs, power and time, and print the "
        "Pareto front of time against IPUs and energy.",
        epilog="Example: ipusim plan scenarios/plans/bert-large-10-minutes.yaml",
    )
    p.add_argument("file", help="plan file (kind: plan)")
    p.add_argument(
        "--store",
        metavar="STORE",
        help="results store to reuse and fill (default: a temporary one)",
    )
    p.add_argument(
        "--no-band",
        action="store_true",
        help="answer without the band: skip running the answer and its nearest rivals at each "
        "end of every assumption's range (much faster)",
    )
    _runner_options(p)
    p.add_argument("--json", action="store_true", help="print the answer as one JSON document")
    p.set_defaults(func=_cmd_plan)
