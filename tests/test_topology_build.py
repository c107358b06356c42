"""Shipped topologies: link counts by hand, routes, link budgets, chip numbers, connectivity.

Hand counts (IPU-Link bundles = node pairs joined by one or more parallel links):
ladder of n chips = n/2 rungs + rails; an open rail of k chips has k-1 links, a wrapped one k.
"""

from __future__ import annotations

from collections import Counter

import pytest

from simulator.config import paths
from simulator.hardware.build import load_chip_type, load_system
from simulator.hardware.system import System

SHIPPED = paths.builtin_names("system")


def bundles(system: System) -> Counter[str]:
    """Link bundles by kind (one per node pair, not per direction)."""
    return Counter(ch.kind for ch in system.channels if ch.src < ch.dst)


def ipu_links_per_chip(system: System) -> dict[int, int]:
    used = dict.fromkeys(range(system.num_chips), 0)
    for ch in system.channels:
        if ch.kind == "ipu_link" and ch.src.startswith("ipu:"):
            used[int(ch.src[4:])] += ch.links
    return used


def test_all_expected_systems_ship() -> None:
    expected = {
        "mk1-server16", "m2000", "pod4", "pod16", "pod64", "pod128", "pod256",
        "bow-2000", "bow-pod16", "bow-pod64", "bow-pod128", "bow-pod256", "bow-pod1024",
        "bow-pod4096",
    }  # fmt: skip
    assert expected <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_system_loads_connected_within_link_budget(name: str) -> None:
    system = load_system(name)
    assert system.is_connected()
    assert system.unreachable_chips() == ()
    for chip_id, used in ipu_links_per_chip(system).items():
        assert used <= system.chips[chip_id].type.ipu_links <= 10, (name, chip_id, used)
    for ch in system.channels:
        assert 0 < ch.capacity_Bps <= ch.nominal_Bps
        assert ch.latency_s >= 0


@pytest.mark.parametrize(
    ("name", "chips", "ipu", "gw", "pcie", "ddr", "host"),
    [
        # 8 rungs + 2 open rails of 8 chips (7 links each); 4 PCIe switches with an uplink each
        ("mk1-server16", 16, 8 + 14, 0, 16 + 0, 0, 4),
        ("m2000", 4, 2 + 2, 0, 4, 1, 0),
        ("pod4", 4, 2 + 2, 0, 4, 1, 1),
        ("pod16", 16, 8 + 14, 0, 16, 4, 4),
        # wrap: each rail of 32 chips becomes a ring of 32 links
        ("pod64", 64, 32 + 64, 0, 64, 16, 16),
        ("pod128", 128, 2 * 96, 32, 128, 32, 32),
        ("pod256", 256, 4 * 96, 64, 256, 64, 64),
        ("bow-pod1024", 1024, 16 * 96, 256, 1024, 256, 256),
        ("bow-pod4096", 4096, 64 * 96, 1024, 4096, 1024, 1024),
    ],
)
def test_link_counts_by_hand(
    name: str, chips: int, ipu: int, gw: int, pcie: int, ddr: int, host: int
) -> None:
    system = load_system(name)
    assert system.num_chips == chips
    got = bundles(system)
    assert (got["ipu_link"], got["gw_link"], got["pcie"], got["ddr"], got["host_link"]) == (
        ipu,
        gw,
        pcie,
        ddr,
        host,
    )


def test_mk1_ladder_widths_and_numbering() -> None:
    s = load_system("mk1-server16")
    # board k holds IPUs 2k and 2k+1, joined by a rung of 2 traffic links
    for k in range(8):
        rung = s.channel(f"ipu:{2 * k}", f"ipu:{2 * k + 1}")
        assert rung is not None and rung.links == 2
        assert s.chips[2 * k].machine == s.chips[2 * k + 1].machine == k
    # rails: i <-> i+2 with one link; no wrap-around (Jia19 §2.1)
    for i in range(14):
        rail = s.channel(f"ipu:{i}", f"ipu:{i + 2}")
        assert rail is not None and rail.links == 1
        assert rail.capacity_Bps == pytest.approx(27.72e9)
    assert s.channel("ipu:14", "ipu:0") is None
    assert s.channel("ipu:15", "ipu:1") is None


def test_mk1_routes_hops_and_latency() -> None:
    s = load_system("mk1-server16")
    egress = s.chips[0].type.link_egress_latency_s
    assert egress == pytest.approx(231e-9)
    r02 = s.chip_route(0, 2)
    assert r02.hops == 1
    # 524 ns measured (Jia19 Table 4.1 (c)) = 133 on-chip (128.62 + one word's receive cost)
    # + 231 egress + 160 hop
    assert r02.latency_s + 133e-9 == pytest.approx(524e-9)
    r = s.chip_route(0, 15)
    assert r.hops == 8  # rung + 7 rail hops
    assert r.latency_s == pytest.approx(231e-9 + 8 * 160e-9)
    assert all(s.channels[c].kind == "ipu_link" for c in r.channels)


def test_pod64_wrap_closes_rails_pod16_does_not() -> None:
    pod64 = load_system("pod64")
    assert pod64.chip_route(0, 62).hops == 1
    assert pod64.channel("ipu:62", "ipu:0") is not None
    assert pod64.channel("ipu:63", "ipu:1") is not None
    pod16 = load_system("pod16")
    assert pod16.channel("ipu:14", "ipu:0") is None
    assert pod16.chip_route(0, 14).hops == 7


def test_m2000_widths_from_assumptions() -> None:
    s = load_system("m2000")
    assert s.channel("ipu:0", "ipu:1").links == 4  # type: ignore[union-attr]  # rung
    assert s.channel("ipu:0", "ipu:2").links == 2  # type: ignore[union-attr]  # rail
    assert s.channel("ipu:0", "gw:0").kind == "pcie"  # type: ignore[union-attr]
    assert s.streaming_memory is not None
    assert s.streaming_memory.bandwidth_Bps == pytest.approx(20e9)
    assert s.streaming_memory.capacity_bytes == pytest.approx(256e9)


def test_pod128_route_between_pods_uses_gateways_and_switch() -> None:
    s = load_system("pod128")
    assert s.chips[0].domain == 0 and s.chips[64].domain == 1
    assert s.chips[64].machine == 16
    r = s.chip_route(0, 64)
    path = [s.channels[r.channels[0]].src] + [s.channels[c].dst for c in r.channels]
    assert path == ["ipu:0", "gw:0", "sw:gw", "gw:16", "ipu:64"]
    assert [s.channels[c].kind for c in r.channels] == ["pcie", "gw_link", "gw_link", "pcie"]
    assert r.latency_s == pytest.approx(2 * 1000e-9 + 2 * 1500e-9)


def test_routes_inside_a_pod_stay_on_ipu_links() -> None:
    s = load_system("pod128")
    pod0 = s.domains()[0]
    assert len(pod0) == 64
    for a in pod0[::3]:
        for b in pod0:
            if a != b:
                r = s.chip_route(a, b)
                assert {s.channels[c].kind for c in r.channels} == {"ipu_link"}, (a, b)


def test_chip_files_match_vendor_peaks() -> None:
    gc2, gc200, bow = (load_chip_type(n) for n in ("gc2", "gc200", "bow"))
    assert gc2.peak_flops("fp16") == pytest.approx(124.5e12, rel=2e-3)  # Jia19 Table 5.1
    assert gc2.peak_flops("fp32") == pytest.approx(31.1e12, rel=2e-3)
    assert gc200.peak_flops("fp16") == pytest.approx(249.7e12, rel=2e-3)  # M2000 / 4
    assert gc200.peak_flops("fp32") == pytest.approx(62.4e12, rel=2e-3)
    assert bow.peak_flops("fp16") == pytest.approx(348.5e12, rel=2e-3)  # Bow-2000 / 4
    assert gc200.sram_bytes == 1472 * 638976
    assert gc2.tile_exchange_Bps == pytest.approx(6.34e9)  # calibration, Table 4.4 (a)
    assert gc2.tile_offchip_Bps == pytest.approx(5.46e9)  # calibration, Table 4.4 (b)
    assert gc2.uniform_samples_per_s() == pytest.approx(944e9, rel=1e-6)  # Jia19 §5.3
    # 133 ns (Table 4.1 (a)) less the 4.38 ns one word takes on the receiving tile's port
    assert gc2.exchange_latency_s == pytest.approx(128.62e-9)
    assert gc2.exchange_latency_s + (4 + 6 * 4 * 0.990625) / gc2.tile_exchange_Bps == (
        pytest.approx(133e-9, rel=1e-3)
    )
    assert bow.clock_hz == 1.85e9 and gc200.clock_hz == 1.325e9


def test_inline_mapping_and_switch_pattern_stay_in_domain() -> None:
    s = load_system(
        {
            "name": "sw8",
            "chip": "gc200",
            "machines_per_pod": 2,
            "chips_per_machine": 4,
            "ipu_link_GBps": 10,
            "ipu_link_efficiency": 1.0,
            "ipu_link_hop_latency_ns": 100,
            "fabric": {"pattern": "switch", "links": 1, "switch_latency_ns": 50},
        }
    )
    assert s.name == "sw8"
    r = s.chip_route(0, 7)
    assert [s.channels[c].dst for c in r.channels] == ["sw:ipu0", "ipu:7"]
    egress = s.chips[0].type.link_egress_latency_s
    assert r.latency_s == pytest.approx(egress + 2 * 100e-9 + 50e-9)


def test_power_and_machines() -> None:
    assert load_system("pod64").info.power_W == pytest.approx(16 * 1100)
    assert load_system("mk1-server16").info.power_W == pytest.approx(16 * 150)
    assert load_system("bow-pod1024").info.machines == 256
