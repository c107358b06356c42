"""Hostile and absurd input: every case of the corpus in tests/hostile/ (one file each; the
expected exit code and message in tests/hostile/cases.tsv) ends with its exit code and one
clear message — no traceback, no "internal error", nothing written — and, run in its own
process, in bounded memory (slow). Wall times are measured by benchmarks/bench_hostile.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.cli import main
from tests.hostile_cases import HOSTILE, Case, deadline, load_cases, run_isolated

CASES = load_cases()
HANG_GUARD_S = 60  # not a speed check: a case that hangs fails instead of stalling the run
PEAK_MB = 500  # issue 15: every case in under 500 MB


def test_the_corpus_is_large_and_every_file_is_a_case() -> None:
    files = {p.name for p in HOSTILE.iterdir()} - {"base.yaml", "cases.tsv"}
    assert files == {c.file for c in CASES}
    assert len(CASES) >= 60
    assert len({c.file for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.file)
def test_hostile_case(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(HOSTILE)
    out = tmp_path / "out"
    out.mkdir()
    with deadline(HANG_GUARD_S):
        code = main(case.args(out))
    err = capsys.readouterr().err
    assert not case.problems(code, err), (case.problems(code, err), err)
    if code == 2:
        assert list(out.iterdir()) == [], "invalid input must write nothing"
    assert not Path("/tmp/ipusim-hostile-ran").exists()  # the python-tag case never ran


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.file)
def test_hostile_case_in_its_own_process(case: Case, tmp_path: Path) -> None:
    """The same, as a user runs it: a fresh process, whose peak memory is measured."""
    measured = run_isolated(case, tmp_path, timeout_s=HANG_GUARD_S)
    assert not case.problems(measured.code, measured.stderr), measured
    assert measured.peak_MB < PEAK_MB, measured
