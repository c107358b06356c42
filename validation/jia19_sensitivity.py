"""Does a Jia19 communication record's figure rest only on calibrated values? A check of the
classes of validation/jia19.yaml against the assumptions no point fixes.

For each named ASSUMPTION of the GC2 that the comm model reads, set to each end of its range,
the five per-message constants are re-solved on their points (validation/calibrate_messages.py,
as a change of assumption would require) and every compared record is run again. A record whose
figure moves is not fixed by the calibrated values alone: a consistency record must not move by
more than :data:`CONSISTENCY_BOUND` (tests/test_validation_jia19.py, slow), else it is a
prediction. ``python -m validation.jia19_sensitivity`` prints the largest move of every record.
Run from the repository root; about a minute.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
from dataclasses import dataclass
from typing import Any

from simulator.config import paths
from simulator.config.load import validate
from simulator.config.scenario import load_scenario
from simulator.config.topology import SystemFile
from simulator.config.yamlio import load_document
from simulator.hardware.build import load_chip_type
from simulator.hardware.generate import build_system
from simulator.hardware.model import ChipType
from simulator.run import run_loaded
from validation import calibrate_messages
from validation.jia19 import ROOT, UNIT_SIZE, Record, load_records

#: A consistency record's figure may move by this much (relative) over the assumptions' ranges.
CONSISTENCY_BOUND = 0.01


@dataclass(frozen=True)
class Assumption:
    """One named assumption of topologies/chips/gc2.yaml and the range it is checked over."""

    name: str
    key: str  # ChipType field, or messages.<field>
    low: float
    high: float
    note: str


ASSUMPTIONS = (
    Assumption("TILE-SEND-MESSAGE", "messages.tile_send_cycles", 0.0, 6.0, "range in gc2.yaml"),
    Assumption(
        "TILE-RECEIVE-MESSAGE", "messages.tile_receive_cycles", 1.0, 12.0, "range in gc2.yaml"
    ),
    Assumption(
        "LINK-MESSAGE-HEADER", "messages.ipu_link_overhead_bytes", 0.0, 41.0, "range in gc2.yaml"
    ),
    Assumption("SYNC-INTERNAL", "sync_latency_s", 50e-9, 100e-9, "ipu-hardware §3: 0.05-0.1 µs"),
    Assumption(
        "SYNC-EXTERNAL", "external_sync_latency_s", 156.25e-9, 625e-9, "no range given: x0.5-x2"
    ),
)


def with_value(ct: ChipType, key: str, value: float) -> ChipType:
    """``ct`` with one field (``messages.<name>`` for a per-message cost) replaced."""
    changes: dict[str, Any] = {key: value}
    if key.startswith("messages."):
        msgs = dataclasses.replace(ct.messages, **{key.split(".", 1)[1]: value})
        changes = {"messages": msgs}
    return dataclasses.replace(ct, **changes)


@functools.cache
def _system_file() -> SystemFile:
    return validate(load_document(paths.resolve("mk1-server16", "system")), SystemFile)


def figure(ct: ChipType, record: Record) -> float:
    """The record's figure (as :func:`validation.jia19.predict`) on the Mk1 server built with
    ``ct``."""
    assert record.scenario is not None and record.compare is not None
    system = build_system(_system_file(), ct, name="mk1-server16")

    def run(overrides: list[str]) -> float:
        loaded = load_scenario(ROOT / record.scenario, overrides)  # type: ignore[operator]
        result = run_loaded(loaded, system=system, baseline=False).result
        return float(getattr(result, record.compare))  # type: ignore[arg-type]

    value = run(record.set)
    if record.minus is not None:
        value -= run(record.minus.set)
    return value * record.scale / UNIT_SIZE[record.compare][record.unit]


def moves(records: list[Record] | None = None) -> dict[str, dict[str, float]]:
    """record id -> {assumption@end: figure / shipped figure - 1}, constants re-solved."""
    records = [r for r in (records or load_records()) if r.kind != "not_modelled"]
    base = load_chip_type("gc2")
    shipped = {r.id: figure(base, r) for r in records}
    out: dict[str, dict[str, float]] = {r.id: {} for r in records}
    for a in ASSUMPTIONS:
        for end in (a.low, a.high):
            moved = with_value(base, a.key, end)
            solved = calibrate_messages.chip_with(moved, calibrate_messages.solve(moved))
            for r in records:
                out[r.id][f"{a.name}@{end:g}"] = figure(solved, r) / shipped[r.id] - 1.0
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m validation.jia19_sensitivity")
    parser.parse_args(argv)
    kinds = {r.id: r.kind for r in load_records()}
    for rid, m in moves().items():
        worst = max(m, key=lambda k: abs(m[k]))
        sys.stdout.write(f"{rid:36} {kinds[rid]:12} {m[worst]:+.2%} ({worst})\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
