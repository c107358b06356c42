"""The ``ipusim`` command line.

Exit codes (DESIGN.md § Contracts): 0 ran and feasible; 3 ran, plan infeasible; 2 invalid
input (one message on stderr naming file:line, key path, bad value and what is valid);
1 internal error. With ``--json`` stdout holds exactly one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Sequence

from simulator import __version__
from simulator.errors import InputError

EXIT_OK, EXIT_INTERNAL, EXIT_INPUT, EXIT_INFEASIBLE = 0, 1, 2, 3


def _cmd_run(args: argparse.Namespace) -> int:
    if args.sensitivity:  # the band and ranked assumptions (simulator/sensitivity/cli.py)
        from simulator.sensitivity.cli import cmd

        return cmd(args)
    if args.jobs is not None:
        raise InputError("--jobs applies to --sensitivity runs only")
    from simulator.present import run_json, run_text
    from simulator.run import run_scenario
    from simulator.viz.commands import check_run_outputs, run_outputs

    check_run_outputs(args)  # before any work: never replace a file ipusim did not write
    outcome = run_scenario(args.scenario, args.set or (), fast_collectives=not args.per_transfer)
    result = outcome.result
    run_outputs(args, outcome)  # --timeline/--report/--trace (docs/visualisation.md)
    if args.json:
        sys.stdout.write(run_json(result, args.set or (), full=args.full))
    else:
        print(run_text(result, args.set or ()))
    return EXIT_OK if result.feasible else EXIT_INFEASIBLE


def _cmd_topology_show(args: argparse.Namespace) -> int:
    from simulator.cli_topology import is_chip, show_chip
    from simulator.hardware.build import load_system
    from simulator.hardware.describe import describe, format_text
    from simulator.viz.commands import topology_html

    if is_chip(args.name):  # `topology show gc200` describes the chip
        return show_chip(args)
    system = load_system(args.name)
    topology_html(args, system)  # --html/--load-from (docs/visualisation.md)
    desc = describe(system)
    if args.json:
        sys.stdout.write(json.dumps(desc, indent=2) + "\n")
    else:
        print(format_text(desc))
    return EXIT_OK


def _cmd_topology_list(_args: argparse.Namespace) -> int:
    from simulator.config.paths import require_builtin_names

    for kind, title in (("system", "systems"), ("chip", "chips")):
        print(f"{title}: {', '.join(require_builtin_names(kind))}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ipusim",
        description="Discrete-event simulator of parallel training on Graphcore IPU systems.",
        epilog="Exit codes: 0 ok, 3 plan infeasible, 2 invalid input, 1 internal error. "
        "Docs: docs/ in the source tree.",
    )
    parser.add_argument("--version", action="version", version=f"ipusim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser(
        "run",
        help="simulate one scenario file",
        description="Simulate a scenario (topology + model + strategy) and print its result.",
        epilog="Example: ipusim run scenarios/quickstart.yaml --json",
    )
    run.add_argument("scenario", help="scenario file (or the name of one under scenarios/)")
    run.add_argument(
        "--json",
        action="store_true",
        help="print the result as one JSON document (chips with identical breakdowns share one "
        'entry, keyed by the chip set, e.g. "0-15")',
    )
    run.add_argument(
        "--full", action="store_true", help="with --json: one entry per chip, nothing collapsed"
    )
    run.add_argument(
        "--set",
        action="append",
        metavar="KEY.PATH=VALUE",
        help="override a scenario key (value parsed as YAML), e.g. --set strategy.chips=[0,2]; "
        "repeatable",
    )
    run.add_argument(
        "--per-transfer",
        action="store_true",
        help="simulate every collective step flow by flow (no replay of identical steps); "
        "slower, same answer where nothing contends",
    )
    from simulator.sensitivity.cli import add_options as add_sensitivity_options
    from simulator.viz.commands import add_results_plot, add_run_options, add_topology_options

    add_run_options(run)
    add_sensitivity_options(run)
    run.set_defaults(func=_cmd_run)

    topo = sub.add_parser("topology", help="inspect systems", description="Inspect IPU systems.")
    tsub = topo.add_subparsers(dest="topology_command", metavar="ACTION", required=True)
    show = tsub.add_parser(
        "show",
        help="chips, links, bandwidths, bisection, peak FLOP/s and power of a system",
        description="Describe a system (a built-in name such as pod64, or a path), or a chip "
        "(gc2, gc200, bow, or a chip file).",
    )
    show.add_argument("name", help="system or chip: a built-in name or a path to a YAML file")
    show.add_argument("--json", action="store_true", help="print one JSON document")
    add_topology_options(show)
    show.set_defaults(func=_cmd_topology_show)
    lst = tsub.add_parser("list", help="list the built-in systems and chips")
    lst.set_defaults(func=_cmd_topology_list)

    # Sweeps, results stores and capacity planning (simulator/cli_sweep.py, docs/sweeps.md).
    from simulator.cli_sweep import add_plan, add_results_export, add_sweep

    add_sweep(sub)
    results = sub.add_parser(
        "results",
        help="read results stores written by `ipusim sweep`",
        description="Read results stores written by `ipusim sweep`.",
    )
    rsub = results.add_subparsers(dest="results_command", metavar="ACTION", required=True)
    add_results_export(rsub)
    add_results_plot(rsub)
    add_plan(sub)
    # Built-in examples and models (simulator/cli_examples.py, simulator/cli_models.py).
    from simulator.cli_examples import add_examples_command
    from simulator.cli_models import add_model_commands
    from simulator.cli_shared import add_shared_command

    add_model_commands(sub)
    add_examples_command(sub)
    add_shared_command(sub)  # several jobs on one system (docs/variability.md)
    return parser


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that flushing it at exit cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # not a real file (e.g. captured in tests)
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ipusim``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except InputError as exc:
        print(f"ipusim: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt as exc:  # Ctrl-C; a sweep's SIGTERM too (exit code 143)
        print("ipusim: interrupted", file=sys.stderr)
        return int(getattr(exc, "exit_code", 130))
    except BrokenPipeError:  # the reader went away (`| head`): not an error
        _silence_stdout()
        return EXIT_OK
    except Exception as exc:
        print(f"ipusim: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        if os.environ.get("IPUSIM_DEBUG"):
            traceback.print_exc()
        else:
            print(
                "ipusim: this is a bug; rerun with IPUSIM_DEBUG=1 for the traceback",
                file=sys.stderr,
            )
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
