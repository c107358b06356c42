"""Bad topology input: every case is an InputError naming the file, the line and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.config.yamlio import parse_document
from simulator.errors import InputError
from simulator.hardware.build import load_system

BASE = """\
schema_version: 1
kind: system
chip: gc200
machines_per_pod: 1
chips_per_machine: 4
ipu_link_GBps: 32
ipu_link_efficiency: 0.86625
ipu_link_hop_latency_ns: 160
fabric:
  pattern: ladder
  rung_links: 4
  rail_links: 2
  wrap: false
"""
HEAD = BASE.split("fabric:")[0]


def line_of(text: str, marker: str) -> int:
    """1-based line of the first line containing ``marker``."""
    for i, line in enumerate(text.splitlines(), 1):
        if marker in line:
            return i
    raise AssertionError(f"{marker!r} not in text")


def fails(tmp_path: Path, text: str, marker: str, key: str, *words: str) -> InputError:
    path = tmp_path / "sys.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_system(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}:{line_of(text, marker)}: {key}: "), msg
    for w in words:
        assert w in msg, msg
    return info.value


def test_base_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "sys.yaml"
    path.write_text(BASE)
    assert load_system(path).num_chips == 4


@pytest.mark.parametrize("value", ["-5", "0"])
def test_non_positive_bandwidth(tmp_path: Path, value: str) -> None:
    text = BASE.replace("ipu_link_GBps: 32", f"ipu_link_GBps: {value}")
    fails(tmp_path, text, "ipu_link_GBps", "ipu_link_GBps", "> 0")


def test_explicit_edge_to_missing_chip(tmp_path: Path) -> None:
    text = (
        HEAD
        + "fabric:\n  pattern: explicit\n  edges:\n    - [0, 1]\n    - [1, 2, 2]\n    - [2, 7]\n"
    )
    fails(tmp_path, text, "[2, 7]", "fabric.edges[2]", "chip 7", "4 chips")


def test_explicit_self_loop(tmp_path: Path) -> None:
    text = HEAD + "fabric:\n  pattern: explicit\n  edges:\n    - [0, 1]\n    - [3, 3]\n"
    fails(tmp_path, text, "[3, 3]", "fabric.edges[1]", "itself")


def test_disconnected_system_names_chips(tmp_path: Path) -> None:
    text = HEAD + "fabric:\n  pattern: explicit\n  edges:\n    - [0, 1]\n"
    fails(tmp_path, text, "fabric:", "fabric", "not connected", "chip(s) 2-3")


def test_too_many_links_per_chip(tmp_path: Path) -> None:
    text = BASE.replace("rung_links: 4", "rung_links: 9")  # 9 + 2 (one rail neighbour) = 11
    fails(tmp_path, text, "fabric:", "fabric", "11 IPU-Links", "has 10")


def test_unknown_pattern_did_you_mean(tmp_path: Path) -> None:
    text = BASE.replace("pattern: ladder", "pattern: ladderr")
    fails(tmp_path, text, "pattern:", "fabric.pattern", "did you mean 'ladder'")


def test_unknown_chip(tmp_path: Path) -> None:
    text = BASE.replace("chip: gc200", "chip: gc20")
    fails(tmp_path, text, "chip: gc20", "chip", "did you mean 'gc200'")


def test_unknown_key(tmp_path: Path) -> None:
    text = BASE.replace("  wrap: false", "  wrap: false\n  rungs: 3")
    fails(tmp_path, text, "rungs:", "fabric", "unknown key 'rungs'", "rung_links")


def test_torus_shape_must_match_chips(tmp_path: Path) -> None:
    text = (
        HEAD + "fabric:\n  pattern: torus2d\n  rows: 3\n  cols: 2\n  row_links: 1\n  col_links: 1\n"
    )
    fails(tmp_path, text, "rows:", "fabric.rows", "3 × 2 = 6", "4 chips")


def test_pods_need_gw_links(tmp_path: Path) -> None:
    text = BASE.replace("machines_per_pod: 1", "machines_per_pod: 1\npods: 2")
    fails(tmp_path, text, "pods:", "pods", "gw_links")


def test_odd_ladder(tmp_path: Path) -> None:
    text = BASE.replace("chips_per_machine: 4", "chips_per_machine: 3")
    fails(tmp_path, text, "pattern:", "fabric.pattern", "even")


def test_wrong_file_kind(tmp_path: Path) -> None:
    text = BASE.replace("kind: system", "kind: chip")
    fails(tmp_path, text, "kind:", "kind", "system file")


def test_chip_file_errors_name_the_chip_file(tmp_path: Path) -> None:
    chip = (Path(__file__).parents[1] / "topologies/chips/gc200.yaml").read_text()
    bad = chip.replace("clock_hz: 1.325e+9", "clock_hz: -1.0")
    (tmp_path / "badchip.yaml").write_text(bad)
    text = BASE.replace("chip: gc200", "chip: badchip.yaml")
    path = tmp_path / "sys.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_system(path)
    assert str(info.value).startswith(f"{tmp_path / 'badchip.yaml'}:{line_of(bad, 'clock_hz')}: ")


def test_inline_mapping_errors() -> None:
    with pytest.raises(InputError) as info:
        load_system({"chip": "gc200", "machines_per_pod": 1, "chips_per_machine": 4})
    assert str(info.value).startswith("<inline topology>: missing required key")


def test_inline_mapping_inside_another_file_points_at_its_lines() -> None:
    text = "schema_version: 1\ntopology:\n" + "".join(
        f"  {line}\n" for line in HEAD.splitlines()[2:]
    )
    text += "  fabric:\n    pattern: rign\n    links: 1\n"
    doc = parse_document(text, "scen.yaml")
    with pytest.raises(InputError) as info:
        load_system(doc.data["topology"], origin=doc, at=("topology",))
    line = line_of(text, "pattern: rign")
    assert str(info.value).startswith(f"scen.yaml:{line}: topology.fabric.pattern: "), info.value
    assert "did you mean 'ring'" in str(info.value)
