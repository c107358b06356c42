"""Every shipped scenario runs: ``ipusim run FILE --json`` exits 0, or 3 for the few listed as
deliberately infeasible examples (``INFEASIBLE``).

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
SLOW: frozenset[str] = frozenset(
    {
        "tensor/gpt3-6.7b-bow-pod64.yaml",  # 64 micro-batches through 16-chip tensor groups
    }
)

# The deliberately infeasible examples (relative to scenarios/): they show what "does not fit"
# looks like and what would help. Every other scenario must run (exit 0).
INFEASIBLE: frozenset[str] = frozenset(
    {
        "single/bert-large-bow.yaml",  # BERT-Large on one Bow IPU: SRAM
        "single/bert-large-gc200.yaml",  # BERT-Large on one GC200: SRAM
        "local/gpt2-lm-heads-m2000.yaml",  # a vocabulary head per local block: SRAM
    }
)


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
    rel = path.relative_to(ROOT / "scenarios").as_posix()
    assert code == (3 if rel in INFEASIBLE else 0), f"exit {code}: {err}"
    result = json.loads(out)
    assert result["feasible"] is (code == 0)
    if code == 3:
        assert result["reason"], "an infeasible result names its reason"


def test_the_infeasible_list_names_shipped_scenarios() -> None:
    shipped = {p.relative_to(ROOT / "scenarios").as_posix() for p in SCENARIOS}
    assert shipped >= INFEASIBLE


def test_every_mlperf_scenario_runs() -> None:
    """All 19 MLPerf configurations ran on real hardware, so all must fit and run."""
    mlperf = [p for p in SCENARIOS if p.parent.name == "mlperf"]
    assert len(mlperf) == 19
    assert not {p.relative_to(ROOT / "scenarios").as_posix() for p in mlperf} & INFEASIBLE
