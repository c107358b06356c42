"""Running sweeps: local processes, a real Dask LocalCluster, resume after SIGKILL, errors.

The Dask tests start a real ``distributed.LocalCluster`` on loopback with worker processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from simulator.cli import main
from simulator.metrics import to_json
from simulator.run import run_scenario
from simulator.sweep import load_results, load_sweep, run_sweep
from simulator.sweep.points import expand
from simulator.sweep.store import Store
from simulator.sweep.worker import PointTask, run_point
from tests.helpers import TINY_DATA_SCENARIO, stored_points

BASE = TINY_DATA_SCENARIO
# 2 x 3 points: replicas 3 is invalid input on 4 chips (an error point), micro-batch 4e6
# does not fit in SRAM (an infeasible point), the rest run.
MIXED = "grid:\n  strategy.replicas: [4, 3]\n  training.micro_batch: [8, 16, 4000000]\n"


def write(tmp_path: Path, body: str, name: str = "sweep.yaml") -> Path:
    (tmp_path / "base.yaml").write_text(BASE)
    path = tmp_path / name
    path.write_text("schema_version: 1\nbase: base.yaml\n" + body)
    return path


def results(store: Path) -> dict[str, tuple[str, str | None]]:
    with Store.open(store, create=False, readonly=True) as s:
        return {r["key"]: (r["status"], r["result"]) for r in s.rows()}


def test_a_point_is_exactly_ipusim_run_with_set(tmp_path: Path) -> None:
    sweep = load_sweep(write(tmp_path, "grid:\n  topology: [pod4]\n  training.micro_batch: [8]\n"))
    point = expand(sweep).points[0]
    record = run_point(PointTask(point.key, str(sweep.base), point.overrides, False))
    direct = run_scenario(tmp_path / "base.yaml", ["topology=pod4", "training.micro_batch=8"])
    assert record.status == "ok"
    assert record.result == to_json(direct.result)


def test_local_processes_errors_do_not_stop_the_others_and_rerun_reuses(tmp_path: Path) -> None:
    sweep = load_sweep(write(tmp_path, MIXED))
    store = tmp_path / "s.sqlite"
    first = run_sweep(sweep, store, jobs=2, progress=False)
    assert (first.points, first.ran, first.ok, first.infeasible, first.errors) == (6, 6, 2, 1, 3)
    assert "invalid input" in first.first_errors[0]
    df = load_results(store)
    bad = df[df["strategy.replicas"] == 3]
    assert set(bad["status"]) == {"error"} and bad["reason"].str.contains("3 replica").all()
    again = run_sweep(sweep, store, jobs=2, progress=False)
    assert (again.reused, again.ran) == (6, 0)
    # an edited sweep runs only its new points
    edited = load_sweep(write(tmp_path, MIXED.replace("[4, 3]", "[4, 3, 2]")))
    third = run_sweep(edited, store, jobs=2, progress=False)
    assert (third.points, third.reused, third.ran) == (9, 6, 3)


@pytest.fixture(scope="module")
def cluster():  # type: ignore[no-untyped-def]
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=":0",
    ) as c:  # fmt: skip
        yield c


def test_dask_gives_byte_identical_results_to_local(tmp_path: Path, cluster) -> None:  # type: ignore[no-untyped-def]
    sweep = load_sweep(write(tmp_path, MIXED))
    local, dask = tmp_path / "local.sqlite", tmp_path / "dask.sqlite"
    run_sweep(sweep, local, jobs=2, progress=False)
    summary = run_sweep(sweep, dask, dask=cluster.scheduler_address, progress=False)
    assert summary.runner.startswith("Dask at tcp://127.0.0.1")
    assert (summary.ran, summary.ok, summary.infeasible, summary.errors) == (6, 2, 1, 3)
    assert results(local) == results(dask)


def test_dask_local_starts_its_own_cluster(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "grid:\n  training.micro_batch: [8, 16]\n")
    code = main(["sweep", str(path), "--out", str(tmp_path / "s.sqlite"), "--dask", "local",
                 "--jobs", "2", "--json", "--no-progress"])  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["ok"] == 2 and out["runner"].startswith("Dask at")


def test_unreachable_dask_address_is_exit_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "grid:\n  training.micro_batch: [8]\n")
    store = tmp_path / "s.sqlite"
    code = main(["sweep", str(path), "--out", str(store), "--dask", "tcp://127.0.0.1:9"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot reach the Dask scheduler" in err
    assert not store.exists()


def test_cli_sweep_and_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, MIXED)
    store = tmp_path / "s.sqlite"
    assert main(["sweep", str(path), "--out", str(store), "--jobs", "1", "--no-progress"]) == 0
    assert "ran 6: ok 2, infeasible 1, error 3" in capsys.readouterr().out
    assert main(["results", "export", str(store), "--out", str(tmp_path / "r.csv")]) == 0
    assert len((tmp_path / "r.csv").read_text().splitlines()) == 7
    assert (
        main(["results", "export", str(tmp_path / "r.csv"), "--out", str(tmp_path / "x.csv")]) == 2
    )


def test_resume_after_sigkill_loses_nothing_finished(tmp_path: Path) -> None:
    # 40 points of a pipeline on a POD16 with many micro-batches: slow enough to kill mid-way.
    body = (
        "grid:\n  topology: [pod16]\n  training.grad_accum: [16, 24, 32, 40, 48, 56, 64, 72]\n"
        "  training.micro_batch: [1, 2, 3, 4, 5]\n"
    )
    path = write(tmp_path, body)
    store = tmp_path / "s.sqlite"
    cmd = [sys.executable, "-m", "simulator.cli", "sweep", str(path), "--out", str(store),
           "--jobs", "2", "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while stored_points(store) < 5 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its worker processes
        proc.wait()
    before = results(store)
    assert 5 <= len(before) < 40, "the kill must land mid-sweep"
    with Store.open(store, create=False, readonly=True) as s:
        assert s.con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    summary = run_sweep(load_sweep(path), store, jobs=2, progress=False)
    assert summary.reused == len(before) and summary.ran == 40 - len(before)
    after = results(store)
    assert len(after) == 40
    assert all(after[k] == v for k, v in before.items())  # finished points untouched
