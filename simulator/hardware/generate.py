"""Generate a :class:`System`'s chips and channels from a validated system file.

The links are *generated*: the ``fabric`` pattern wires each pod (IPU-Link domain), every
machine gets a gateway with PCIe to its chips and Streaming Memory behind it, gateways join the
GW-Link switch, hosts hang off gateways or PCIe switches. Whatever the schema cannot decide
alone is checked here, the size bounded before anything is generated, and reported at the key
that causes it: keys that disagree, an explicit edge to a chip that does not exist, a chip with
more IPU-Links than its type has, a system whose chips cannot all reach each other. Finding and
reading the files is :mod:`simulator.hardware.build`'s.

Node names: ``ipu:<i>``, ``gw:<m>``, ``ddr:<m>``, ``host:<h>``, ``sw:gw`` (GW-Link switch),
``sw:ipu<p>`` (switch pattern of pod p), ``sw:pcie<k>`` (host PCIe switch k).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel

from simulator.config import limits
from simulator.config.assumptions import AssumptionRecord, CalibrationRecord
from simulator.config.load import render_path
from simulator.config.topology import (
    ExplicitPattern,
    GatewayHost,
    LadderPattern,
    PcieHost,
    SwitchPattern,
    SystemFile,
    Torus2dPattern,
)
from simulator.config.yamlio import Document, KeyPath
from simulator.errors import InputError
from simulator.hardware.model import (
    Channel,
    Chip,
    ChipType,
    Hosts,
    StreamingMemory,
    SyncModel,
    SystemInfo,
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


@dataclass(frozen=True)
class Where:
    """Maps a key path of the system file to ``(file, line, key path)`` for error messages."""

    doc: Document
    at: KeyPath = ()

    def error(self, message: str, *keys: str | int) -> InputError:
        path = (*self.at, *keys)
        file, line = self.doc.location(path)
        return InputError(message, file=file, line=line, key_path=render_path(path) or None)


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
    where: Where | None = None,
    blocks: tuple[tuple[AssumptionRecord, ...], tuple[CalibrationRecord, ...]] = ((), ()),
) -> System:
    """Generate chips and channels from a validated system file; check what the schema cannot.

    ``blocks``: the assumption and calibration records of the files, kept in ``System.info``.
    """
    where = where or Where(Document({}, INLINE_LABEL))
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


def _check_shape(sf: SystemFile, where: Where) -> None:
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


def _check_size(sf: SystemFile, where: Where) -> None:
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
    sf: SystemFile, chip: ChipType, chips: list[Chip], out: _Links, where: Where
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


def _hosts(sf: SystemFile, chips: list[Chip], n_machines: int, out: _Links, where: Where) -> None:
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


__all__ = ["INLINE_LABEL", "Where", "build_system", "si"]
