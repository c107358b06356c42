"""Layer 1 (hand-computed values) for per-message costs, message engines and multicast.

The chip is tests/helpers.py's TEST_CHIP (1 GHz, 4 B/cycle tile ports = 4 GB/s, 100 ns exchange
latency, no egress latency) with round per-message costs: a send costs the sending port 1 cycle
(4 B), a receive the receiving port 5 cycles (20 B), the off-chip egress and ingress engines 3
cycles (3 ns) each, a relaying chip 10 cycles (10 ns), and every message 20 B of header on a
link (10 GB/s, 1 µs per hop). Every expected time is written out from these numbers; the
closed form (simulator.analytic) must agree where nothing contends. The shipped Mk1 server
checks the issue's claim: a one-word broadcast to all 19,456 tiles beats a one-word scatter.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

import strategies  # noqa: F401 - registers the comm strategy
from simulator.analytic import exchange_estimate, path_model
from simulator.engine.messages import multicast, phase, transfer
from simulator.engine.tasks import Collective, TileMessages, TileMulticast, Transfer
from simulator.hardware.model import Chip, MessageCosts
from simulator.hardware.system import System
from simulator.run import run_scenario
from tests.helpers import TEST_CHIP, line_system, ring_system, run_tasks

ROOT = Path(__file__).resolve().parents[1]
REL = 1e-9
NS = 1e-9

COSTS = MessageCosts(
    tile_send_cycles=1,
    tile_receive_cycles=5,
    offchip_cycles=3,
    relay_cycles=10,
    ipu_link_overhead_bytes=20,
    latency_spread_cycles=0,
)
CHIP = replace(TEST_CHIP, name="msgchip", messages=COSTS)
XLAT = 100 * NS  # TEST_CHIP exchange latency
HOP = 1e-6  # helpers' link latency


def with_costs(system: System, header: float = 20.0) -> System:
    """``system`` with CHIP on every chip and ``header`` bytes per message on every link."""
    chips = [replace(c, type=CHIP) for c in system.chips]
    channels = [replace(ch, message_overhead_bytes=header) for ch in system.channels]
    return System(system.name, chips, channels)


def one_chip(costs: MessageCosts = COSTS) -> System:
    """One chip, no links."""
    return System("one", [Chip(0, replace(CHIP, messages=costs), machine=0, domain=0)], [])


def estimate(system: System, task: TileMessages | TileMulticast) -> float:
    """The closed form (simulator.analytic) of a one-phase task."""
    paths = path_model(system)
    if isinstance(task, TileMessages):
        sends = [transfer(paths, a, d, task.bytes, s, t) for a, s, d, t in task.sends]
    else:
        sends = [multicast(paths, task.src, task.dsts, task.bytes, src_tile=0, tiles=task.tiles)]
    return exchange_estimate(paths, phase(paths, sends)).estimate_s


# ---- on one chip ---------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 10, 50])
def test_n_one_word_messages_to_one_receiving_tile(n: int) -> None:
    # each word costs the receiving port 4 B + 5 cycles x 4 B = 24 B at 4 GB/s = 6 ns; the n
    # senders' ports work in parallel (8 B each = 2 ns): the receiver serialises n x 6 ns
    s = one_chip()
    task = TileMessages(tuple((0, t, 0, 0) for t in range(1, n + 1)), 4.0)
    t = run_tasks(s, task)
    assert t.makespan == pytest.approx(XLAT + n * 6 * NS, rel=REL)
    assert estimate(s, task) == pytest.approx(t.makespan, rel=REL)


@pytest.mark.parametrize("k", [1, 3, 10, 99])
def test_broadcast_to_k_tiles_costs_one_send(k: int) -> None:
    # one send (8 B on the source port = 2 ns); every receiver's port 24 B = 6 ns, in parallel
    s = one_chip()
    task = TileMulticast(0, 0, (0,), k + 1, 4.0)  # tiles 1..k receive
    t = run_tasks(s, task)
    assert t.makespan == pytest.approx(XLAT + 6 * NS, rel=REL)
    assert estimate(s, task) == pytest.approx(t.makespan, rel=REL)


@pytest.mark.parametrize("k", [1, 3, 10, 99])
def test_k_unicasts_from_one_tile_serialise_on_its_port(k: int) -> None:
    # k sends share the source port, 8 B each: 2k ns; each receiver needs 6 ns
    s = one_chip()
    task = TileMessages(tuple((0, 0, 0, t) for t in range(1, k + 1)), 4.0)
    t = run_tasks(s, task)
    assert t.makespan == pytest.approx(XLAT + max(2 * k, 6) * NS, rel=REL)
    multicast_time = run_tasks(s, TileMulticast(0, 0, (0,), k + 1, 4.0)).makespan
    assert multicast_time <= t.makespan * (1 + REL)
    if k > 3:
        assert multicast_time < t.makespan


def test_delivery_spread_waits_for_the_slowest_of_n() -> None:
    # spread 30 cycles: the slowest of n deliveries waits 30 ns x (n - 1) / (n + 1) more
    s = one_chip(replace(COSTS, latency_spread_cycles=30))
    for n in (1, 2, 5, 40):
        task = TileMessages(tuple((0, t, 0, 50 + t) for t in range(n)), 4.0)
        t = run_tasks(s, task)
        assert t.makespan == pytest.approx(XLAT + 6 * NS + 30 * NS * (n - 1) / (n + 1), rel=REL)


# ---- between chips: engines, headers, relays -----------------------------------------------


@pytest.mark.parametrize("n", [1, 10, 100])
def test_one_word_messages_off_chip_queue_in_the_message_engines(n: int) -> None:
    # per message: egress 3 ns, link (4 + 20 B) / 10 GB/s = 2.4 ns, ingress 3 ns, ports 2 and
    # 6 ns (one per tile, parallel); n messages: the engines take 3n ns (at n = 1 the port's
    # 6 ns is the slowest). Latency 100 ns + one hop of 1 µs.
    s = with_costs(ring_system(2))
    task = TileMessages(tuple((0, t, 1, t) for t in range(n)), 4.0)
    t = run_tasks(s, task)
    assert t.makespan == pytest.approx(XLAT + HOP + max(3 * n, 6) * NS, rel=REL)
    assert estimate(s, task) == pytest.approx(t.makespan, rel=REL)


def test_header_bytes_make_the_link_the_bottleneck() -> None:
    # 100 B of header: each message is 104 B on the 10 GB/s link = 10.4 ns > 3 ns engines
    s = with_costs(ring_system(2), header=100.0)
    task = TileMessages(tuple((0, t, 1, t) for t in range(50)), 4.0)
    t = run_tasks(s, task)
    assert t.makespan == pytest.approx(XLAT + HOP + 50 * 10.4 * NS, rel=REL)


@pytest.mark.parametrize("n", [10, 100])
def test_a_relaying_chip_forwards_every_message(n: int) -> None:
    # line 0-1-2: 0 -> 2 is relayed by chip 1 at 10 ns a message; two hops of 1 µs
    s = with_costs(line_system(3))
    task = TileMessages(tuple((0, t, 2, t) for t in range(n)), 4.0)
    t = run_tasks(s, task)
    assert t.makespan == pytest.approx(XLAT + 2 * HOP + 10 * n * NS, rel=REL)
    assert estimate(s, task) == pytest.approx(t.makespan, rel=REL)


def test_chip_level_transfer_is_one_message_per_tile() -> None:
    # 100 tiles x 400 B = 40 kB: 100 messages; link (40,000 + 100 x 20 B) / 10 GB/s = 4.2 µs
    s = with_costs(ring_system(2))
    t = run_tasks(s, Transfer(0, 1, 40_000.0))
    assert t.makespan == pytest.approx(XLAT + HOP + 42_000 / 10e9, rel=REL)
    # a 40-byte buffer is 10 words on 10 tiles: 10 messages, the engines' 30 ns is slowest
    t = run_tasks(s, Transfer(0, 1, 40.0))
    assert t.makespan == pytest.approx(XLAT + HOP + 30 * NS, rel=REL)


# ---- multicast across links ------------------------------------------------------------------


def test_multicast_crosses_each_link_once() -> None:
    # broadcast 1 MB from chip 0 over the line 0-1-2-3: each link carries it once; the unicast
    # form (three transfers) carries 3 MB on 0 -> 1
    s = line_system(4)
    t = run_tasks(s, Collective("broadcast", (0, 1, 2, 3), 1e6, root=0))
    for a, b in ((0, 1), (1, 2), (2, 3)):
        ch = s.channel(f"ipu:{a}", f"ipu:{b}")
        assert ch is not None and t.channel_bytes[ch.id] == pytest.approx(1e6, rel=REL)
    # time: the group's sync (TEST_CHIP's 200 ns external sync), bytes once at 10 GB/s
    # (100 us), then the farthest chip's latency (100 ns + 3 hops)
    sync = s.sync_latency_s((0, 1, 2, 3))
    assert sync == pytest.approx(200 * NS)
    assert t.makespan == pytest.approx(sync + XLAT + 3 * HOP + 1e6 / 10e9, rel=REL)
    unicasts = run_tasks(s, *(Transfer(0, d, 1e6) for d in (1, 2, 3)))
    ch01 = s.channel("ipu:0", "ipu:1")
    assert ch01 is not None and unicasts.channel_bytes[ch01.id] == pytest.approx(3e6, rel=REL)
    assert unicasts.makespan > 2.9 * t.makespan - 3 * (XLAT + 3 * HOP)


def test_multicast_pays_one_egress_and_one_relay_per_chip() -> None:
    # a one-word multicast from tile 0 of chip 0 to 10 tiles on each of chips 1 and 2 (line
    # 0-1-2): one egress (3 ns), one header per link, one relay on chip 1 (10 ns), one ingress
    # per chip, one receive (6 ns) per tile, all in parallel: the slowest is the relay.
    s = with_costs(line_system(3))
    task = TileMulticast(0, 0, (1, 2), 10, 4.0)
    t = run_tasks(s, task)
    assert t.makespan == pytest.approx(XLAT + 2 * HOP + 10 * NS, rel=REL)
    assert estimate(s, task) == pytest.approx(t.makespan, rel=REL)


def test_broadcast_algorithm_for_a_tiny_all_gather() -> None:
    # auto picks GCL's broadcast method where its closed form beats the ring: a 400 B
    # all-gather on a 4-ring is one multicast step instead of three ring steps of 1 µs hops
    from simulator.engine.collectives import choose_algorithm

    s = with_costs(ring_system(4))
    assert choose_algorithm(s, "all_gather", (0, 1, 2, 3), 400.0) == "broadcast"
    assert choose_algorithm(s, "all_gather", (0, 1, 2, 3), 4e8) != "broadcast"
    ring = run_tasks(s, Collective("all_gather", (0, 1, 2, 3), 400.0, "ring"))
    auto = run_tasks(s, Collective("all_gather", (0, 1, 2, 3), 400.0))
    assert auto.makespan < ring.makespan


# ---- the claim on the shipped Mk1 server -------------------------------------------


def test_one_word_broadcast_to_19456_tiles_beats_a_one_word_scatter() -> None:
    """tile 0 of IPU 0 -> every tile of the 16-IPU server: a broadcast is one message (the
    farthest chip's latency, ~1.65 µs, plus one word's costs); a scatter is 19,455 messages,
    18,240 of them through IPU 0's off-chip engine at 2.6 cycles each (~30 µs) and relays."""
    scenario = ROOT / "scenarios/microbench/jia19-broadcast.yaml"
    broadcast = run_scenario(scenario).result
    scatter = run_scenario(scenario, ("strategy.pattern=scatter",)).result
    assert broadcast.messages == 1 and scatter.messages == 19_455
    assert broadcast.payload_bytes == scatter.payload_bytes == 19_455 * 4
    # latency to IPU 15: 128.62 ns exchange + 231 ns egress + 8 hops x 160 ns = 1.64 µs
    assert 1.64e-6 < broadcast.time_s < 1.75e-6
    assert scatter.time_s > 18_240 * 2.6 / 1.6e9
    assert scatter.time_s > 10 * broadcast.time_s
