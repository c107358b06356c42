"""Closed forms of the tensor group's collectives beside the simulation (DESIGN.md § Validation,
layer 2): where nothing else uses the links, the engine moves exactly the closed form's bytes
and takes the closed form's time; where pipeline traffic shares the group's links, it takes
longer, never less.

Bytes: a T-chip ring all-reduce of M bytes puts 2 (T - 1) / T x M on the wire per chip; a
reduce-scatter or all-gather (T - 1) / T x M. Per transformer layer and micro-batch, two
all-reduces of the activation forward and two backward: 4 x 2 (T - 1) / T x M per chip. The
bytes below are counted from the model's sizes (not from the plan), and the simulation's are
what the engine's flows carried over the links (``Trace.channel_bytes``).
"""

from __future__ import annotations

from typing import Any

import pytest

import strategies  # noqa: F401 - registers the strategies
from simulator.engine.tasks import Collective
from simulator.run import run_scenario
from strategies.tensor.closed_form import collective_seconds, layer_wire_bytes, wire_bytes
from tests.helpers import inline_gc200_ring

LAYERS, HIDDEN, HEADS, SEQ, VOCAB = 2, 512, 8, 256, 8192
MB, M = 2, 2


def gpt_on_ring(chips: int, strategy: dict[str, Any], dtype: str = "fp16") -> dict[str, Any]:
    """A small GPT (no hosts, no Streaming Memory: the group's collectives are the only
    traffic when there is one stage and one replica)."""
    return {
        "schema_version": 1,
        "name": "tp-closed-form",
        "topology": inline_gc200_ring(chips),
        "model": {
            "name": "gpt",
            "params": {
                "layers": LAYERS,
                "hidden": HIDDEN,
                "heads": HEADS,
                "seq_len": SEQ,
                "positions": SEQ,
                "vocab": VOCAB,
            },
        },
        "strategy": strategy,
        "training": {"micro_batch": MB, "grad_accum": M, "dtype": dtype},
    }


def closed_form_wire_bytes(t: int, mode: str) -> float:
    """Bytes all T chips put on the wire in one step, from the model's sizes."""
    act = SEQ * HIDDEN * MB * 2  # fp16 activation of one micro-batch
    tokens = SEQ * MB
    per_mb = LAYERS * layer_wire_bytes(t, act)  # 2 + 2 all-reduces (or RS + AG pairs) a layer
    if mode == "all_reduce":
        per_mb += wire_bytes("all_reduce", t, act)  # embedding output
        per_mb += wire_bytes("all_reduce", t, act)  # head input gradient
    else:
        per_mb += 2 * wire_bytes("reduce_scatter", t, act)  # embedding: RS forward, AG backward
        per_mb += 2 * wire_bytes("all_gather", t, act)  # head: AG forward, RS backward
    per_mb += wire_bytes("all_reduce", t, tokens * 4) + wire_bytes("all_reduce", t, 2 * tokens * 4)
    return t * M * per_mb


@pytest.mark.parametrize("mode", ["all_reduce", "reduce_scatter"])
@pytest.mark.parametrize("t", [2, 4])
def test_uncontended_bytes_and_time_equal_the_closed_form(t: int, mode: str) -> None:
    out = run_scenario(
        gpt_on_ring(t, {"type": "data", "tensor_parallel": t, "tensor_collective": mode})
    )
    trace, system = out.trace, out.system
    assert trace is not None
    carried = float(sum(trace.channel_bytes))
    expected = closed_form_wire_bytes(t, mode)
    if mode == "reduce_scatter":  # plus the step's all-reduce of the sequence-split gradients
        rep = (4 * LAYERS + 2) * HIDDEN + 2 * LAYERS * HIDDEN + SEQ * HIDDEN
        expected += t * wire_bytes("all_reduce", t, rep * 2)
    assert carried == pytest.approx(expected, rel=1e-12)
    for node in out.plan.graph.nodes:
        task = node.task
        if isinstance(task, Collective):
            simulated = trace.task_end[node.id] - trace.task_start[node.id]
            formula = collective_seconds(system, task.kind, task.group, task.bytes, task.dtype)
            assert simulated == pytest.approx(formula, rel=1e-9), task.label
    tc = out.result.tensor_collectives  # type: ignore[attr-defined]
    assert tc["busiest_stage_s"] == pytest.approx(tc["busiest_stage_closed_form_s"], rel=1e-9)


def test_per_layer_closed_form_is_four_all_reduces() -> None:
    """The result's per-layer figures: 2 + 2 all-reduces of the activation, and the closed form
    4 x 2 (T - 1) / T x M per chip."""
    out = run_scenario(gpt_on_ring(4, {"type": "data", "tensor_parallel": 4}))
    per_layer = out.result.tensor_collectives["per_layer"]  # type: ignore[attr-defined]
    act = SEQ * HIDDEN * MB * 2
    for kind in ("attention", "ffn"):
        assert [c["bytes"] for c in per_layer[kind]["forward"]] == [act]
        assert [c["bytes"] for c in per_layer[kind]["backward"]] == [act]
    layer = per_layer["transformer_layer_closed_form"]
    assert layer["wire_bytes_per_chip"] == 4 * 2 * 3 / 4 * act


def test_pipeline_traffic_on_the_groups_links_only_slows_them() -> None:
    """Two stages of T = 2 on a 4-chip ring: a stage boundary (0 -> 2, 1 -> 3) is two hops and
    crosses the links the groups' rings use, so the group collectives take longer than their
    closed form, never less."""
    out = run_scenario(gpt_on_ring(4, {"type": "pipeline", "stages": 2, "tensor_parallel": 2}))
    trace = out.trace
    assert trace is not None
    slower = 0
    for node in out.plan.graph.nodes:
        task = node.task
        if isinstance(task, Collective) and task.label.startswith("tp "):
            simulated = trace.task_end[node.id] - trace.task_start[node.id]
            formula = collective_seconds(out.system, task.kind, task.group, task.bytes, task.dtype)
            assert simulated >= formula * (1 - 1e-9)
            slower += simulated > formula * 1.01
    assert slower > 0
