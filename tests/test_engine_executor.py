"""Layer 1 (hand-computed values) and layer 5 (task-graph errors) for the executor.

Transfers, compute, exchange, sync, RNG and Streaming Memory tasks run alone or in small
graphs on the hand-built systems of tests/helpers.py and on the shipped mk1-server16 and m2000
topologies; every expected time is written out from the fixture or YAML numbers (not from the
engine's own estimate). Graph errors: a cycle names the cycle, a missing dependency and a chip
out of range are GraphErrors raised before anything runs.
"""

from __future__ import annotations

import pytest

from simulator.engine.executor import execute
from simulator.engine.graph import GraphError, TaskGraph
from simulator.engine.tasks import (
    Collective,
    Compute,
    Exchange,
    MemLoad,
    MemStore,
    Rng,
    Sync,
    Transfer,
)
from simulator.hardware.build import load_system
from tests.helpers import TEST_CHIP, line_system, ring_system, run_tasks

REL = 1e-12

# tests/helpers.py fixture numbers
LINK = 10e9  # B/s per direction
HOP = 1e-6  # s per hop
XLAT = 100e-9  # TEST_CHIP exchange latency

# mk1-server16 / gc2 YAML numbers (topologies/mk1-server16.yaml, topologies/chips/gc2.yaml)
MK1_LINK = 32e9 * 0.86625  # ipu_link_GBps x ipu_link_efficiency, one rail link
MK1_HOP = 160e-9  # ipu_link_hop_latency_ns
GC2_XLAT = 128.62e-9  # exchange_latency_ns
GC2_EGRESS = 231e-9  # link_egress_latency_ns
GC2_TILE_OFFCHIP = 4 * 1.6e9 * 0.853125  # exchange_bytes_per_cycle x clock x offchip eff.
GC2_TILES = 1216  # a chip-level transfer of >= 4,864 B is one 1,216-message per tile
GC2_HEADER = 24  # messages.ipu_link_overhead_bytes, per message on each IPU-Link
GC2_SPREAD = 45.46 / 1.6e9  # messages.latency_spread_cycles / clock


def spread(n: int) -> float:
    """The slowest of n deliveries onto one GC2: spread x (n - 1) / (n + 1)."""
    return GC2_SPREAD * (n - 1) / (n + 1)


def chip_level_on_mk1(nbytes: float, link_Bps: float, hops: int, sharing: int = 1) -> float:
    """A chip-level transfer of >= 4,864 B over all 1,216 GC2 tiles (1,216 messages), ``sharing``
    such transfers on the bottleneck link: latency + (bytes + messages x header) / link + the
    slowest of the 1,216 deliveries. The message engines (1,216 x 2.6 cycles = 2 µs, relays
    1,216 x 6.9 cycles = 5.3 µs) are below the link time for the sizes used here."""
    load = sharing * (nbytes + GC2_TILES * GC2_HEADER)
    return GC2_XLAT + GC2_EGRESS + hops * MK1_HOP + load / link_Bps + spread(GC2_TILES)


@pytest.fixture(scope="module")
def mk1():
    return load_system("mk1-server16")


@pytest.fixture(scope="module")
def m2000():
    return load_system("m2000")


# ---- one transfer alone = latency + bytes / bandwidth ----------------------------------------


@pytest.mark.parametrize(
    ("n", "src", "dst", "hops"),
    [(4, 0, 1, 1), (4, 1, 0, 1), (4, 0, 2, 2), (8, 0, 5, 3), (8, 6, 1, 3)],
)
def test_one_transfer_on_a_ring(n: int, src: int, dst: int, hops: int) -> None:
    nbytes = 3e6
    t = run_tasks(ring_system(n), Transfer(src, dst, nbytes))
    assert t.makespan == pytest.approx(XLAT + hops * HOP + nbytes / LINK, rel=REL)


def test_one_transfer_on_a_line_takes_the_long_way() -> None:
    t = run_tasks(line_system(5), Transfer(4, 0, 1e6))
    assert t.makespan == pytest.approx(XLAT + 4 * HOP + 1e6 / LINK, rel=REL)


def test_one_transfer_on_mk1_rail(mk1) -> None:
    # chip 0 -> 2 is one rail hop (board 0 -> board 1): 128.62 + 231 + 160 ns, then 27.72 GB/s
    nbytes = 1e6
    t = run_tasks(mk1, Transfer(0, 2, nbytes))
    assert t.makespan == pytest.approx(chip_level_on_mk1(nbytes, MK1_LINK, 1), rel=REL)


def test_one_transfer_on_mk1_two_rail_hops(mk1) -> None:
    nbytes = 5e6
    t = run_tasks(mk1, Transfer(0, 4, nbytes))
    assert t.makespan == pytest.approx(chip_level_on_mk1(nbytes, MK1_LINK, 2), rel=REL)


def test_one_transfer_on_mk1_rung_has_two_links(mk1) -> None:
    # rung_links: 2 -> 2 x 27.72 GB/s between the two IPUs of a board
    nbytes = 1e6
    t = run_tasks(mk1, Transfer(0, 1, nbytes))
    assert t.makespan == pytest.approx(chip_level_on_mk1(nbytes, 2 * MK1_LINK, 1), rel=REL)


def test_one_tile_to_one_tile_on_mk1_is_capped_by_the_tile(mk1) -> None:
    # one tile streams off-chip at 4 B/cycle x 1.6 GHz x 0.853125 = 5.46 GB/s (< the link)
    nbytes = 1e6
    t = run_tasks(mk1, Transfer(0, 2, nbytes, src_tile=0, dst_tile=7))
    expected = GC2_XLAT + GC2_EGRESS + MK1_HOP + nbytes / GC2_TILE_OFFCHIP
    assert t.makespan == pytest.approx(expected, rel=REL)


def test_few_tiles_cap_a_chip_level_transfer() -> None:
    # 2 tiles x 4 B/cycle x 1 GHz = 8 GB/s < 10 GB/s link
    t = run_tasks(ring_system(4), Transfer(0, 1, 1e6, tiles=2))
    assert t.makespan == pytest.approx(XLAT + HOP + 1e6 / 8e9, rel=REL)


def test_two_transfers_on_one_link_each_get_half() -> None:
    nbytes = 1e6
    t = run_tasks(ring_system(4), Transfer(0, 1, nbytes), Transfer(0, 1, nbytes))
    for tid in (0, 1):
        assert t.task_end[tid] == pytest.approx(XLAT + HOP + 2 * nbytes / LINK, rel=REL)


def test_two_transfers_on_mk1_rail_each_get_half(mk1) -> None:
    nbytes = 2e6
    t = run_tasks(mk1, Transfer(0, 2, nbytes), Transfer(0, 2, nbytes))
    expected = chip_level_on_mk1(nbytes, MK1_LINK, 1, sharing=2)
    assert t.task_end[0] == pytest.approx(expected, rel=REL)
    assert t.task_end[1] == pytest.approx(expected, rel=REL)


def test_opposite_directions_do_not_share() -> None:
    t = run_tasks(ring_system(4), Transfer(0, 1, 1e6), Transfer(1, 0, 1e6))
    for tid in (0, 1):
        assert t.task_end[tid] == pytest.approx(XLAT + HOP + 1e6 / LINK, rel=REL)


def test_shared_middle_link_is_the_bottleneck() -> None:
    # line 0-1-2-3: 0->2 and 1->3 share 1->2; 0->2 and 1->3 both at 5 GB/s
    t = run_tasks(line_system(4), Transfer(0, 2, 1e6), Transfer(1, 3, 1e6))
    for tid in (0, 1):
        assert t.task_end[tid] == pytest.approx(XLAT + 2 * HOP + 1e6 / 5e9, rel=REL)


def test_transfer_records_bytes_and_spans_on_its_channels() -> None:
    s = line_system(3)
    t = run_tasks(s, Transfer(0, 2, 4e6))
    route = s.chip_route(0, 2)
    assert [sp.row for sp in t.link_spans] == list(route.channels)
    for ch in range(len(s.channels)):
        expected = 4e6 if ch in route.channels else 0.0
        assert t.channel_bytes[ch] == pytest.approx(expected, rel=REL)


# ---- other task kinds ----------------------------------------------------------------------


def test_compute_time() -> None:
    # 100 tiles x 1e9 Hz x 10 fp16 FLOP/cycle = 1e12 FLOP/s
    t = run_tasks(ring_system(2), Compute(0, flops=3e9))
    assert t.makespan == pytest.approx(3e-3, rel=REL)
    # on 10 tiles, vector fp32 (2 FLOP/cycle) at efficiency 0.5: 10 x 1e9 x 2 x 0.5 = 1e10
    t = run_tasks(
        ring_system(2), Compute(0, flops=1e8, dtype="fp32", unit="vector", tiles=10, efficiency=0.5)
    )
    assert t.makespan == pytest.approx(1e-2, rel=REL)
    t = run_tasks(ring_system(2), Compute(0, flops=1e20, cycles=2500))
    assert t.makespan == pytest.approx(2.5e-6, rel=REL)


def test_one_chip_runs_one_task_at_a_time_and_chips_run_in_parallel() -> None:
    t = run_tasks(
        ring_system(2), Compute(0, flops=1e9), Compute(0, flops=1e9), Compute(1, flops=1e9)
    )
    spans = sorted(v for i in (0, 1) for v in (t.task_start[i], t.task_end[i]))
    assert spans == pytest.approx([0.0, 1e-3, 1e-3, 2e-3], rel=REL)
    assert (t.task_start[2], t.task_end[2]) == pytest.approx((0.0, 1e-3))


def test_exchange_sync_and_rng_times() -> None:
    s = ring_system(2)
    # exchange: 100 ns + 8e5 B / (100 tiles x 4 B/cycle x 1e9) = 100 ns + 2 us
    assert run_tasks(s, Exchange(0, 8e5)).makespan == pytest.approx(2.1e-6, rel=REL)
    assert run_tasks(s, Exchange(0, 8e5, tiles=10)).makespan == pytest.approx(20.1e-6, rel=REL)
    assert run_tasks(s, Sync((0,))).makespan == pytest.approx(50e-9, rel=REL)
    assert run_tasks(s, Sync((0, 1))).makespan == pytest.approx(200e-9, rel=REL)
    # RNG: 100 tiles x 1e9 x 64 bits / 32 = 2e11 uniform samples/s; Gaussian = 2 draws
    assert run_tasks(s, Rng(0, 1e9, "uniform")).makespan == pytest.approx(5e-3, rel=REL)
    assert run_tasks(s, Rng(0, 1e9)).makespan == pytest.approx(1e-2, rel=REL)
    assert run_tasks(s, Rng(0, 1e9, "uniform", tiles=50)).makespan == pytest.approx(1e-2, rel=REL)


def test_rng_holds_the_rng_unit_not_the_chip() -> None:
    s = ring_system(2)
    t = run_tasks(s, Rng(0, 1e9, "uniform"), Compute(0, flops=1e9), Rng(0, 1e9, "uniform"))
    assert t.task_start[1] == 0.0  # compute runs beside the RNG
    assert t.task_start[2] == pytest.approx(5e-3, rel=REL)  # second RNG waits for the unit
    assert t.makespan == pytest.approx(1e-2, rel=REL)


def test_transfer_holds_no_chip() -> None:
    t = run_tasks(ring_system(2), Transfer(0, 1, 1e6), Compute(0, flops=1e9))
    assert t.task_start[1] == 0.0


def test_collective_holds_its_chips() -> None:
    s = ring_system(4)
    t = run_tasks(
        s,
        Collective("all_gather", (0, 1), 2e6, "ring"),
        Compute(1, flops=1e6),
        Compute(3, flops=1e6),
    )
    assert t.task_start[2] == 0.0
    assert t.task_start[1] == pytest.approx(t.task_end[0], rel=REL)
    assert t.task_end[0] > 0


def test_dependencies_order_tasks() -> None:
    g = TaskGraph()
    a = g.add(Compute(0, flops=1e9))  # 1 ms
    b = g.add(Transfer(0, 1, 1e6), deps=[a])  # 1.1 us + 100 us
    c = g.add(Compute(1, flops=2e9), deps=[b])  # 2 ms
    t = execute(ring_system(2), g)
    assert t.task_start[b] == pytest.approx(1e-3, rel=REL)
    assert t.task_start[c] == pytest.approx(1e-3 + XLAT + HOP + 1e6 / LINK, rel=REL)
    assert t.makespan == pytest.approx(3e-3 + XLAT + HOP + 1e6 / LINK, rel=REL)
    kinds = [(s.row, s.kind) for s in t.chip_spans]
    assert kinds == [(0, "compute"), (1, "compute")]


def test_memory_load_and_store_on_m2000(m2000) -> None:
    # ddr:0 -> gw:0 (20 GB/s, 100 ns) -> ipu:0 (PCIe 16 GB/s x 0.7439, 1 us)
    pcie = 16e9 * 0.7439
    nbytes = 1e8
    expected = 100e-9 + 1e-6 + nbytes / min(20e9, pcie)
    assert run_tasks(m2000, MemLoad(0, nbytes)).makespan == pytest.approx(expected, rel=REL)
    assert run_tasks(m2000, MemStore(0, nbytes)).makespan == pytest.approx(expected, rel=REL)
    # two chips load at once: each has its own PCIe link, the DDR (20 GB/s) is shared
    t = run_tasks(m2000, MemLoad(0, nbytes), MemLoad(1, nbytes))
    assert t.makespan == pytest.approx(100e-9 + 1e-6 + nbytes / 10e9, rel=REL)


def test_memory_without_streaming_memory_is_an_error() -> None:
    with pytest.raises(ValueError, match="no Streaming Memory path for chip 0"):
        run_tasks(ring_system(2), MemLoad(0, 1.0))


def test_empty_graph() -> None:
    t = execute(ring_system(2), TaskGraph())
    assert t.makespan == 0.0 and not t.chip_spans


def test_test_chip_numbers_are_what_the_hand_values_assume() -> None:
    assert TEST_CHIP.tile_exchange_Bps == 4e9 and TEST_CHIP.peak_flops("fp16") == 1e12
    assert TEST_CHIP.uniform_samples_per_s() == 2e11


# ---- layer 5: task graph errors --------------------------------------------------------------


def test_cycle_is_named() -> None:
    g = TaskGraph()
    g.add(Compute(0, flops=1.0), deps=[2])
    g.add(Compute(0, flops=1.0), deps=[0])
    g.add(Compute(0, flops=1.0), deps=[1])
    g.add(Compute(0, flops=1.0))
    with pytest.raises(GraphError, match=r"cycle: 0 -> 1 -> 2 -> 0"):
        execute(ring_system(2), g)


def test_self_dependency_is_a_cycle() -> None:
    g = TaskGraph()
    g.add(Compute(0, flops=1.0))
    g.add(Compute(0, flops=1.0), deps=[1])
    with pytest.raises(GraphError, match=r"cycle: 1 -> 1"):
        g.validate()


def test_dependency_on_a_missing_task() -> None:
    g = TaskGraph()
    g.add(Compute(0, flops=1.0, label="fwd"))
    g.add(Compute(0, flops=1.0), deps=[5])
    with pytest.raises(
        GraphError, match=r"task 1 \(Compute\) depends on task 5, which does not exist"
    ):
        execute(ring_system(2), g)
    g2 = TaskGraph()
    g2.add(Compute(0, flops=1.0), deps=[-1])
    with pytest.raises(GraphError, match="depends on task -1"):
        g2.validate()


@pytest.mark.parametrize(
    "task",
    [
        Compute(4, flops=1.0, label="fwd"),
        Transfer(0, 9, 1.0),
        Collective("all_reduce", (0, 1, 2, 3, 4), 1.0),
        Sync((-1, 0)),
        MemLoad(7, 1.0),
    ],
)
def test_chip_out_of_range(task) -> None:
    g = TaskGraph()
    g.add(task)
    with pytest.raises(GraphError, match=r"names chip -?\d+; the system has chips 0\.\.3"):
        execute(ring_system(4), g)


def test_errors_are_raised_before_anything_runs() -> None:
    g = TaskGraph()
    g.add(Compute(0, flops=1.0))
    g.add(Compute(9, flops=1.0))
    with pytest.raises(GraphError):
        execute(ring_system(2), g)
    g.validate()  # without a system, chip ids are not checked


@pytest.mark.parametrize("root", [9, 3])
def test_collective_root_outside_its_group(root: int) -> None:
    g = TaskGraph()
    g.add(Collective("broadcast", (0, 1), 1e6, root=root, label="bcast"))
    with pytest.raises(GraphError, match=rf"task 0 \(Collective bcast\) has root {root}, "):
        execute(ring_system(4), g)


@pytest.mark.parametrize(
    "task",
    [
        Transfer(0, 1, float("nan")),
        Transfer(0, 1, float("inf")),
        Collective("all_reduce", (0, 1), float("inf")),
    ],
)
def test_non_finite_bytes_fail_instead_of_hanging(task) -> None:
    with pytest.raises(ValueError, match="finite number of bytes"):
        run_tasks(ring_system(2), task)
