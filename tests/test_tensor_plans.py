"""Tensor parallelism in the data and pipeline plans (strategies/tensor/): the plan's group
collectives equal the NumPy reference's ledger exactly; the split divides work and memory as
the reference does; T = 1 is byte-identical to no key; a stage that does not fit becomes
feasible with T = 2 or 4 and the result shows its activation collectives; bad splits exit 2
naming the key.

Plan vs ledger (``==``): the reference transformer (strategies/tensor/reference.py: vocabulary
64, hidden 16, 4 heads, FFN 32, sequence 8, 2 decoder layers, micro-batch 2, 2 micro-batches)
as an inline model of the same layers, planned with ``type: data`` on T chips. Every plan
Collective labelled ``tp <F|B> mb<m> s<j> <layer>: <what>`` (and ``tp step s<j>: <what>``)
gives (layer, phase, micro-batch, what, kind) -> bytes; the ledger's records, tagged
``<layer> <F|B> mb<m>: <what>`` by the run that made them, give the same map.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

import strategies  # noqa: F401 - registers the strategies
from simulator.cli import main
from simulator.engine.tasks import Collective, Transfer
from simulator.metrics import to_json
from simulator.run import Outcome, run_scenario
from strategies.tensor.reference import ReferenceConfig
from strategies.tensor.reference_run import run
from tests.helpers import inline_gc200_ring

Key = tuple[str, ...]


def reference_model(cfg: ReferenceConfig) -> dict[str, Any]:
    """The reference transformer in the layer algebra (names match the reference's tags)."""
    block = [
        {
            "residual": {
                "name": "attention",
                "body": [
                    "layernorm",
                    {"attention": {"heads": cfg.heads, "hidden": cfg.hidden, "causal": True}},
                ],
            }
        },
        {
            "residual": {
                "name": "ffn",
                "body": [
                    "layernorm",
                    {"ffn": {"hidden": cfg.hidden, "intermediate": cfg.intermediate}},
                ],
            }
        },
    ]
    return {
        "schema_version": 1,
        "kind": "model",
        "name": "reference-gpt",
        "input": [cfg.seq],
        "layers": [
            {"embedding": {"vocab": cfg.vocab, "hidden": cfg.hidden, "positions": cfg.seq}},
            {"repeat": {"name": "decoder", "times": cfg.layers, "body": block}},
            "layernorm",
            {"lm_head": {"vocab": cfg.vocab, "tied": True}},
        ],
    }


def scenario(cfg: ReferenceConfig, *, stages: int = 1, **strategy: Any) -> dict[str, Any]:
    chips = cfg.tensor * stages
    strat: dict[str, Any] = {"type": "data" if stages == 1 else "pipeline"}
    if stages > 1:
        strat["stages"] = stages
    strat.update(tensor_parallel=cfg.tensor, tensor_collective=cfg.mode, **strategy)
    return {
        "schema_version": 1,
        "name": "tensor-check",
        "topology": "m2000" if chips == 4 else inline_gc200_ring(chips),
        "model": reference_model(cfg),
        "strategy": strat,
        "training": {
            "micro_batch": cfg.micro_batch,
            "grad_accum": cfg.micro_batches,
            "dtype": cfg.dtype,
        },
    }


def plan_collectives(out: Outcome) -> dict[Key, float]:
    got: dict[Key, float] = defaultdict(float)
    for node in out.plan.graph.nodes:
        t = node.task
        if isinstance(t, Collective) and t.label.startswith("tp "):
            head, what = t.label.split(": ", 1)
            parts = head.split()
            key = (
                ("step", what, t.kind)
                if parts[1] == "step"
                else (parts[4], parts[1], parts[2], what, t.kind)
            )
            got[key] += t.bytes
    return dict(got)


def ledger_collectives(cfg: ReferenceConfig) -> dict[Key, float]:
    got: dict[Key, float] = defaultdict(float)
    for rec in run(cfg).collectives:
        head, what = rec.tag.split(": ", 1)
        if head == "step":
            key: Key = ("step", what, rec.kind)
        else:
            layer, phase, mb = head.split()
            key = (layer, phase, mb, what, rec.kind)
        got[key] += rec.nbytes
    return dict(got)


@pytest.mark.parametrize("dtype", ["fp16", "fp32"])
@pytest.mark.parametrize("mode", ["all_reduce", "reduce_scatter"])
@pytest.mark.parametrize("tensor", [1, 2, 4])
def test_plan_collectives_equal_the_reference_ledger(tensor: int, mode: str, dtype: str) -> None:
    cfg = ReferenceConfig(tensor=tensor, mode=mode, dtype=dtype)  # type: ignore[arg-type]
    plan = plan_collectives(run_scenario(scenario(cfg)))
    ledger = ledger_collectives(cfg)
    assert plan == ledger
    if tensor == 1:
        assert plan == {}
    else:
        # per micro-batch: embedding, 2 per split layer each way, the head's 3 (x2 with the
        # sequence split's all-gathers), and the sequence split's step-end all-reduce
        per_mb = 12 if mode == "all_reduce" else 22
        assert len(plan) == cfg.micro_batches * per_mb + (mode == "reduce_scatter")


@pytest.mark.parametrize("mode", ["all_reduce", "reduce_scatter"])
def test_pipeline_stages_run_the_same_collectives_and_send_shards(mode: str) -> None:
    """K = 2 stages of T = 2: per layer the collectives are the reference's; each boundary
    is T transfers (rank to rank) of what a chip holds (all of the activation, or its 1/T of
    the sequence)."""
    cfg = ReferenceConfig(tensor=2, mode=mode, dtype="fp32")  # type: ignore[arg-type]
    out = run_scenario(scenario(cfg, stages=2, layers_per_stage=[1, 1]))
    assert plan_collectives(out) == ledger_collectives(cfg)
    lay = out.plan.info["layout"]
    act = cfg.micro_batch * cfg.seq * cfg.hidden * 4 // (2 if mode == "reduce_scatter" else 1)
    sends = [
        (n.task.src, n.task.dst, n.task.bytes)
        for n in out.plan.graph.nodes
        if isinstance(n.task, Transfer) and n.task.label.startswith("act mb0")
    ]
    pairs = zip(lay.groups[0][0], lay.groups[0][1], strict=True)
    assert sorted(sends) == [(a, b, act) for a, b in pairs]
    doc = json.loads(to_json(out.result))
    assert doc["tensor_groups"] == [list(g) for g in lay.groups[0]]
    assert sorted(doc["memory"]) == [str(c) for c in range(4)]


@pytest.mark.parametrize("tensor", [2, 4])
def test_split_layers_do_the_reference_work(tensor: int) -> None:
    """Matrix-product FLOPs of one worker per layer and micro-batch, forward and backward, as
    the reference ran them = the plan's split layers (heads / T, FFN / T, vocabulary / T)."""
    cfg = ReferenceConfig(tensor=tensor, micro_batches=1, dtype="fp32")
    out = run_scenario(scenario(cfg))
    split = out.plan.info["layout"].shard.model
    flops = run(cfg).matmul_flops
    for layer in split.layers:
        fwd = layer.forward_matmul_flops * cfg.micro_batch
        for t in range(tensor):
            assert flops.get((t, layer.name, "F"), 0) == fwd, layer.name
            assert flops.get((t, layer.name, "B"), 0) == 2 * fwd, layer.name


def _json(doc: dict[str, Any]) -> str:
    return to_json(run_scenario(doc).result)


@pytest.mark.parametrize("kind", ["data", "pipeline"])
def test_t1_is_byte_identical_to_no_key(kind: str) -> None:
    base: dict[str, Any] = {
        "schema_version": 1,
        "name": "same",
        "topology": "m2000",
        "model": {"name": "gpt", "params": {"layers": 2, "seq_len": 128, "positions": 128}},
        "strategy": {"type": kind, **({"stages": 2, "replicas": 2} if kind == "pipeline" else {})},
        "training": {"micro_batch": 2, "grad_accum": 2, "optimizer": "lamb"},
    }
    with_key = {**base, "strategy": {**base["strategy"], "tensor_parallel": 1}}
    assert _json(base) == _json(with_key)


def gpt_pipeline(tmp: Path, tensor: int, **training: Any) -> Path:
    doc = {
        "schema_version": 1,
        "name": "long-gpt",
        "topology": "bow-pod16",
        "model": {
            "name": "gpt",
            "params": {
                "layers": 8,
                "hidden": 2048,
                "heads": 16,
                "seq_len": 2048,
                "positions": 2048,
            },
        },
        "strategy": {
            "type": "pipeline",
            "stages": 4,
            "replicas": 4 // tensor,
            "tensor_parallel": tensor,
        },
        "training": {
            "micro_batch": 1,
            "grad_accum": 4,
            "optimizer": "adam",
            "recompute": "checkpoint",
            "offload_optimizer_state": True,
            **training,
        },
    }
    path = tmp / "long-gpt.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_a_stage_that_does_not_fit_fits_with_tensor_parallelism(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """GPT with hidden 2048 at sequence 2048 over 4 stages: one chip per stage does not fit
    (exit 3) and the reason suggests tensor parallelism; T = 4 fits (exit 0) and the result
    shows the activation collectives."""
    path = gpt_pipeline(tmp_path, 1)
    assert main(["run", str(path), "--json"]) == 3
    doc = json.loads(capsys.readouterr().out)
    help_ = "tensor parallelism (strategy.tensor_parallel: 2 with 4 stage(s) x 2 replica(s)"
    assert help_ in doc["reason"]
    path = gpt_pipeline(tmp_path, 4)
    assert main(["run", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["feasible"] and doc["tensor_parallel"] == 4 and doc["chips"] == 16
    tc = doc["tensor_collectives"]
    assert tc["per_step"]["count"] > 0 and tc["busiest_stage_s"] > 0
    attention = tc["per_layer"]["attention"]
    assert [c["kind"] for c in attention["forward"]] == ["all_reduce"]
    assert [c["kind"] for c in attention["backward"]] == ["all_reduce"]
    assert attention["forward"][0]["bytes"] == 2048 * 2048 * 2
    assert "each inside one machine" in doc["tensor_placement"]
    assert main(["run", str(path)]) == 0
    text = capsys.readouterr().out
    assert "4-chip tensor groups" in text and "activation comms" in text


def test_memory_divides_as_the_split_divides() -> None:
    """Weights and work of a split layer are 1/T of the whole (plus the whole output bias), a
    vocabulary layer's 1/T of the rows; a layer norm's are whole on every chip; the chip's
    memory plan holds the split layers' weights."""
    cfg = ReferenceConfig(tensor=4, dtype="fp32")
    out = run_scenario(scenario(cfg))
    whole = out.plan.info["model"]
    split = out.plan.info["layout"].shard.model
    for a, b in zip(whole.layers, split.layers, strict=True):
        if a.kind in ("attention", "ffn"):
            assert b.params == (a.params - cfg.hidden) // 4 + cfg.hidden
            assert b.forward_matmul_flops * 4 == a.forward_matmul_flops
        elif a.kind == "embedding":
            assert b.params == (cfg.vocab // 4 + cfg.seq) * cfg.hidden
        elif a.kind == "lm_head":
            assert b.output_shape == (cfg.seq, cfg.vocab // 4)
            assert b.forward_matmul_flops * 4 == a.forward_matmul_flops
        else:
            assert b == a
    memory = out.plan.info["memory"][0]
    assert memory.weights == sum(x.params for x in split.layers) * 4
    assert memory.weights < whole.params * 4 / 2


@pytest.mark.parametrize(
    ("model", "strategy", "key", "words"),
    [
        (
            "gpt2-xl",
            {"type": "data", "tensor_parallel": 4},
            "strategy.tensor_parallel",
            "does not divide the 25 heads",
        ),
        (
            "resnet50",
            {"type": "data", "tensor_parallel": 2},
            "strategy.tensor_parallel",
            "no attention, ffn",
        ),
        (
            "moe-transformer",
            {"type": "data", "tensor_parallel": 2},
            "strategy.tensor_parallel",
            "moe_ffn",
        ),
        (
            "gpt2",
            {"type": "pipeline", "stages": 2, "tensor_parallel": 3},
            "strategy.tensor_parallel",
            "3 tensor-parallel chips",
        ),
        (
            "bert-base",
            {"type": "data", "tensor_parallel": 2, "tensor_collective": "reduce_scatter"},
            "strategy.tensor_collective",
            "not token-wise",
        ),
    ],
)
def test_bad_splits_exit_2_naming_the_key(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    model: str,
    strategy: dict[str, Any],
    key: str,
    words: str,
) -> None:
    doc = {
        "schema_version": 1,
        "topology": "m2000",
        "model": model,
        "strategy": strategy,
        "training": {"micro_batch": 1},
    }
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert key in err and words in err and "bad.yaml:" in err


def test_groups_stay_inside_machines_first() -> None:
    """Bow Pod64 (16 machines of 4): T = 2 and 4 groups lie inside one machine, T = 8 spans two
    neighbouring machines; the result says so."""
    from simulator.hardware.build import load_system
    from strategies.tensor.placement import place_groups

    system = load_system("bow-pod64")
    for t in (2, 4):
        p = place_groups(system, 4, t, 64 // (4 * t))
        assert all(
            len({system.chips[c].machine for c in grp}) == 1 for row in p.groups for grp in row
        )
        assert "each inside one machine" in p.statement and not p.warnings
    p = place_groups(system, 2, 8, 4)
    assert all(len({system.chips[c].machine for c in g}) == 2 for row in p.groups for g in row)
    assert "spans up to 2 machines" in p.statement


def test_data_parallel_gradients_go_rank_to_rank() -> None:
    """R = 2 replicas of T = 2: each rank all-reduces its own shard with the same rank of the
    other replica (T collectives of the split parameters' bytes), and LAMB all-reduces its
    split tensors' norms inside the group."""
    cfg = ReferenceConfig(tensor=2, dtype="fp16")
    doc = scenario(cfg)
    doc["topology"] = "m2000"
    doc["strategy"]["replicas"] = 2
    doc["training"]["optimizer"] = "lamb"
    out = run_scenario(doc)
    lay = out.plan.info["layout"]
    grads = [
        n.task
        for n in out.plan.graph.nodes
        if isinstance(n.task, Collective) and n.task.label.startswith("all_reduce stage")
    ]
    params = sum(x.params for x in lay.shard.model.layers)
    assert sorted(tuple(sorted(t.group)) for t in grads) == sorted(
        tuple(sorted((lay.groups[0][0][r], lay.groups[1][0][r]))) for r in range(2)
    )
    assert all(t.bytes == params * 2 for t in grads)
    norms = [
        n.task
        for n in out.plan.graph.nodes
        if isinstance(n.task, Collective) and n.task.label == "tp step s0: lamb norms"
    ]
    split_tensors = 1 + 2 * cfg.layers  # embedding, attention and FFN of each layer
    assert len(norms) == 1 and norms[0].bytes == 2 * split_tensors * 4
