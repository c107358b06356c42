"""Nothing a user wrote is ever overwritten: every output option refuses a file ipusim did not
write (exit 2, before any work), replaces its own earlier output, and replaces anything with
--force. Writes are atomic (no temporary file is left behind)."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.cli import main

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = str(ROOT / "scenarios" / "microbench" / "all-reduce-64MiB-pod16.yaml")


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (["run", SCENARIO, "--timeline"], "t.html"),
        (["run", SCENARIO, "--report"], "r.html"),
        (["run", SCENARIO, "--trace"], "t.json"),
        (["topology", "show", "pod4", "--html"], "p.html"),
    ],
)
def test_a_users_file_is_never_replaced(
    args: list[str], name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / name
    target.write_text("my own notes\n")
    assert main([*args, str(target)]) == 2
    err = capsys.readouterr().err
    assert "was not written by ipusim" in err and "--force" in err
    assert target.read_text() == "my own notes\n"
    # ipusim's own output may be replaced by the next run, a user's only with --force
    assert main([*args, str(target), "--force"]) == 0
    assert main([*args, str(target)]) == 0
    assert target.read_text() != "my own notes\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temporary files left


def test_refused_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check runs before the simulation: a refused run simulates nothing."""
    import simulator.run

    target = tmp_path / "t.html"
    target.write_text("mine")
    monkeypatch.setattr(
        simulator.run,
        "run_scenario",
        lambda *a, **k: pytest.fail("simulated although the output is refused"),
    )
    assert main(["run", SCENARIO, "--timeline", str(target)]) == 2


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_results_export_keeps_a_users_file(
    suffix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from simulator.sweep.store import Store

    store = tmp_path / "r.db"
    Store.open(store, create=True).close()
    out = tmp_path / f"out{suffix}"
    out.write_text("a,b\n1,2\n")
    assert main(["results", "export", str(store), "--out", str(out)]) == 2
    assert "was not written by ipusim" in capsys.readouterr().err
    assert out.read_text() == "a,b\n1,2\n"
    assert main(["results", "export", str(store), "--out", str(out), "--force"]) == 0
    assert main(["results", "export", str(store), "--out", str(out)]) == 0  # its own export
