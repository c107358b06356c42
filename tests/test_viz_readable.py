"""Charts a person can read (issue 14, item 6): the topology title clear of the legend,
distinct colour-bar ticks, exchange visible in decimated timelines, readable log axes, sweep
heatmap axes sorted."""

from __future__ import annotations

from functools import cache

from simulator.hardware.build import load_system
from simulator.run import Outcome, run_scenario
from simulator.viz.gantt import build
from simulator.viz.plots import heatmap_figure, log_ticks, percent_format
from simulator.viz.timeline import COLOURS, figure
from simulator.viz.topology import figure as topology_figure


@cache
def bert16() -> Outcome:
    return run_scenario(
        "mlperf/bert-large-v2.0-bow-pod16", ("training.grad_accum=8", "training.global_batch=96")
    )


def test_topology_legend_is_below_the_title() -> None:
    fig = topology_figure(load_system("pod16"), {frozenset(("ipu:0", "ipu:1")): 0.004}, "run")
    layout = fig.layout
    assert layout.legend.y < 0 and layout.legend.yanchor == "top"  # under the drawing
    assert layout.title.text == "link utilisation in run" and layout.title.y > 0.9
    names = {t.name for t in fig.data if t.name and "busy" in t.name}
    assert len(names) >= 2
    assert not any(n.startswith("< 0% ") for n in names)  # 0.004 is not '0%'


def test_percent_ticks_are_distinct() -> None:
    for top in (1.0, 0.2, 0.037, 0.0037, 0.0004):
        fmt = percent_format(top)
        ticks = [f"{top * i / 5:{fmt}}" for i in range(6)]
        assert len(set(ticks)) == 6, (top, ticks)


def test_log_ticks_are_written_out() -> None:
    t = log_ticks([1500.0, 9000.0, 27000.0])
    assert t["ticktext"] == ["1,000", "2,000", "5,000", "10,000", "20,000", "50,000"]
    assert log_ticks([]) == {}


def test_exchange_is_visible_when_phases_merge() -> None:
    o = bert16()
    g = build(o.trace, o.system, o.plan.info, full_rows=4, max_bars=300)
    assert any(b.merged > 1 and b.exchange_s > 0 for b in g.bars)
    fig = figure(g)
    strips = [t for t in fig.data if t.name == "exchange (in merged phases)"]
    assert len(strips) == 1 and strips[0].marker.color == COLOURS["exchange"]
    full = build(o.trace, o.system, o.plan.info, full_rows=4)
    exchange = sum(b.duration for b in full.bars if b.kind == "exchange")
    kept = sum(b.exchange_time for b in g.bars)
    assert abs(kept - exchange) <= 1e-9 * max(exchange, 1.0)  # no exchange time is lost


def test_sweep_heatmap_axes_are_sorted() -> None:
    rows = [
        {"status": "ok", "topology": t, "training.micro_batch": m, "throughput_samples_per_s": 1.0}
        for t in ("bow-pod128", "bow-pod16", "bow-pod64")
        for m in (3, 2, 10)
    ]
    fig = heatmap_figure(
        rows, ["topology", "training.micro_batch"], "throughput_samples_per_s", "t", True
    )
    assert list(fig.data[0].x) == ["bow-pod16", "bow-pod64", "bow-pod128"]
    assert list(fig.data[0].y) == ["2", "3", "10"]
