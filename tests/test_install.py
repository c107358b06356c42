"""Installs like a library (issue 14, items 1 and 2): built-ins as package data, runnable by
name from any folder, examples listed and copied, IPUSIM_DATA as an override, an empty list of
built-ins an error, and the Python API in a fresh interpreter with no ``import strategies``.

(The wheel itself is built and installed in a fresh virtual environment by hand for the issue
report; these tests cover the same behaviour on the editable install the suite runs on.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from simulator.cli import main
from simulator.config import paths

ROOT = Path(__file__).resolve().parents[1]


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def fresh_python(code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", paths.ENV_VAR)}
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=environ, capture_output=True, text=True
    )


def test_strategies_are_entry_points() -> None:
    found = {ep.name: ep.value for ep in entry_points(group="ipusim.strategies")}
    assert found.get("builtin") == "strategies"


def test_api_in_a_fresh_interpreter_from_an_empty_folder(tmp_path: Path) -> None:
    """The issue's "Done when" line, with nothing imported beforehand and no repository in
    the current folder."""
    proc = fresh_python(
        "import sys\n"
        "from simulator import run_scenario\n"
        "o = run_scenario('quickstart')\n"
        "assert 'strategies' in sys.modules  # registered through the entry point\n"
        "print(o.result.step_time_s)\n",
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert float(proc.stdout) > 0


def test_run_a_builtin_scenario_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run(["run", "quickstart"], capsys)
    assert code == 0, err
    assert out.startswith("quickstart: resnet50 on pod16")
    code, out, err = run(["run", "mlperf/resnet50-v1.0-pod16", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["system"] == "pod16"
    code, _, err = run(["run", "quickstrat"], capsys)
    assert code == 2 and "did you mean 'quickstart'" in err


def test_examples_lists_every_builtin_with_its_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(["examples"], capsys)
    assert code == 0
    assert "scenarios (ipusim run NAME):" in out
    assert "sweeps (ipusim sweep NAME --out results.db):" in out
    assert "plans (ipusim plan NAME):" in out
    for name in ("quickstart", "mlperf/bert-large-v2.0-bow-pod16", "sweeps/mlperf-bert-bow"):
        assert f"  {name} " in out
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    assert sorted(listed) == paths.builtin_names("scenario")  # every one, once


def test_examples_copy_never_replaces_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "mine"
    assert run(["examples", "--copy", str(target)], capsys)[0] == 0
    copied = sorted(p.relative_to(target).as_posix() for p in target.rglob("*.yaml"))
    assert copied == sorted(f"{n}.yaml" for n in paths.builtin_names("scenario"))
    assert not list(target.rglob("*.py"))  # data only
    # the copies run where they are (sweeps keep their relative base)
    code, _, err = run(["run", str(target / "quickstart.yaml")], capsys)
    assert code == 0, err
    # again: identical files are left alone
    assert run(["examples", "--copy", str(target)], capsys)[0] == 0
    # an edited file is never replaced, and nothing else is written either
    edited = target / "quickstart.yaml"
    edited.write_text("# mine\n")
    (target / "single" / "resnet50-bow.yaml").unlink()
    code, _, err = run(["examples", "--copy", str(target)], capsys)
    assert code == 2 and "differ from the examples" in err
    assert edited.read_text() == "# mine\n"
    assert not (target / "single" / "resnet50-bow.yaml").exists()


def test_ipusim_data_overrides_and_empty_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    (data / "topologies" / "chips").mkdir(parents=True)
    (data / "models").mkdir()
    (data / "scenarios").mkdir()
    monkeypatch.setenv(paths.ENV_VAR, str(data))
    for args in (["topology", "list"], ["model", "list"], ["examples"], ["run", "quickstart"]):
        code, out, err = run(args, capsys)
        assert code == 2, (args, out, err)
        assert "no built-in" in err and "IPUSIM_DATA" in err, err
    # the override is used when it holds files
    (data / "topologies" / "pod16.yaml").write_text((ROOT / "topologies/pod16.yaml").read_text())
    (data / "topologies" / "chips" / "gc200.yaml").write_text(
        (ROOT / "topologies/chips/gc200.yaml").read_text()
    )
    code, out, _ = run(["topology", "list"], capsys)
    assert code == 0 and out.splitlines()[0] == "systems: pod16"


def test_package_data_folders_hold_no_stray_files() -> None:
    """What setup.py ships: the YAML files of the three folders (and their __init__.py)."""
    for top in paths.PACKAGES:
        folder = paths.data_folder(top)
        extra = [
            p.relative_to(folder).as_posix()
            for p in folder.rglob("*")
            if p.is_file() and p.suffix not in (".yaml", ".pyc") and p.name != "__init__.py"
        ]
        assert not extra, f"{top}/ holds files that are not shipped: {extra}"
