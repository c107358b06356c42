"""The docs run as written: every scenario block and every ``ipusim`` command in README.md and
docs/ (issue 14, item 3). Blocks are found anew on every run, so a page or block added later is
covered without touching this file.

What runs, per fenced block (in page order, one working folder per page, so a command may use
what an earlier one wrote; the folder links the repository's top-level folders, so paths such
as ``scenarios/quickstart.yaml`` mean what they mean in a clone):

* ``yaml`` with ``schema_version``: written to a file and read by the command for its ``kind``
  (scenario: ``ipusim run``; model: ``ipusim model show``; system or chip: ``ipusim topology
  show``; sweep: ``ipusim sweep``; plan: ``ipusim plan``). A ``yaml`` block without
  ``schema_version`` is a fragment: it must be marked (below), so that none goes stale unseen.
* ``python``: run in a fresh interpreter (so ``from simulator import ...`` is tested as a user
  gets it).
* ``sh``, ``console``, ``text`` or unlabelled: every line that starts with ``ipusim `` (or
  ``$ ipusim ``) runs through the CLI; other lines (install commands, printed output) do not.

Expected exit: 0, or 3 (plan infeasible) for a command whose trailing ``#`` comment says
``exit 3`` or a block marked ``exit 3``. Markers are an HTML comment on the line before the
fence (invisible on rendered pages), several separated by ``;``::

    <!-- docs-test: exit 3 -->                 the block's scenario or commands must exit 3
    <!-- docs-test: skip REASON -->            not run; REASON says why (required)
    <!-- docs-test: slow -->                   run only with -m slow

Sweeps, plans, results stores and Dask are slow by themselves, and so is everything after them
on the same page (it may read their output).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from simulator.cli import main
from simulator.config.yamlio import parse_document
from simulator.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINKED = ("scenarios", "models", "topologies", "docs", "tests", "validation")
SHELL = {"", "sh", "bash", "shell", "console", "text"}
SLOW_WORDS = ("ipusim sweep", "ipusim plan", "ipusim results", "--dask")
FENCE = re.compile(r"^(```+|~~~+)\s*([\w+-]*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(.*?)\s*-->\s*$")
READERS = {
    "scenario": ["run"],
    "model": ["model", "show"],
    "system": ["topology", "show"],
    "chip": ["topology", "show"],
    "sweep": ["sweep", "--out", "docs-test.sqlite", "--no-progress", "--jobs", "2"],
    "plan": ["plan", "--no-progress", "--jobs", "2"],
    "jobs": ["shared"],
}


@dataclass
class Block:
    """One fenced block of a page."""

    page: Path
    line: int  # of the opening fence
    lang: str
    text: str
    markers: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


@dataclass
class Case:
    """One thing to run: a command line, a YAML file of some kind, or a Python program."""

    block: Block
    what: str  # "cli" | "yaml" | "python"
    text: str  # the command, the YAML text or the program
    expected: int = 0
    slow: bool = False
    skip: str | None = None


def _markers(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in text.split(";"):
        word, _, rest = part.strip().partition(" ")
        if word:
            out[word] = rest.strip()
    return out


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of a page with the marker on the line before each."""
    lines = page.read_text(encoding="utf-8").splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i].strip())
        if not m:
            i += 1
            continue
        fence, lang = m.group(1), m.group(2).lower()
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            j += 1
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        mark = MARKER.match(lines[k]) if k >= 0 else None
        markers = _markers(mark.group(1)) if mark else {}
        out.append(Block(page, i + 1, lang, "\n".join(lines[i + 1 : j]) + "\n", markers))
        i = j + 1
    return out


def _commands(text: str) -> list[str]:
    """``ipusim`` command lines of a shell block (continuations joined, ``$ `` dropped)."""
    out, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if pending:
            line = pending + " " + line
            pending = ""
        if line.endswith("\\"):
            pending = line[:-1].strip()
            continue
        if line.startswith("$ "):
            line = line[2:].strip()
        if line.startswith("ipusim "):
            out.append(line)
    return out


def cases() -> list[Case]:
    """Everything to run, page by page, in order."""
    out: list[Case] = []
    for page in PAGES:
        slow_from_here = False
        for b in blocks(page):
            skip = b.markers.get("skip")
            if "skip" in b.markers and not skip:
                skip = ""  # caught by test_markers_are_well_formed
            expected = 3 if b.markers.get("exit") == "3" else 0
            found: list[Case] = []
            if b.lang in ("yaml", "yml"):
                found.append(Case(b, "yaml", b.text, expected))
            elif b.lang == "python":
                found.append(Case(b, "python", b.text, expected))
            elif b.lang in SHELL:
                for cmd in _commands(b.text):
                    comment = cmd.partition(" #")[2]
                    code = 3 if expected == 3 or re.search(r"\bexit 3\b", comment) else 0
                    found.append(Case(b, "cli", cmd, code))
            for c in found:
                c.skip = skip
                heavy = c.what == "cli" and any(w in c.text for w in SLOW_WORDS)
                sweep = re.search(r"(?m)^kind:\s*(sweep|plan)", c.text)
                heavy = heavy or (c.what == "yaml" and sweep is not None)
                slow_from_here = slow_from_here or bool(heavy and not skip)
                c.slow = slow_from_here or "slow" in b.markers
                out.append(c)
    return out


CASES = cases()


def _param(c: Case) -> object:
    marks = [pytest.mark.slow] if c.slow else []
    label = c.text.strip().splitlines()[0][:60] if c.what != "yaml" else c.what
    return pytest.param(c, id=f"{c.block.where} {label}", marks=marks)


@pytest.fixture(scope="module")
def workdirs(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, Path]:
    """One working folder per page (created on first use), linking the top-level folders."""
    return {}


def _workdir(workdirs: dict[Path, Path], page: Path, factory: pytest.TempPathFactory) -> Path:
    if page not in workdirs:
        d = factory.mktemp(page.stem)
        for name in LINKED:
            if (ROOT / name).is_dir():
                (d / name).symlink_to(ROOT / name, target_is_directory=True)
        workdirs[page] = d
    return workdirs[page]


def test_pages_are_found() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in PAGES}
    assert {"README.md", "docs/config.md", "docs/api.md", "docs/models.md"} <= names
    assert any(c.what == "cli" and "quickstart" in c.text for c in CASES)
    assert any(c.what == "python" and c.block.page.name == "api.md" for c in CASES)


def test_markers_are_well_formed() -> None:
    known = {"skip", "exit", "slow"}
    for page in PAGES:
        for b in blocks(page):
            for word, rest in b.markers.items():
                assert word in known, f"{b.where}: unknown docs-test marker '{word}' ({known})"
                if word == "skip":
                    assert rest, f"{b.where}: 'skip' needs a reason"
                if word == "exit":
                    assert rest == "3", f"{b.where}: only 'exit 3' (an infeasible plan) is marked"


def test_marker_parsing(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text(
        "text\n\n<!-- docs-test: skip needs a cluster; slow -->\n```sh\nipusim run x\n```\n"
        "```yaml\na: 1\n```\n"
    )
    found = blocks(page)
    assert [b.lang for b in found] == ["sh", "yaml"]
    assert found[0].markers == {"skip": "needs a cluster", "slow": ""}
    assert found[1].markers == {}
    assert _commands("$ ipusim run a \\\n  --json   # x\nnot this\nipusim b") == [
        "ipusim run a --json   # x",
        "ipusim b",
    ]


def _run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.err


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_docs_block_runs(
    case: Case,
    workdirs: dict[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if case.skip is not None:
        pytest.skip(f"{case.block.where}: marked skip: {case.skip}")
    work = _workdir(workdirs, case.block.page, tmp_path_factory)
    monkeypatch.chdir(work)
    where = case.block.where
    if case.what == "cli":
        args = shlex.split(case.text, comments=True)[1:]
        code, err = _run_cli(args, capsys)
        assert code == case.expected, f"{where}: `{case.text}` exited {code}: {err}"
    elif case.what == "python":
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        proc = subprocess.run(
            [sys.executable, "-c", case.text],
            cwd=work,
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        assert proc.returncode == case.expected, (
            f"{where}: python exited {proc.returncode}:\n{proc.stderr}"
        )
    else:
        try:
            data = parse_document(case.text, where).data
        except InputError as exc:
            pytest.fail(f"{where}: the YAML block does not parse: {exc}")
        if "schema_version" not in data:
            pytest.fail(
                f"{where}: a YAML block without schema_version is a fragment; complete it into "
                "a file that runs, or mark it <!-- docs-test: skip WHY -->"
            )
        kind = data.get("kind", "scenario")
        assert kind in READERS, f"{where}: no command reads kind '{kind}'"
        file = work / f"{case.block.page.stem}-{case.block.line}.yaml"
        file.write_text(case.text, encoding="utf-8")
        reader = READERS[kind]
        verb = 2 if kind in ("model", "system", "chip") else 1  # words before the file
        args = [*reader[:verb], str(file), *reader[verb:]]
        code, err = _run_cli(args, capsys)
        assert code == case.expected, f"{where}: `ipusim {' '.join(args)}` exited {code}: {err}"
