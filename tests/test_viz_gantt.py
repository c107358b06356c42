"""Timeline data (simulator.viz.gantt): mirroring, aggregation, decimation, labels."""

from __future__ import annotations

from functools import cache

import pytest

import strategies  # noqa: F401 - registers every strategy
from simulator.run import Outcome, run_scenario
from simulator.viz.gantt import build, ranges
from simulator.viz.timeline import figure, idle_bars

BERT16 = "scenarios/mlperf/bert-large-v2.0-bow-pod16.yaml"
SMALL = ("training.grad_accum=8", "training.global_batch=96")


@cache
def bert16() -> Outcome:
    """BERT-Large, 2 replicas x 8 stages on bow-pod16, 8 micro-batches (fast)."""
    return run_scenario(BERT16, SMALL)


@cache
def quickstart() -> Outcome:
    return run_scenario("scenarios/quickstart.yaml")


def test_ranges() -> None:
    assert ranges([3, 1, 2, 8, 10, 11]) == "1–3, 8, 10–11"
    assert ranges([5]) == "5"


def test_every_chip_of_every_replica_gets_a_row_grouped_by_replica() -> None:
    o = bert16()
    g = build(o.trace, o.system, o.plan.info, title="t")
    lay = o.plan.info["layout"]
    chip_rows = [r for r in g.rows if r.channel is None]
    assert [r.chips for r in chip_rows] == [(c,) for row in lay.chips for c in row]
    assert [name for name, _, _ in g.groups()] == ["replica 0", "replica 1", "links"]
    assert chip_rows[0].label == f"r0 s0 · ipu {lay.chips[0][0]}"


def test_replica_1_mirrors_replica_0_and_keeps_its_own_collectives() -> None:
    o = bert16()
    g = build(o.trace, o.system, o.plan.info)
    lay = o.plan.info["layout"]
    r0 = next(i for i, r in enumerate(g.rows) if r.chips == (lay.chips[0][3],))
    r1 = next(i for i, r in enumerate(g.rows) if r.chips == (lay.chips[1][3],))
    b0 = [b for b in g.bars if b.row == r0]
    b1 = [b for b in g.bars if b.row == r1]
    assert [(b.kind, b.start, b.end, b.label) for b in b0] == [
        (b.kind, b.start, b.end, b.label) for b in b1
    ]
    assert all(not b.mirrored for b in b0)
    # its own: the collectives and the step's host sync (both span every replica)
    assert all(b.mirrored == (b.kind not in ("collective", "host")) for b in b1)
    assert any(b.kind == "collective" for b in b1)
    assert any("mirrored" in n for n in g.notes)


def test_bars_carry_micro_batch_labels_and_layer_names() -> None:
    o = bert16()
    g = build(o.trace, o.system, o.plan.info)
    f = [b for b in g.bars if b.label == "F mb3 s2" and b.kind == "compute"]
    assert f and f[0].flops > 0
    assert f[0].detail.startswith("layers ")
    assert any(b.kind == "transfer" and b.label.startswith("act mb") for b in g.bars)


def test_identical_rows_aggregate_past_full_rows() -> None:
    o = bert16()
    g = build(o.trace, o.system, o.plan.info, full_rows=4)
    chip_rows = [r for r in g.rows if r.channel is None]
    assert len(chip_rows) == 8  # one per stage: both replicas are identical
    assert all(len(r.chips) == 2 for r in chip_rows)
    assert chip_rows[0].label.startswith("r0–1 s0")
    assert any(n.startswith("Aggregated") for n in g.notes)


def test_data_parallel_replicas_collapse_to_one_row() -> None:
    o = quickstart()
    g = build(o.trace, o.system, o.plan.info, full_rows=8)
    chip_rows = [r for r in g.rows if r.channel is None]
    assert len(chip_rows) == 1 and chip_rows[0].chips == tuple(range(16))
    # the links rows: the host writing replica 0's input (Host-Link, gateway -> DDR)
    assert {r.group for r in g.rows if r.channel is not None} == {"links"}


def test_decimation_keeps_the_bar_budget_and_says_so() -> None:
    o = bert16()
    full = build(o.trace, o.system, o.plan.info, full_rows=4)
    g = build(o.trace, o.system, o.plan.info, full_rows=4, max_bars=300)
    assert len(g.bars) <= 300 < len(full.bars)
    assert sum(b.merged for b in g.bars) == len(full.bars)
    assert any(n.startswith("Decimated") for n in g.notes)
    assert pytest.approx(sum(b.flops for b in g.bars)) == sum(b.flops for b in full.bars)


def test_idle_bars_fill_the_gaps_of_chip_rows() -> None:
    o = bert16()
    g = build(o.trace, o.system, o.plan.info)
    idle = idle_bars(g)
    for i, row in enumerate(g.rows):
        if row.channel is None:
            gaps = sum(b.duration for b in idle if b.row == i)
            assert gaps + row.busy_s == pytest.approx(g.makespan, rel=1e-6)


def test_figure_has_one_legend_entry_per_kind_and_a_jump_menu() -> None:
    o = bert16()
    fig = figure(build(o.trace, o.system, o.plan.info))
    shown = [t.name for t in fig.data if t.showlegend is not False]
    assert shown == [
        "compute",
        "exchange",
        "sync",
        "collective",
        "memory traffic",
        "host",
        "link transfer",
        "idle",
        "labels",
    ]
    labels = [b.label for b in fig.layout.updatemenus[0].buttons]
    assert labels == ["all rows", "replica 0", "replica 1", "links"]
