"""Chrome / Perfetto trace-event JSON (simulator.export.chrome_trace).

Checked against the trace-event format ("Trace Event Format", JSON Object Format): the
object has ``traceEvents``; complete events (ph X) need name, ph, ts, dur, pid, tid with
numeric ts/dur >= 0; metadata events (ph M) name processes and threads with ``args.name`` or
set ``args.sort_index``; events of one thread must nest (no partial overlap).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import strategies  # noqa: F401 - registers every strategy
from simulator.engine.trace import Span, Trace
from simulator.export.chrome_trace import LANE_TID, LINKS_PID, document
from simulator.run import Outcome, run_scenario

ROOT = Path(__file__).resolve().parents[1]
BERT16 = "scenarios/mlperf/bert-large-v2.0-bow-pod16.yaml"
SMALL = ("training.grad_accum=8", "training.global_batch=96")
REQUIRED = {"X": {"name", "ph", "ts", "dur", "pid", "tid"}, "M": {"name", "ph", "pid", "args"}}
METADATA = {"process_name", "thread_name", "process_sort_index", "thread_sort_index"}


def problems(doc: dict[str, Any]) -> list[str]:
    """Every way ``doc`` breaks the trace-event format (empty when it is valid)."""
    out: list[str] = []
    events = doc.get("traceEvents")
    if not isinstance(events, list):
        return ["no traceEvents list"]
    if doc.get("displayTimeUnit", "ms") not in ("ms", "ns"):
        out.append("displayTimeUnit must be ms or ns")
    threads: dict[tuple[int, int], list[tuple[float, float, str]]] = defaultdict(list)
    for i, e in enumerate(events):
        ph = e.get("ph")
        if ph not in REQUIRED:
            out.append(f"event {i}: phase {ph!r} not written by ipusim")
            continue
        missing = REQUIRED[ph] - set(e)
        if missing:
            out.append(f"event {i}: missing {sorted(missing)}")
            continue
        if not all(isinstance(e[k], int) for k in ("pid", "tid") if k in e):
            out.append(f"event {i}: pid/tid must be integers")
        if ph == "M":
            if e["name"] not in METADATA:
                out.append(f"event {i}: unknown metadata {e['name']}")
            key = "sort_index" if e["name"].endswith("sort_index") else "name"
            if key not in e["args"]:
                out.append(f"event {i}: metadata without args.{key}")
            continue
        if not isinstance(e["name"], str) or not e["name"]:
            out.append(f"event {i}: empty name")
        for k in ("ts", "dur"):
            if not isinstance(e[k], int | float) or e[k] < 0:
                out.append(f"event {i}: {k} must be a number >= 0")
        threads[(e["pid"], e["tid"])].append((e["ts"], e["ts"] + e["dur"], e["name"]))
    for key, spans in threads.items():
        stack: list[float] = []
        for start, end, name in sorted(spans, key=lambda s: (s[0], -s[1])):
            while stack and stack[-1] <= start + 1e-9:
                stack.pop()
            if stack and end > stack[-1] + 1e-9:
                out.append(f"thread {key}: {name} [{start}, {end}] overlaps its parent")
            stack.append(end)
    return out


@cache
def bert16() -> Outcome:
    return run_scenario(BERT16, SMALL)


def test_bert_pipeline_trace_is_valid_trace_event_json() -> None:
    doc = json.loads(json.dumps(document(bert16())))
    assert problems(doc) == []


def test_pid_is_replica_tid_is_chip_and_threads_are_named() -> None:
    o = bert16()
    doc = document(o)
    lay = o.plan.info["layout"]
    names = {
        (e["pid"], e["tid"]): e["args"]["name"]
        for e in doc["traceEvents"]
        if e["ph"] == "M" and e["name"] == "thread_name"
    }
    procs = {
        e["pid"]: e["args"]["name"]
        for e in doc["traceEvents"]
        if e["ph"] == "M" and e["name"] == "process_name"
    }
    assert procs[0] == "replica 0" and procs[1] == "replica 1" and procs[LINKS_PID] == "links"
    for r, row in enumerate(lay.chips):
        for k, c in enumerate(row):
            assert names[(r, c)] == f"ipu {c} · stage {k}"
    x = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    f = [e for e in x if e["name"] == "F mb0 s0" and e["cat"] == "compute"]
    assert {(e["pid"], e["tid"]) for e in f} == {(0, lay.chips[0][0]), (1, lay.chips[1][0])}
    assert [e["args"].get("mirrored", False) for e in sorted(f, key=lambda e: e["pid"])] == [
        False,
        True,
    ]
    assert f[0]["args"]["flops"] > 0


def test_times_are_microseconds_of_the_simulated_step() -> None:
    o = bert16()
    doc = document(o)
    x = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    end = max(e["ts"] + e["dur"] for e in x)
    assert abs(end - o.trace.makespan * 1e6) < 0.01
    assert doc["otherData"]["makespan_us"] == round(o.trace.makespan * 1e6, 3)


def test_overlapping_spans_go_to_extra_lanes_and_still_nest() -> None:
    o = bert16()
    trace = Trace(makespan=3e-6)
    trace.chip_spans = [
        Span(0, 0.0, 2e-6, "compute", 0, "F mb0 s0", flops=1.0),
        Span(0, 1e-6, 3e-6, "memory", 1, "load", bytes=8.0),  # overlaps the compute
    ]
    trace.link_spans = [
        Span(0, 0.0, 2e-6, "transfer", 2, "act a", bytes=1.0),
        Span(0, 1e-6, 3e-6, "transfer", 3, "act b", bytes=1.0),
    ]
    fake = SimpleNamespace(
        trace=trace,
        system=o.system,
        plan=SimpleNamespace(info={}),
        result=SimpleNamespace(name="fake"),
    )
    doc = document(fake)
    assert problems(doc) == []
    x = {e["name"]: e for e in doc["traceEvents"] if e["ph"] == "X"}
    assert x["F mb0 s0"]["tid"] == 0 and x["load"]["tid"] == LANE_TID
    assert x["act a"]["tid"] == 0 and x["act b"]["tid"] == LANE_TID
    assert x["act b"]["pid"] == LINKS_PID
    names = {e["args"]["name"] for e in doc["traceEvents"] if e["name"] == "thread_name"}
    assert "ipu 0 lane 2" in names


def test_mirroring_stops_at_the_event_budget_and_says_so() -> None:
    doc = document(bert16(), max_events=100)
    assert "note" in doc["otherData"]
    assert not any(e.get("args", {}).get("mirrored") for e in doc["traceEvents"])
    assert problems(doc) == []


def test_cli_writes_the_trace(tmp_path: Path) -> None:
    out = tmp_path / "t.json"
    cmd = [sys.executable, "-m", "simulator.cli", "run", "scenarios/quickstart.yaml"]
    run = subprocess.run([*cmd, "--trace", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "trace written to" in run.stderr
    doc = json.loads(out.read_text())
    assert problems(doc) == []
    pids = {e["pid"] for e in doc["traceEvents"] if e["ph"] == "X"}
    assert pids == set(range(16)) | {LINKS_PID}  # 16 data-parallel replicas; the host link
