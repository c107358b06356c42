"""Schemas of the two hardware file kinds: chip files (``topologies/chips/*.yaml``) and system
files (``topologies/*.yaml``).

Keys carry their unit in the name (``clock_hz``, ``ipu_link_GBps``, ``exchange_latency_ns``);
:mod:`simulator.hardware.build` turns them into SI through :mod:`simulator.units` — nothing here
converts. A system file names its chip (``chip: gc200``) and *generates* its links from a few keys
(a wiring pattern per IPU-Link domain, machines with gateways, GW-Links between pods, hosts),
so that a 1,024-chip system is as short as a 4-chip one and cannot disagree with itself.

Only single values are checked here (types, ranges). Checks that relate keys to each other or
need the chip type or the whole graph (torus shape vs chip count, pods without GW-Links, links
per chip, connectivity, edges naming missing chips) live in :mod:`simulator.hardware.generate`,
which reports each at the key that causes it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from simulator.config.assumptions import (
    ASSUMPTIONS_DESCRIPTION,
    CALIBRATED_DESCRIPTION,
    Assumptions,
    Calibrations,
)
from simulator.config.base import (
    Fraction,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    SchemaVersion,
    StrictModel,
)
from simulator.config.jsonschema import register_file_kind
from simulator.config.limits import MAX_CHIPS, MAX_TILES

#: A count of chips or machines: each is generated, so it is bounded (docs/config.md, Limits).
ChipCount = Annotated[int, Field(gt=0, le=MAX_CHIPS)]

# ---------------------------------------------------------------------------------------------
# Chip files
# ---------------------------------------------------------------------------------------------


class DtypeRates(StrictModel):
    """A per-tile, per-cycle rate for each dtype the simulator models."""

    fp16: PositiveFloat
    fp32: PositiveFloat


class DtypeFractions(StrictModel):
    """A fraction in (0, 1] for each dtype the simulator models."""

    fp16: Fraction
    fp32: Fraction


class DtypeCounts(StrictModel):
    """A positive whole number for each dtype the simulator models."""

    fp16: PositiveInt
    fp32: PositiveInt


class MessageKeys(StrictModel):
    """Per-message costs of the exchange and the IPU-Links (docs/architecture.md, "Messages")."""

    tile_send_cycles: NonNegativeFloat = Field(
        description="sending tile's exchange port, per message, beyond the message's bytes"
    )
    tile_receive_cycles: NonNegativeFloat = Field(
        description="receiving tile's exchange port, per message, beyond the message's bytes"
    )
    offchip_cycles: NonNegativeFloat = Field(
        description="the chip's off-chip message engine, per message, each direction"
    )
    relay_cycles: NonNegativeFloat = Field(
        description="a chip forwarding a message between two of its IPU-Links, per message"
    )
    ipu_link_overhead_bytes: NonNegativeFloat = Field(
        description="header and framing one message adds on an IPU-Link"
    )
    latency_spread_cycles: NonNegativeFloat = Field(
        description="half-range of tile-to-tile latencies (slowest of n deliveries)"
    )


class SparseChip(StrictModel):
    """``sparse:`` of a chip file: constants of the block-sparse matmul model
    (simulator/workloads/sparse.py; docs/strategies/sparsity.md)."""

    amp_efficiency: Fraction = Field(
        description="AMP efficiency on an isolated non-zero block, as a fraction of "
        "amp_pipeline_efficiency (calibrated)"
    )
    vector_efficiency: Fraction = Field(
        description="achieved fraction of the vector FLOP rate in sparse multiply-adds (calibrated)"
    )
    dynamic_mac_cycles: NonNegativeFloat = Field(
        description="extra tile-cycles per non-zero multiply-add in dynamic mode (calibrated)"
    )
    bucket_headroom: Annotated[float, Field(ge=1, le=16, allow_inf_nan=False)] = Field(
        description="dynamic buckets hold this many times the mean non-zero blocks per tile"
    )
    metadata_bytes_per_block: NonNegativeInt = Field(
        description="bytes of indices stored per non-zero block"
    )


class ChipFile(StrictModel):
    """One IPU generation. Every field maps onto :class:`simulator.hardware.model.ChipType`."""

    schema_version: SchemaVersion
    kind: Literal["chip"]
    name: str | None = Field(default=None, description="defaults to the file stem")
    description: str = ""
    tiles: Annotated[int, Field(gt=0, le=MAX_TILES)]
    sram_per_tile_bytes: PositiveInt
    clock_hz: PositiveFloat
    threads_per_tile: PositiveInt
    amp_flop_per_cycle: DtypeRates = Field(description="AMP (matrix) FLOP per cycle per tile")
    vector_flop_per_cycle: DtypeRates = Field(description="vector FLOP per cycle per tile")
    local_read_bytes_per_cycle: PositiveFloat
    local_write_bytes_per_cycle: PositiveFloat
    exchange_bytes_per_cycle: PositiveFloat = Field(description="per tile, each direction")
    exchange_efficiency: Fraction = Field(description="achieved/nominal on-chip tile stream")
    offchip_tile_efficiency: Fraction = Field(description="achieved/nominal one tile off-chip")
    exchange_latency_ns: NonNegativeFloat = Field(description="on-chip transfer incl. its sync")
    sync_latency_ns: NonNegativeFloat = Field(description="internal BSP sync of one chip")
    external_sync_latency_ns: NonNegativeFloat = Field(description="BSP sync across chips")
    link_egress_latency_ns: NonNegativeFloat = Field(description="once per off-chip transfer")
    prng_bits_per_cycle: PositiveFloat = Field(description="per tile, hardware maximum")
    prng_efficiency: Fraction = Field(description="achieved uniform rate / hardware maximum")
    gaussian_uniform_draws: PositiveFloat = Field(description="uniform draws per Gaussian")
    ipu_links: NonNegativeInt
    power_W: PositiveFloat
    # Per-tile cost model (simulator.workloads.cost) and memory planner constants.
    amp_pipeline_efficiency: DtypeFractions = Field(
        description="asymptotic fraction of AMP peak while streaming (calibrated)"
    )
    amp_input_channels_per_group: DtypeCounts = Field(
        description="contraction elements per AMP pass; shorter inputs are padded"
    )
    amp_output_channels_per_group: DtypeCounts = Field(
        description="outputs per AMP pass (conv units); fewer outputs are padded"
    )
    amp_coeff_load_bytes_per_cycle: PositiveFloat = Field(
        description="weight load rate into the AMP, per tile"
    )
    vertex_overhead_cycles: NonNegativeFloat = Field(
        description="fixed cycles of one compute set on a tile"
    )
    code_base_per_tile_bytes: NonNegativeInt = Field(description="runtime and codelets per tile")
    vertex_state_per_layer_per_tile_bytes: NonNegativeInt = Field(
        description="vertex state and exchange code per layer per tile"
    )
    exchange_buffer_fraction: NonNegativeFloat = Field(
        description="of the widest layer's working set held as exchange copies"
    )
    messages: MessageKeys = Field(description="per-message costs of exchange and IPU-Links")
    sparse: SparseChip | None = Field(
        default=None, description="block-sparse matmul constants (absent: no sparse model)"
    )
    assumptions: Assumptions = Field(default_factory=dict, description=ASSUMPTIONS_DESCRIPTION)
    calibrated: Calibrations = Field(default_factory=dict, description=CALIBRATED_DESCRIPTION)


# ---------------------------------------------------------------------------------------------
# System files: IPU-Link wiring patterns (applied inside each pod = IPU-Link domain)
# ---------------------------------------------------------------------------------------------


class LadderPattern(StrictModel):
    """IPU pairs (2k, 2k+1) joined by a rung; rails join chip i to chip i+2.

    ``wrap: true`` closes each rail into a ring (Graphcore's POD64 2D torus); rails of fewer
    than three chips are not wrapped (the closing link would duplicate the open one).
    """

    pattern: Literal["ladder"]
    rung_links: PositiveInt
    rail_links: PositiveInt
    wrap: bool


class Torus2dPattern(StrictModel):
    """rows × cols grid (chip r·cols + c), rows and columns closed into rings."""

    pattern: Literal["torus2d"]
    rows: PositiveInt
    cols: PositiveInt
    row_links: PositiveInt = Field(description="links between neighbours in a row")
    col_links: PositiveInt = Field(description="links between neighbours in a column")


class RingPattern(StrictModel):
    """Chip i joined to chip i+1, the last to the first."""

    pattern: Literal["ring"]
    links: PositiveInt


class FullyConnectedPattern(StrictModel):
    """Every pair of chips joined directly."""

    pattern: Literal["fully_connected"]
    links: PositiveInt


class SwitchPattern(StrictModel):
    """Every chip joined to one switch node per pod (``sw:ipu<p>``); hypothetical fabric."""

    pattern: Literal["switch"]
    links: PositiveInt = Field(description="links from each chip to the switch")
    switch_latency_ns: NonNegativeFloat = Field(default=0.0, description="added per crossing")


class ExplicitPattern(StrictModel):
    """Edges listed one by one: ``[a, b]`` or ``[a, b, links]`` (default 1 link), chip ids
    local to the pod. Ranges and self-loops are checked by the builder, which knows the lines."""

    pattern: Literal["explicit"]
    edges: list[Annotated[list[NonNegativeInt], Field(min_length=2, max_length=3)]] = Field(
        min_length=1
    )


class NoLinksPattern(StrictModel):
    """No IPU-Links (a single chip, or chips that only meet through gateways)."""

    pattern: Literal["none"]


Fabric = Annotated[
    LadderPattern
    | Torus2dPattern
    | RingPattern
    | FullyConnectedPattern
    | SwitchPattern
    | ExplicitPattern
    | NoLinksPattern,
    Field(discriminator="pattern"),
]

PATTERNS = ("ladder", "torus2d", "ring", "fully_connected", "switch", "explicit", "none")


# ---------------------------------------------------------------------------------------------
# System files: machines, gateways, GW-Links, hosts
# ---------------------------------------------------------------------------------------------


class Gateway(StrictModel):
    """The IPU-Gateway of each machine (M2000/Bow-2000): PCIe to its chips, Streaming Memory."""

    pcie_GBps: PositiveFloat = Field(description="per chip, per direction, nominal")
    pcie_efficiency: Fraction
    pcie_latency_ns: NonNegativeFloat
    streaming_memory_GB: PositiveFloat = Field(description="DDR capacity per machine")
    streaming_memory_GBps: PositiveFloat = Field(description="DDR bandwidth per machine")
    streaming_memory_latency_ns: NonNegativeFloat


class GwLinks(StrictModel):
    """GW-Links (IPU-Link over 100 GbE) from every gateway to the switch ``sw:gw``."""

    links_per_machine: PositiveInt
    link_Gbps: PositiveFloat = Field(description="per link, per direction, nominal")
    efficiency: Fraction
    latency_ns: NonNegativeFloat = Field(description="gateway to switch, one way")


class HostRuntime(StrictModel):
    """What the hosts do once per step, and how fast they make input (both host kinds)."""

    hosts: PositiveInt = 1
    instances: PositiveInt | None = Field(
        default=None,
        description="runtime instances (poprun processes) driving the system; default: hosts",
    )
    step_overhead_us: NonNegativeFloat = Field(
        default=0.0, description="host-side work per step per instance (loop, launch)"
    )
    samples_per_s_per_host: PositiveFloat | None = Field(
        default=None, description="host data-pipeline throughput; absent: synthetic data"
    )


class PcieHost(HostRuntime):
    """Hosts reached over PCIe (Mk1 server): chip -> PCIe switch -> uplink -> host."""

    via: Literal["pcie"]
    chips_per_switch: PositiveInt
    pcie_GBps: PositiveFloat = Field(description="per chip, per direction, nominal")
    pcie_efficiency: Fraction
    uplink_GBps: PositiveFloat = Field(description="switch to host, per direction, nominal")
    uplink_efficiency: Fraction
    latency_ns: NonNegativeFloat = Field(description="host to chip, whole path, no load")


class GatewayHost(HostRuntime):
    """Hosts reached over RoCE through each machine's gateway (M2000/Bow-2000)."""

    via: Literal["gateway"]
    links_per_machine: PositiveInt
    link_Gbps: PositiveFloat = Field(description="per link, per direction, nominal")
    efficiency: Fraction
    latency_ns: NonNegativeFloat = Field(description="host to gateway, one way")


Host = Annotated[PcieHost | GatewayHost, Field(discriminator="via")]


class SyncSection(StrictModel):
    """Syncs beyond one machine (see :class:`simulator.hardware.model.SyncModel`)."""

    machine_hop_ns: NonNegativeFloat = Field(
        description="Sync-Link, one way, per hop between neighbouring machines"
    )
    gw_packet_ns: NonNegativeFloat = Field(
        default=0.0, description="gateway processing of one sync packet over GW-Links"
    )


class SystemFile(StrictModel):
    """A system: ``pods`` IPU-Link domains of ``machines_per_pod`` machines each."""

    schema_version: SchemaVersion
    kind: Literal["system"]
    name: str | None = Field(default=None, description="defaults to the file stem")
    description: str = ""
    hypothetical: bool = Field(default=False, description="not a product; for what-if runs")
    chip: str = Field(description="a chip file name (topologies/chips/) or path")
    pods: ChipCount = 1
    machines_per_pod: ChipCount
    chips_per_machine: ChipCount
    machine_power_W: PositiveFloat | None = Field(
        default=None, description="per machine incl. gateway; default chips × chip power_W"
    )
    ipu_link_GBps: PositiveFloat = Field(description="per link, per direction, nominal")
    ipu_link_efficiency: Fraction
    ipu_link_hop_latency_ns: NonNegativeFloat
    fabric: Fabric
    gateway: Gateway | None = None
    gw_links: GwLinks | None = None
    host: Host | None = None
    sync: SyncSection | None = Field(
        default=None, description="syncs beyond one machine; absent: every sync costs the chip's"
    )
    assumptions: Assumptions = Field(default_factory=dict, description=ASSUMPTIONS_DESCRIPTION)
    calibrated: Calibrations = Field(default_factory=dict, description=CALIBRATED_DESCRIPTION)

    @property
    def chips_per_pod(self) -> int:
        """Chips in one IPU-Link domain."""
        return self.machines_per_pod * self.chips_per_machine


register_file_kind("chip", ChipFile)
register_file_kind("system", SystemFile)
