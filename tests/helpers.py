"""Small hand-built systems for engine tests (independent of the shipped YAML topologies).

The numbers here are test fixtures with round values so that expected times can be computed
by hand; they are not hardware facts.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from types import MappingProxyType

from simulator.engine.executor import execute
from simulator.engine.graph import TaskGraph
from simulator.engine.tasks import Collective, Task
from simulator.engine.trace import Trace
from simulator.hardware.model import Channel, Chip, ChipType
from simulator.hardware.system import System

#: A scenario that runs in milliseconds (an MLP, data-parallel over one M2000), the base of the
#: sweep and plan tests' generated files.
TINY_DATA_SCENARIO = """\
schema_version: 1
name: tiny
topology: m2000
model: mlp
strategy:
  type: data
training:
  micro_batch: 16
  grad_accum: 1
"""


def stored_points(store: Path) -> int:
    """Points finished in the results store at ``store`` (0 while it does not exist yet), read
    without writing, so a sweep writing it meanwhile is not disturbed."""
    try:
        con = sqlite3.connect(f"{store.resolve().as_uri()}?mode=ro", uri=True)
        try:
            return int(con.execute("SELECT count(*) FROM points").fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def inline_gc200_ring(chips: int) -> dict[str, object]:
    """An inline system file: one machine of ``chips`` GC200s on an IPU-Link ring (2 links per
    edge), for scenarios that need a chip count no shipped system has."""
    return {
        "schema_version": 1,
        "kind": "system",
        "name": f"ring{chips}",
        "chip": "gc200",
        "machines_per_pod": 1,
        "chips_per_machine": chips,
        "ipu_link_GBps": 32,
        "ipu_link_efficiency": 0.9,
        "ipu_link_hop_latency_ns": 160,
        "fabric": {"pattern": "ring", "links": 2} if chips > 1 else {"pattern": "none"},
    }


TEST_CHIP = ChipType(
    name="testchip",
    tiles=100,
    sram_per_tile_bytes=1000,
    clock_hz=1e9,
    threads_per_tile=6,
    amp_flop_per_cycle=MappingProxyType({"fp16": 10.0, "fp32": 5.0}),
    vector_flop_per_cycle=MappingProxyType({"fp16": 4.0, "fp32": 2.0}),
    local_read_bytes_per_cycle=16,
    local_write_bytes_per_cycle=8,
    exchange_bytes_per_cycle=4,
    exchange_efficiency=1.0,
    offchip_tile_efficiency=1.0,
    exchange_latency_s=100e-9,
    sync_latency_s=50e-9,
    external_sync_latency_s=200e-9,
    link_egress_latency_s=0.0,
    prng_bits_per_cycle=64,
    prng_efficiency=1.0,
    gaussian_uniform_draws=2.0,
    ipu_links=10,
    power_W=100.0,
)


def ring_system(
    n: int,
    link_Bps: float = 10e9,
    hop_s: float = 1e-6,
    chip: ChipType = TEST_CHIP,
    bidirectional: bool = True,
) -> System:
    """``n`` chips on a ring; each link ``link_Bps`` per direction and ``hop_s`` latency."""
    chips = [Chip(i, chip, machine=i, domain=0) for i in range(n)]
    channels: list[Channel] = []
    for i in range(n):
        j = (i + 1) % n
        if n == 2 and i == 1:
            break
        pairs = [(i, j), (j, i)] if bidirectional else [(i, j)]
        for a, b in pairs:
            channels.append(
                Channel(
                    len(channels), f"ipu:{a}", f"ipu:{b}", "ipu_link", link_Bps, link_Bps, hop_s
                )
            )
    return System(f"ring{n}", chips, channels)


def line_system(n: int, link_Bps: float = 10e9, hop_s: float = 1e-6) -> System:
    """``n`` chips on a line (no wrap-around)."""
    chips = [Chip(i, TEST_CHIP, machine=i, domain=0) for i in range(n)]
    channels: list[Channel] = []
    for i in range(n - 1):
        for a, b in ((i, i + 1), (i + 1, i)):
            channels.append(
                Channel(
                    len(channels), f"ipu:{a}", f"ipu:{b}", "ipu_link", link_Bps, link_Bps, hop_s
                )
            )
    return System(f"line{n}", chips, channels)


def run_tasks(system: System, *tasks: Task, fast_collectives: bool = True) -> Trace:
    """Execute independent ``tasks`` (no dependencies between them) on ``system``."""
    graph = TaskGraph()
    graph.add_all(tasks)
    return execute(system, graph, fast_collectives=fast_collectives)


def run_collective(
    system: System,
    kind: str,
    group: tuple[int, ...],
    nbytes: float,
    algorithm: str = "ring",
    *,
    fast_collectives: bool = True,
) -> Trace:
    """Trace of one Collective run alone on ``system``."""
    task = Collective(kind, group, nbytes, algorithm)  # type: ignore[arg-type]
    return run_tasks(system, task, fast_collectives=fast_collectives)


def ring_alpha_beta(system: System, ring: Sequence[int]) -> tuple[float, float]:
    """α: the group's sync + exchange latency + route latency of the slowest ring step;
    β: narrowest ring link. Read from the System objects, not from the code under test."""
    alpha, beta = 0.0, float("inf")
    for i, a in enumerate(ring):
        route = system.chip_route(a, ring[(i + 1) % len(ring)])
        alpha = max(alpha, system.chips[a].type.exchange_latency_s + route.latency_s)
        beta = min([beta, *(system.channels[c].capacity_Bps for c in route.channels)])
    return alpha + system.sync_latency_s(ring), beta
