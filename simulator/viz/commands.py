"""What the CLI's visualisation options call: an Outcome (or a system) in, files out.

Each function returns a short line for stderr saying what was written (never an absolute
path: the path is printed as the user gave it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from simulator.errors import InputError


def _gantt(outcome: Any) -> Any:
    from simulator.viz.gantt import build

    r = outcome.result
    return build(
        outcome.trace,
        outcome.system,
        outcome.plan.info,
        title=f"{r.name} on {outcome.system.name}",
    )


def summary_line(result: Any) -> str:
    """One line describing the result, for page subtitles."""
    if hasattr(result, "step_time_s"):
        if not result.feasible:
            return f"{result.model}: infeasible ({result.reason})"
        return (
            f"{result.model}, {result.strategy}: {result.replicas} replica(s) × "
            f"{result.stages} stage(s) on {result.chips} chips; step "
            f"{result.step_time_s * 1e3:,.3f} ms"
        )
    if hasattr(result, "op"):  # a kernel scenario (strategy.type: kernel)
        if not result.feasible:
            return f"{result.op}: infeasible ({result.reason})"
        return (
            f"{result.op} {result.m}x{result.k}x{result.n} {result.dtype} on chip {result.chip}: "
            f"{result.time_s * 1e6:,.3f} µs, {result.tflops:,.2f} TFLOP/s"
        )
    return (
        f"{result.pattern} over {result.chips} chips: {result.time_s * 1e6:,.3f} µs, "
        f"{result.bandwidth_GBps:,.2f} GB/s"
    )


def write_timeline(outcome: Any, path: str | Path) -> str:
    """The timeline page of a run (nothing to draw for an infeasible plan: a page says so)."""
    from simulator.viz import timeline
    from simulator.viz.page import Page

    if outcome.trace is None:
        page = Page(f"Timeline: {outcome.result.name}", summary_line(outcome.result))
        page.text("The plan is infeasible, so nothing ran: " + str(outcome.result.reason))
    else:
        page = timeline.page(_gantt(outcome), summary_line(outcome.result))
    size = page.write(path)
    return f"timeline written to {path} ({size / 1e6:.1f} MB)"


def write_report(outcome: Any, path: str | Path) -> str:
    """The report page of a run."""
    from simulator.viz import report

    page = report.page(outcome, _gantt(outcome) if outcome.trace is not None else None)
    size = page.write(path)
    return f"report written to {path} ({size / 1e6:.1f} MB)"


def write_trace(outcome: Any, path: str | Path) -> str:
    """The Chrome trace-event JSON of a run."""
    from simulator.export.chrome_trace import write

    if outcome.trace is None:
        return f"no trace written to {path}: the plan is infeasible, nothing ran"
    n = write(outcome, path)
    return f"trace written to {path} ({n:,} events)"


# ---- command-line options ----------------------------------------------------------------------


def add_run_options(run: argparse.ArgumentParser) -> None:
    """``ipusim run``: ``--timeline``, ``--report``, ``--trace``."""
    run.add_argument(
        "--timeline", metavar="FILE", help="write the step's timeline (plotly Gantt) as HTML"
    )
    run.add_argument(
        "--report",
        metavar="FILE",
        help="write a one-page HTML report: summary, closed form, timeline, utilisation, "
        "memory, breakdown",
    )
    run.add_argument(
        "--trace",
        metavar="FILE",
        help="write the trace as Chrome/Perfetto trace-event JSON (pid = replica, tid = chip)",
    )
    add_force(run)


def add_force(parser: argparse.ArgumentParser) -> None:
    """``--force``: replace output files that ipusim did not write (it never does otherwise)."""
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace an existing output file even if ipusim did not write it",
    )


def check_run_outputs(args: argparse.Namespace) -> None:
    """Before running: every --timeline/--report/--trace target may be written."""
    from simulator import outputs

    for option in ("timeline", "report", "trace"):
        path = getattr(args, option, None)
        if path:
            outputs.check(path, force=args.force, option=f"--{option}")


def run_outputs(args: argparse.Namespace, outcome: Any) -> None:
    """Write what ``--timeline/--report/--trace`` asked for; say so on stderr."""
    for option, writer in (
        ("timeline", write_timeline),
        ("report", write_report),
        ("trace", write_trace),
    ):
        path = getattr(args, option, None)
        if path:
            print(f"ipusim: {writer(outcome, path)}", file=sys.stderr)


def add_topology_options(show: argparse.ArgumentParser) -> None:
    """``ipusim topology show``: ``--html``, ``--load-from``."""
    show.add_argument("--html", metavar="FILE", help="write a drawing of the system as HTML")
    add_force(show)
    show.add_argument(
        "--load-from",
        metavar="SCENARIO",
        help="with --html: run this scenario (on this system) and colour links by their load",
    )


def topology_html(args: argparse.Namespace, system: Any) -> None:
    """Write the drawing asked for by ``--html`` (coloured by ``--load-from``'s run)."""
    from simulator.viz import topology

    if args.load_from and not args.html:
        raise InputError("--load-from needs --html FILE", key_path=None, file=None)
    if not args.html:
        return
    from simulator import outputs

    outputs.check(args.html, force=args.force, option="--html")
    load, name = None, ""
    if args.load_from:
        from simulator.run import run_scenario

        outcome = run_scenario(args.load_from, [f"topology={args.name}"])
        if outcome.trace is None:
            raise InputError(
                f"--load-from: {outcome.result.name} is infeasible on {system.name}, so no "
                f"link carried anything ({outcome.result.reason})",
                key_path=None,
                file=None,
            )
        load, name = topology.link_load(outcome.system, outcome.trace), outcome.result.name
        system = outcome.system
    size = topology.page(system, load, name).write(args.html)
    print(f"ipusim: topology written to {args.html} ({size / 1e6:.1f} MB)", file=sys.stderr)


def add_results_plot(rsub: Any) -> None:
    """``ipusim results plot``: sweep heatmaps and Pareto fronts, or a scaling plot."""
    p = rsub.add_parser(
        "plot",
        help="plot a results store (heatmaps, Pareto front) or a scaling series",
        description="Write an HTML page: for a results store, a heatmap of each metric over "
        "the swept keys and the Pareto front of IPUs against it; with --scaling DIR, the "
        "speedup against IPUs of the scenarios in DIR with the ideal line and measured points.",
        epilog="Examples: ipusim results plot bert.sqlite --html sweep.html; "
        "ipusim results plot --scaling scenarios/mlperf --html scaling.html",
    )
    p.add_argument("store", nargs="?", help="results store written by `ipusim sweep`")
    p.add_argument("--html", required=True, metavar="FILE", help="page to write")
    add_force(p)
    p.add_argument("--sweep", metavar="NAME", help="only this sweep of the store")
    p.add_argument(
        "--scaling",
        metavar="DIR",
        help="run every scenario in DIR and plot speedup against IPUs (names like "
        "model-round-system group into series)",
    )
    p.add_argument(
        "--measured",
        metavar="FILE",
        help="measured points (validation/mlperf.yaml format); default: that file when "
        "plotting scenarios/mlperf",
    )
    p.set_defaults(func=_cmd_results_plot)


def _cmd_results_plot(args: argparse.Namespace) -> int:
    if bool(args.store) == bool(args.scaling):
        raise InputError(
            "results plot: give a results STORE or --scaling DIR (one of them)",
            key_path=None,
            file=None,
        )
    from simulator import outputs

    outputs.check(args.html, force=args.force, option="--html")
    page = _scaling(args) if args.scaling else _sweeps(args)
    size = page.write(args.html)
    print(f"ipusim: plot written to {args.html} ({size / 1e6:.1f} MB)", file=sys.stderr)
    return 0


def _scaling(args: argparse.Namespace) -> Any:
    import yaml

    from simulator.run import run_scenario
    from simulator.viz import plots

    folder = Path(args.scaling)
    files = sorted(folder.glob("*.yaml"))
    if not folder.is_dir() or not files:
        raise InputError(
            f"--scaling {args.scaling}: not a folder of scenario files", key_path=None, file=None
        )
    measured_file = Path(args.measured) if args.measured else None
    if measured_file is None:
        guess = folder.resolve().parent.parent / "validation" / "mlperf.yaml"
        if folder.resolve().name == "mlperf" and guess.is_file():
            measured_file = guess
    if measured_file is not None:
        from simulator.config.files import check_input

        check_input(measured_file)  # before the runs: a FIFO or a device would never end
    points = []
    for f in files:
        print(f"ipusim: running {f.name}", file=sys.stderr)
        r = run_scenario(f).result
        tput = getattr(r, "throughput_samples_per_s", None)
        points.append(
            plots.ScalePoint(
                plots.series_of(r.name),
                r.name,
                r.chips,
                tput,
                step_breakdown=getattr(r, "step_breakdown", None),
            )
        )
    measured_file = Path(args.measured) if args.measured else None
    if measured_file is None:
        guess = folder.resolve().parent.parent / "validation" / "mlperf.yaml"
        if folder.resolve().name == "mlperf" and guess.is_file():
            measured_file = guess
    measured = []
    if measured_file is not None:
        doc = yaml.safe_load(measured_file.read_text())
        measured = plots.measured_points(doc, f"validation/{measured_file.name}")
    return plots.scaling_page(points, measured)


def _sweeps(args: argparse.Namespace) -> Any:
    import json

    from simulator.sweep.export import records
    from simulator.sweep.store import Store
    from simulator.viz import plots, variability

    with Store.open(args.store, create=False, readonly=True) as store:
        flat = records(store, args.sweep)
        raw = store.rows(args.sweep)
    sweeps: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
    for row, r in zip(flat, raw, strict=True):
        rows, values = sweeps.setdefault(row["sweep"], ([], []))
        rows.append(row)
        values.append(json.loads(r["values"]))
    page = plots.sweep_page(sweeps)
    variability.add_store_section(page, variability.from_store(raw))  # docs/variability.md
    return page
