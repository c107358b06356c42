"""``ipusim run FILE --sensitivity [--json] [--jobs N]``: the result, its band, the ranking.

Registered on the ``run`` parser by :func:`add_options`; :func:`simulator.cli` calls
:func:`cmd` when ``--sensitivity`` is given. The text output is the run's usual summary
followed by the band and the ranked assumptions; with ``--json`` the result document gains a
``sensitivity`` field (docs/metrics.md). ``--report`` adds the tornado chart to the page.
Exit codes are the run's: 0, or 3 when the base plan is infeasible (no band then).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

EXIT_OK, EXIT_INFEASIBLE = 0, 3


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def add_options(run: argparse.ArgumentParser) -> None:
    """``--sensitivity`` and ``--jobs`` on ``ipusim run``."""
    run.add_argument(
        "--sensitivity",
        action="store_true",
        help="also run every assumption the scenario uses at the low and the high end of its "
        "range (one at a time) and print the band of the step time (time for comm scenarios) "
        "and the assumptions ranked by effect; --report draws them as a tornado",
    )
    run.add_argument(
        "--jobs",
        "-j",
        type=_positive,
        metavar="N",
        help="with --sensitivity: processes for the runs (default: every core)",
    )


def clean(value: Any) -> Any:
    """JSON-ready: floats to 12 significant digits, NaN and infinity as null."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else float(f"{value:.12g}")
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


def cmd(args: argparse.Namespace) -> int:
    """Run the scenario with its sensitivity analysis; print; write the outputs asked for."""
    from simulator.config.scenario import load_scenario
    from simulator.present import run_json, run_text
    from simulator.sensitivity.result import format_text
    from simulator.sensitivity.runner import analyse
    from simulator.viz.commands import check_run_outputs, run_outputs

    check_run_outputs(args)  # before any work: never replace a file ipusim did not write
    overrides = args.set or ()
    loaded = load_scenario(args.scenario, overrides)
    outcome, sens = analyse(loaded, jobs=args.jobs, fast_collectives=not args.per_transfer)
    result = outcome.result
    run_outputs(args, outcome)
    if args.json:
        doc = json.loads(run_json(result, overrides, full=args.full))
        doc["sensitivity"] = clean(sens.to_json()) if sens is not None else None
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        print(run_text(result, overrides))
        if sens is not None:
            print(format_text(sens))
        else:
            print("  band            none: the plan is infeasible, nothing to vary")
    return EXIT_OK if result.feasible else EXIT_INFEASIBLE
