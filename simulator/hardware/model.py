"""Internal hardware description in SI units — the contract between the topology builder
(:mod:`simulator.hardware.build`) and the engine.

Nothing here reads YAML: :mod:`simulator.hardware.build` (chip files, and the files of a
system) and :mod:`simulator.hardware.generate` (a system's chips and channels) convert validated
topology files (unit-suffixed keys) into these objects through :mod:`simulator.units`.

Nodes of the system graph are strings: ``ipu:<i>`` (chip i), ``gw:<m>`` (gateway of machine m),
``ddr:<m>`` (Streaming Memory of machine m), ``host:<h>``, ``sw:<name>`` (a switch). A physical
link is two directed :class:`Channel` objects, one per direction; parallel links between the same
two nodes are one channel with ``links`` > 1 and the summed capacity.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from simulator.config.assumptions import AssumptionRecord, CalibrationRecord

DTYPES = ("fp16", "fp32")


@dataclass(frozen=True, slots=True)
class TileCostModel:
    """Constants of the per-tile compute and memory cost model of one chip generation.

    Used by :mod:`simulator.workloads.cost` (op cycles on tiles) and the memory planner
    (:func:`simulator.workloads.cost.chip_memory`); every value comes from the chip YAML,
    where each carries its source. By dtype where the AMP differs per dtype.
    """

    amp_pipeline_efficiency: Mapping[str, float]  # asymptotic AMP streaming fraction (calibrated)
    amp_input_channels_per_group: Mapping[str, int]  # contraction granularity of one AMP pass
    amp_output_channels_per_group: Mapping[str, int]  # outputs per AMP pass (conv units)
    amp_coeff_load_bytes_per_cycle: float  # weight (coefficient) load rate into the AMP
    vertex_overhead_cycles: float  # fixed cost of one compute set on a tile (supervisor)
    code_base_per_tile_bytes: int  # runtime + codelets on every tile (memory planner)
    vertex_state_per_layer_per_tile_bytes: int  # per layer on every tile (memory planner)
    exchange_buffer_fraction: float  # of the widest layer's working set (memory planner)


@dataclass(frozen=True, slots=True)
class MessageCosts:
    """What one message costs beyond its bytes, per chip generation (docs/architecture.md,
    "Messages"). All zero means a pure bandwidth model (the hand-built test chips).

    Cycles are of the chip's clock. Every value comes from the chip YAML's ``messages:``
    section, where each carries its source (calibrated on ipu-hardware §4.3a or an assumption).
    """

    tile_send_cycles: float = 0.0  # the sending tile's exchange port, per message
    tile_receive_cycles: float = 0.0  # the receiving tile's exchange port, per message
    offchip_cycles: float = 0.0  # the chip's off-chip message engine, each direction
    relay_cycles: float = 0.0  # a chip forwarding a message from one IPU-Link to another
    ipu_link_overhead_bytes: float = 0.0  # header and framing a message adds on an IPU-Link
    latency_spread_cycles: float = 0.0  # half-range of tile-to-tile latencies on the chip

    def delivery_spread_s(self, messages: float, clock_hz: float) -> float:
        """Extra latency of the slowest of ``messages`` concurrent deliveries onto one chip.

        Tile-to-tile latencies are taken as spread evenly over ``mean ± spread``; a lone
        message takes the mean (the calibrated exchange latency), the slowest of n independent
        ones ``spread × (n − 1) / (n + 1)`` more (the expected maximum of n uniform draws).
        """
        if messages <= 1 or self.latency_spread_cycles <= 0:
            return 0.0
        return self.latency_spread_cycles / clock_hz * (messages - 1) / (messages + 1)


@dataclass(frozen=True, slots=True)
class SparseCostModel:
    """Constants of the block-sparse matmul model (:mod:`simulator.workloads.sparse`).

    Every value comes from the chip YAML's ``sparse:`` section, where each says which of the
    PopSparse points (docs/strategies/sparsity.md) it was solved on, or why it is assumed.
    """

    amp_efficiency: float  # AMP efficiency of an isolated non-zero block / amp_pipeline_efficiency
    vector_efficiency: float  # achieved / peak vector FLOP rate of sparse multiply-adds
    dynamic_mac_cycles: float  # extra tile-cycles per non-zero multiply-add in dynamic mode
    bucket_headroom: float  # dynamic buckets hold this many times the mean non-zeros per tile
    metadata_bytes_per_block: int  # indices stored per non-zero block


@dataclass(frozen=True, slots=True)
class ChipType:
    """One IPU generation (GC2, GC200, Bow) in internal units. Per-tile rates are per cycle."""

    name: str
    tiles: int
    sram_per_tile_bytes: int
    clock_hz: float
    threads_per_tile: int
    amp_flop_per_cycle: Mapping[str, float]  # per tile, by dtype
    vector_flop_per_cycle: Mapping[str, float]  # per tile, by dtype
    local_read_bytes_per_cycle: float  # per tile
    local_write_bytes_per_cycle: float  # per tile
    exchange_bytes_per_cycle: float  # per tile, each direction (nominal)
    exchange_efficiency: float  # achieved / nominal on-chip tile-to-tile stream (calibrated)
    offchip_tile_efficiency: float  # achieved / nominal, one tile streaming off-chip (calibrated)
    exchange_latency_s: float  # one on-chip tile-to-tile exchange with its opening sync, no load
    sync_latency_s: float  # internal (all tiles of one chip) BSP sync
    external_sync_latency_s: float  # sync across chips (Sync-Links / IPU-Links)
    link_egress_latency_s: float  # paid once by a transfer that leaves the chip over an IPU-Link
    prng_bits_per_cycle: float  # per tile, hardware maximum
    prng_efficiency: float  # achieved uniform-sample rate / hardware maximum (calibrated)
    gaussian_uniform_draws: float  # cost of one Gaussian sample in uniform draws (assumption)
    ipu_links: int
    power_W: float
    cost: TileCostModel | None = None  # per-tile cost-model constants (None: not described)
    messages: MessageCosts = MessageCosts()  # per-message costs (zero: bytes only)
    sparse: SparseCostModel | None = None  # block-sparse matmul constants (None: not described)

    @property
    def sram_bytes(self) -> int:
        """SRAM of the whole chip."""
        return self.tiles * self.sram_per_tile_bytes

    def peak_flops(self, dtype: str) -> float:
        """Peak AMP FLOP/s of the chip for a dtype."""
        return self.tiles * self.clock_hz * self.amp_flop_per_cycle[dtype]

    def peak_vector_flops(self, dtype: str) -> float:
        """Peak vector-unit FLOP/s of the chip for a dtype."""
        return self.tiles * self.clock_hz * self.vector_flop_per_cycle[dtype]

    @property
    def tile_exchange_Bps(self) -> float:
        """Achieved on-chip exchange bandwidth of one tile, each direction."""
        return self.exchange_bytes_per_cycle * self.clock_hz * self.exchange_efficiency

    @property
    def tile_offchip_Bps(self) -> float:
        """Achieved bandwidth of one tile streaming to another chip."""
        return self.exchange_bytes_per_cycle * self.clock_hz * self.offchip_tile_efficiency

    def uniform_samples_per_s(self, bits_per_sample: int = 32) -> float:
        """Achieved uniform random samples per second of the whole chip."""
        return (
            self.tiles * self.clock_hz * self.prng_bits_per_cycle / bits_per_sample
        ) * self.prng_efficiency


@dataclass(frozen=True, slots=True)
class Chip:
    """One IPU in a system: its id (index in ``System.chips``), machine, IPU-Link domain."""

    id: int
    type: ChipType
    machine: int
    domain: int  # IPU-Link domain (a POD64 or smaller); chips of one domain talk over IPU-Links

    @property
    def node(self) -> str:
        """Graph node name."""
        return f"ipu:{self.id}"


@dataclass(frozen=True, slots=True)
class Channel:
    """One direction of a link (or of several parallel links) between two graph nodes."""

    id: int
    src: str
    dst: str
    kind: str  # ipu_link | gw_link | pcie | host_link | ddr
    capacity_Bps: float  # achieved capacity of all parallel links together, this direction
    nominal_Bps: float  # vendor figure, all parallel links, this direction
    latency_s: float  # per hop
    links: int = 1
    message_overhead_bytes: float = 0.0  # header and framing each message adds on this channel


@dataclass(frozen=True, slots=True)
class Route:
    """A path between two nodes: its channels in order and its no-load latency."""

    channels: tuple[int, ...]
    latency_s: float

    @property
    def hops(self) -> int:
        return len(self.channels)


@dataclass(frozen=True, slots=True)
class StreamingMemory:
    """DDR behind each machine's gateway."""

    capacity_bytes: float
    bandwidth_Bps: float  # per machine, shared by its chips


@dataclass(frozen=True, slots=True)
class SyncModel:
    """What a BSP sync costs beyond one machine (ipu-hardware §3 "Sync scopes").

    A sync across machines of one IPU-Link domain travels the Sync-Links between machines and
    back: ``2 x machine_hop_s`` per machine it spans beyond the first. A sync across domains is
    packetised over the GW-Links: the domain syncs, then one message to the farthest gateway
    and one back, each paying the route's latency and ``gw_packet_s`` at the gateways.
    """

    machine_hop_s: float  # one way, per Sync-Link hop between neighbouring machines
    gw_packet_s: float  # gateway processing of one sync packet, per crossing


@dataclass(frozen=True, slots=True)
class Hosts:
    """The host servers that drive a system, and what they cost per step."""

    count: int  # host servers
    instances: int  # runtime instances (poprun processes) sharing them; a step syncs them all
    step_overhead_s: float  # host-side work per step per instance (loop, launch)
    samples_per_s_per_host: float | None  # data-pipeline throughput; None: synthetic data


@dataclass(frozen=True)
class SystemInfo:
    """Descriptive facts that are not part of the graph (for ``topology show``).

    ``assumptions`` and ``calibrations``: the ``assumptions:`` / ``calibrated:`` blocks of the
    system file and its chip file (:mod:`simulator.config.assumptions`), chip first.
    """

    description: str = ""
    power_W: float = 0.0
    machines: int = 0
    extra: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    assumptions: tuple[AssumptionRecord, ...] = ()
    calibrations: tuple[CalibrationRecord, ...] = ()
