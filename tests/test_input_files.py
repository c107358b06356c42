"""Input files are read only when they are regular files within the size limit: a FIFO, a
device, a folder or an oversize file is refused from ``stat`` alone, without opening it, by
every command and every key that names a file. The document's node count is bounded while it
is composed, so a large file costs bounded work.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from simulator.cli import main
from simulator.config import limits
from simulator.config.yamlio import load_document, parse_document
from simulator.errors import InputError
from tests.helpers import TINY_DATA_SCENARIO
from tests.hostile_cases import deadline


def _uses(tmp_path: Path, target: str) -> list[list[str]]:
    """Every way a command reads a file, aimed at ``target``."""
    (tmp_path / "base.yaml").write_text(TINY_DATA_SCENARIO)
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"schema_version: 1\nbase: {target}\ngrid: {{seed: [1]}}\n")
    out = str(tmp_path / "s.sqlite")
    base = str(tmp_path / "base.yaml")
    return [
        ["run", target],
        ["topology", "show", target],
        ["sweep", target, "--out", out],
        ["plan", target],
        ["run", base, "--set", f"topology={target}"],
        ["run", base, "--set", f"model={target}"],
        ["run", base, "--set", f"baseline={target}"],
        ["sweep", str(sweep), "--out", out],
    ]


@pytest.mark.parametrize("kind", ["fifo", "device", "folder"])
def test_non_regular_inputs_are_refused_unread(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if kind == "fifo":
        target = tmp_path / "in.yaml"
        os.mkfifo(target)
        words = "a FIFO (named pipe), not a file"
    elif kind == "device":
        target = Path("/dev/zero")
        words = "a character device, not a file"
    else:
        target = tmp_path / "dir.yaml"
        target.mkdir()
        words = "a folder, not a file"
    for args in _uses(tmp_path, str(target)):
        with deadline(20):
            code = main(args)
        err = capsys.readouterr().err
        assert code == 2, (args, err)
        if kind == "folder" and any(a.startswith("model=") for a in args):
            # a folder as a model is a Hugging Face checkpoint folder: it says what it lacks
            assert "holds no config.json" in err, (args, err)
        else:
            assert words in err, (args, err)
        assert "Traceback" not in err and "internal error" not in err
    assert not (tmp_path / "s.sqlite").exists()


def test_an_oversize_file_is_refused_without_opening_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as f:  # sparse: 10 GB that take no room
        f.truncate(10 * 2**30)

    def no_open(*args: object, **kwargs: object) -> None:
        raise AssertionError("the file was opened")

    monkeypatch.setattr(os, "open", no_open)
    with pytest.raises(InputError, match="over the limit of 1,048,576") as info:
        load_document(big)
    assert info.value.location.file == str(big)


def test_the_limit_itself_is_readable(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    body = "a: 1\n"
    path.write_text(body + "#" * (limits.MAX_FILE_BYTES - len(body) - 1) + "\n")
    assert path.stat().st_size == limits.MAX_FILE_BYTES
    assert load_document(path).data == {"a": 1}
    path.write_text(path.read_text() + "x")
    with pytest.raises(InputError, match="over the limit"):
        load_document(path)


def test_node_count_is_bounded_while_composing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A flat list past the node limit stops at the limit, at the line where it was reached,
    instead of being composed whole first (the limit lowered so the test is quick: the counter
    is what is tested)."""
    import simulator.config.yamlio as yamlio

    monkeypatch.setattr(yamlio, "MAX_NODES", 1_000)
    text = "a: 1\nb:\n" + "  - 1\n" * 999 + "  - 2\n" * 10
    with pytest.raises(InputError, match="more than 1,000 values") as info:
        parse_document(text, "f.yaml")
    # the 1,001st node (counting the mapping, its keys and the list): item 996, on line 998;
    # not the end of the file
    assert info.value.location.line == 998


def test_another_files_text_is_never_echoed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "notes.txt"
    secret.write_text("token SECRET-1 for the database\nand more\n")
    other = tmp_path / "config.yml"
    other.write_text("database:\n  password: SECRET-2\n")
    (tmp_path / "base.yaml").write_text(TINY_DATA_SCENARIO)
    for path, words in ((secret, "got a line of text"), (other, "not a system file")):
        assert main(["run", str(tmp_path / "base.yaml"), "--set", f"topology={path}"]) == 2
        err = capsys.readouterr().err
        assert words in err and "SECRET" not in err and "password" not in err, err
