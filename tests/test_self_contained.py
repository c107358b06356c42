"""Nothing in the project cites a file outside it (issue 14, item 7).

Every tracked text file is read: a reference to the sibling ``shared`` folder, or an absolute
path of a build machine (its work folder, a home folder), would be a citation that a user of
the package or of a clone cannot follow. Reference data the project relies on lives in
docs/reference/ (with its sources) instead.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Spelled in pieces so that this file does not match itself.
PARENT_SHARED = re.compile(r"\.\./+" + "shared" + r"\b")
MACHINE_PATH = re.compile(
    r"(?<![\w.:/-])(/" + "work" + r"/|/" + "home" + r"/[\w.-]+|/" + "root" + r"/|/"
    r"Users/[\w.-]+|[A-Za-z]:\\Users\\)"
)


def tracked_files() -> list[Path]:
    """The files git tracks (or, outside a git checkout, every file but caches and venvs)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
        ).stdout
        names = [n for n in out.decode().split("\0") if n]
        return [ROOT / n for n in names if (ROOT / n).is_file()]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
        return [
            p for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.relative_to(ROOT).parts)
        ]


def text_of(path: Path) -> str | None:
    data = path.read_bytes()
    if b"\0" in data[:4096]:
        return None  # binary (images)
    return data.decode("utf-8", errors="replace")


def offences(text: str) -> list[str]:
    """Lines that cite outside the project."""
    return [
        f"{i}: {line.strip()[:120]}"
        for i, line in enumerate(text.splitlines(), 1)
        if PARENT_SHARED.search(line) or MACHINE_PATH.search(line)
    ]


def test_patterns_catch_what_they_should() -> None:
    assert offences("see ../" + "shared/reference/ipu-hardware.md")
    assert offences("# Sources: /" + "work/shared/reference/x.md")
    assert offences("written on /" + "home/alice/ipusim")
    assert offences("C:\\Users\\bob\\x.yaml")
    assert not offences("see docs/reference/ipu-hardware.md")
    assert not offences("https://example.org/work/shared")  # a URL, not a local path
    assert not offences("tmp_path / 'work' / 'x'")


def test_tracked_files_are_listed() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in tracked_files()}
    assert "README.md" in names and "topologies/pod16.yaml" in names


@pytest.mark.parametrize("path", tracked_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_citation_outside_the_project(path: Path) -> None:
    text = text_of(path)
    if text is None:
        return
    found = offences(text)
    assert not found, (
        f"{path.relative_to(ROOT)} cites a file outside the project (copy the data into "
        "docs/reference/ with its source and cite that):\n  " + "\n  ".join(found)
    )


def test_reference_citations_resolve() -> None:
    """Every docs/reference/<file> cited anywhere exists."""
    cited = set()
    for path in tracked_files():
        text = text_of(path)
        if text is not None:
            cited |= set(re.findall(r"docs/reference/([\w.-]+\.(?:md|yaml))", text))
    assert cited, "nothing cites docs/reference/"
    missing = sorted(c for c in cited if not (ROOT / "docs" / "reference" / c).is_file())
    assert not missing, missing
