"""The README's commands work as written (executable docs).

Every ``ipusim ...`` line of the README's shell blocks runs in-process through the CLI in a
temporary working directory (scenario paths are resolved against the repository), and must exit
0, or 3 where the README says the plan does not fit. Sweeps, Dask and plans take longer and are
marked slow. The two install commands themselves are what .ci/run does on a fresh machine.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from simulator.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```sh\n(.*?)```", README, re.S)
COMMANDS = [
    line.split("#")[0].strip()
    for block in BLOCKS
    for line in block.splitlines()
    if line.strip().startswith("ipusim ")
]
SLOW_WORDS = ("sweep", "plan ", "--dask", "results ")


def _param(cmd: str) -> object:
    slow = any(w in cmd for w in SLOW_WORDS)
    return pytest.param(cmd, id=cmd[:70], marks=[pytest.mark.slow] if slow else [])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory for all commands, run in README order: later lines use earlier outputs
    (the results store the sweep wrote)."""
    return tmp_path_factory.mktemp("readme")


def test_readme_has_commands() -> None:
    assert len(COMMANDS) >= 10
    assert any("quickstart" in c for c in COMMANDS)


@pytest.mark.parametrize("cmd", [_param(c) for c in COMMANDS])
def test_readme_command(
    cmd: str, workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [str(ROOT / a) if a.startswith("scenarios/") else a for a in shlex.split(cmd)[1:]]
    monkeypatch.chdir(workdir)
    code = main(args)
    err = capsys.readouterr().err
    expected = (0, 3) if "does not fit" in _comment_of(cmd) else (0,)
    assert code in expected, f"{cmd}: exit {code}: {err}"


def _comment_of(cmd: str) -> str:
    for block in BLOCKS:
        for line in block.splitlines():
            if line.strip().startswith(cmd):
                return line.partition("#")[2]
    return ""
