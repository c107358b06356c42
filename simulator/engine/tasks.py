"""Frozen task types — what a strategy hands the engine (cf. Chakra's typed nodes).

A task says *what* happens; the executor decides *when* (dependencies, resources) and the
hardware model *how long*. All sizes are bytes, work is FLOP, times are seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

CollectiveKind = Literal[
    "all_reduce",
    "reduce_scatter",
    "all_gather",
    "all_to_all",
    "broadcast",
    "reduce",
    "gather",
    "scatter",
]
COLLECTIVE_KINDS: tuple[str, ...] = (
    "all_reduce",
    "reduce_scatter",
    "all_gather",
    "all_to_all",
    "broadcast",
    "reduce",
    "gather",
    "scatter",
)
Algorithm = Literal[
    "auto", "ring", "bidirectional_ring", "meet_in_middle", "hierarchical", "direct", "broadcast"
]
ALGORITHMS: tuple[str, ...] = (
    "auto",
    "ring",
    "bidirectional_ring",
    "meet_in_middle",
    "hierarchical",
    "direct",
    "broadcast",
)


@dataclass(frozen=True, slots=True)
class Compute:
    """Work on a chip's tiles: ``flops`` on the AMP (``unit='amp'``) or vector units.

    ``tiles`` is how many tiles the work is spread over (None: all); ``efficiency`` is the
    fraction of peak the kernel reaches on those tiles; ``cycles`` (if given) overrides the
    FLOP-based estimate with a cost model's own cycle count for the slowest tile.
    """

    chip: int
    flops: float = 0.0
    dtype: str = "fp16"
    unit: Literal["amp", "vector"] = "amp"
    tiles: int | None = None
    efficiency: float = 1.0
    cycles: float | None = None
    label: str = ""
    kind: Literal["compute", "recompute", "optimizer"] = "compute"


@dataclass(frozen=True, slots=True)
class Exchange:
    """An on-chip exchange phase moving ``bytes`` spread over ``tiles`` tiles (None: all).

    ``cycles`` (if given) is a cost model's own count for the phase, replacing the estimate
    exchange latency + bytes / (tiles x tile exchange rate).
    """

    chip: int
    bytes: float
    tiles: int | None = None
    cycles: float | None = None
    label: str = ""


@dataclass(frozen=True, slots=True)
class Rng:
    """Random numbers drawn on a chip's RNG units (per-tile hardware PRNG)."""

    chip: int
    samples: float
    distribution: Literal["uniform", "gaussian", "bernoulli"] = "gaussian"
    tiles: int | None = None
    label: str = ""


@dataclass(frozen=True, slots=True)
class Transfer:
    """Bytes from one chip to another over the system's routes.

    Tile level: ``src_tile`` and ``dst_tile`` name one tile each (the stream is limited by that
    tile's exchange port). Chip level (both None): the bytes are spread over ``tiles`` tiles of
    each end (None: all tiles).
    """

    src: int
    dst: int
    bytes: float
    src_tile: int | None = None
    dst_tile: int | None = None
    tiles: int | None = None
    label: str = ""


@dataclass(frozen=True, slots=True)
class TileMessages:
    """One exchange phase of single-tile messages: each ``(src, src_tile, dst, dst_tile)``
    sends ``bytes`` from one tile to one tile (possibly on the same chip). The phase ends when
    the last message lands; messages landing on one chip wait for the slowest of them
    (:mod:`simulator.engine.messages`)."""

    sends: tuple[tuple[int, int, int, int], ...]
    bytes: float
    label: str = ""


@dataclass(frozen=True, slots=True)
class TileMulticast:
    """One message of ``bytes`` sent once by tile ``src_tile`` of chip ``src`` and received by
    tiles ``0..tiles-1`` of every chip in ``dsts`` (the sending tile excluded): the exchange's
    hardware multicast. Across IPU-Links it crosses each link of its routes once."""

    src: int
    src_tile: int
    dsts: tuple[int, ...]
    tiles: int
    bytes: float
    label: str = ""


@dataclass(frozen=True, slots=True)
class Collective:
    """A collective over ``group`` (chip ids; order is ring order) with ``bytes`` per chip."""

    kind: CollectiveKind
    group: tuple[int, ...]
    bytes: float
    algorithm: Algorithm = "auto"
    root: int | None = None
    dtype: str = "fp32"  # element type for the reduction arithmetic
    tiles: int | None = None
    label: str = ""


@dataclass(frozen=True, slots=True)
class Sync:
    """``count`` BSP barriers over ``group`` (one chip: internal sync; several: external).

    ``across``: further chips the barrier spans without this task holding them — the other
    replicas of a replicated program, which run the same schedule and sync together (only one
    replica is simulated). The cost follows the scope of ``group`` and ``across`` together
    (:meth:`simulator.hardware.system.System.sync_latency_s`).
    """

    group: tuple[int, ...]
    count: int = 1
    label: str = ""
    across: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class HostSync:
    """The end of a step on the hosts: every instance finishes its host-side work, the
    instances meet in a barrier, and the chips sync with them (``group`` held, ``across`` as in
    :class:`Sync`). Costs what the system's :class:`~simulator.hardware.model.Hosts` say."""

    group: tuple[int, ...]
    label: str = ""
    across: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class HostLoad:
    """A host writes input data for ``chip`` into the Streaming Memory of the chip's machine
    (host -> Host-Link -> gateway -> DDR), where the chip reads it (a :class:`MemLoad`).

    ``samples``: how many samples the bytes hold, for the hosts' data-pipeline limit;
    ``sharing``: identical streams (other replicas) that the same host feeds at the same time.
    """

    chip: int
    bytes: float
    samples: float
    sharing: int = 1
    label: str = ""


@dataclass(frozen=True, slots=True)
class MemLoad:
    """Bytes streamed into a chip from its Streaming Memory (DDR behind its gateway) or, with
    ``source='host'``, from the nearest host; ``tile`` names one receiving tile (None: the
    bytes are spread over the chip's tiles)."""

    chip: int
    bytes: float
    source: Literal["ddr", "host"] = "ddr"
    tile: int | None = None
    label: str = ""
    hold: bool = False  # an exchange phase of the chip: it computes nothing meanwhile
    input: bool = False  # training input written there by a host (not offloaded state)


@dataclass(frozen=True, slots=True)
class MemStore:
    """Bytes written to the chip's Streaming Memory."""

    chip: int
    bytes: float
    label: str = ""


Task = (
    Compute
    | Exchange
    | Rng
    | Transfer
    | TileMessages
    | TileMulticast
    | Collective
    | Sync
    | HostSync
    | HostLoad
    | MemLoad
    | MemStore
)

TASK_KIND: dict[type, str] = {
    Compute: "compute",
    Exchange: "exchange",
    Rng: "rng",
    Transfer: "transfer",
    TileMessages: "transfer",
    TileMulticast: "transfer",
    Collective: "collective",
    Sync: "sync",
    HostSync: "host",
    HostLoad: "host_io",
    MemLoad: "memory",
    MemStore: "memory",
}


def chips_of(task: Task) -> tuple[int, ...]:
    """Chips a task names (for validation against a system)."""
    if isinstance(task, Transfer):
        return (task.src, task.dst)
    if isinstance(task, TileMessages):
        return tuple(sorted({c for s in task.sends for c in (s[0], s[2])}))
    if isinstance(task, TileMulticast):
        return (task.src, *task.dsts)
    if isinstance(task, Collective):
        return task.group
    if isinstance(task, Sync | HostSync):
        return task.group + task.across
    return (task.chip,)
