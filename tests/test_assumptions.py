"""Assumptions as data (issue 13, item 1): the ``assumptions:`` and ``calibrated:`` blocks.

Every value the shipped files label ASSUMPTION in its comment has an entry with a range and a
reason, and every CALIBRATION an entry with its points (found by reading the comments, so a
value added later with a label and no entry fails here); a named label matches the entry's
name; every name is in docs/topologies.md. A block that does not fit its file is an error
naming file, line and key.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from simulator.cli import main
from simulator.config.paths import builtin_names
from simulator.config.yamlio import load_document
from simulator.errors import InputError
from simulator.hardware.build import load_chip_type, load_system

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted((ROOT / "topologies").rglob("*.yaml")) + sorted(
    (ROOT / "scenarios" / "mlperf").glob("*.yaml")
)
_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_]+):(?P<rest>.*)$")
_NAME = re.compile(r"ASSUMPTION ([A-Z0-9][A-Z0-9-]+)")


def labelled(path: Path) -> dict[str, tuple[set[str], str]]:
    """Key path -> (labels, comment) of every key whose own line's comment has a label."""
    out: dict[str, tuple[set[str], str]] = {}
    stack: list[tuple[int, str]] = []
    for line in path.read_text().splitlines():
        m = _KEY.match(line)
        if m is None or line.lstrip().startswith("#"):
            continue
        indent = len(m["indent"])
        stack = [(i, k) for i, k in stack if i < indent]
        stack.append((indent, m["key"]))
        if stack[0][1] in ("assumptions", "calibrated"):
            continue
        comment = m["rest"].split("#", 1)[1] if "#" in m["rest"] else ""
        labels = {w for w in ("ASSUMPTION", "CALIBRATION") if w in comment}
        if labels:
            out[".".join(k for _, k in stack)] = (labels, comment)
    return out


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(ROOT)) for p in FILES])
def test_every_labelled_value_has_its_entry(path: Path) -> None:
    data = load_document(path).data
    assumed = data.get("assumptions") or {}
    calibrated = data.get("calibrated") or {}
    for key, (labels, comment) in labelled(path).items():
        if "ASSUMPTION" in labels:
            assert key in assumed, f"{path.name}: {key} is an ASSUMPTION without a range"
            named = _NAME.search(comment)
            if named:
                assert assumed[key]["name"] == named[1], (path.name, key)
        if "CALIBRATION" in labels:
            assert key in calibrated, f"{path.name}: {key} is a CALIBRATION without its points"


def test_every_assumption_name_is_documented() -> None:
    doc = (ROOT / "docs" / "topologies.md").read_text()
    names = set()
    for path in FILES:
        names |= {a["name"] for a in (load_document(path).data.get("assumptions") or {}).values()}
    missing = sorted(n for n in names if f"| {n} |" not in doc)
    assert not missing, f"add to docs/topologies.md's assumptions table: {missing}"


def test_builtins_load_with_their_blocks() -> None:
    for name in builtin_names("system"):
        info = load_system(name).info
        assert all(a.reason and a.low <= a.high for a in info.assumptions if a.unit), name
    for name in builtin_names("chip"):
        load_chip_type(name)
    bow = load_system("bow-pod256").info
    names = {a.name for a in bow.assumptions}
    assert {"sync.machine_hop_ns", "gw_links.latency_ns", "chip.exchange_efficiency"} <= names
    # Bow's FP16 AMP efficiency is calibrated on a Bow measurement (PopSparse's dense point):
    # held, not varied
    assert "chip.amp_pipeline_efficiency.fp16" not in names


def _system(tmp: Path, block: str) -> Path:
    text = (ROOT / "topologies" / "pod16.yaml").read_text().split("\nassumptions:", 1)[0]
    text = text.replace("chip: gc200", f"chip: {ROOT / 'topologies' / 'chips' / 'gc200.yaml'}")
    path = tmp / "sys.yaml"
    path.write_text(text + "\nassumptions:\n" + block)
    return path


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, t in enumerate(path.read_text().splitlines(), 1) if needle in t)


@pytest.mark.parametrize(
    ("block", "needle", "message"),
    [
        (
            "  sync.machine_hop:\n    name: X\n    range: [15, 150]\n    reason: r\n",
            "sync.machine_hop:",
            "'sync.machine_hop' is not a key of this file (did you mean 'sync.machine_hop_ns'?)",
        ),
        (
            "  gateway.pcie_efficiency:\n    name: X\n    range: [0.6, 1.2]\n    reason: r\n",
            "range: [0.6, 1.2]",
            "the high end 1.2 is not a valid value of gateway.pcie_efficiency",
        ),
        (
            "  gateway.pcie_latency_ns:\n    name: X\n    range: [2000, 500]\n    reason: r\n",
            "range: [2000",
            "low is above high",
        ),
        (
            "  fabric.wrap:\n    name: X\n    range: [0, 1]\n    reason: r\n",
            "range: [0, 1]",
            "true/false ranges for true/false values only",
        ),
        (
            "  gateway:\n    name: X\n    range: [0, 1]\n    reason: r\n",
            "  gateway:",
            "not a number or true/false",
        ),
        (
            "  fabric.rung_links:\n    name: X\n    range: [2.5, 6]\n    reason: r\n",
            "range: [2.5",
            "the low end 2.5 is not a valid value of fabric.rung_links",
        ),
    ],
    ids=[
        "unknown-key",
        "invalid-end",
        "low-above-high",
        "bool-vs-number",
        "mapping",
        "int-key",
    ],
)
def test_a_block_that_does_not_fit_names_file_line_key(
    tmp_path: Path, block: str, needle: str, message: str
) -> None:
    path = _system(tmp_path, block)
    with pytest.raises(InputError) as err:
        load_system(path)
    loc = err.value.location
    assert message in str(err.value)
    assert loc.file == str(path) and loc.line == _line_of(path, needle)
    assert loc.key_path is not None and loc.key_path.startswith("assumptions.")


def test_a_value_outside_its_range_loads_and_is_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A copy of a file may try another value; the range stays what the sources allow."""
    path = _system(
        tmp_path,
        "  gateway.pcie_latency_ns:\n    name: X\n    range: [1500, 2000]\n    reason: r\n",
    )
    (a,) = [r for r in load_system(path).info.assumptions if r.name == "gateway.pcie_latency_ns"]
    assert not a.in_range
    assert main(["topology", "show", str(path)]) == 0
    assert "1,500 – 2,000 ns (the value is outside it)" in capsys.readouterr().out


def test_shipped_values_lie_in_their_ranges() -> None:
    for name in builtin_names("system"):
        outside = [a.name for a in load_system(name).info.assumptions if not a.in_range]
        assert not outside, (name, outside)


def test_bad_block_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _system(tmp_path, "  nope:\n    name: X\n    range: [1, 2]\n    reason: r\n")
    assert main(["topology", "show", str(path)]) == 2
    assert f"{path}:" in capsys.readouterr().err


def test_entry_schema_is_strict(tmp_path: Path) -> None:
    path = _system(
        tmp_path, "  gateway.pcie_latency_ns:\n    name: lower-case\n    range: [500, 2000]\n"
    )
    with pytest.raises(InputError) as err:
        load_system(path)
    assert "assumptions" in str(err.value.location.key_path)


def test_topology_show_lists_assumptions(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topology", "show", "bow-pod256"]) == 0
    out = capsys.readouterr().out
    assert "SYNC-LINK-HOP" in out and "sync.machine_hop_ns" in out and "15 – 150 ns" in out
    assert "calibrated on measured points" in out
    assert main(["topology", "show", "bow"]) == 0
    assert "VECTOR-MK2" in capsys.readouterr().out


def test_mlperf_calibrated_blocks_are_fresh() -> None:
    from validation.mlperf import calibrated_block, calibrated_scenarios

    paths = calibrated_scenarios()
    assert any(p.parent.name == "sparse" for p in paths)  # the marked sparse BERT scenarios
    for path in paths:
        assert calibrated_block(path) in path.read_text(), (
            f"{path.name}: run python -m validation.mlperf --calibrate --write"
        )
