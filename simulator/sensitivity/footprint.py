"""What a run uses of its system, and whether a changed system differs there.

"Touched" is decided from the base run itself, never by running a variant:

* **chip constants**: the base run's chips carry a recording copy of their
  :class:`~simulator.hardware.model.ChipType`, which notes every field (and every dtype key of
  a per-dtype field) read while planning and while executing. Reads while summarising
  (peak FLOP/s for utilisation, power for energy) do not count: they cannot move the time.
* **links**: every channel the run routed over (routes asked of the System, recorded) or
  carried bytes on.
* **syncs**: the scopes of the syncs the run paid (chip, machine, domain, system).
* **hosts**: the step-end (``HostSync``) and input (``HostLoad``) tasks of the graph;
  **Streaming Memory**: ``MemLoad``/``MemStore`` tasks and traffic on ``ddr`` channels.

A variant System (one assumed value at one end of its range) is compared with the base one
(:func:`diff`); it *touches* the run when it differs in something the run used
(:meth:`Footprint.touches`). The same comparison says whether the base plan can be reused
(:meth:`Footprint.plan_shared`): a task graph depends on the System's structure and its chips'
constants read while planning, never on link, sync or host values (the contract of
docs/architecture.md, "Sensitivity"), so a variant that changes only such values executes the
base plan again.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from simulator.engine.graph import TaskGraph
from simulator.engine.tasks import HostLoad, HostSync, MemLoad, MemStore
from simulator.engine.trace import Trace
from simulator.hardware.model import Chip, ChipType, TileCostModel
from simulator.hardware.system import System

PHASES = ("plan", "execute", "summarise")


class ReadLog:
    """Field paths read from recording chip types, per phase (``plan``, ``execute``,
    ``summarise``)."""

    def __init__(self) -> None:
        self.phase = "plan"
        self.reads: dict[str, set[str]] = {p: set() for p in PHASES}

    def add(self, name: str) -> None:
        self.reads[self.phase].add(name)

    def set_phase(self, phase: str) -> None:
        self.phase = phase


class _RecordingMapping(Mapping[str, Any]):
    """A per-dtype field that notes which keys are read."""

    def __init__(self, name: str, inner: Mapping[str, Any], log: ReadLog) -> None:
        self._name, self._inner, self._log = name, inner, log

    def __getitem__(self, key: str) -> Any:
        self._log.add(f"{self._name}.{key}")
        return self._inner[key]

    def __iter__(self) -> Iterator[str]:
        for key in self._inner:
            self._log.add(f"{self._name}.{key}")
            yield key

    def __len__(self) -> int:
        return len(self._inner)


def _logged_getattribute(prefix: str) -> Any:
    def __getattribute__(self: Any, name: str) -> Any:
        if name[:1] != "_":
            try:
                log = object.__getattribute__(self, "_log")
            except AttributeError:  # a copy made by dataclasses.replace: not recording
                log = None
            if log is not None:
                log.add(prefix + name)
        return object.__getattribute__(self, name)

    return __getattribute__


class _RecordingCost(TileCostModel):
    __slots__ = ("_log",)
    __getattribute__ = _logged_getattribute("cost.")


class _RecordingChipType(ChipType):
    __slots__ = ("_log",)
    __getattribute__ = _logged_getattribute("")


def _wrap(value: Any, name: str, log: ReadLog) -> Any:
    return _RecordingMapping(name, value, log) if isinstance(value, Mapping) else value


def recording_chip_type(ct: ChipType, log: ReadLog) -> ChipType:
    """A copy of ``ct`` that notes every field read into ``log``."""
    cost = None
    if ct.cost is not None:
        values = {f.name: _wrap(getattr(ct.cost, f.name), f"cost.{f.name}", log)
                  for f in fields(ct.cost)}  # fmt: skip
        cost = _RecordingCost(**values)
        object.__setattr__(cost, "_log", log)
    values = {f.name: _wrap(getattr(ct, f.name), f.name, log) for f in fields(ct)}
    values["cost"] = cost
    out = _RecordingChipType(**values)
    object.__setattr__(out, "_log", log)
    return out


@dataclass
class Recorder:
    """The recording copy of a System and what the run read of it."""

    system: System
    log: ReadLog
    channels: set[int] = field(default_factory=set)
    sync_groups: set[tuple[int, ...]] = field(default_factory=set)


def recording_system(system: System) -> Recorder:
    """``system`` rebuilt with recording chip types, its routes and syncs noted.

    The copy has the same chips, channels and nodes, so a run on it gives the same result.
    """
    log = ReadLog()
    recorded: dict[int, ChipType] = {}
    chips = []
    for c in system.chips:
        ct = recorded.get(id(c.type))
        if ct is None:
            ct = recorded[id(c.type)] = recording_chip_type(c.type, log)
        chips.append(Chip(c.id, ct, c.machine, c.domain))
    copy = System(
        system.name,
        chips,
        system.channels,
        nodes=list(system.graph.nodes),
        streaming_memory=system.streaming_memory,
        info=system.info,
        sync=system.sync,
        hosts=system.hosts,
    )
    rec = Recorder(copy, log)
    route, sync = copy.route, copy.sync_latency_s

    def noted_route(src: str, dst: str) -> Any:
        r = route(src, dst)
        rec.channels.update(r.channels)
        return r

    def noted_sync(chips: Any) -> float:
        rec.sync_groups.add(tuple(chips))
        return sync(chips)

    copy.route = noted_route  # type: ignore[method-assign]
    copy.sync_latency_s = noted_sync  # type: ignore[method-assign]
    return rec


# ---- differences between two systems -------------------------------------------------------


def _flat(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Field path -> value of a dataclass (mappings and nested dataclasses flattened)."""
    out: dict[str, Any] = {}
    for f in fields(obj):
        value = object.__getattribute__(obj, f.name)
        name = prefix + f.name
        if isinstance(value, Mapping):
            out.update({f"{name}.{k}": v for k, v in value.items()})
        elif value is not None and hasattr(value, "__dataclass_fields__"):
            out.update(_flat(value, name + "."))
        else:
            out[name] = value
    return out


def _changed(a: Any, b: Any) -> set[str]:
    """Field names of two dataclasses (or None) that differ."""
    if a is None or b is None:
        return set() if a is b else {"*"}
    fa, fb = _flat(a), _flat(b)
    return {k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k)}


_KNOWN = {"name", "chips", "channels", "streaming_memory", "info", "sync", "hosts", "graph"}


@dataclass(frozen=True)
class Diff:
    """How a variant System differs from the base one."""

    structural: bool  # chips, nodes or channel endpoints differ (a different graph)
    nodes: frozenset[str]  # nodes whose channels were added, removed or rewired
    channels: frozenset[int]  # channels (same ids) whose capacity, latency or links differ
    chip_fields: frozenset[str]  # ChipType field paths that differ
    sync: frozenset[str]
    hosts: frozenset[str]
    streaming: bool
    other: frozenset[str]  # other System attributes that differ (touched, conservatively)

    @property
    def empty(self) -> bool:
        return not (
            self.structural or self.channels or self.chip_fields or self.sync or self.hosts
            or self.streaming or self.other
        )  # fmt: skip


def diff(a: System, b: System) -> Diff:
    """How ``b`` differs from ``a`` (both built from the same files, one value changed)."""
    ends_a = [(c.src, c.dst, c.kind) for c in a.channels]
    ends_b = [(c.src, c.dst, c.kind) for c in b.channels]
    where_a = [(c.machine, c.domain) for c in a.chips]
    where_b = [(c.machine, c.domain) for c in b.chips]
    structural = (
        ends_a != ends_b or where_a != where_b or list(a.graph.nodes) != list(b.graph.nodes)
    )
    nodes: set[str] = set()
    channels: set[int] = set()
    if structural:
        for src, dst, _ in set(ends_a) ^ set(ends_b):
            nodes.update((src, dst))
        nodes.update(set(a.graph.nodes) ^ set(b.graph.nodes))
    else:
        channels = {i for i, (x, y) in enumerate(zip(a.channels, b.channels, strict=True))
                    if x != y}  # fmt: skip
    types_a = {id(c.type): c.type for c in a.chips}
    types_b = {id(c.type): c.type for c in b.chips}
    chip_fields: set[str] = set()
    for ta, tb in zip(types_a.values(), types_b.values(), strict=False):
        chip_fields |= _changed(ta, tb)
    other = {
        k for k in vars(a).keys() | vars(b).keys()
        if not k.startswith("_") and k not in _KNOWN and vars(a).get(k) != vars(b).get(k)
    }  # fmt: skip
    return Diff(
        structural,
        frozenset(nodes),
        frozenset(channels),
        frozenset(chip_fields),
        frozenset(_changed(a.sync, b.sync)),
        frozenset(_changed(a.hosts, b.hosts)),
        a.streaming_memory != b.streaming_memory,
        frozenset(other),
    )


# ---- what the base run used ------------------------------------------------------------------


@dataclass(frozen=True)
class Footprint:
    """What the base run used of its system (module docstring)."""

    plan_reads: frozenset[str]  # ChipType field paths read while planning
    exec_reads: frozenset[str]  # ... while executing
    channels: frozenset[int]
    nodes: frozenset[str]
    scopes: frozenset[str]  # sync scopes paid: chip, machine, domain, system
    host_sync: bool
    host_input: bool
    streaming: bool

    @classmethod
    def of(cls, rec: Recorder, graph: TaskGraph, trace: Trace | None) -> Footprint:
        system = rec.system
        channels = set(rec.channels)
        if trace is not None and trace.channel_bytes is not None:
            channels |= {i for i, b in enumerate(trace.channel_bytes) if b > 0}
        nodes = {system.channels[i].src for i in channels} | {
            system.channels[i].dst for i in channels
        }
        kinds = {type(n.task) for n in graph.nodes}
        ddr = any(system.channels[i].kind == "ddr" for i in channels)
        return cls(
            frozenset(rec.log.reads["plan"]),
            frozenset(rec.log.reads["execute"]),
            frozenset(channels),
            frozenset(nodes),
            frozenset(system.sync_scope(g) for g in rec.sync_groups),
            HostSync in kinds,
            HostLoad in kinds,
            ddr or bool(kinds & {MemLoad, MemStore}),
        )

    def touches(self, d: Diff) -> bool:
        """Whether a System differing from the base by ``d`` can change the run's time."""
        if d.other or _read(d.chip_fields, self.plan_reads | self.exec_reads):
            return True
        if (d.structural and d.nodes & self.nodes) or d.channels & self.channels:
            return True
        if d.sync and (
            "system" in self.scopes or ("domain" in self.scopes and d.sync - {"gw_packet_s"})
        ):
            return True
        if d.hosts and (self.host_sync or self.host_input):
            used = set()
            if self.host_sync:
                used |= {"count", "instances", "step_overhead_s"}
            if self.host_input:
                used |= {"count", "samples_per_s_per_host"}
            if d.hosts & used or d.hosts - _HOST_FIELDS:
                return True
        return d.streaming and self.streaming

    def plan_shared(self, d: Diff) -> bool:
        """Whether the base plan holds for a System differing by ``d``."""
        return not d.structural and not d.other and not _read(d.chip_fields, self.plan_reads)

    def needs_execution(self, d: Diff) -> bool:
        """Whether the base graph on a System differing by ``d`` can take another time (chip
        constants read only while planning have done their work in the graph)."""
        return self.touches(replace(d, chip_fields=_read(d.chip_fields, self.exec_reads)))


_HOST_FIELDS = {"count", "instances", "step_overhead_s", "samples_per_s_per_host"}

#: Nested ChipType dataclasses whose fields are recorded one by one (the rest, such as
#: ``messages`` and ``sparse``, are recorded as a whole when read: any of their fields counts)
_RECORDED_BY_FIELD = {"cost"}


def _read(changed: frozenset[str], reads: frozenset[str]) -> frozenset[str]:
    """The changed ChipType field paths a run read: read by path, or — for a nested section
    not recorded field by field — by the section's name."""
    return frozenset(
        f
        for f in changed
        if f in reads
        or ("." in f and f.split(".", 1)[0] not in _RECORDED_BY_FIELD and f.split(".")[0] in reads)
    )
