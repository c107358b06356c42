"""Messages: what the engine treats as one message, what a message costs, and multicast.

**One message** is what one tile sends in one exchange phase to one tile — or, with hardware
multicast, what one tile sends once and every listening tile receives:

* a tile-level :class:`~simulator.engine.tasks.Transfer`, or one entry of
  :class:`~simulator.engine.tasks.TileMessages`: one message;
* a chip-level Transfer, or one pair of a collective step, moving ``B`` bytes spread over
  ``T`` tiles: one message per tile that holds a piece, ``min(T, ceil(B / word))`` messages
  (a word is what a tile's exchange port moves per cycle, ``exchange_bytes_per_cycle``);
* a :class:`~simulator.engine.tasks.TileMulticast`: one message that every listed tile
  receives;
* a multicast collective step (``broadcast``; all-gather and all-reduce with the ``broadcast``
  algorithm): each piece of the source's buffer is one message that every destination chip
  receives.

Host and Streaming Memory streams are DMA transfers (calibrated end to end, Jia19 §4.7), not
tile messages: they pay no per-message cost.

**What a message costs** (the chip YAML's ``messages:`` section) besides its bytes: cycles on
the sending and the receiving tile's exchange port, cycles in the chip's off-chip egress engine
and in the destination's ingress engine (each direction its own engine), cycles in the relay
engine of every chip that forwards it between IPU-Links, header bytes on every IPU-Link it
crosses. In the flow model a flow of ``b`` bytes in ``m`` messages uses ``1 + m·h/b`` units of a
link per byte (``h`` header bytes) and ``m·c/b`` seconds of an engine per byte, so message rate
and bandwidth limits share one max-min allocation (:mod:`simulator.engine.flows`).

**Multicast** crosses the union of the routes to its destinations, each channel and each
engine once: one transmission from the source, one egress, one header per link, one relay per
forwarding chip; every receiving tile (or chip) pays its own receive cost.

**Delivery spread**: an exchange phase ends when its slowest message lands. With ``n`` messages
landing on one chip the phase waits the expected slowest of ``n`` tile-to-tile latencies
(:meth:`~simulator.hardware.model.MessageCosts.delivery_spread_s`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

from simulator.engine.collectives import Step
from simulator.engine.flows import FlowSet
from simulator.engine.maxmin import ranges
from simulator.engine.paths import PathModel
from simulator.hardware.model import ChipType
from simulator.hardware.system import System


class Flow(NamedTuple):
    """One flow of the flow network: bytes over resources, and what follows the last byte.
    (A named tuple: thousands are made per collective step.)"""

    resources: tuple[int, ...]
    nbytes: float
    messages: float
    cap: float  # the flow's own rate ceiling, bytes/s
    latency: float  # last byte sent -> slowest receiver has it (delivery spread included)

    @property
    def ratio(self) -> float:
        """Messages per byte: what the flow network charges per-message costs by."""
        return self.messages / self.nbytes if self.nbytes > 0 else 0.0


def flow_set(flows: Sequence[Flow]) -> FlowSet:
    """``flows`` as the arrays the flow network starts in one batch (same order)."""
    return FlowSet.of(
        [f.resources for f in flows],
        [f.nbytes for f in flows],
        [f.cap for f in flows],
        [f.ratio for f in flows],
        [f.latency for f in flows],
    )


class Sending(NamedTuple):
    """A flow before its phase is known: where it lands and how many messages land there."""

    resources: tuple[int, ...]
    nbytes: float
    messages: float
    cap: float
    arrivals: tuple[tuple[int, float, float], ...]  # (chip, no-load latency, messages landing)


def chip_messages(ct: ChipType, nbytes: float, tiles: int | None) -> int:
    """Messages of ``nbytes`` spread over ``tiles`` tiles of a chip (None: all of them): one
    per tile holding a piece, at least one word each."""
    if not nbytes > 0 or not math.isfinite(nbytes):
        return 0 if not nbytes > 0 else 1  # a bad byte count fails in the flow network
    used = min(tiles or ct.tiles, ct.tiles)
    return max(1, min(used, math.ceil(nbytes / ct.exchange_bytes_per_cycle)))


def transfer(
    paths: PathModel,
    src: int,
    dst: int,
    nbytes: float,
    src_tile: int | None = None,
    dst_tile: int | None = None,
    tiles: int | None = None,
) -> Sending:
    """A point-to-point transfer: one message (tile level) or one per tile (chip level)."""
    res, cap, lat = paths.path(src, dst, src_tile, dst_tile, tiles)
    if src_tile is not None and dst_tile is not None:
        m = 1.0 if nbytes > 0 else 0.0
    else:
        m = float(chip_messages(paths.system.chips[src].type, nbytes, tiles))
    return Sending(res, nbytes, m, cap, ((dst, lat, m),))


def multicast(
    paths: PathModel,
    src: int,
    dsts: Sequence[int],
    nbytes: float,
    *,
    src_tile: int | None = None,
    tiles: int | None = None,
) -> Sending:
    """One transmission from ``src`` received on every chip of ``dsts``.

    Tile level (``src_tile`` given): one message from that tile, received by tiles
    ``0..tiles-1`` of every destination chip (not by the source tile itself). Chip level: the
    buffer of ``nbytes`` spread over ``tiles`` tiles of ``src``, each piece one message that
    every destination chip receives on its corresponding tile.
    """
    system = paths.system
    ct = system.chips[src].type
    tile_level = src_tile is not None
    used = min(tiles or ct.tiles, ct.tiles)
    m = 1.0 if tile_level else float(chip_messages(ct, nbytes, tiles))
    resources: list[int] = []
    seen: set[int] = set()

    def take(rs: Iterable[int]) -> None:
        for r in rs:
            if r not in seen:
                seen.add(r)
                resources.append(r)

    take((paths.tile_port(src, src_tile, 0),) if src_tile is not None else (paths.xout[src],))
    arrivals: list[tuple[int, float, float]] = []
    offchip = False
    for d in dsts:
        route, route_latency = paths.route_to(src, d)
        offchip = offchip or d != src
        take(route)
        lat = ct.exchange_latency_s + route_latency
        if tile_level:
            receivers = [t for t in range(used) if (d, t) != (src, src_tile)]
            take(paths.tile_port(d, t, 1) for t in receivers)
            arrivals.append((d, lat, float(len(receivers))))
        else:
            take((paths.xin[d],))
            arrivals.append((d, lat, m))
    if tile_level:
        cap = ct.tile_offchip_Bps if offchip else math.inf
    else:
        cap = used * (ct.tile_offchip_Bps if offchip else ct.tile_exchange_Bps)
    return Sending(tuple(resources), nbytes, m, cap, tuple(arrivals))


def phase(paths: PathModel, sendings: Sequence[Sending]) -> list[Flow]:
    """The flows of one exchange phase: each flow's latency is its slowest arrival, where an
    arrival on a chip waits for the slowest of all the phase's messages landing there."""
    landing: dict[int, float] = {}
    for s in sendings:
        for chip, _, n in s.arrivals:
            landing[chip] = landing.get(chip, 0.0) + n
    chips = paths.system.chips
    spread = {
        c: chips[c].type.messages.delivery_spread_s(n, chips[c].type.clock_hz)
        for c, n in landing.items()
    }
    return [
        Flow(
            s.resources,
            s.nbytes,
            s.messages,
            s.cap,
            max((lat + spread[c] for c, lat, _ in s.arrivals), default=0.0),
        )
        for s in sendings
    ]


def tile_messages(
    paths: PathModel, sends: Sequence[tuple[int, int, int, int]], nbytes: float
) -> FlowSet:
    """The flows of one exchange phase of single-tile messages (``(src, src_tile, dst,
    dst_tile)``, ``nbytes`` each), built as arrays: the same flows, in the same order, as
    ``phase(paths, [transfer(paths, a, d, nbytes, s, t) for a, s, d, t in sends])``."""
    chips = paths.system.chips
    table = np.asarray(sends, dtype=np.int64).reshape(-1, 4)
    src, src_tile, dst, dst_tile = table.T
    n = src.size
    # the routes of the distinct chip pairs, with their engines
    pair, inverse = np.unique(src * len(chips) + dst, return_inverse=True)
    routes = [paths.route_to(int(p) // len(chips), int(p) % len(chips)) for p in pair.tolist()]
    route_len = np.fromiter((len(r) for r, _ in routes), dtype=np.int64, count=len(routes))
    route_flat = np.fromiter(
        (x for r, _ in routes for x in r), dtype=np.int64, count=int(route_len.sum())
    )
    route_start = np.cumsum(route_len) - route_len
    route_latency = np.fromiter((lat for _, lat in routes), dtype=float, count=len(routes))
    inverse = inverse.reshape(-1)
    lengths = route_len[inverse] + 2
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.empty(int(offsets[-1]), dtype=np.int64)
    flat[offsets[:-1]] = paths.tile_ports(src, src_tile, 0)
    flat[offsets[1:] - 1] = paths.tile_ports(dst, dst_tile, 1)
    starts = route_start[inverse]
    flat[ranges(offsets[:-1] + 1, offsets[1:] - 1)] = route_flat[
        ranges(starts, starts + route_len[inverse])
    ]
    # per chip: off-chip rate of one tile, exchange latency; the delivery spread of landings
    types = [c.type for c in chips]
    offchip = np.array([t.tile_offchip_Bps for t in types])
    exchange = np.array([t.exchange_latency_s for t in types])
    cap = np.where(src != dst, offchip[src], math.inf)
    m = 1.0 if nbytes > 0 else 0.0
    landing = np.bincount(dst, minlength=len(chips)).astype(float) * m
    spread = np.zeros(len(chips))
    for c in np.flatnonzero(np.bincount(dst, minlength=len(chips))).tolist():
        spread[c] = types[c].messages.delivery_spread_s(float(landing[c]), types[c].clock_hz)
    latency = exchange[src] + route_latency[inverse] + spread[dst]
    ratio = m / nbytes if nbytes > 0 else 0.0
    return FlowSet(flat, offsets, np.full(n, float(nbytes)), cap, np.full(n, ratio), latency)


def step_flows(paths: PathModel, step: Step, tiles: int | None) -> list[Flow]:
    """The flows of one collective step: one chip-level transfer per pair, or — for a
    multicast step — one multicast per source chip to all of its pairs' destinations."""
    if step.multicast:
        by_src: dict[int, list[int]] = {}
        for a, b in step.pairs:
            by_src.setdefault(a, []).append(b)
        sendings = [multicast(paths, a, ds, step.nbytes, tiles=tiles) for a, ds in by_src.items()]
        return phase(paths, sendings)
    # unicast pairs (the common case, thousands per step on big systems): the same as
    # phase(paths, [transfer(...) for each pair]), without the intermediate objects
    chips = paths.system.chips
    nbytes = step.nbytes
    # per chip type: messages per pair, off-chip and on-chip rate caps, exchange latency
    per_type: dict[int, tuple[float, float, float, float]] = {}
    sources = []
    landing: dict[int, float] = {}
    for a, b in step.pairs:
        ct = chips[a].type
        t = per_type.get(id(ct))
        if t is None:
            used = min(tiles or ct.tiles, ct.tiles)
            t = per_type[id(ct)] = (
                float(chip_messages(ct, nbytes, tiles)),
                used * ct.tile_offchip_Bps,
                used * ct.tile_exchange_Bps,
                ct.exchange_latency_s,
            )
        sources.append(t)
        landing[b] = landing.get(b, 0.0) + t[0]
    spreads: dict[tuple[int, float], float] = {}
    spread: dict[int, float] = {}
    for c, n in landing.items():
        ct = chips[c].type
        key = (id(ct), n)
        got = spreads.get(key)
        if got is None:
            got = spreads[key] = ct.messages.delivery_spread_s(n, ct.clock_hz)
        spread[c] = got
    out = []
    xout, xin, route_to = paths.xout, paths.xin, paths.route_to
    for (a, b), (m, off, on, exchange) in zip(step.pairs, sources, strict=True):
        # what paths.path(a, b, tiles=tiles) gives, without its cache (each pair comes once)
        middle, route_latency = route_to(a, b)
        cap = off if a != b else on
        out.append(
            Flow((xout[a], *middle, xin[b]), nbytes, m, cap, exchange + route_latency + spread[b])
        )
    return out


def phase_seconds(paths: PathModel, flows: Iterable[Flow]) -> tuple[float, float]:
    """Closed form of one exchange phase in which ``flows`` run together: (estimate, lower
    bound). Estimate: the larger of the slowest flow alone (latency + its time on its slowest
    resource) and the busiest resource (latency + its load / capacity), where a flow of ``b``
    bytes in ``m`` messages loads a resource with ``b × per_byte + m × per_message``. Lower
    bound: the larger of the latency and the busiest resource's load / capacity."""
    flows = list(flows)
    if not flows:
        return 0.0, 0.0
    # one row per (flow, resource) incidence, resources numbered densely for bincount
    index: dict[int, int] = {}
    inc = [index.setdefault(r, len(index)) for f in flows for r in f.resources]
    owner = np.repeat(np.arange(len(flows)), [len(f.resources) for f in flows])
    ids = list(index)
    costs = np.array([paths.costs(r) for r in ids], dtype=float).reshape(len(ids), 2)
    capacity = np.array([paths.capacity[r] for r in ids], dtype=float)
    nbytes = np.array([f.nbytes for f in flows], dtype=float)
    ratio = np.array([f.ratio for f in flows], dtype=float)
    latency = np.array([f.latency for f in flows], dtype=float)
    cap = np.array([f.cap for f in flows], dtype=float)
    u = np.asarray(inc, dtype=np.int64)
    use = nbytes[owner] * (costs[u, 0] + costs[u, 1] * ratio[owner])  # units on each resource
    load = np.bincount(u, weights=use, minlength=len(ids))
    alone = np.where(nbytes > 0, nbytes / cap, 0.0)
    np.maximum.at(alone, owner, use / capacity[u])
    congestion = float((load / capacity).max()) if len(ids) else 0.0
    slowest = float((latency + alone).max())
    top = float(latency.max())
    return max(slowest, top + congestion), max(top, congestion)


def steps_seconds(
    system: System, steps: Sequence[Step], tiles: int | None, elem_bytes: float = 4.0
) -> tuple[float, float]:
    """Closed form of a collective's steps: (seconds, of which latency). Each step costs its
    phase estimate plus its reduction on the receiving chips' vector units; its latency is the
    slowest flow's latency (the part no bandwidth removes). What ``auto`` compares."""
    paths = PathModel(system, ResourceIds())
    dtype = "fp16" if elem_bytes == 2 else "fp32"
    total = latency = 0.0
    memo: dict[int, tuple[float, float]] = {}
    for step in steps:
        got = memo.get(step.key)
        if got is None:
            flows = step_flows(paths, step, tiles)
            sec = phase_seconds(paths, flows)[0]
            if step.reduce_elems:
                ct = system.chips[step.pairs[0][1]].type
                sec += step.reduce_elems / (
                    ct.tiles * ct.clock_hz * ct.vector_flop_per_cycle[dtype]
                )
            got = memo[step.key] = (sec, max((f.latency for f in flows), default=0.0))
        total += got[0]
        latency += got[1]
    return total, latency


class ResourceIds:
    """Resource ids for a PathModel outside a flow network (apart from channel ids)."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, _capacity: float, _per_message: float = 0.0, _per_byte: float = 1.0) -> int:
        self.n += 1
        return 10**9 + self.n


__all__ = [
    "Flow",
    "ResourceIds",
    "Sending",
    "chip_messages",
    "flow_set",
    "multicast",
    "phase",
    "phase_seconds",
    "step_flows",
    "steps_seconds",
    "tile_messages",
    "transfer",
]
