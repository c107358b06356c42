"""What ``ipusim topology show [--json]`` prints: a deterministic summary of a built System.

:func:`describe` returns the JSON document of DESIGN.md § Contracts (``name``, ``num_chips``,
``chips``, ``links``, ``peak_flops``, ``sram_bytes``, ``bisection_GBps``, ``power_W``) plus
``tiles`` and ``streaming_memory``. Numbers are rounded (GB/s and ns to 6 decimals, FLOP/s and
bytes to integers) so that float noise never reaches the output and the same system always
prints the same bytes. :func:`format_text` renders it for humans. A chip file (``topology show
gc200``) is described by :func:`describe_chip` and :func:`format_chip_text`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import networkx as nx

from simulator.config.assumptions import AssumptionRecord, CalibrationRecord, format_value
from simulator.hardware.model import DTYPES, Channel, ChipType
from simulator.hardware.system import System
from simulator.present import binary_bytes as _bytes
from simulator.present import si_prefix as _si_prefix
from simulator.present import table

_FLOW_UNIT_BPS = 1e3
"""Max-flow capacities are integers in this unit (kB/s): exact arithmetic, no float drift."""


def _r(x: float, digits: int = 6) -> float:
    """Round for output; ``-0.0`` and float noise never appear."""
    return round(x, digits) + 0.0


def link_bundles(system: System) -> list[dict[str, Any]]:
    """One entry per physical link bundle (both directions of a node pair), in channel order."""
    out: list[dict[str, Any]] = []
    seen: set[frozenset[str]] = set()
    for ch in system.channels:
        key = frozenset((ch.src, ch.dst))
        if key in seen:
            continue
        seen.add(key)
        out.append(
            {
                "endpoints": [ch.src, ch.dst],
                "kind": ch.kind,
                "links": ch.links,
                "nominal_GBps": _r(ch.nominal_Bps / 1e9),
                "achieved_GBps": _r(ch.capacity_Bps / 1e9),
                "latency_ns": _r(ch.latency_s * 1e9, 3),
            }
        )
    return out


def _fabric_channels(system: System) -> list[Channel]:
    """The channels chip-to-chip traffic may use: IPU-Links, GW-Links, and the PCIe links from
    chips to gateways that have GW-Links. Host links and Streaming Memory are not fabric."""
    gateways = {ch.src for ch in system.channels if ch.kind == "gw_link"}
    gateways |= {ch.dst for ch in system.channels if ch.kind == "gw_link"}
    return [
        ch
        for ch in system.channels
        if ch.kind in ("ipu_link", "gw_link")
        or (ch.kind == "pcie" and (ch.src in gateways or ch.dst in gateways))
    ]


def bisection_Bps(system: System) -> float:
    """Max flow from the first half of the chip list to the second half, one direction.

    A super-source feeds every chip of the first half and every chip of the second half drains
    into a super-sink; capacities are the achieved ones of the fabric channels (see
    :func:`_fabric_channels`: hosts and Streaming Memory do not count as bisection bandwidth).
    """
    n = system.num_chips
    if n < 2:
        return 0.0
    g = nx.DiGraph()
    g.add_nodes_from(c.node for c in system.chips)
    for ch in _fabric_channels(system):
        g.add_edge(ch.src, ch.dst, capacity=round(ch.capacity_Bps / _FLOW_UNIT_BPS))
    source, sink = "__source__", "__sink__"
    for c in system.chips[: n // 2]:
        g.add_edge(source, c.node)  # no capacity attribute = unbounded
    for c in system.chips[n // 2 :]:
        g.add_edge(c.node, sink)
    value = nx.maximum_flow_value(g, source, sink)
    return float(value) * _FLOW_UNIT_BPS


def describe(system: System) -> dict[str, Any]:
    """The ``topology show --json`` document of ``system`` (deterministic, JSON-ready)."""
    chips = system.chips
    types = {c.type.name: c.type for c in chips}
    count = Counter(c.type.name for c in chips)
    peak = {
        dt: round(sum(types[t].peak_flops(dt) * k for t, k in sorted(count.items())))
        for dt in DTYPES
    }
    sm = system.streaming_memory
    machines = system.info.machines
    return {
        "name": system.name,
        "num_chips": system.num_chips,
        "chips": [{"id": c.id, "machine": c.machine, "type": c.type.name} for c in chips],
        "links": link_bundles(system),
        "peak_flops": peak,
        "sram_bytes": sum(c.type.sram_bytes for c in chips),
        "bisection_GBps": _r(bisection_Bps(system) / 1e9),
        "power_W": _r(system.info.power_W, 3),
        "tiles": sum(c.type.tiles for c in chips),
        "streaming_memory": None
        if sm is None
        else {
            "machines": machines,
            "capacity_bytes_per_machine": round(sm.capacity_bytes),
            "bandwidth_GBps_per_machine": _r(sm.bandwidth_Bps / 1e9),
            "capacity_bytes": round(sm.capacity_bytes * machines),
        },
        "assumptions": [a.to_json() for a in system.info.assumptions],
        "calibrations": [c.to_json() for c in system.info.calibrations],
    }


# ---- text ---------------------------------------------------------------------------------------


def format_text(desc: dict[str, Any], max_links: int = 64) -> str:
    """A human-readable rendering of :func:`describe` output (links summarised by kind when
    there are more than ``max_links`` bundles)."""
    types = Counter(c["type"] for c in desc["chips"])
    machines = len({c["machine"] for c in desc["chips"]})
    kinds = ", ".join(f"{k} × {t}" for t, k in sorted(types.items()))
    lines = [
        f"system      {desc['name']}",
        f"chips       {desc['num_chips']:,} ({kinds}) in {machines:,} machine(s)",
        f"tiles       {desc['tiles']:,}",
        f"SRAM        {_bytes(desc['sram_bytes'])} ({desc['sram_bytes']:,} B)",
    ]
    lines += [f"peak {dt:<6} {_si_prefix(v, 'FLOP/s')}" for dt, v in desc["peak_flops"].items()]
    lines.append(f"bisection   {desc['bisection_GBps']:,.2f} GB/s per direction (achieved)")
    lines.append(f"power       {desc['power_W']:,.0f} W")
    sm = desc["streaming_memory"]
    if sm is not None:
        lines.append(
            f"streaming   {_si_prefix(sm['capacity_bytes_per_machine'], 'B')} and "
            f"{sm['bandwidth_GBps_per_machine']:g} GB/s per machine × {sm['machines']:,}"
        )
    else:
        lines.append("streaming   none")
    links = desc["links"]
    lines.append("")
    if len(links) <= max_links:
        rows = [["endpoints", "kind", "links", "nominal GB/s", "achieved GB/s", "latency ns"]]
        rows += [
            [
                f"{lk['endpoints'][0]} <-> {lk['endpoints'][1]}",
                lk["kind"],
                str(lk["links"]),
                f"{lk['nominal_GBps']:,.2f}",
                f"{lk['achieved_GBps']:,.2f}",
                f"{lk['latency_ns']:,.1f}",
            ]
            for lk in links
        ]
        lines.append("links (per direction)")
        right = {2, 3, 4, 5}
    else:
        groups: dict[tuple[str, int, float, float, float], int] = defaultdict(int)
        for lk in links:
            key = (
                lk["kind"],
                lk["links"],
                lk["nominal_GBps"],
                lk["achieved_GBps"],
                lk["latency_ns"],
            )
            groups[key] += 1
        rows = [["kind", "bundles", "links each", "nominal GB/s", "achieved GB/s", "latency ns"]]
        rows += [
            [kind, f"{n:,}", str(k), f"{nom:,.2f}", f"{ach:,.2f}", f"{lat:,.1f}"]
            for (kind, k, nom, ach, lat), n in sorted(groups.items())
        ]
        lines.append(f"links: {len(links):,} bundles, summarised by kind (per direction)")
        right = {1, 2, 3, 4, 5}
    lines += ["  " + row for row in table(rows, right)]
    lines += assumption_lines(desc)
    return "\n".join(lines) + "\n"


def assumption_lines(desc: dict[str, Any]) -> list[str]:
    """The assumptions and calibrations of a description, as text (reasons: ``--json``)."""
    out: list[str] = []
    assumed = desc.get("assumptions") or []
    if assumed:
        rows = [["assumption", "key", "value", "range"]]
        for a in assumed:
            unit = a["unit"]
            rng = f"{format_value(a['low'])} – {format_value(a['high'], unit)}"
            note = " (pinned)" if a["pinned"] else ""
            note += "" if a["in_range"] else " (the value is outside it)"
            rows.append([a["assumption"], a["name"], format_value(a["value"], unit), rng + note])
        out += [
            "",
            f"assumptions: {len(assumed)} values that are not sourced facts, with their ranges "
            "(reasons: --json or the file's assumptions: block)",
        ]
        out += ["  " + row for row in table(rows, {2})]
    calibrated = desc.get("calibrations") or []
    if calibrated:
        out += ["", "calibrated on measured points:"]
        out += [f"  {c['name']}: {'; '.join(c['points'])}" for c in calibrated]
    return out


# ---- one chip -----------------------------------------------------------------------------------


def describe_chip(
    ct: ChipType,
    description: str = "",
    blocks: tuple[tuple[AssumptionRecord, ...], tuple[CalibrationRecord, ...]] = ((), ()),
) -> dict[str, Any]:
    """The ``topology show --json`` document of a chip file (``kind: chip``): its per-chip
    totals in SI units, rounded like :func:`describe`; ``blocks``: its assumptions and
    calibrations."""
    return {
        "kind": "chip",
        "name": ct.name,
        "description": description,
        "tiles": ct.tiles,
        "threads_per_tile": ct.threads_per_tile,
        "clock_hz": round(ct.clock_hz),
        "sram_per_tile_bytes": ct.sram_per_tile_bytes,
        "sram_bytes": ct.sram_bytes,
        "peak_flops": {dt: round(ct.peak_flops(dt)) for dt in DTYPES},
        "peak_vector_flops": {dt: round(ct.peak_vector_flops(dt)) for dt in DTYPES},
        "exchange_GBps_per_tile": _r(ct.tile_exchange_Bps / 1e9),
        "exchange_GBps": _r(ct.tile_exchange_Bps * ct.tiles / 1e9),
        "exchange_latency_ns": _r(ct.exchange_latency_s * 1e9, 3),
        "sync_latency_ns": _r(ct.sync_latency_s * 1e9, 3),
        "external_sync_latency_ns": _r(ct.external_sync_latency_s * 1e9, 3),
        "uniform_samples_per_s": round(ct.uniform_samples_per_s()),
        "ipu_links": ct.ipu_links,
        "power_W": _r(ct.power_W, 3),
        "assumptions": [a.to_json() for a in blocks[0]],
        "calibrations": [c.to_json() for c in blocks[1]],
    }


def format_chip_text(desc: dict[str, Any]) -> str:
    """A human-readable rendering of :func:`describe_chip` output."""
    lines = [
        f"chip        {desc['name']}" + (f": {desc['description']}" if desc["description"] else ""),
        f"tiles       {desc['tiles']:,} x {desc['threads_per_tile']} worker threads",
        f"clock       {desc['clock_hz'] / 1e9:,.3f} GHz",
        f"SRAM        {_bytes(desc['sram_bytes'])} "
        f"({_bytes(desc['sram_per_tile_bytes'])} per tile)",
    ]
    lines += [
        f"peak {dt:<6} {_si_prefix(v, 'FLOP/s')} (AMP); vector "
        f"{_si_prefix(desc['peak_vector_flops'][dt], 'FLOP/s')}"
        for dt, v in desc["peak_flops"].items()
    ]
    lines += [
        f"exchange    {desc['exchange_GBps']:,.1f} GB/s on chip "
        f"({desc['exchange_GBps_per_tile']:g} GB/s per tile, achieved); "
        f"{desc['exchange_latency_ns']:g} ns tile to tile",
        f"sync        {desc['sync_latency_ns']:g} ns on chip, "
        f"{desc['external_sync_latency_ns']:g} ns across chips",
        f"PRNG        {_si_prefix(desc['uniform_samples_per_s'], 'samples/s')} (uniform, 32-bit)",
        f"IPU-Links   {desc['ipu_links']}",
        f"power       {desc['power_W']:,.0f} W",
    ]
    lines += assumption_lines(desc)
    lines += ["", "A chip, not a system: `ipusim topology list` names the systems built from it."]
    return "\n".join(lines) + "\n"
