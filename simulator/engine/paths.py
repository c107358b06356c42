"""Which shared resources a transfer crosses, its own rate ceiling and its no-load latency.

Resources are the system's channels (ids equal to channel ids), each chip's aggregate exchange
out and in, and — for tile-level transfers — single tiles' exchange ports, created on demand.
The executor (flows) and the closed-form estimate (:mod:`simulator.analytic`) share this.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from simulator.hardware.system import System

PathInfo = tuple[tuple[int, ...], float, float]  # resources, per-flow cap (B/s), latency (s)


class PathModel:
    """Maps transfers onto resources; ``add_resource`` allocates a new resource id."""

    def __init__(self, system: System, add_resource: Callable[[float], int]) -> None:
        self.system = system
        self._add = add_resource
        self.capacity: dict[int, float] = {c.id: c.capacity_Bps for c in system.channels}
        self.xout = [self._new(c.type.tiles * c.type.tile_exchange_Bps) for c in system.chips]
        self.xin = [self._new(c.type.tiles * c.type.tile_exchange_Bps) for c in system.chips]
        self._tile_ports: dict[tuple[int, int, int], int] = {}
        self._cache: dict[tuple[int, int, int, int, int], PathInfo] = {}

    def _new(self, capacity: float) -> int:
        rid = self._add(capacity)
        self.capacity[rid] = capacity
        return rid

    def tile_port(self, chip: int, tile: int, direction: int) -> int:
        """Resource of one tile's exchange port (direction 0: out, 1: in)."""
        key = (chip, tile, direction)
        res = self._tile_ports.get(key)
        if res is None:
            ct = self.system.chips[chip].type
            if not 0 <= tile < ct.tiles:
                raise ValueError(f"chip {chip} has tiles 0..{ct.tiles - 1}, not {tile}")
            res = self._new(ct.tile_exchange_Bps)
            self._tile_ports[key] = res
        return res

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
        route = self.system.chip_route(src, dst)
        offchip = src != dst
        if src_tile is None or dst_tile is None:
            first, last = self.xout[src], self.xin[dst]
            used = min(tiles or ct.tiles, ct.tiles)
            cap = used * (ct.tile_offchip_Bps if offchip else ct.tile_exchange_Bps)
        else:
            first, last = self.tile_port(src, src_tile, 0), self.tile_port(dst, dst_tile, 1)
            cap = ct.tile_offchip_Bps if offchip else math.inf
        out = ((first, *route.channels, last), cap, ct.exchange_latency_s + route.latency_s)
        self._cache[key] = out
        return out

    def stream_path(
        self, node: str, chip: int, *, inbound: bool, tile: int | None = None
    ) -> PathInfo:
        """A stream between a non-chip node (``ddr:m``, ``host:h``) and ``chip``.

        Latency is the route's own (the host and Streaming Memory figures are end to end); one
        named tile caps the stream at a tile's off-chip rate.
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

    def bottleneck(self, info: PathInfo) -> float:
        """The lowest rate along a path when it runs alone."""
        resources, cap, _ = info
        return min(cap, *(self.capacity[r] for r in resources))
