"""Derived systems: degraded or failed links (:func:`derate`) and the part of a system that one
job of several uses (:func:`subsystem`).

Both return a new :class:`~simulator.hardware.system.System`; the one they start from is never
changed (systems are immutable and shared by the samples of a run). A derated link keeps its
routes and loses bandwidth; a failed link (factor 0) is removed, so routes are searched again
without it: traffic between IPU-Link neighbours goes round the ladder or torus, or out through
the gateways; when nothing joins two chips any more, routing raises
:class:`~simulator.hardware.system.NoRouteError` and the run reports an infeasible plan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from simulator.hardware.model import Channel, Chip
from simulator.hardware.system import System


def link_channels(system: System, a: str, b: str) -> list[int]:
    """Ids of the channels joining nodes ``a`` and ``b`` directly (either direction)."""
    out = []
    for src, dst in ((a, b), (b, a)):
        ch = system.channel(src, dst)
        if ch is not None:
            out.append(ch.id)
    return out


def derate(system: System, links: Sequence[tuple[str, str, float]]) -> System:
    """``system`` with the link between each pair of nodes scaled to ``factor`` of its
    bandwidth (both directions, all parallel links together); factor 0 removes it.

    Raises ValueError naming the pair when a node is unknown or no link joins the two."""
    scale: dict[int, float] = {}
    for a, b, factor in links:
        for node in (a, b):
            if node not in system.graph:
                raise ValueError(f"{system.name} has no node '{node}'")
        ids = link_channels(system, a, b)
        if not ids:
            raise ValueError(f"no link joins {a} and {b} in {system.name}")
        for cid in ids:
            scale[cid] = scale.get(cid, 1.0) * factor
    if all(f == 1.0 for f in scale.values()):
        return system
    kept: list[Channel] = []
    for ch in system.channels:
        f = scale.get(ch.id, 1.0)
        if f <= 0:
            continue
        kept.append(replace(ch, id=len(kept), capacity_Bps=ch.capacity_Bps * f))
    return _rebuilt(system, system.name, list(system.chips), kept)


def subsystem(system: System, chips: Sequence[int], name: str | None = None) -> System:
    """The chips ``chips`` of ``system`` renumbered 0..n-1 in that order: what one job of
    several sees when it plans (:mod:`simulator.shared`). Every link is kept, and the other
    chips stay as nodes (``other:ipu:<id>``) that routes may pass through, so the job's routes
    are the shared system's."""
    index = {c: i for i, c in enumerate(chips)}
    rename = {
        ch.node: f"ipu:{index[ch.id]}" if ch.id in index else f"other:{ch.node}"
        for ch in system.chips
    }
    new_chips = [
        Chip(i, system.chips[c].type, system.chips[c].machine, system.chips[c].domain)
        for i, c in enumerate(chips)
    ]
    kept = [
        replace(ch, src=rename.get(ch.src, ch.src), dst=rename.get(ch.dst, ch.dst))
        for ch in system.channels
    ]
    others = [rename[ch.node] for ch in system.chips if ch.id not in index]
    return _rebuilt(system, name or system.name, new_chips, kept, others)


def _rebuilt(
    system: System,
    name: str,
    chips: list[Chip],
    channels: list[Channel],
    extra: Sequence[str] = (),
) -> System:
    chip_nodes = {c.node for c in system.chips}
    others = [n for n in system.graph.nodes if n not in chip_nodes] + list(extra)
    return System(
        name,
        chips,
        channels,
        nodes=others,
        streaming_memory=system.streaming_memory,
        info=system.info,
        sync=system.sync,
        hosts=system.hosts,
    )


__all__ = ["derate", "link_channels", "subsystem"]
