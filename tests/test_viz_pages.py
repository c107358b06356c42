"""HTML pages and the CLI options that write them (no browser: see test_browser_pages.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

import strategies  # noqa: F401 - registers every strategy
from simulator.hardware.build import load_system
from simulator.run import Outcome, run_scenario
from simulator.viz import plots, report, timeline, topology
from simulator.viz.gantt import build

ROOT = Path(__file__).resolve().parents[1]
BERT16 = "scenarios/mlperf/bert-large-v2.0-bow-pod16.yaml"
SMALL = ("training.grad_accum=8", "training.global_batch=96")


@cache
def bert16() -> Outcome:
    return run_scenario(BERT16, SMALL)


def ipusim(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "simulator.cli", *args], cwd=cwd, capture_output=True, text=True
    )


def check_offline(html: str) -> None:
    """plotly.js inline, no script or stylesheet from elsewhere, no path of this machine."""
    assert "plotly.js v" in html[:20_000_000]
    assert not re.search(r"<script[^>]+src=", html)
    assert not re.search(r"<link[^>]+href=", html)
    assert str(ROOT) not in html and "/tmp/" not in html


def test_timeline_page_is_offline_and_deterministic() -> None:
    o = bert16()
    a = timeline.page(build(o.trace, o.system, o.plan.info, title="x")).html()
    b = timeline.page(build(o.trace, o.system, o.plan.info, title="x")).html()
    assert a == b
    check_offline(a)
    assert 'window.ipusimFigures = ["timeline"]' in a
    assert "Jump to:" in a and "replica 1" in a


def test_report_page_has_every_section() -> None:
    o = bert16()
    p = report.page(o, build(o.trace, o.system, o.plan.info))
    html = p.html()
    check_offline(html)
    assert p.figures == [
        "closed-form-figure",
        "timeline",
        "utilisation-figure",
        "links-figure",
        "breakdown-figure",
        "step-breakdown-figure",
        "memory-figure",
    ]
    a = o.result.analytic
    assert f"{a.difference:+.2%}" in html
    assert "Summary" in html and "throughput" in html


def test_report_of_a_comm_scenario_uses_the_trace_breakdown() -> None:
    o = run_scenario("scenarios/microbench/all-reduce-64MiB-pod16.yaml")
    bd = report.breakdown_of(o)
    assert set(bd) == {str(c) for c in range(16)}
    assert bd["0"]["collective"] == pytest.approx(o.trace.makespan)
    fig, note = report.link_figure(o)
    assert fig is not None and "capacity" in note
    z = [v for row in fig.data[0].z for v in row if v == v]
    assert max(z) == pytest.approx(max(o.result.link_utilisation.values()), rel=1e-6)


def test_report_groups_identical_chips_past_64() -> None:
    per_chip = {str(c): {"compute": 1.0, "idle": float(c % 2)} for c in range(128)}
    groups = report._groups(per_chip)
    assert [label for label, _ in groups] == ["ipu 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 34, 36, 38, 40, 42, 44, 46, 48, 50, 52, 54, 56, 58, 60, 62, 64, 66, 68, 70, 72, 74, 76, 78, 80, 82, 84, 86, 88, 90, 92, 94, 96, 98, 100, 102, 104, 106, 108, 110, 112, 114, 116, 118, 120, 122, 124, 126 (64)", "ipu 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31, 33, 35, 37, 39, 41, 43, 45, 47, 49, 51, 53, 55, 57, 59, 61, 63, 65, 67, 69, 71, 73, 75, 77, 79, 81, 83, 85, 87, 89, 91, 93, 95, 97, 99, 101, 103, 105, 107, 109, 111, 113, 115, 117, 119, 121, 123, 125, 127 (64)"]  # noqa: E501


def test_cli_run_writes_timeline_and_report(tmp_path: Path) -> None:
    r = ipusim(
        "run", BERT16, *[f"--set={s}" for s in SMALL], "--json",
        "--timeline", str(tmp_path / "t.html"), "--report", str(tmp_path / "r.html"),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    json.loads(r.stdout)  # stdout stays one JSON document
    assert "timeline written to" in r.stderr and "report written to" in r.stderr
    for name in ("t.html", "r.html"):
        check_offline((tmp_path / name).read_text())


def test_cli_infeasible_run_still_writes_a_page_and_exits_3(tmp_path: Path) -> None:
    r = ipusim(
        "run", "scenarios/single/bert-large-gc200.yaml",
        "--timeline", str(tmp_path / "t.html"), "--report", str(tmp_path / "r.html"),
        "--trace", str(tmp_path / "t.json"),
    )  # fmt: skip
    assert r.returncode == 3, r.stderr
    assert "infeasible" in (tmp_path / "t.html").read_text()
    assert "Memory per chip" in (tmp_path / "r.html").read_text()
    assert not (tmp_path / "t.json").exists() and "no trace written" in r.stderr


def test_topology_drawing_sizes_links_by_bandwidth() -> None:
    s = load_system("pod16")
    fig = topology.figure(s)
    widths = {t.name: t.line.width for t in fig.data if t.mode == "lines"}
    assert widths["ipu-link"] > widths["host-link"]
    kinds = {t.name for t in fig.data if t.mode == "markers"}
    assert {"IPU", "gateway", "host", "Streaming Memory"} <= kinds
    assert topology.layout(s) == topology.layout(load_system("pod16"))


def test_cli_topology_html_with_load(tmp_path: Path) -> None:
    out = tmp_path / "t.html"
    r = ipusim(
        "topology", "show", "pod16", "--html", str(out),
        "--load-from", "scenarios/microbench/all-reduce-64MiB-pod16.yaml",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    html = out.read_text()
    check_offline(html)
    assert "busy" in html and "link utilisation in all-reduce-64MiB-pod16" in html
    r = ipusim("topology", "show", "pod16", "--load-from", "scenarios/quickstart.yaml")
    assert r.returncode == 2 and "--load-from needs --html" in r.stderr


def test_pareto_front() -> None:
    pts = [(16, 100.0), (16, 90.0), (64, 300.0), (64, 350.0), (128, 340.0), (256, 900.0)]
    assert plots.pareto(pts, higher=True) == [0, 3, 5]
    assert plots.pareto([(1, 5.0), (2, 3.0), (4, 4.0)], higher=False) == [0, 1]


def test_scaling_figure_speedup_is_over_the_measured_16_ipu_point() -> None:
    pts = [
        plots.ScalePoint("m v1", "m-v1-pod16", 16, 1000.0),
        plots.ScalePoint("m v1", "m-v1-pod64", 64, 3600.0),
        plots.ScalePoint("m v1", "m-v1-pod128", 128, None),
    ]
    fig = plots.scaling_figure(pts, [plots.Measured("m v1", 16, 900.0, "test")])
    sim = next(t for t in fig.data if t.name == "m v1 (simulated)")
    assert list(sim.y) == pytest.approx([1000 / 900, 4.0])
    ideal = next(t for t in fig.data if t.name.startswith("ideal"))
    assert list(ideal.x) == [16, 32, 64, 128] and list(ideal.y) == [1, 2, 4, 8]
    assert any(t.name == "m v1 (infeasible)" for t in fig.data)
    assert plots.series_of("resnet50-v1.1-pod256") == "resnet50 v1.1"


def test_cli_results_plot_scaling(tmp_path: Path) -> None:
    for system in ("m2000", "pod16"):
        (tmp_path / f"resnet50-v9.9-{system}.yaml").write_text(
            f"schema_version: 1\nname: resnet50-v9.9-{system}\ntopology: {system}\n"
            "model: resnet50\nstrategy: {type: data}\ntraining: {micro_batch: 8, grad_accum: 1,"
            " dtype: fp16, optimizer: momentum, recompute: checkpoint}\n"
        )
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "m.yaml").write_text(
        "points:\n  - {model: resnet50, round: v9.9, chips: 4, throughput: 5000}\n"
    )
    out = tmp_path / "s.html"
    r = ipusim("results", "plot", "--scaling", str(tmp_path), "--measured",
               str(tmp_path / "data" / "m.yaml"), "--html", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr
    html = out.read_text()
    check_offline(html)
    assert "resnet50 v9.9 (measured)" in html and "ideal" in html
    assert ipusim("results", "plot", "--html", str(out)).returncode == 2


def test_cli_results_plot_sweep_store(tmp_path: Path) -> None:
    sweep = tmp_path / "tiny.yaml"
    sweep.write_text(
        "schema_version: 1\nkind: sweep\nname: tiny\n"
        f"base: {ROOT / 'scenarios' / 'quickstart.yaml'}\n"
        "grid:\n  topology: [m2000, pod16]\n  training.micro_batch: [8, 16]\n"
    )
    store = tmp_path / "s.sqlite"
    r = ipusim("sweep", str(sweep), "--out", str(store), "--jobs", "1", "--no-progress")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "p.html"
    r = ipusim("results", "plot", str(store), "--html", str(out))
    assert r.returncode == 0, r.stderr
    html = out.read_text()
    check_offline(html)
    assert "Sweep tiny" in html and "Pareto front" in html
    assert '"heatmap-0-throughput_samples_per_s"' in html
