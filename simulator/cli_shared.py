"""``ipusim shared``: several training jobs on one system and each one's slowdown
(:mod:`simulator.shared`, docs/variability.md)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from simulator.errors import InputError


def add_shared_command(sub: Any) -> None:
    """Register ``ipusim shared`` on the top-level subparsers."""
    p = sub.add_parser(
        "shared",
        help="run several training jobs at once on one system, each on its own chips",
        description="Run several training jobs on one system: each plans on its own chips, "
        "their traffic shares the links, gateways and Streaming Memory their routes share; "
        "report each job's step time alone and shared, and its slowdown. Give a jobs file "
        "(kind: jobs: the system, each job's scenario and chips), or scenario files and "
        "--topology (each job takes as many chips as its own system has, in order).",
        epilog="Examples: ipusim shared scenarios/shared/two-resnet50-pod128.yaml; "
        "ipusim shared quickstart quickstart --topology pod64 --json",
    )
    p.add_argument("files", nargs="+", help="one jobs file, or scenario files with --topology")
    p.add_argument("--topology", help="the shared system, when scenario files are given")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument(
        "--per-transfer",
        action="store_true",
        help="simulate every collective step flow by flow (no replay of identical steps)",
    )
    p.set_defaults(func=_cmd_shared)


def _cmd_shared(args: argparse.Namespace) -> int:
    from simulator.hardware.build import load_system
    from simulator.metrics import to_document
    from simulator.shared import run_jobs_file, run_shared, scenario_specs

    fast = not args.per_transfer
    if args.topology is None:
        if len(args.files) != 1:
            raise InputError(
                "shared: give one jobs file, or scenario files with --topology SYSTEM",
                file=None,
            )
        result = run_jobs_file(args.files[0], fast_collectives=fast)
    else:
        system = load_system(args.topology)
        specs = scenario_specs(args.files, system)
        name = " + ".join(s.name for s in specs)
        result = run_shared(name, system, specs, fast_collectives=fast)
    if args.json:
        sys.stdout.write(json.dumps(to_document(result), indent=2) + "\n")
    else:
        print(result.text())
    return result.exit_code
