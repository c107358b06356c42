"""Sweeps and plans carry the band (issue 13, item 3).

``ipusim sweep --band`` stores each point with its sensitivity (the same as ``ipusim run
--sensitivity`` on that point) and the export gains band columns; ``ipusim plan`` states its
answer with the band and names the assumption that would change the answer, with the value at
which it changes — checked here by running the deciding candidate on either side of it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import strategies  # noqa: F401 - registers the strategies
from simulator.cli import main
from simulator.config.scenario import load_scenario
from simulator.sensitivity import analyse
from simulator.sensitivity.runner import time_at

SCENARIO = """\
schema_version: 1
name: mlp-data
topology: pod4
model: mlp
strategy:
  type: data
training:
  micro_batch: 32
  grad_accum: 2
  dtype: fp32
  optimizer: sgd
"""
PLAN = """\
schema_version: 1
kind: plan
name: mlp-rate
candidates:
  base: mlp.yaml
  grid:
    topology: [pod4, pod16]
target:
  throughput_samples_per_s: 1500000
rank_by: [chips]
"""
SWEEP = """\
schema_version: 1
kind: sweep
name: mlp
base: mlp.yaml
grid:
  topology: [pod4, pod16]
"""
RATE = 1_500_000
BATCH = {"pod4": 4 * 32 * 2, "pod16": 16 * 32 * 2}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "mlp.yaml").write_text(SCENARIO)
    (tmp_path / "plan.yaml").write_text(PLAN)
    (tmp_path / "sweep.yaml").write_text(SWEEP)
    return tmp_path


def _rate(folder: Path, system: str, host_us: int) -> float:
    loaded = load_scenario(folder / "mlp.yaml", [f"topology={system}"])
    step = time_at(loaded, "host.step_overhead_us", host_us)
    assert step is not None
    return BATCH[system] / step


def test_plan_states_band_and_the_assumption_that_changes_the_answer(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["plan", str(folder / "plan.yaml"), "--no-progress", "--jobs", "1"]
    assert main([*args, "--json", "--store", str(folder / "s.db")]) == 0
    a = json.loads(capsys.readouterr().out)
    assert a["best"]["system"] == "pod16"
    band = a["band"]
    lo, hi = band["band"]
    assert lo <= a["best"]["step_time_s"] <= hi
    changes = {(c["name"], c["end"]): c for c in band["changes"]}
    down = changes[("host.step_overhead_us", "low")]  # less host work: 4 IPUs suffice
    assert down["answer"]["system"] == "pod4" and down["direction"] == "below"
    t, same = down["threshold"], down["threshold_from"]
    assert 10 <= t < same <= 100 and same - t <= 1  # 1 µs: integers, within 1 % of 90 µs
    assert _rate(folder, "pod4", t) >= RATE > _rate(folder, "pod4", same)
    up = changes[("host.step_overhead_us", "high")]  # more host work: nothing meets
    assert up["answer"] is None and up["direction"] == "above"
    t, same = up["threshold"], up["threshold_from"]
    assert 100 <= same < t <= 2000 and t - same <= 19  # within 1 % of 1,900 µs
    assert _rate(folder, "pod16", t) < RATE <= _rate(folder, "pod16", same)
    # the text says it, and a second run reuses the stored bands
    assert main([*args, "--store", str(folder / "s.db")]) == 0
    text = capsys.readouterr().out
    assert "band: answer" in text
    assert "the smallest system becomes pod4 (4 IPUs) if HOST-STEP" in text
    assert main([*args, "--no-band"]) == 0
    assert "band:" not in capsys.readouterr().out


def test_sweep_band_stores_the_sensitivity_of_each_point(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store, csv = folder / "s.db", folder / "s.csv"
    args = ["sweep", str(folder / "sweep.yaml"), "--out", str(store), "--no-progress"]
    assert main([*args, "--band", "--jobs", "2"]) == 0
    assert "mlp:band" in capsys.readouterr().out
    assert main(["results", "export", str(store), "--out", str(csv)]) == 0
    import pandas as pd

    table = pd.read_csv(csv)
    assert list(table["sweep"]) == ["mlp:band", "mlp:band"]
    for _, row in table.iterrows():
        assert row["band_low_s"] <= row["step_time_s"] <= row["band_high_s"]
        _, s = analyse(load_scenario(folder / "mlp.yaml", [f"topology={row['topology']}"]))
        assert s is not None
        assert (row["band_low_s"], row["band_high_s"]) == pytest.approx(s.band_s, rel=1e-9)
        assert row["band_top_assumption"] == s.assumptions[0].name
