"""Syncs that grow with their scope, the hosts' step-end sync and host input, each by hand.

Every expected figure is computed here from the topology files' numbers (quoted in comments),
and every simulated one comes from the executor running a real task graph.
"""

from __future__ import annotations

import math

import pytest

from simulator.engine.executor import execute
from simulator.engine.graph import TaskGraph
from simulator.engine.tasks import HostLoad, HostSync, Sync
from simulator.hardware.build import load_system
from simulator.hardware.system import System

NS = 1e-9


@pytest.fixture(scope="module")
def pod64() -> System:
    return load_system("pod64")


@pytest.fixture(scope="module")
def pod256() -> System:
    return load_system("pod256")


def test_sync_costs_what_its_scope_costs(pod64: System) -> None:
    ct = pod64.chips[0].type
    assert pod64.sync_scope([5]) == "chip"
    assert pod64.sync_latency_s([5]) == ct.sync_latency_s  # gc200.yaml: 70 ns
    assert pod64.sync_scope([0, 1, 2, 3]) == "machine"  # chips 0-3 are machine 0
    assert pod64.sync_latency_s([0, 1, 2, 3]) == pytest.approx(377.4 * NS)
    # chips 0 and 63: machines 0 and 15 of one POD64 -> 2 x 15 Sync-Link hops of 15 ns
    assert pod64.sync_scope([0, 63]) == "domain"
    assert pod64.sync_latency_s([0, 63]) == pytest.approx((377.4 + 2 * 15 * 15) * NS)
    # a wider scope never syncs faster
    lat = [pod64.sync_latency_s(list(range(n))) for n in (1, 4, 8, 16, 32, 64)]
    assert lat == sorted(lat)


def test_sync_across_pods_is_packetised_over_gw_links(pod256: System) -> None:
    # chips 0 and 64: machine 0 of POD64 0 and machine 16 of POD64 1; no machine span inside a
    # pod; the packet goes gateway -> switch -> gateway (2 x 1,500 ns, pod256.yaml gw_links)
    # and back, paying 500 ns (sync.gw_packet_ns) at each of the two gateways each way.
    assert pod256.sync_scope([0, 64]) == "system"
    expected = 377.4 + 2 * (2 * 1500 + 2 * 500)
    assert pod256.sync_latency_s([0, 64]) == pytest.approx(expected * NS)
    # the whole system: a full POD64 span (15 machine hops) plus the packet
    everyone = list(range(256))
    assert pod256.sync_latency_s(everyone) == pytest.approx((expected + 2 * 15 * 15) * NS)


def test_the_engine_charges_the_scope_of_group_and_across(pod64: System) -> None:
    g = TaskGraph()
    alone = g.add(Sync((0,)))
    g.add(Sync((0,), across=tuple(range(64))), deps=[alone])
    t = execute(pod64, g)
    assert t.task_end[0] == pytest.approx(70 * NS)
    assert t.task_end[1] - t.task_start[1] == pytest.approx((377.4 + 450) * NS)


def test_host_step_end_by_hand(pod64: System) -> None:
    # pod64.yaml: 4 hosts, one instance each, 100 µs host work per step; host -> gateway
    # 5,000 ns (Host-Link) + gateway -> chip 1,000 ns (PCIe) = 6 µs one way.
    g = TaskGraph()
    g.add(HostSync((0,), across=tuple(range(64))))
    t = execute(pod64, g)
    one_way = 6000 * NS
    barrier = math.ceil(math.log2(4)) * 4 * one_way  # 2 rounds of a message and its reply
    sync = (377.4 + 450) * NS
    assert t.makespan == pytest.approx(100e-6 + barrier + sync + 2 * one_way)


def test_host_input_alone_limits_a_replica_to_its_share_of_the_host(pod64: System) -> None:
    # 1,000 samples of 1 kB: with 2,000 samples/s per host and 8 replicas fed by the host, this
    # replica's stream runs at 2,000 / 8 samples/s -> 4 s (Host-Link and DDR are far faster).
    limited = load_system("pod64", host={"samples_per_s_per_host": 2000.0})
    g = TaskGraph()
    g.add(HostLoad(0, 1e6, 1000, sharing=8))
    t = execute(limited, g)
    latency = (5000 + 100) * NS  # host -> gateway -> DDR
    assert t.makespan == pytest.approx(1000 / (2000 / 8) + latency, rel=1e-9)
    # synthetic data (no limit): the Host-Link's 12.5 GB/s is the bottleneck
    free = execute(pod64, g)
    assert free.makespan == pytest.approx(1e6 / 12.5e9 + latency, rel=1e-9)


def test_scenario_hosts_override_the_system(pod64: System) -> None:
    two = load_system("pod64", host={"hosts": 2, "instances": 8, "step_overhead_us": 0.0})
    assert two.hosts is not None and pod64.hosts is not None
    assert (two.hosts.count, two.hosts.instances, two.hosts.step_overhead_s) == (2, 8, 0.0)
    assert (pod64.hosts.count, pod64.hosts.instances) == (4, 4)
    assert len({n for n in two.graph.nodes if str(n).startswith("host:")}) == 2
