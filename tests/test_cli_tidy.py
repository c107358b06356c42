"""Output a person can read (issue 14, item 5): the speedup explained, compact JSON, quiet
closed pipes, the command for a file of another kind, a chip described, --set shown, sweep
exports named per point and no SQLite side files left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from simulator.cli import main
from simulator.metrics import BaselineRef, TrainingResult, to_document
from simulator.present import baseline_lines, chip_set, closed_form_line, compact
from simulator.run import run_scenario

ROOT = Path(__file__).resolve().parents[1]


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_quickstart_names_both_systems_and_explains_the_batch(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(["run", "quickstart"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("quickstart: resnet50 on pod16 (16 chips: 16 replicas x 1 stage)")
    speedup = next(x for x in lines if x.startswith("  speedup"))
    assert "quickstart-baseline on m2000 (4 chips)" in speedup
    baseline = next(x for x in lines if x.startswith("  baseline"))
    assert "step time" in baseline and "samples/s" in baseline and "global batch 256" in baseline
    assert "the global batches differ (1,024 here, 256 in the baseline)" in out
    assert "samples per second" in out
    closed = next(x for x in lines if x.startswith("  closed form"))
    assert "simulated/estimate" not in closed and "-0.00%" not in closed


def _result(chips: int, batch: float, throughput: float, **kw: object) -> TrainingResult:
    base = dict(
        name="r", feasible=True, reason=None, strategy="data", system="pod16", model="m",
        chips=chips, stages=1, replicas=chips, schedule=None, global_batch=batch,
        micro_batch=1, grad_accum=1, dtype="fp16", step_time_s=batch / throughput,
        throughput_samples_per_s=throughput,
    )  # fmt: skip
    base.update(kw)
    return TrainingResult(**base)  # type: ignore[arg-type]


def test_efficiency_above_100_is_explained() -> None:
    ref = BaselineRef("b", 4, 0.1, 1000.0, system="m2000", global_batch=100.0)
    more_per_chip = _result(16, 1600.0, 4400.0, speedup=4.4, scaling_efficiency=1.1, baseline=ref)
    text = " ".join(" ".join(baseline_lines(more_per_chip)).split())  # wrapped lines joined
    assert "efficiency above 100 %" in text
    assert "100 samples per step here against 25 in the baseline" in text
    same_chips = _result(4, 100.0, 1100.0, speedup=1.1, scaling_efficiency=1.1, baseline=ref)
    text = " ".join(" ".join(baseline_lines(same_chips)).split())
    assert "both runs use 4 chips, so it is the speedup itself" in text
    below = _result(16, 400.0, 3600.0, speedup=3.6, scaling_efficiency=0.9, baseline=ref)
    assert "above 100" not in "\n".join(baseline_lines(below))


def test_closed_form_line_words() -> None:
    assert "agrees within 0.05%" in closed_form_line(0.0286, -1e-9)
    assert "simulated 15.2% longer" in closed_form_line(0.0286, 0.152)
    assert "simulated 3.4% shorter" in closed_form_line(0.0286, -0.034)


def test_chip_sets() -> None:
    assert chip_set([3, 0, 1, 2, 8, 10, 11]) == "0-3,8,10-11"
    assert chip_set([5]) == "5"


def test_json_is_compact_by_default_and_full_on_request(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(["run", "quickstart", "--json"], capsys)
    assert code == 0
    doc = json.loads(out)
    assert list(doc["breakdown"]) == ["0-15"]
    assert list(doc["memory"]) == ["0-15"]
    code, out, _ = run(["run", "quickstart", "--json", "--full"], capsys)
    full = json.loads(out)
    assert list(full["breakdown"]) == [str(i) for i in range(16)]
    assert full["breakdown"]["7"] == doc["breakdown"]["0-15"]
    assert full == to_document(run_scenario("quickstart").result)
    # chips whose entries differ keep their own keys
    mixed = compact({"m": {"0": {"a": 1}, "1": {"a": 2}, "2": {"a": 1}}, "x": 1})
    assert mixed == {"m": {"0,2": {"a": 1}, "1": {"a": 2}}, "x": 1}


def test_set_overrides_are_shown(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["run", "quickstart", "--set", "topology=pod64"], capsys)
    assert code == 0
    assert out.splitlines()[1].strip() == "overrides       --set topology=pod64"
    code, out, _ = run(["run", "quickstart", "--set", "topology=pod64", "--json"], capsys)
    doc = json.loads(out)
    assert list(doc)[:2] == ["name", "overrides"] and doc["overrides"] == ["topology=pod64"]
    code, out, _ = run(["run", "quickstart", "--json"], capsys)
    assert "overrides" not in json.loads(out)


@pytest.mark.parametrize(
    ("file", "command"),
    [
        ("scenarios/sweeps/mlperf-bert-bow.yaml", "ipusim sweep"),
        ("scenarios/plans/bert-large-10-minutes.yaml", "ipusim plan"),
        ("models/gpt2.yaml", "ipusim model show"),
        ("topologies/pod16.yaml", "ipusim topology show"),
        ("topologies/chips/gc200.yaml", "ipusim topology show"),
        ("tests/data/hf/gpt2/config.json", "ipusim model show"),
    ],
)
def test_run_on_another_kind_names_the_command(
    file: str, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["run", str(ROOT / file)], capsys)
    assert code == 2 and out == ""
    assert f"`{command} {ROOT / file}" in err, err
    assert "missing required key" not in err


def test_topology_show_of_a_chip(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["topology", "show", "gc200"], capsys)
    assert code == 0
    assert out.startswith("chip        gc200: Mk2 GC200 IPU")
    assert "1,472 x 6 worker threads" in out and "249.65 TFLOP/s" in out
    code, out, _ = run(
        ["topology", "show", str(ROOT / "topologies/chips/bow.yaml"), "--json"], capsys
    )
    doc = json.loads(out)
    assert doc["kind"] == "chip" and doc["tiles"] == 1472 and doc["ipu_links"] == 10
    code, _, err = run(["topology", "show", "gc20"], capsys)
    assert code == 2 and "unknown system or chip 'gc20' (did you mean 'gc200'?)" in err


def test_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """`ipusim topology show pod16 | head -1`: exit 0, nothing on stderr."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulator.cli", "topology", "show", "bow-pod256"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()  # the reader goes away before ipusim has written everything
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert err == ""


def test_sweep_export_names_points_and_leaves_no_side_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "base.yaml").write_text(
        "schema_version: 1\ntopology: m2000\nmodel: mlp\nstrategy: {type: data}\n"
        "training: {micro_batch: 8, dtype: fp16, optimizer: sgd}\n"
    )
    (tmp_path / "sw.yaml").write_text(
        "schema_version: 1\nkind: sweep\nname: small\nbase: base.yaml\n"
        "grid:\n  training.micro_batch: [4, 8]\n"
    )
    code, _, err = run(
        ["sweep", "sw.yaml", "--out", "r.db", "--no-progress", "--jobs", "1"], capsys
    )
    assert code == 0, err
    code, _, err = run(["results", "export", "r.db", "--out", "r.csv"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base.yaml", "r.csv", "r.db", "sw.yaml"]
    import pandas as pd

    names = list(pd.read_csv(tmp_path / "r.csv")["name"])
    assert names == ["base (training.micro_batch=4)", "base (training.micro_batch=8)"]
