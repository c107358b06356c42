"""``ipusim plan``: targets, ranking, Pareto fronts, exit codes, and the shipped BERT question."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulator.capacity.plan import answer, load_plan, pareto
from simulator.cli import main
from simulator.sweep.driver import prepare
from tests.helpers import TINY_DATA_SCENARIO

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "scenarios" / "plans" / "bert-large-10-minutes.yaml"
BASE = TINY_DATA_SCENARIO


def write_plan(tmp_path: Path, target: str, extra: str = "") -> Path:
    (tmp_path / "base.yaml").write_text(BASE)
    path = tmp_path / "plan.yaml"
    path.write_text(
        "schema_version: 1\nkind: plan\nquestion: which?\n"
        "candidates:\n  base: base.yaml\n  grid:\n    topology: [m2000, pod16]\n"
        "    training.micro_batch: [8, 64]\n"
        "statistics: {b_noise: 256, steps_min: 1000}\n"
        f"target: {target}\n{extra}"
    )
    return path


def test_plan_ranks_the_configurations_that_meet_the_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_plan(tmp_path, "{time_to_train_s: 1.0}")
    assert main(["plan", str(path), "--json", "--jobs", "1", "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["candidates"] == 4 and out["feasible"] == 4
    assert out["meeting"], "some configuration trains in under a second"
    assert all(r["time_to_train_s"] <= 1.0 for r in out["meeting"])
    chips = [r["chips"] for r in out["meeting"]]
    assert chips == sorted(chips) and out["best"] == out["meeting"][0]
    front = out["pareto_time_chips"]
    assert [r["chips"] for r in front] == sorted(r["chips"] for r in front)
    times = [r["time_to_train_s"] for r in front]
    assert times == sorted(times, reverse=True)  # more IPUs only when they are faster


def test_plan_exit_3_when_nothing_meets_the_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_plan(tmp_path, "{step_time_s: 1.0e-12}")
    assert main(["plan", str(path), "--jobs", "1", "--no-progress"]) == 3
    assert "no candidate meets the target" in capsys.readouterr().out


def test_time_to_train_target_needs_statistics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_plan(tmp_path, "{time_to_train_s: 1.0}")
    path.write_text(path.read_text().replace("statistics: {b_noise: 256, steps_min: 1000}\n", ""))
    assert main(["plan", str(path)]) == 2
    err = capsys.readouterr().err
    assert "plan.yaml:" in err and "needs `statistics:`" in err


def test_pareto_front_drops_dominated_points() -> None:
    rows = [
        {"key": "a", "chips": 16, "t": 10.0},
        {"key": "b", "chips": 64, "t": 3.0},
        {"key": "c", "chips": 64, "t": 4.0},  # dominated by b
        {"key": "d", "chips": 128, "t": 5.0},  # dominated by b
        {"key": "e", "chips": 256, "t": 1.0},
    ]
    assert [r["key"] for r in pareto(rows, ("chips", "t"))] == ["a", "b", "e"]


def test_shipped_bert_question_loads_with_the_four_bow_pods() -> None:
    q = load_plan(SHIPPED)
    points = prepare(q.sweep).points
    assert {p.values["topology"] for p in points} == {
        "bow-pod16", "bow-pod64", "bow-pod128", "bow-pod256",
    }  # fmt: skip
    assert q.target.time_to_train_s == 600
    # with measured-like rows the answer is the smallest pod under 10 minutes
    minutes = (20.3, 5.3, 2.7, 1.5)  # bow-pod16 ... bow-pod256
    rows = [
        {"key": p.key, "status": "ok", "chips": c, "power_W": c * 312.5,
         "system": p.values["topology"], "time_to_train_s": m * 60, "step_time_s": 1.0,
         "energy_to_train_kWh": 1.0}
        for p, c, m in zip(points[:4], (16, 64, 128, 256), minutes, strict=True)
    ]  # fmt: skip
    assert answer(q, rows).best["system"] == "bow-pod64"  # type: ignore[index]


def test_shipped_bert_question_answer_is_bow_pod64(capsys: pytest.CaptureFixture[str]) -> None:
    """The Done-when question, simulated end to end (8 BERT-Large points, 10-30 s on 2 cores)."""
    assert main(["plan", str(SHIPPED), "--json", "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["best"]["system"] == "bow-pod64"
    assert out["best"]["time_to_train_s"] < 600
    assert all(r["system"] == "bow-pod16" for r in out["not_meeting"])
