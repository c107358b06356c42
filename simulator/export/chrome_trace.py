"""The Trace as Chrome / Perfetto trace-event JSON (the "JSON Object Format").

Events are complete events (``ph: "X"``: name, cat, ts, dur, pid, tid, args) in microseconds,
plus metadata events (``ph: "M"``) naming processes and threads. pid = replica (training
layouts; the chip's machine otherwise), tid = chip id; a chip's RNG unit is thread
``RNG_TID + chip``; links are the process ``LINKS_PID`` with tid = channel id.

Within one thread, trace viewers need events to nest (no partial overlap). Spans on one row
that overlap (concurrent transfers on a link, Streaming Memory traffic beside compute) go to
extra lanes: thread ``tid + LANE_TID * lane``, named "… lane 2". Times are rounded to the
nanosecond with ``dur = round(end) - round(start)``, so back-to-back spans stay back to back.

Replicas that were not simulated get replica 0's spans mirrored (``args.mirrored: true``)
while the trace stays under ``max_events``; past that only their own spans are written and
``otherData.note`` says so.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from simulator.engine.trace import Span

RNG_TID = 1_000_000
LANE_TID = 10_000_000
LINKS_PID = 1_000_000


def _us(seconds: float) -> float:
    return round(seconds * 1e6, 3)


def _lanes(spans: Iterable[tuple[Span, bool]]) -> list[tuple[int, Span, bool]]:
    """(lane, span, mirrored): each lane holds disjoint spans (greedy interval partitioning)."""
    ends: list[float] = []
    out = []
    for s, m in sorted(spans, key=lambda p: (_us(p[0].start), _us(p[0].end), p[0].task)):
        start = _us(s.start)
        lane = next((i for i, e in enumerate(ends) if e <= start), len(ends))
        if lane == len(ends):
            ends.append(0.0)
        ends[lane] = _us(s.end)
        out.append((lane, s, m))
    return out


def events(outcome: Any, max_events: int = 2_000_000) -> tuple[list[dict[str, Any]], str]:
    """The trace events of a run, and a note ("" when every replica was written in full)."""
    trace, system = outcome.trace, outcome.system
    lay = outcome.plan.info.get("layout")
    chips: list[list[int]] | None = getattr(lay, "chips", None)
    pid_of: dict[int, int] = {}
    base: dict[int, int] = {}
    stage: dict[int, int] = {}
    if chips:
        for r, row in enumerate(chips):
            for k, c in enumerate(row):
                pid_of[c], base[c], stage[c] = r, chips[0][k], k
    by_chip: dict[int, list[Span]] = {}
    for s in trace.chip_spans:
        by_chip.setdefault(s.row, []).append(s)
    by_rng: dict[int, list[Span]] = {}
    for s in trace.rng_spans:
        by_rng.setdefault(s.row, []).append(s)
    own_kinds = {s.kind for c, ss in by_chip.items() if base.get(c, c) != c for s in ss}
    mirrored_count = sum(
        sum(1 for s in by_chip.get(b, ()) if s.kind not in own_kinds) + len(by_rng.get(b, ()))
        for c, b in base.items()
        if b != c
    )
    mirror = len(trace.chip_spans) + mirrored_count <= max_events
    note = (
        ""
        if mirror or not mirrored_count
        else "replicas other than 0 carry only their own (collective) spans: mirroring replica "
        f"0's {mirrored_count:,} spans onto them would pass {max_events:,} events"
    )
    out: list[dict[str, Any]] = []
    threads: dict[tuple[int, int], str] = {}
    procs: dict[int, str] = {}
    used = sorted(set(by_chip) | set(by_rng) | set(base))
    for c in used:
        pid = pid_of.get(c, system.chips[c].machine)
        procs[pid] = f"replica {pid}" if chips and c in pid_of else f"machine {pid}"
        b = base.get(c, c)
        rows: list[tuple[int, str, list[tuple[Span, bool]]]] = []
        own = [(s, False) for s in by_chip.get(c, ()) if b == c or s.kind in own_kinds]
        mirrored = (
            [(s, True) for s in by_chip.get(b, ()) if s.kind not in own_kinds]
            if b != c and mirror
            else []
        )
        name = f"ipu {c}" + (f" · stage {stage[c]}" if c in stage else "")
        rows.append((c, name, own + mirrored))
        rng = [(s, False) for s in by_rng.get(c, ())]
        if not rng and b != c and mirror:
            rng = [(s, True) for s in by_rng.get(b, ())]
        rows.append((RNG_TID + c, f"{name} RNG", rng))
        for tid, tname, spans in rows:
            for lane, s, m in _lanes(spans):
                t = tid + LANE_TID * lane
                threads[(pid, t)] = tname + (f" lane {lane + 1}" if lane else "")
                out.append(_event(s, pid, t, m))
    for ch, link_spans in sorted(_by_row(trace.link_spans).items()):
        c = system.channels[ch]
        procs[LINKS_PID] = "links"
        for lane, s, m in _lanes((s, False) for s in link_spans):
            t = ch + LANE_TID * lane
            threads[(LINKS_PID, t)] = f"{c.src}→{c.dst}" + (f" lane {lane + 1}" if lane else "")
            out.append(_event(s, LINKS_PID, t, m))
    meta: list[dict[str, Any]] = []
    for pid, pname in sorted(procs.items()):
        meta.append(_meta("process_name", pid, 0, {"name": pname}))
        meta.append(_meta("process_sort_index", pid, 0, {"sort_index": pid}))
    for (pid, tid), tname in sorted(threads.items()):
        meta.append(_meta("thread_name", pid, tid, {"name": tname}))
        meta.append(_meta("thread_sort_index", pid, tid, {"sort_index": tid}))
    out.sort(key=lambda e: (e["pid"], e["tid"], e["ts"], -e["dur"]))
    return meta + out, note


def _by_row(spans: Iterable[Span]) -> dict[int, list[Span]]:
    out: dict[int, list[Span]] = {}
    for s in spans:
        out.setdefault(s.row, []).append(s)
    return out


def _meta(name: str, pid: int, tid: int, args: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "ph": "M", "pid": pid, "tid": tid, "args": args}


def _event(s: Span, pid: int, tid: int, mirrored: bool) -> dict[str, Any]:
    ts = _us(s.start)
    args: dict[str, Any] = {"task": s.task}
    if s.flops:
        args["flops"] = s.flops
    if s.bytes:
        args["bytes"] = s.bytes
    if mirrored:
        args["mirrored"] = True
    return {
        "name": s.label or s.kind,
        "cat": s.kind,
        "ph": "X",
        "ts": ts,
        "dur": round(_us(s.end) - ts, 3),
        "pid": pid,
        "tid": tid,
        "args": args,
    }


def document(outcome: Any, max_events: int = 2_000_000) -> dict[str, Any]:
    """The whole JSON object: ``traceEvents``, ``displayTimeUnit`` and ``otherData``."""
    evs, note = events(outcome, max_events)
    other: dict[str, Any] = {
        "name": outcome.result.name,
        "system": outcome.system.name,
        "makespan_us": _us(outcome.trace.makespan),
        "pid": "replica (training layouts) or machine; links are pid "
        f"{LINKS_PID}; RNG units are tid {RNG_TID} + chip",
    }
    if note:
        other["note"] = note
    # "generator" first, so a later run recognises its own file (simulator.outputs)
    return {"generator": "ipusim", "traceEvents": evs, "displayTimeUnit": "ms", "otherData": other}


def write(outcome: Any, path: str | Path, max_events: int = 2_000_000) -> int:
    """Write the trace JSON to ``path``; return the number of events."""
    from simulator import outputs

    doc = document(outcome, max_events)
    outputs.write(path, (json.dumps(doc, separators=(",", ":")) + "\n").encode("utf-8"))
    return len(doc["traceEvents"])
