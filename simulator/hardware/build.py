"""Build a :class:`System` from a system file (and the chip file it names).

Reading goes through the config layer (positions kept, strict schemas); unit-suffixed keys
become SI only through :mod:`simulator.units`. The links are *generated*: the ``fabric`` pattern
wires each pod (IPU-Link domain), every machine gets a gateway with PCIe to its chips and
Streaming Memory behind it, gateways join the GW-Link switch, hosts hang off gateways or PCIe
switches. Whatever the schema cannot decide alone is checked here and reported at the key that
causes it: an unknown pattern, an explicit edge to a chip that does not exist, a chip with more
IPU-Links than its type has, a system whose chips cannot all reach each other.

Node names: ``ipu:<i>``, ``gw:<m>``, ``ddr:<m>``, ``host:<h>``, ``sw:gw`` (GW-Link switch),
``sw:ipu<p>`` (switch pattern of pod p), ``sw:pcie<k>`` (host PCIe switch k).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel

from simulator.config import limits, paths
from simulator.config.assumptions import (
    AssumptionRecord,
    CalibrationRecord,
    check_blocks,
    records,
)
from simulator.config.load import check_kind, render_path, validate
from simulator.config.topology import (
    PATTERNS,
    ChipFile,
    ExplicitPattern,
    GatewayHost,
    LadderPattern,
    PcieHost,
    SwitchPattern,
    SystemFile,
    Torus2dPattern,
)
from simulator.config.yamlio import Document, KeyPath, load_document
from simulator.errors import InputError, did_you_mean, one_of
from simulator.hardware.model import (
    Channel,
    Chip,
    ChipType,
    Hosts,
    MessageCosts,
    SparseCostModel,
    StreamingMemory,
    SyncModel,
    SystemInfo,
    TileCostModel,
)
from simulator.hardware.patterns import Bundle, bundles
from simulator.hardware.system import System
from simulator.units import to_internal, unit_of

INLINE_LABEL = "<inline topology>"


def si(model: BaseModel, key: str) -> float:
    """The value of ``model.key`` in internal units, read from the key's unit suffix."""
    unit = unit_of(key)
    assert unit is not None, f"{key} has no unit suffix"
    return to_internal(float(getattr(model, key)), unit)


# ---- chip files ---------------------------------------------------------------------------------


def chip_type_from(cf: ChipFile, name: str) -> ChipType:
    """A validated chip file as a :class:`ChipType` in internal units."""
    return ChipType(
        name=cf.name or name,
        tiles=cf.tiles,
        sram_per_tile_bytes=int(si(cf, "sram_per_tile_bytes")),
        clock_hz=si(cf, "clock_hz"),
        threads_per_tile=cf.threads_per_tile,
        amp_flop_per_cycle=MappingProxyType(cf.amp_flop_per_cycle.model_dump()),
        vector_flop_per_cycle=MappingProxyType(cf.vector_flop_per_cycle.model_dump()),
        local_read_bytes_per_cycle=cf.local_read_bytes_per_cycle,
        local_write_bytes_per_cycle=cf.local_write_bytes_per_cycle,
        exchange_bytes_per_cycle=cf.exchange_bytes_per_cycle,
        exchange_efficiency=cf.exchange_efficiency,
        offchip_tile_efficiency=cf.offchip_tile_efficiency,
        exchange_latency_s=si(cf, "exchange_latency_ns"),
        sync_latency_s=si(cf, "sync_latency_ns"),
        external_sync_latency_s=si(cf, "external_sync_latency_ns"),
        link_egress_latency_s=si(cf, "link_egress_latency_ns"),
        prng_bits_per_cycle=cf.prng_bits_per_cycle,
        prng_efficiency=cf.prng_efficiency,
        gaussian_uniform_draws=cf.gaussian_uniform_draws,
        ipu_links=cf.ipu_links,
        power_W=si(cf, "power_W"),
        cost=TileCostModel(
            amp_pipeline_efficiency=MappingProxyType(cf.amp_pipeline_efficiency.model_dump()),
            amp_input_channels_per_group=MappingProxyType(
                cf.amp_input_channels_per_group.model_dump()
            ),
            amp_output_channels_per_group=MappingProxyType(
                cf.amp_output_channels_per_group.model_dump()
            ),
            amp_coeff_load_bytes_per_cycle=cf.amp_coeff_load_bytes_per_cycle,
            vertex_overhead_cycles=cf.vertex_overhead_cycles,
            code_base_per_tile_bytes=int(si(cf, "code_base_per_tile_bytes")),
            vertex_state_per_layer_per_tile_bytes=int(
                si(cf, "vertex_state_per_layer_per_tile_bytes")
            ),
            exchange_buffer_fraction=cf.exchange_buffer_fraction,
        ),
        messages=MessageCosts(**cf.messages.model_dump()),
        sparse=None
        if cf.sparse is None
        else SparseCostModel(
            amp_efficiency=cf.sparse.amp_efficiency,
            vector_efficiency=cf.sparse.vector_efficiency,
            dynamic_mac_cycles=cf.sparse.dynamic_mac_cycles,
            bucket_headroom=cf.sparse.bucket_headroom,
            metadata_bytes_per_block=cf.sparse.metadata_bytes_per_block,
        ),
    )


def load_chip_type(spec: str | Path, *, relative_to: str | Path | None = None) -> ChipType:
    """Read a chip file (a built-in name such as ``gc200`` or a path) as a :class:`ChipType`."""
    path = paths.resolve(spec, "chip", relative_to)
    doc = load_document(path)
    check_kind(doc, "chip", required=True)
    cf = validate(doc, ChipFile)
    check_blocks(doc, ChipFile)
    return chip_type_from(cf, path.stem)


# ---- system files -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Where:
    """Maps a key path of the system file to ``(file, line, key path)`` for error messages."""

    doc: Document
    at: KeyPath = ()

    def error(self, message: str, *keys: str | int) -> InputError:
        path = (*self.at, *keys)
        file, line = self.doc.location(path)
        return InputError(message, file=file, line=line, key_path=render_path(path) or None)


@dataclass(frozen=True)
class SystemSource:
    """The files a system is built from, kept so that variants of it can be built.

    ``data``: the system file's data (an inline mapping completed with ``schema_version`` and
    ``kind``); ``where``: its document and key path, for errors; ``chip_doc``: the chip file;
    ``host``: a scenario's overrides of the ``host:`` section. :func:`build_source` builds the
    System, optionally with other system or chip data (:mod:`simulator.sensitivity` replaces
    one assumed value at a time).
    """

    data: Mapping[str, Any]
    where: _Where
    name: str
    chip_doc: Document
    chip_name: str
    host: Mapping[str, Any] | None = None
    host_at: tuple[Document, KeyPath] | None = None


def system_source(
    spec: str | Path | Mapping[str, Any],
    *,
    origin: Document | None = None,
    at: KeyPath = (),
    relative_to: str | Path | None = None,
    host: Mapping[str, Any] | None = None,
    host_at: tuple[Document, KeyPath] | None = None,
) -> SystemSource:
    """Find and read the files of the system named by ``spec`` (see :func:`load_system`)."""
    if isinstance(spec, Mapping):
        data = {"schema_version": 1, "kind": "system", **spec}
        doc = origin if origin is not None else Document(data, INLINE_LABEL)
        where = _Where(doc, at if origin is not None else ())
        default_name = "inline"
        base = Path(doc.file) if origin is not None and Path(doc.file).is_file() else None
    else:
        path = paths.resolve(spec, "system", relative_to)
        doc = load_document(path)
        data, where, default_name, base = doc.data, _Where(doc), path.stem, path
        check_kind(doc, "system", required=True)
    _check_pattern(data, where)
    sf = validate(where.doc, SystemFile, at=where.at, data=data)
    check_blocks(where.doc, SystemFile, at=where.at, data=data)
    try:
        chip_path = paths.resolve(sf.chip, "chip", base)
        chip_doc = load_document(chip_path)
        check_kind(chip_doc, "chip", required=True)
        validate(chip_doc, ChipFile)
        check_blocks(chip_doc, ChipFile)
    except InputError as exc:
        raise _relocate(exc, where, "chip") from None
    name = sf.name or default_name
    return SystemSource(data, where, name, chip_doc, chip_path.stem, host, host_at)


def build_source(
    src: SystemSource,
    *,
    system_data: Mapping[str, Any] | None = None,
    chip_data: Mapping[str, Any] | None = None,
    chip: ChipType | None = None,
) -> System:
    """The System of ``src`` (or of ``src`` with its system or chip data replaced).

    ``chip``: the chip type when the caller already built it from the same chip data.
    """
    data = system_data if system_data is not None else src.data
    sf = validate(src.where.doc, SystemFile, at=src.where.at, data=data)
    if src.host:
        if sf.host is None:
            doc, key = src.host_at if src.host_at is not None else (src.where.doc, src.where.at)
            raise _Where(doc, key).error(
                f"system '{src.name}' has no hosts to override (its file has no host: section)"
            )
        sf = sf.model_copy(update={"host": sf.host.model_copy(update=dict(src.host))})
    cf = validate(src.chip_doc, ChipFile, data=chip_data)
    if chip is None:
        chip = chip_type_from(cf, src.chip_name)
    chip_data = chip_data if chip_data is not None else src.chip_doc.data
    chip_blocks = records("chip", chip_data, cf.assumptions, cf.calibrated)
    system_blocks = records("system", data, sf.assumptions, sf.calibrated)
    blocks = (chip_blocks[0] + system_blocks[0], chip_blocks[1] + system_blocks[1])
    return build_system(sf, chip, name=src.name, where=src.where, blocks=blocks)


def load_system(
    spec: str | Path | Mapping[str, Any],
    *,
    origin: Document | None = None,
    at: KeyPath = (),
    relative_to: str | Path | None = None,
    host: Mapping[str, Any] | None = None,
    host_at: tuple[Document, KeyPath] | None = None,
) -> System:
    """The system named by ``spec``: a built-in name (``pod64``), a path, or an inline mapping.

    ``host``: keys that replace those of the system's ``host:`` section (a scenario's
    ``hosts:``), reported at ``host_at`` (document, key path) when the system has no hosts.

    ``origin``/``at``: for an inline mapping taken from another file (a scenario's
    ``topology:``), the document and key path it sits at, so errors name that file's lines;
    inline mappings may omit ``schema_version`` and ``kind``. ``relative_to``: the file a
    relative path was written in. Raises :class:`InputError` for any invalid input.
    """
    src = system_source(
        spec, origin=origin, at=at, relative_to=relative_to, host=host, host_at=host_at
    )
    return build_source(src)


def _relocate(exc: InputError, where: _Where, *keys: str) -> InputError:
    """An error from the chip lookup, placed at the ``chip:`` key when it names no file."""
    if exc.location.file is not None:
        return exc
    path = (*where.at, *keys)
    file, line = where.doc.location(path)
    return exc.at(file=file, line=line, key_path=render_path(path))


def _check_pattern(data: Any, where: _Where) -> None:
    """An unknown ``fabric.pattern`` is reported with a did-you-mean before schema checks."""
    fabric = data.get("fabric") if isinstance(data, Mapping) else None
    pattern = fabric.get("pattern") if isinstance(fabric, Mapping) else None
    if isinstance(pattern, str) and pattern not in PATTERNS:
        raise where.error(
            f"unknown pattern '{pattern}'{did_you_mean(pattern, PATTERNS)}; {one_of(PATTERNS)}",
            "fabric",
            "pattern",
        )


# ---- generation ---------------------------------------------------------------------------------


@dataclass
class _Links:
    """Accumulates channels: each bundle becomes two channels, one per direction."""

    channels: list[Channel] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)

    def node(self, name: str) -> str:
        if name not in self._seen:
            self._seen.add(name)
            self.nodes.append(name)
        return name

    def add(
        self,
        a: str,
        b: str,
        kind: str,
        links: int,
        per_link_Bps: float,
        eff: float,
        lat_s: float,
        overhead_bytes: float = 0.0,
    ) -> None:
        nominal = per_link_Bps * links
        for src, dst in ((a, b), (b, a)):
            self.channels.append(
                Channel(
                    len(self.channels),
                    src,
                    dst,
                    kind,
                    nominal * eff,
                    nominal,
                    lat_s,
                    links,
                    overhead_bytes,
                )
            )


def build_system(
    sf: SystemFile,
    chip: ChipType,
    *,
    name: str,
    where: _Where | None = None,
    blocks: tuple[tuple[AssumptionRecord, ...], tuple[CalibrationRecord, ...]] = ((), ()),
) -> System:
    """Generate chips and channels from a validated system file; check what the schema cannot.

    ``blocks``: the assumption and calibration records of the files, kept in ``System.info``.
    """
    where = where or _Where(Document({}, INLINE_LABEL))
    _check_shape(sf, where)
    _check_size(sf, where)  # bounded before anything is generated
    per_pod = sf.chips_per_pod
    n_chips = sf.pods * per_pod
    n_machines = sf.pods * sf.machines_per_pod
    chips = [
        Chip(id=i, type=chip, machine=i // sf.chips_per_machine, domain=i // per_pod)
        for i in range(n_chips)
    ]
    out = _Links()
    _ipu_links(sf, chip, chips, out, where)
    if sf.gateway is not None:
        _gateways(sf, chips, n_machines, out)
    if sf.gw_links is not None:
        g = sf.gw_links
        sw = out.node("sw:gw")
        rate, lat = si(g, "link_Gbps"), si(g, "latency_ns")
        for m in range(n_machines):
            out.add(f"gw:{m}", sw, "gw_link", g.links_per_machine, rate, g.efficiency, lat)
    if sf.host is not None:
        _hosts(sf, chips, n_machines, out, where)
    streaming = None
    if sf.gateway is not None:
        gw = sf.gateway
        streaming = StreamingMemory(si(gw, "streaming_memory_GB"), si(gw, "streaming_memory_GBps"))
    power = (
        n_machines * si(sf, "machine_power_W")
        if sf.machine_power_W is not None
        else n_chips * chip.power_W
    )
    info = SystemInfo(
        description=sf.description,
        power_W=power,
        machines=n_machines,
        extra=MappingProxyType(
            {
                "pods": sf.pods,
                "chips_per_machine": sf.chips_per_machine,
                "pattern": sf.fabric.pattern,
                "hypothetical": sf.hypothetical,
            }
        ),
        assumptions=blocks[0],
        calibrations=blocks[1],
    )
    sync = (
        SyncModel(si(sf.sync, "machine_hop_ns"), si(sf.sync, "gw_packet_ns"))
        if sf.sync is not None
        else None
    )
    hosts = None
    if sf.host is not None:
        h = sf.host
        hosts = Hosts(
            count=h.hosts,
            instances=h.instances or h.hosts,
            step_overhead_s=si(h, "step_overhead_us"),
            samples_per_s_per_host=h.samples_per_s_per_host,
        )
    system = System(
        name,
        chips,
        out.channels,
        nodes=out.nodes,
        streaming_memory=streaming,
        info=info,
        sync=sync,
        hosts=hosts,
    )
    missing = system.unreachable_chips()
    if missing:
        raise where.error(
            f"system '{name}' is not connected: chip(s) {_ranges(missing)} cannot reach chip 0 "
            "(or cannot be reached from it); add IPU-Links (fabric), a gateway with gw_links, "
            "or fewer pods",
            "fabric",
        )
    return system


def _check_shape(sf: SystemFile, where: _Where) -> None:
    """Keys that must agree with each other, reported at the key to change."""
    n = sf.chips_per_pod
    f = sf.fabric
    if sf.pods > 1 and sf.gw_links is None:
        raise where.error(
            f"{sf.pods} pods need a gw_links section to join them (or use pods: 1)", "pods"
        )
    if sf.gw_links is not None and sf.gateway is None:
        raise where.error("gw_links start at gateways: add a gateway section", "gw_links")
    if isinstance(sf.host, GatewayHost) and sf.gateway is None:
        raise where.error("host via: gateway needs a gateway section", "host", "via")
    if isinstance(f, LadderPattern) and n % 2:
        raise where.error(
            f"a ladder pairs chips, but a pod has {n} chips (machines_per_pod × "
            "chips_per_machine); use an even number",
            "fabric",
            "pattern",
        )
    if isinstance(f, Torus2dPattern) and f.rows * f.cols != n:
        raise where.error(
            f"rows × cols = {f.rows} × {f.cols} = {f.rows * f.cols}, but a pod has {n} chips "
            "(machines_per_pod × chips_per_machine)",
            "fabric",
            "rows",
        )


def _check_size(sf: SystemFile, where: _Where) -> None:
    """Chips and IPU-Link bundles counted from the keys, against the documented limits."""
    factors = {
        "pods": sf.pods,
        "machines_per_pod": sf.machines_per_pod,
        "chips_per_machine": sf.chips_per_machine,
    }
    chips = sf.pods * sf.chips_per_pod
    if chips > limits.MAX_CHIPS:
        shown = " × ".join(f"{k} {v:,}" for k, v in factors.items())
        raise where.error(
            f"{shown} makes {chips:,} chips, over the limit of {limits.MAX_CHIPS:,} "
            f"({limits.LIMITS_DOC})",
            max(factors, key=lambda k: factors[k]),  # the factor most likely mistyped
        )
    per_pod = _bundles_per_pod(sf.fabric, sf.chips_per_pod)
    if sf.pods * per_pod > limits.MAX_LINK_BUNDLES:
        raise where.error(
            f"the {sf.fabric.pattern} fabric would join {sf.pods * per_pod:,} pairs of nodes "
            f"({per_pod:,} per pod × {sf.pods:,} pods), over the limit of "
            f"{limits.MAX_LINK_BUNDLES:,} ({limits.LIMITS_DOC})",
            "fabric",
            "pattern",
        )


def _ring_edges(n: int) -> int:
    return max(n - 1, 0) + (1 if n >= 3 else 0)


def _bundles_per_pod(fabric: Any, n: int) -> int:
    """How many bundles :func:`~simulator.hardware.patterns.bundles` makes for a pod of ``n``
    chips (before parallel edges merge, so never fewer), computed without making them."""
    if isinstance(fabric, LadderPattern):
        half = n // 2
        return half + 2 * max(half - 1, 0) + (2 if fabric.wrap and half >= 3 else 0)
    if isinstance(fabric, Torus2dPattern):
        return fabric.rows * _ring_edges(fabric.cols) + fabric.cols * _ring_edges(fabric.rows)
    if isinstance(fabric, ExplicitPattern):
        return len(fabric.edges)
    if isinstance(fabric, SwitchPattern):
        return n
    if fabric.pattern == "fully_connected":
        return n * (n - 1) // 2
    return _ring_edges(n) if fabric.pattern == "ring" else 0


def _ipu_links(
    sf: SystemFile, chip: ChipType, chips: list[Chip], out: _Links, where: _Where
) -> None:
    """Wire every pod with the fabric pattern; check explicit edges and links per chip."""
    per_pod = sf.chips_per_pod
    fabric = sf.fabric
    if isinstance(fabric, ExplicitPattern):
        for i, edge in enumerate(fabric.edges):
            a, b = edge[0], edge[1]
            if len(edge) > 2 and edge[2] < 1:
                raise where.error(
                    f"edge {edge}: the link count (third number) must be at least 1",
                    "fabric",
                    "edges",
                    i,
                )
            for end in (a, b):
                if end >= per_pod:
                    raise where.error(
                        f"edge [{a}, {b}] names chip {end}, but a pod has {per_pod} chips "
                        f"(0..{per_pod - 1}; ids are local to each pod)",
                        "fabric",
                        "edges",
                        i,
                    )
            if a == b:
                raise where.error(f"edge [{a}, {b}] joins chip {a} to itself", "fabric", "edges", i)
    lat = si(sf, "ipu_link_hop_latency_ns")
    per_link = si(sf, "ipu_link_GBps")
    used = [0] * len(chips)
    extra = si(fabric, "switch_latency_ns") if isinstance(fabric, SwitchPattern) else 0.0
    for pod in range(sf.pods):
        nodes = [c.node for c in chips[pod * per_pod : (pod + 1) * per_pod]]
        switch_node = f"sw:ipu{pod}"
        pod_bundles: list[Bundle] = bundles(fabric, nodes, switch_node)
        if isinstance(fabric, SwitchPattern):
            out.node(switch_node)
        header = chip.messages.ipu_link_overhead_bytes
        for u, v, n in pod_bundles:
            out.add(u, v, "ipu_link", n, per_link, sf.ipu_link_efficiency, lat + extra / 2, header)
            for node in (u, v):
                if node.startswith("ipu:"):
                    used[int(node[4:])] += n
    worst = max(range(len(chips)), key=lambda i: used[i], default=None)
    if worst is not None and used[worst] > chip.ipu_links:
        raise where.error(
            f"chip {worst} would use {used[worst]} IPU-Links but a {chip.name} chip has "
            f"{chip.ipu_links}; use fewer links per edge (e.g. rung_links/rail_links)",
            "fabric",
        )


def _gateways(sf: SystemFile, chips: list[Chip], n_machines: int, out: _Links) -> None:
    """Per machine: ``gw:<m>`` joined to each chip by PCIe, ``ddr:<m>`` behind it."""
    gw = sf.gateway
    assert gw is not None
    for m in range(n_machines):
        out.node(f"gw:{m}")
        out.node(f"ddr:{m}")
    for c in chips:
        out.add(
            c.node,
            f"gw:{c.machine}",
            "pcie",
            1,
            si(gw, "pcie_GBps"),
            gw.pcie_efficiency,
            si(gw, "pcie_latency_ns"),
        )
    for m in range(n_machines):
        out.add(
            f"gw:{m}",
            f"ddr:{m}",
            "ddr",
            1,
            si(gw, "streaming_memory_GBps"),
            1.0,
            si(gw, "streaming_memory_latency_ns"),
        )


def _hosts(sf: SystemFile, chips: list[Chip], n_machines: int, out: _Links, where: _Where) -> None:
    """Hosts spread evenly: over machines (via gateway) or over PCIe switches (via pcie)."""
    host = sf.host
    if isinstance(host, GatewayHost):
        if host.hosts > n_machines:
            raise where.error(
                f"{host.hosts} hosts but only {n_machines} machine(s) to attach them to",
                "host",
                "hosts",
            )
        for m in range(n_machines):
            h = out.node(f"host:{m * host.hosts // n_machines}")
            out.add(
                f"gw:{m}",
                h,
                "host_link",
                host.links_per_machine,
                si(host, "link_Gbps"),
                host.efficiency,
                si(host, "latency_ns"),
            )
    elif isinstance(host, PcieHost):
        n_sw = -(-len(chips) // host.chips_per_switch)
        if host.hosts > n_sw:
            raise where.error(
                f"{host.hosts} hosts but only {n_sw} PCIe switch(es) to attach them to",
                "host",
                "hosts",
            )
        for c in chips:
            sw = out.node(f"sw:pcie{c.id // host.chips_per_switch}")
            out.add(c.node, sw, "pcie", 1, si(host, "pcie_GBps"), host.pcie_efficiency, 0.0)
        for k in range(n_sw):
            h = out.node(f"host:{k * host.hosts // n_sw}")
            out.add(
                f"sw:pcie{k}",
                h,
                "host_link",
                1,
                si(host, "uplink_GBps"),
                host.uplink_efficiency,
                si(host, "latency_ns"),
            )


def _ranges(ids: tuple[int, ...] | list[int], limit: int = 12) -> str:
    """``[1, 2, 3, 7]`` -> ``1-3, 7`` (shortened past ``limit`` runs)."""
    runs: list[str] = []
    start = prev = ids[0]
    for i in [*ids[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        runs.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    more = f" and {len(runs) - limit} more ranges" if len(runs) > limit else ""
    return ", ".join(runs[:limit]) + more
