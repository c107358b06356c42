"""Which shared resources a transfer crosses, its own rate ceiling and its no-load latency.

Resources are the system's channels (ids equal to channel ids), each chip's aggregate exchange
out and in, single tiles' exchange ports (for tile-level transfers), and each chip's message
engines: the off-chip egress and ingress engines and the relay engine that forwards messages
between IPU-Links (created on demand, only where the chip's per-message cost is not zero).
Every resource also has a cost per message (:mod:`simulator.engine.messages`): header bytes on a
link, cycles on a tile port, seconds on an engine.
The executor (flows) and the closed-form estimate (:mod:`simulator.analytic`) share this.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from simulator.hardware.model import ChipType
from simulator.hardware.system import System

PathInfo = tuple[tuple[int, ...], float, float]  # resources, per-flow cap (B/s), latency (s)
#: makes ``count`` resources alike at once: (capacity, per message, per byte, count) -> first id
AddMany = Callable[[float, float, float, int], int]

# engine kinds: the chip's off-chip egress, off-chip ingress, and relay (forwarding) engines
EGRESS, INGRESS, RELAY = 0, 1, 2


class PathModel:
    """Maps transfers onto resources; ``add_resource`` allocates a new resource id
    (``add_many``, when given, several alike at once: tile ports by the thousand)."""

    def __init__(
        self,
        system: System,
        add_resource: Callable[[float, float, float], int],
        add_many: AddMany | None = None,
    ) -> None:
        self.system = system
        self._add = add_resource
        self._add_many = add_many
        self.capacity: dict[int, float] = {c.id: c.capacity_Bps for c in system.channels}
        # resources other than channels: (units used per payload byte, per message)
        self._costs: dict[int, tuple[float, float]] = {}
        self._channels = len(system.channels)
        self.xout = self._chip_ports(send=True)
        self.xin = self._chip_ports(send=False)
        # per chip: resource ids of its tiles' ports, [direction, tile] (-1: not made yet)
        self._tile_ports: dict[int, np.ndarray] = {}
        # per engine kind, per chip: the resource id, None (costs nothing) or -1 (not made yet)
        self._engines: tuple[list[int | None], ...] = tuple(
            [-1] * len(system.chips) for _ in range(3)
        )
        self._chip_of_node = {c.node: c.id for c in system.chips}
        self._cache: dict[tuple[int, int, int, int, int], PathInfo] = {}
        self._routes: dict[tuple[int, int], tuple[tuple[int, ...], float]] = {}

    def _new(self, capacity: float, per_message: float = 0.0, per_byte: float = 1.0) -> int:
        rid = self._add(capacity, per_message, per_byte)
        self.capacity[rid] = capacity
        self._costs[rid] = (per_byte, per_message)
        return rid

    def _new_many(
        self, count: int, capacity: float, per_message: float = 0.0, per_byte: float = 1.0
    ) -> np.ndarray:
        """``count`` new resources alike (ids ascending)."""
        if self._add_many is None:
            ids = [self._add(capacity, per_message, per_byte) for _ in range(count)]
        else:
            first = self._add_many(capacity, per_message, per_byte, count)
            ids = list(range(first, first + count))
        self.capacity.update(dict.fromkeys(ids, capacity))
        self._costs.update(dict.fromkeys(ids, (per_byte, per_message)))
        return np.asarray(ids, dtype=np.int64)

    def _port_costs(self, ct: ChipType, tiles: int | None, send: bool) -> tuple[float, float]:
        """Capacity and per-message cost of an exchange port: one tile's (``tiles=1``) or the
        chip's aggregate. A message occupies one tile's port for ``cycles``: that many cycles
        of one port's bytes."""
        port = ct.tile_exchange_Bps
        cycles = ct.messages.tile_send_cycles if send else ct.messages.tile_receive_cycles
        return (tiles or ct.tiles) * port, cycles * port / ct.clock_hz

    def _chip_ports(self, send: bool) -> list[int]:
        """Each chip's aggregate exchange port (out or in), made per chip type in bulk."""
        out = [0] * len(self.system.chips)
        by_type: dict[int, list[int]] = {}
        types: dict[int, ChipType] = {}
        for c in self.system.chips:
            by_type.setdefault(id(c.type), []).append(c.id)
            types[id(c.type)] = c.type
        for key, chips in by_type.items():
            ids = self._new_many(len(chips), *self._port_costs(types[key], None, send))
            for chip, rid in zip(chips, ids.tolist(), strict=True):
                out[chip] = rid
        return out

    def costs(self, resource: int) -> tuple[float, float]:
        """A resource's cost per payload byte and per message, in units of its capacity
        (a channel: 1 and its header bytes; a port: 1 and its cycles' worth of bytes; an
        engine: 0 and its seconds)."""
        if 0 <= resource < self._channels:
            return 1.0, self.system.channels[resource].message_overhead_bytes
        return self._costs[resource]

    def tile_port(self, chip: int, tile: int, direction: int) -> int:
        """Resource of one tile's exchange port (direction 0: out, 1: in)."""
        table = self._tile_ports.get(chip)
        if table is not None and 0 <= tile < table.shape[1] and table[direction, tile] >= 0:
            return int(table[direction, tile])
        return int(self.tile_ports(np.array([chip]), np.array([tile]), direction)[0])

    def tile_ports(self, chips: np.ndarray, tiles: np.ndarray, direction: int) -> np.ndarray:
        """Resources of the ports of tiles ``tiles[i]`` of chips ``chips[i]`` (direction 0: out,
        1: in), made where missing."""
        out = np.empty(chips.size, dtype=np.int64)
        order = np.argsort(chips, kind="stable")
        sorted_chips = chips[order]
        cut = np.flatnonzero(sorted_chips[1:] != sorted_chips[:-1]) + 1
        for lo, hi in zip([0, *cut.tolist()], [*cut.tolist(), chips.size], strict=True):
            idx = order[lo:hi]
            chip = int(sorted_chips[lo])
            ct = self.system.chips[chip].type
            ts = tiles[idx]
            bad = (ts < 0) | (ts >= ct.tiles)
            if bad.any():
                raise ValueError(f"chip {chip} has tiles 0..{ct.tiles - 1}, not {ts[bad][0]}")
            table = self._tile_ports.get(chip)
            if table is None:
                table = self._tile_ports[chip] = np.full((2, ct.tiles), -1, dtype=np.int64)
            ids = table[direction, ts]
            if (ids < 0).any():
                missing = np.unique(ts[ids < 0])
                costs = self._port_costs(ct, 1, send=direction == 0)
                table[direction, missing] = self._new_many(missing.size, *costs)
                ids = table[direction, ts]
            out[idx] = ids
        return out

    def engine(self, chip: int, kind: int) -> int | None:
        """The chip's egress, ingress or relay message engine; None where it costs nothing.

        An engine has capacity 1 (the fraction of its time it is busy) and costs its cycles
        per message and nothing per byte: the links behind it carry the bytes.
        """
        res = self._engines[kind][chip]
        if res == -1:
            ct = self.system.chips[chip].type
            cycles = ct.messages.relay_cycles if kind == RELAY else ct.messages.offchip_cycles
            res = self._new(1.0, cycles / ct.clock_hz, 0.0) if cycles > 0 else None
            self._engines[kind][chip] = res
        return res

    def route_to(self, src: int, dst: int) -> tuple[tuple[int, ...], float]:
        """The route from chip ``src`` to ``dst`` as resources — its channels with the message
        engines it passes: the source's egress, every chip it is forwarded through, the
        destination's ingress — and its no-load latency (cached)."""
        key = (src, dst)
        hit = self._routes.get(key)
        if hit is not None:
            return hit
        route = self.system.chip_route(src, dst)
        out: list[int] = []
        if route.channels:
            out = self._with_engines(src, dst, route.channels)
        self._routes[key] = (tuple(out), route.latency_s)
        return self._routes[key]

    def _with_engines(self, src: int, dst: int, route: tuple[int, ...]) -> list[int]:
        eg = self.engine(src, EGRESS)
        out: list[int] = [route[0]] if eg is None else [eg, route[0]]
        if len(route) > 1:
            channels, chip_of = self.system.channels, self._chip_of_node
            for ch in route[1:]:
                relay = chip_of.get(channels[ch].src)
                if relay is not None:
                    r = self.engine(relay, RELAY)
                    if r is not None:
                        out.append(r)
                out.append(ch)
        ing = self.engine(dst, INGRESS)
        if ing is not None:
            out.append(ing)
        return out

    def path(
        self,
        src: int,
        dst: int,
        src_tile: int | None = None,
        dst_tile: int | None = None,
        tiles: int | None = None,
    ) -> PathInfo:
        """Resources, per-flow rate cap and latency of a transfer from chip ``src`` to ``dst``.

        Chip level (no tiles named): the bytes leave through the chip's aggregate exchange,
        spread over ``tiles`` tiles whose off-chip stream rate caps the flow. Tile level: the
        named tiles' ports; one tile streaming off-chip is capped at its off-chip rate.
        Latency: the on-chip exchange (with its opening sync) plus the route's latency.
        """
        key = (
            src,
            dst,
            -1 if src_tile is None else src_tile,
            -1 if dst_tile is None else dst_tile,
            tiles or 0,
        )
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        ct = self.system.chips[src].type
        middle, route_latency = self.route_to(src, dst)
        offchip = src != dst
        if src_tile is None or dst_tile is None:
            first, last = self.xout[src], self.xin[dst]
            used = min(tiles or ct.tiles, ct.tiles)
            cap = used * (ct.tile_offchip_Bps if offchip else ct.tile_exchange_Bps)
        else:
            first, last = self.tile_port(src, src_tile, 0), self.tile_port(dst, dst_tile, 1)
            cap = ct.tile_offchip_Bps if offchip else math.inf
        resources = (first, *middle, last)
        out = (resources, cap, ct.exchange_latency_s + route_latency)
        self._cache[key] = out
        return out

    def stream_path(
        self, node: str, chip: int, *, inbound: bool, tile: int | None = None
    ) -> PathInfo:
        """A stream between a non-chip node (``ddr:m``, ``host:h``) and ``chip``.

        Latency is the route's own (the host and Streaming Memory figures are end to end); one
        named tile caps the stream at a tile's off-chip rate. Streams are DMA transfers, not
        tile messages: they pass no message engine and pay no per-message cost.
        """
        ct = self.system.chips[chip].type
        cnode = self.system.chips[chip].node
        route = self.system.route(node, cnode) if inbound else self.system.route(cnode, node)
        if tile is None:
            end = self.xin[chip] if inbound else self.xout[chip]
            cap = math.inf
        else:
            end = self.tile_port(chip, tile, 1 if inbound else 0)
            cap = ct.tile_offchip_Bps
        resources = (*route.channels, end) if inbound else (end, *route.channels)
        return resources, cap, route.latency_s

    def host_load_path(self, chip: int, nbytes: float, samples: float) -> PathInfo:
        """Input written by the host nearest ``chip`` into the Streaming Memory of the chip's
        machine: the route's channels (Host-Link, gateway, DDR), a rate cap from the hosts'
        data pipeline (``samples_per_s_per_host`` x bytes per sample; none for synthetic
        data), and the route's latency."""
        system = self.system
        node = system.host_node(chip)
        if node is None:
            raise ValueError(f"system {system.name} has no host for chip {chip}")
        route = system.route(node, f"ddr:{system.chips[chip].machine}")
        hosts = system.hosts
        cap = math.inf
        if hosts is not None and hosts.samples_per_s_per_host and samples > 0:
            cap = hosts.samples_per_s_per_host * nbytes / samples
        return route.channels, cap, route.latency_s
