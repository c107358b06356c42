"""Layer 1 for the moe strategy: the plan equals the NumPy reference run's ledger exactly.

For each configuration — an inline model that *is* the reference network (embedding V x d,
a residual MoE layer of E ReLU experts d -> h -> d with a bias-free router, a dense classifier),
on the 4 IPUs of an M2000, fp32 — the real planner builds the plan from a scenario file with
``routing: reference`` (the reference router on the scenario seed), and
:func:`strategies.moe.reference.reference_moe_ledger` *runs* one step of the same configuration.
Compared with ``==``:

* routed and dropped assignments per (micro-batch, source chip, expert);
* rows each chip's experts compute per micro-batch (C per source and expert with static
  capacity, the kept tokens otherwise);
* bytes of every all-to-all per (src, dst, tag) — Transfer tasks, or an all_to_all
  Collective's per-pair share (bytes / group size) when every pair moves the same bytes;
  and the result's ``all_to_all_bytes_per_step`` / ``dropped_assignments_per_step``;
* the experts' FLOPs per chip: ``expert e F`` tasks = the expert ledger's forward,
  ``expert e B`` tasks = backward_input + backward_weight (the plan costs one phase);
* the gradient all-reduces: bytes of the shared weights over all chips and of each expert
  over its replicas (E < N).

Conventions that differ, explicit: the plan charges the router's softmax with the layer
algebra's VECTOR_FLOP (no comparison of router FLOPs); the ledger's ``loss`` phase has no layer.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

import strategies  # noqa: F401 - registers the strategies
from simulator.engine.tasks import Collective, Compute, Transfer
from simulator.run import Outcome, run_scenario
from strategies.moe.reference import TAGS, MoeConfig, MoeLedgerSummary, reference_moe_ledger

SEQ = 8


def model(cfg: MoeConfig) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "kind": "model",
        "name": "moe-reference",
        "input": [SEQ],
        "layers": [
            {"embedding": {"vocab": cfg.vocab, "hidden": cfg.d_model}},
            {
                "residual": {
                    "body": [
                        {
                            "moe_ffn": {
                                "experts": cfg.experts,
                                "top_k": cfg.top_k,
                                "hidden": cfg.d_model,
                                "intermediate": cfg.hidden,
                                "activation": "relu",
                            }
                        }
                    ]
                }
            },
            {"dense": {"out": cfg.classes}},
        ],
    }


def scenario(tmp: Path, cfg: MoeConfig) -> Path:
    doc = {
        "schema_version": 1,
        "name": "moe-ledger",
        "seed": cfg.seed,
        "topology": "m2000",
        "model": model(cfg),
        "strategy": {
            "type": "moe",
            "capacity_factor": cfg.capacity_factor,
            "static_capacity": cfg.static_capacity,
            "routing": "reference",
            "noisy_gating": cfg.noisy,
            "reference_vocab": cfg.vocab,
            "reference_token_zipf": cfg.token_zipf,
        },
        "training": {
            "micro_batch": cfg.tokens // SEQ,
            "grad_accum": cfg.micro_batches,
            "dtype": "fp32",
            "optimizer": "sgd",
        },
    }
    path = tmp / "moe.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


CONFIGS = {
    "static-E4": MoeConfig(),
    "dynamic-E4": MoeConfig(static_capacity=False),
    "drops-cf1": MoeConfig(capacity_factor=1.0, micro_batches=2),
    "E8-top1": MoeConfig(experts=8, top_k=1, capacity_factor=1.0),
    "E2-replicas-dynamic": MoeConfig(experts=2, top_k=1, static_capacity=False, seed=5),
    "quiet-gating": MoeConfig(noisy=False, capacity_factor=2.0),
}


@pytest.fixture(scope="module", params=list(CONFIGS))
def pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[MoeConfig, Outcome, MoeLedgerSummary]:
    cfg = MoeConfig(**{**CONFIGS[request.param].__dict__, "devices": 4, "tokens": 32})
    out = run_scenario(scenario(tmp_path_factory.mktemp(request.param), cfg))
    assert out.result.feasible, out.result.reason
    return cfg, out, reference_moe_ledger(cfg)


def test_routing_and_drops(pair) -> None:  # type: ignore[no-untyped-def]
    cfg, out, led = pair
    assert out.plan.info["capacity"] == led.capacity
    for m, t in enumerate(out.plan.info["traffic"][0]):
        for s in range(cfg.devices):
            for e in range(cfg.experts):
                assert t.assigned[s, e] == led.assigned[(m, s, e)]
                assert t.dropped[s, e] == led.dropped[(m, s, e)]
        for chip in range(cfg.devices):
            assert t.chip_rows(chip) == led.expert_rows[(m, chip)]
    assert out.result.dropped_assignments_per_step == sum(led.dropped.values())
    assert out.result.routed_assignments_per_step == sum(led.assigned.values())


def test_all_to_all_bytes(pair) -> None:  # type: ignore[no-untyped-def]
    _, out, led = pair
    plan: dict[tuple[int, int, str], float] = defaultdict(float)
    for node in out.plan.graph.nodes:
        t = node.task
        tag = t.label.split()[0] if t.label else ""
        if tag not in TAGS:
            continue
        if isinstance(t, Transfer):
            plan[(t.src, t.dst, tag)] += t.bytes
        elif isinstance(t, Collective):
            assert t.kind == "all_to_all"
            for a in t.group:
                for b in t.group:
                    if a != b:
                        plan[(a, b, tag)] += t.bytes / len(t.group)
    assert dict(plan) == {k: float(v) for k, v in led.ledger.transfers.items()}
    assert out.result.all_to_all_bytes_per_step == led.all_to_all_bytes
    assert out.result.all_to_all_bytes_by_tag == {
        k: float(v) for k, v in led.bytes_by_tag().items()
    }


def test_expert_flops(pair) -> None:  # type: ignore[no-untyped-def]
    cfg, out, led = pair
    fwd: dict[int, float] = defaultdict(float)
    bwd: dict[int, float] = defaultdict(float)
    for node in out.plan.graph.nodes:
        t = node.task
        if isinstance(t, Compute) and t.label.startswith("expert "):
            (fwd if t.label.split()[2] == "F" else bwd)[t.chip] += t.flops
    for chip in range(cfg.devices):
        x = led.expert_flops[chip]
        assert fwd[chip] == x["forward"]
        assert bwd[chip] == x["backward_input"] + x["backward_weight"]


def test_gradient_all_reduces(pair) -> None:  # type: ignore[no-untyped-def]
    _, out, led = pair
    plan = sorted(
        (tuple(sorted(t.group)), t.bytes)
        for t in (n.task for n in out.plan.graph.nodes)
        if isinstance(t, Collective) and t.kind == "all_reduce"
    )
    ledger = sorted((tuple(sorted(c.group)), float(c.nbytes)) for c in led.ledger.collectives)
    assert plan == ledger
