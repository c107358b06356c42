"""The System: chips, directed channels, a networkx graph and routing.

Routing rule: traffic between two chips of the same IPU-Link domain stays on IPU-Links (fewest
hops, ties broken by the graph's construction order, so routes are deterministic); any other
pair takes the path of least no-load latency through gateways and switches. Routes are cached.

Paths are searched with :mod:`simulator.hardware.routing` (networkx's searches, written out);
the networkx graph (``graph``) is built only when something reads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from itertools import pairwise
from typing import TYPE_CHECKING

from simulator.hardware.model import (
    Channel,
    Chip,
    Hosts,
    Route,
    StreamingMemory,
    SyncModel,
    SystemInfo,
)
from simulator.hardware.routing import Adjacency, fewest_hops, least_weight, reachable

if TYPE_CHECKING:
    import networkx as nx


class NoRouteError(ValueError):
    """Two nodes of a system that no path joins (e.g. after a link failed)."""


class System:
    """A built IPU system. Immutable after construction; routes are computed lazily and cached."""

    def __init__(
        self,
        name: str,
        chips: Sequence[Chip],
        channels: Sequence[Channel],
        *,
        nodes: Sequence[str] = (),
        streaming_memory: StreamingMemory | None = None,
        info: SystemInfo | None = None,
        sync: SyncModel | None = None,
        hosts: Hosts | None = None,
    ) -> None:
        self.name = name
        self.chips: tuple[Chip, ...] = tuple(chips)
        self.channels: tuple[Channel, ...] = tuple(channels)
        self.streaming_memory = streaming_memory
        self.info = info or SystemInfo()
        self.sync = sync
        self.hosts = hosts
        self._sync_cache: dict[tuple[int, ...], tuple[str, float]] = {}
        for i, chip in enumerate(self.chips):
            if chip.id != i:
                raise ValueError(f"chip ids must be 0..n-1 in order, got {chip.id} at {i}")
        for i, ch in enumerate(self.channels):
            if ch.id != i:
                raise ValueError(f"channel ids must be 0..n-1 in order, got {ch.id} at {i}")
        # nodes in the order the graph adds them: chips, the named nodes, then channel ends
        order: dict[str, None] = dict.fromkeys(c.node for c in self.chips)
        order.update(dict.fromkeys(nodes))
        self._between: dict[tuple[str, str], int] = {}
        # channels out of / into each node, in channel order, weighted by latency
        self._succ: Adjacency = {}
        self._pred: Adjacency = {}
        for ch in self.channels:
            if (ch.src, ch.dst) in self._between:
                raise ValueError(f"two channels {ch.src}->{ch.dst}: merge parallel links")
            self._between[(ch.src, ch.dst)] = ch.id
            order.setdefault(ch.src)
            order.setdefault(ch.dst)
            self._succ.setdefault(ch.src, {})[ch.dst] = ch.latency_s
            self._pred.setdefault(ch.dst, {})[ch.src] = ch.latency_s
        self._nodes = tuple(order)
        self._routes: dict[tuple[str, str], Route] = {}
        self._gateway_paths: dict[tuple[str, str], list[str]] = {}
        self._hosts: dict[int, str | None] = {}
        self._switch_cache: dict[str, list[str]] = {}

    # ---- structure -------------------------------------------------------------------------
    @property
    def num_chips(self) -> int:
        return len(self.chips)

    def chip(self, i: int) -> Chip:
        return self.chips[i]

    @cached_property
    def graph(self) -> nx.DiGraph:
        """The system as a networkx graph: nodes, and one edge per channel with its ``channel``
        id and ``latency`` (built on first use)."""
        import networkx as nx

        graph = nx.DiGraph()
        graph.add_nodes_from(c.node for c in self.chips)
        graph.add_nodes_from(self._nodes)
        for ch in self.channels:
            graph.add_edge(ch.src, ch.dst, channel=ch.id, latency=ch.latency_s)
        return graph

    @property
    def nodes(self) -> tuple[str, ...]:
        """Every node (chips, gateways, memories, hosts, switches) in the graph's order."""
        return self._nodes

    def successors(self, node: str) -> list[str]:
        """Nodes that ``node`` has a channel to, in channel order."""
        return list(self._succ.get(node, {}))

    def channel(self, src: str, dst: str) -> Channel | None:
        """The direct channel from ``src`` to ``dst``, if one exists."""
        cid = self._between.get((src, dst))
        return None if cid is None else self.channels[cid]

    @cached_property
    def _domain_links(self) -> dict[int, tuple[Adjacency, Adjacency]]:
        """Per IPU-Link domain: the IPU-Links between its chips, out of and into each node.

        An IPU-Link switch node (``sw:ipu<p>``, joined to chips by IPU-Link channels) belongs
        to the domain of the chips it is joined to, so switched fabrics also stay in-domain.
        """
        out: dict[int, tuple[Adjacency, Adjacency]] = {}
        for chip in self.chips:
            out.setdefault(chip.domain, ({}, {}))
        domain_of = {c.node: c.domain for c in self.chips}
        chip_nodes = set(domain_of)
        for ch in self.channels:  # switch nodes take the domain of a chip they touch
            if ch.kind == "ipu_link" and (ch.src in chip_nodes) != (ch.dst in chip_nodes):
                inside, other = (ch.src, ch.dst) if ch.src in chip_nodes else (ch.dst, ch.src)
                domain_of.setdefault(other, domain_of[inside])
        for ch in self.channels:
            d = domain_of.get(ch.src)
            if ch.kind == "ipu_link" and d is not None and domain_of.get(ch.dst) == d:
                succ, pred = out[d]
                succ.setdefault(ch.src, {})[ch.dst] = 1.0
                pred.setdefault(ch.dst, {})[ch.src] = 1.0
        return out

    def domains(self) -> dict[int, tuple[int, ...]]:
        """Chip ids of each IPU-Link domain, in chip-id order."""
        out: dict[int, list[int]] = {}
        for chip in self.chips:
            out.setdefault(chip.domain, []).append(chip.id)
        return {d: tuple(ids) for d, ids in out.items()}

    # ---- routing -----------------------------------------------------------------------------
    def route(self, src: str, dst: str) -> Route:
        """The route from node ``src`` to node ``dst`` (cached). Raises ValueError if none."""
        key = (src, dst)
        hit = self._routes.get(key)
        if hit is not None:
            return hit
        if src == dst:
            route = Route((), 0.0)
        else:
            direct = self._between.get(key)
            path = [src, dst] if direct is not None else self._path(src, dst)
            chans = tuple(self._between[(a, b)] for a, b in pairwise(path))
            route = Route(chans, self._latency(src, chans))
        self._routes[key] = route
        return route

    def chip_route(self, a: int, b: int) -> Route:
        """Route between chips ``a`` and ``b``."""
        return self.route(self.chips[a].node, self.chips[b].node)

    def _path(self, src: str, dst: str) -> list[str]:
        chips = self._chip_by_node
        ca, cb = chips.get(src), chips.get(dst)
        if ca is not None and cb is not None and ca.domain == cb.domain:
            found = fewest_hops(*self._domain_links[ca.domain], src, dst)
            if found is not None:
                return found
        if ca is not None and cb is not None:
            via = self._via_gateways(ca, cb)
            if via is not None:
                return via
        path = self._least_latency(src, dst)
        if path is None:
            raise NoRouteError(f"no route from {src} to {dst} in system {self.name}")
        return path

    def _least_latency(self, src: str, dst: str) -> list[str] | None:
        if src not in self._node_set or dst not in self._node_set:
            return None
        return least_weight(self._succ, self._pred, src, dst)

    def _via_gateways(self, a: Chip, b: Chip) -> list[str] | None:
        """Chip -> its machine's gateway -> (cached gateway-to-gateway path) -> gateway -> chip.

        Used between IPU-Link domains, where every route leaves through a gateway: the search
        runs once per pair of gateways instead of once per pair of chips. None when either chip
        has no direct link to its own gateway (then the general search decides).
        """
        ga, gb = f"gw:{a.machine}", f"gw:{b.machine}"
        if (a.node, ga) not in self._between or (gb, b.node) not in self._between:
            return None
        key = (ga, gb)
        middle = self._gateway_paths.get(key)
        if middle is None and ga != gb:
            middle = self._via_switch(ga, gb)
            if middle is not None:
                self._gateway_paths[key] = middle
        if middle is None:
            found = self._least_latency(ga, gb)
            if found is None:
                raise ValueError(f"no route from {a.node} to {b.node} in system {self.name}")
            middle = self._gateway_paths[key] = found
        return [a.node, *middle, b.node]

    def _via_switch(self, ga: str, gb: str) -> list[str] | None:
        """[ga, switch, gb] through the lowest-latency switch both gateways link to directly
        (two hops: nothing between two IPU-Link domains is shorter), or None."""
        best: tuple[float, str] | None = None
        for sw in self._switches_of(ga):
            back = self._between.get((sw, gb))
            if back is None:
                continue
            lat = self.channels[self._between[(ga, sw)]].latency_s + self.channels[back].latency_s
            if best is None or lat < best[0]:
                best = (lat, sw)
        return None if best is None else [ga, best[1], gb]

    def _switches_of(self, node: str) -> list[str]:
        hit = self._switch_cache.get(node)
        if hit is None:
            hit = [n for n in self.successors(node) if n.startswith("sw:")]
            self._switch_cache[node] = hit
        return hit

    def _latency(self, src: str, chans: tuple[int, ...]) -> float:
        lat = sum(self.channels[c].latency_s for c in chans)
        chip = self._chip_by_node.get(src)
        if chip is not None and chans and self.channels[chans[0]].kind == "ipu_link":
            lat += chip.type.link_egress_latency_s
        return lat

    @cached_property
    def _node_set(self) -> frozenset[str]:
        return frozenset(self._nodes)

    @cached_property
    def _chip_by_node(self) -> dict[str, Chip]:
        return {c.node: c for c in self.chips}

    def host_node(self, chip: int) -> str | None:
        """The host nearest (least latency) to ``chip``, or None if the system has no host."""
        hit = self._hosts.get(chip)
        if hit is not None or chip in self._hosts:
            return hit
        best: tuple[float, str] | None = None
        gateway = f"gw:{self.chips[chip].machine}"
        if (self.chips[chip].node, gateway) in self._between:
            # a host on the chip's own gateway is nearer than any reached through another
            for node in self.successors(gateway):
                if isinstance(node, str) and node.startswith("host:"):
                    lat = self.route(node, self.chips[chip].node).latency_s
                    if best is None or (lat, node) < best:
                        best = (lat, node)
            if best is not None:
                self._hosts[chip] = best[1]
                return best[1]
        for node in self._nodes:
            if isinstance(node, str) and node.startswith("host:"):
                try:
                    lat = self.route(node, self.chips[chip].node).latency_s
                except ValueError:
                    continue
                if best is None or lat < best[0]:
                    best = (lat, node)
        self._hosts[chip] = None if best is None else best[1]
        return self._hosts[chip]

    # ---- syncs -------------------------------------------------------------------------------
    def sync_scope(self, chips: Sequence[int]) -> str:
        """``chip``, ``machine``, ``domain`` (one IPU-Link domain) or ``system`` (across domains
        over GW-Links): the smallest scope holding every chip of a sync."""
        return self._sync(chips)[0]

    def sync_latency_s(self, chips: Sequence[int]) -> float:
        """Seconds of one BSP sync over ``chips``, from the smallest scope holding them.

        One chip: its internal sync. One machine: the chip's external sync. Without a
        :class:`SyncModel` (e.g. the Mk1 server, whose figures Jia19 measured as one), every
        sync beyond one chip costs the external sync. With one, a sync over machines of one
        domain adds two Sync-Link hops per machine spanned beyond the first, and a sync over
        several domains adds a packet to the farthest domain's gateway and back.
        """
        return self._sync(chips)[1]

    def _sync(self, chips: Sequence[int]) -> tuple[str, float]:
        key = tuple(chips)
        hit = self._sync_cache.get(key)
        if hit is not None:
            return hit
        members = [self.chips[c] for c in set(key)]
        if not members:
            raise ValueError("a sync needs at least one chip")
        ct = members[0].type
        machines = {c.machine for c in members}
        domains = {c.domain for c in members}
        if len(members) == 1:
            out = ("chip", ct.sync_latency_s)
        elif len(machines) == 1:
            out = ("machine", ct.external_sync_latency_s)
        elif self.sync is None:
            out = ("domain" if len(domains) == 1 else "system", ct.external_sync_latency_s)
        else:
            span = max(
                max(c.machine for c in members if c.domain == d)
                - min(c.machine for c in members if c.domain == d)
                for d in domains
            )
            lat = ct.external_sync_latency_s + 2 * span * self.sync.machine_hop_s
            if len(domains) == 1:
                out = ("domain", lat)
            else:
                first = min(members, key=lambda c: c.id)
                far = max(
                    self.route(f"gw:{first.machine}", f"gw:{c.machine}").latency_s
                    for c in members
                    if c.domain != first.domain
                )
                out = ("system", lat + 2 * (far + 2 * self.sync.gw_packet_s))
        self._sync_cache[key] = out
        return out

    def is_connected(self) -> bool:
        """Whether every chip can reach every other chip (through any nodes and channels)."""
        return not self.unreachable_chips()

    def unreachable_chips(self) -> tuple[int, ...]:
        """Ids of the chips that cannot reach chip 0 or cannot be reached from it, in order.

        Only chips matter: a host or switch hanging off one side does not make the chips
        disconnected, and a stray node does not make them connected.
        """
        if self.num_chips <= 1:
            return ()
        start = self.chips[0].node
        forward = reachable(self._succ, start)
        backward = reachable(self._pred, start)
        both = forward & backward
        return tuple(c.id for c in self.chips[1:] if c.node not in both)
