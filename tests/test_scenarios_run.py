"""Every shipped scenario runs: ``ipusim run FILE --json`` exits 0 (feasible) or 3 (infeasible).

Generic over scenarios/**/*.yaml, so new scenario folders are covered without editing this
file. Scenarios known to take more than ~20 s are marked slow (``SLOW`` below, paths relative
to scenarios/). Runs in-process through the CLI entry point, so the exit-code contract and
"stdout holds exactly one JSON document" are checked as a user sees them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from simulator.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _is_scenario(path: Path) -> bool:
    """Scenario files have no ``kind``; sweep and plan files (kind: sweep / plan) live beside
    them and are checked by their own tests (tests/test_sweep_*.py, tests/test_plan_*.py)."""
    return yaml.safe_load(path.read_text()).get("kind", "scenario") == "scenario"


SCENARIOS = sorted(p for p in (ROOT / "scenarios").rglob("*.yaml") if _is_scenario(p))

# Paths (relative to scenarios/) that take more than ~20 s; kept out of the default run.
SLOW: frozenset[str] = frozenset()


def _param(path: Path) -> Any:
    """A pytest param for ``path``, marked slow when listed in SLOW."""
    rel = path.relative_to(ROOT / "scenarios").as_posix()
    marks = [pytest.mark.slow] if rel in SLOW else []
    return pytest.param(path, id=rel, marks=marks)


def test_there_are_scenarios() -> None:
    """The glob finds the shipped scenarios (a moved folder would make the test vacuous)."""
    assert any(p.parent.name == "microbench" for p in SCENARIOS)


@pytest.mark.parametrize("path", [_param(p) for p in SCENARIOS])
def test_scenario_runs(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Exit 0 or 3, one JSON document on stdout whose ``feasible`` matches the exit code."""
    code = main(["run", str(path), "--json"])
    out, err = capsys.readouterr()
    assert code in (0, 3), f"exit {code}: {err}"
    result = json.loads(out)
    assert result["feasible"] is (code == 0)
    if code == 3:
        assert result["reason"], "an infeasible result names its reason"
