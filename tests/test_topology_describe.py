"""``topology show`` output: keys, hand-computed bisections, determinism, patterns, text."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any

import pytest

from simulator.hardware.build import load_system
from simulator.hardware.describe import describe, format_text

CONTRACT_KEYS = {
    "name", "num_chips", "chips", "links", "peak_flops", "sram_bytes", "bisection_GBps",
    "power_W", "tiles", "streaming_memory", "assumptions", "calibrations",
}  # fmt: skip


def inline(n: int, fabric: dict[str, Any]) -> dict[str, Any]:
    """An n-chip single-pod system with round link numbers: 10 GB/s, efficiency 1."""
    return {
        "name": f"test-{fabric['pattern']}",
        "chip": "gc200",
        "machines_per_pod": n,
        "chips_per_machine": 1,
        "ipu_link_GBps": 10,
        "ipu_link_efficiency": 1.0,
        "ipu_link_hop_latency_ns": 100,
        "fabric": fabric,
    }


@pytest.mark.parametrize(
    ("n", "fabric", "bisection"),
    [
        # ring 0..7: halves {0..3} | {4..7} cut at 3-4 and 7-0 -> 2 links
        (8, {"pattern": "ring", "links": 1}, 20.0),
        # open ladder, rails 0-2-4-6 and 1-3-5-7: cut at 2-4 and 3-5
        (8, {"pattern": "ladder", "rung_links": 3, "rail_links": 1, "wrap": False}, 20.0),
        # wrapped: also 6-0 and 7-1
        (8, {"pattern": "ladder", "rung_links": 3, "rail_links": 1, "wrap": True}, 40.0),
        # 4x4 torus, rows 0-1 | rows 2-3: each of 4 column rings cut twice, 2 links per edge
        (16, {"pattern": "torus2d", "rows": 4, "cols": 4, "row_links": 1, "col_links": 2}, 160.0),
        # K4: {0,1} | {2,3} -> 4 edges
        (4, {"pattern": "fully_connected", "links": 1}, 40.0),
        # explicit line 0-1-2-3 with a triple middle link
        (4, {"pattern": "explicit", "edges": [[0, 1], [1, 2, 3], [2, 3]]}, 30.0),
    ],
)
def test_bisection_by_hand(n: int, fabric: dict[str, Any], bisection: float) -> None:
    assert describe(load_system(inline(n, fabric)))["bisection_GBps"] == bisection


def test_shipped_bisections_by_hand() -> None:
    link = 27.72  # GB/s achieved per IPU-Link (32 × 27.72/32)
    # mk1: two single-link rails cut once each; hosts do not count
    assert describe(load_system("mk1-server16"))["bisection_GBps"] == pytest.approx(2 * link)
    # pod64: two rails of 2 links, each ring cut twice
    assert describe(load_system("pod64"))["bisection_GBps"] == pytest.approx(2 * 2 * 2 * link)
    # pod128: pod 0 | pod 1 through 16 gateways × 2 GW-Links × 12.5 GB/s
    assert describe(load_system("pod128"))["bisection_GBps"] == pytest.approx(16 * 2 * 12.5)


def test_describe_contract() -> None:
    d = describe(load_system("pod16"))
    assert set(d) == CONTRACT_KEYS
    assert d["num_chips"] == 16 == len(d["chips"])
    assert d["chips"][5] == {"id": 5, "machine": 1, "type": "gc200"}
    assert d["tiles"] == 16 * 1472
    assert d["sram_bytes"] == 16 * 1472 * 638976
    assert d["peak_flops"]["fp16"] == pytest.approx(16 * 249.7e12, rel=2e-3)
    assert d["power_W"] == 4 * 1100
    rung = d["links"][0]
    assert rung == {
        "endpoints": ["ipu:0", "ipu:1"],
        "kind": "ipu_link",
        "links": 4,
        "nominal_GBps": 128.0,
        "achieved_GBps": 110.88,
        "latency_ns": 160.0,
    }
    # one entry per bundle, not per direction
    pairs = [frozenset(lk["endpoints"]) for lk in d["links"]]
    assert len(pairs) == len(set(pairs))
    assert d["streaming_memory"]["bandwidth_GBps_per_machine"] == 20.0
    assert describe(load_system("mk1-server16"))["streaming_memory"] is None


def test_describe_is_deterministic_across_processes() -> None:
    first = json.dumps(describe(load_system("pod128")))
    assert first == json.dumps(describe(load_system("pod128")))
    code = (
        "import json; from simulator.hardware.build import load_system; "
        "from simulator.hardware.describe import describe; "
        "print(json.dumps(describe(load_system('pod128'))))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == first


def test_no_float_noise_in_json() -> None:
    d = describe(load_system("bow-pod64"))
    assumed = d.pop("assumptions")  # values as the files write them (0.2425987), not computed
    d.pop("calibrations")
    text = json.dumps(d)
    assert not re.search(r"e-\d|\.\d{7,}", text)  # no 1e-07 or 55.440000000000005
    prng = next(a for a in assumed if a["name"] == "chip.prng_efficiency")
    assert (prng["value"], prng["low"], prng["high"]) == (0.2425987, 0.15, 0.5)


def test_format_text_small_and_summarised() -> None:
    small = format_text(describe(load_system("pod4")))
    assert "ipu:0 <-> ipu:1" in small and "GB/s" in small and "W" in small
    big = format_text(describe(load_system("pod256")))
    assert "summarised by kind" in big and "gw_link" in big
    assert "ipu:0 <-> ipu:1" not in big


def test_wrapped_ladder_of_four_has_no_duplicate_links() -> None:
    fabric = {"pattern": "ladder", "rung_links": 2, "rail_links": 1, "wrap": True}
    s = load_system(inline(4, fabric))
    rail = s.channel("ipu:0", "ipu:2")
    assert rail is not None and rail.links == 1  # a rail of two chips is not closed twice
