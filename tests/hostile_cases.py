"""The hostile-input corpus (tests/hostile/): reading its table and running one case; and a
deadline for the tests that could otherwise block (FIFOs, hangs).

Shared by tests/test_hostile_inputs.py (in-process, every case; in subprocesses with their peak
memory, slow) and benchmarks/bench_hostile.py (wall time and peak memory of every case).
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

HOSTILE = Path(__file__).resolve().parent / "hostile"
TABLE = HOSTILE / "cases.tsv"
ROOT = HOSTILE.parents[1]


class Hung(BaseException):
    """Raised by :func:`deadline`: past Exception, so the CLI cannot report it as its own
    error (a FIFO opened for writing, or a case that hangs, fails instead of stalling)."""


@contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Raise :class:`Hung` in the main thread if the block runs longer than ``seconds``."""

    def alarm(signum: int, frame: FrameType | None) -> None:
        raise Hung(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@dataclass(frozen=True)
class Case:
    """One row of tests/hostile/cases.tsv."""

    file: str
    exit: int
    command: str
    fragment: str
    absent: str

    def args(self, tmp: Path) -> list[str]:
        """The command line (after ``ipusim``) for this case, its temporary folder ``tmp``."""
        text = (
            self.command.replace("$FILE", str(HOSTILE / self.file))
            .replace("$DIR", str(HOSTILE))
            .replace("$TMP", str(tmp))
        )
        out: list[str] = []
        for word in shlex.split(text):
            if word.startswith("@"):
                lines = Path(word[1:]).read_text(encoding="utf-8").splitlines()
                out.extend(line for line in lines if line)
            else:
                out.append(word)
        return out

    def problems(self, code: int, stderr: str) -> list[str]:
        """What is wrong with an outcome (empty: as the table expects)."""
        found = []
        if code != self.exit:
            found.append(f"exit {code}, expected {self.exit}")
        if self.fragment not in stderr:
            found.append(f"stderr lacks {self.fragment!r}")
        if self.absent and self.absent in stderr:
            found.append(f"stderr shows {self.absent!r}")
        for bad in ("Traceback", "internal error", "Error:"):
            if bad in stderr:
                found.append(f"stderr shows {bad!r}")
        if code == 2 and len(stderr.strip().splitlines()) != 1:
            found.append("invalid input must be one line on stderr")
        return found


def load_cases() -> list[Case]:
    """Every case of the table, in order."""
    rows = [
        line.split("\t")
        for line in TABLE.read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    ]
    header, body = rows[0], rows[1:]
    assert header == ["file", "exit", "command", "fragment", "absent"], header
    return [Case(r[0], int(r[1]), r[2], r[3], r[4] if len(r) > 4 else "") for r in body]


@dataclass(frozen=True)
class Measured:
    """One case run in its own process: exit code, stderr, wall seconds, peak RSS in MB."""

    code: int
    stderr: str
    wall_s: float
    peak_MB: float


def run_isolated(case: Case, tmp: Path, timeout_s: float = 120.0) -> Measured:
    """Run ``case`` as ``python -m simulator.cli ...`` and measure it (``wait4`` gives the
    child's own peak resident memory). A case still running after ``timeout_s`` is killed and
    reported with exit code -9."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    err_path = tmp / "stderr.txt"
    with err_path.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "simulator.cli", *case.args(tmp)],
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd=HOSTILE,
            env=env,
        )
        start = time.perf_counter()
        timer = threading.Timer(timeout_s, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    return Measured(proc.returncode, err_path.read_text(), wall, usage.ru_maxrss / 1024)
