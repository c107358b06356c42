"""A sweep's processes: killed with SIGKILL, its worker processes, the forkserver and the
resource tracker exit on their own (they watch the sweep); SIGTERM and SIGINT stop it like
Ctrl-C, keeping every finished point. Real processes, real signals (Linux: /proc lists them).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import TINY_DATA_SCENARIO, stored_points

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")

# 40 pipeline points on a POD16 with many micro-batches: long enough to signal mid-way.
SWEEP = (
    "schema_version: 1\nbase: base.yaml\ngrid:\n  topology: [pod16]\n"
    "  training.grad_accum: [16, 24, 32, 40, 48, 56, 64, 72]\n"
    "  training.micro_batch: [1, 2, 3, 4, 5]\n"
)
GONE_WITHIN_S = 10


def _ppid(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(text[text.rindex(")") + 2 :].split()[1])


def _descendants(root: int) -> set[int]:
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    parents = {pid: _ppid(pid) for pid in pids}
    found, frontier = set(), {root}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"  # a zombie has exited


def _start(tmp_path: Path) -> tuple[subprocess.Popen[str], Path]:
    (tmp_path / "base.yaml").write_text(TINY_DATA_SCENARIO)
    (tmp_path / "sweep.yaml").write_text(SWEEP)
    store = tmp_path / "s.sqlite"
    cmd = [sys.executable, "-m", "simulator.cli", "sweep", str(tmp_path / "sweep.yaml"),
           "--out", str(store), "--jobs", "2", "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while stored_points(store) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the sweep finished before it could be signalled"
    return proc, store


def _reap(proc: subprocess.Popen[str], family: set[int]) -> None:
    """After a failed check: stop what this test started (by id, the living ones only)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for pid in family:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_sigkill_leaves_no_process_behind(tmp_path: Path) -> None:
    proc, _ = _start(tmp_path)
    family = _descendants(proc.pid)
    try:
        assert len(family) >= 3  # workers (2), forkserver, resource tracker
        os.kill(proc.pid, signal.SIGKILL)  # the sweep only: its children get no signal
        proc.wait()
        deadline = time.monotonic() + GONE_WITHIN_S
        while any(_alive(p) for p in family) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = {p for p in family if _alive(p)}
        assert not left, f"still running {GONE_WITHIN_S} s after the sweep was killed: {left}"
    finally:
        _reap(proc, family)


@pytest.mark.parametrize(
    ("sig", "code"),
    [(signal.SIGTERM, 143), pytest.param(signal.SIGINT, 130, marks=pytest.mark.slow)],
)
def test_sigterm_and_sigint_stop_cleanly_keeping_finished_points(
    sig: signal.Signals, code: int, tmp_path: Path
) -> None:
    proc, store = _start(tmp_path)
    family = _descendants(proc.pid)
    try:
        before = stored_points(store)
        os.kill(proc.pid, sig)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == code, err
        assert "sweep stopped" in err and "Traceback" not in err, err
        after = stored_points(store)
        assert before <= after < 40
        assert f"{after} point(s) finished in this run are stored" in err
        time.sleep(1)
        assert not {p for p in family if _alive(p)}
    finally:
        _reap(proc, family)
    with sqlite3.connect(store) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
