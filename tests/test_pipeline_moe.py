"""MoE layers inside pipeline stages, experts spread over the stage's replicas
(strategies/moe/pipeline_experts.py): the plan equals the MoE reference run's ledger on the stage's
chips, exactly; what cannot be done exits 2 naming the key.

The model is the MoE reference network (tests/test_moe_plan.py: embedding, a residual MoE
layer of ReLU experts, a dense classifier); the reference runs D = R devices (the chips holding
the MoE layer's stage in the R replicas), static capacity, plain top-k gating, fp32. Compared
with ``==``: capacity and rows per chip; every all-to-all's bytes per (src, dst, tag) over the
step (a Collective's per-pair share, bytes / group size); the experts' FLOPs on replica 0's chip
(the ``experts`` segments); the gradient all-reduces (non-expert weights over the replicas,
each expert over its replicas when E < R).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

import strategies  # noqa: F401 - registers the strategies
from simulator.cli import main
from simulator.engine.tasks import Collective, Compute
from simulator.run import run_scenario
from strategies.moe.reference import TAGS, MoeConfig, reference_moe_ledger
from tests.helpers import inline_gc200_ring
from tests.test_moe_plan import SEQ, model


def scenario(cfg: MoeConfig, stages: int, **strategy: Any) -> dict[str, Any]:
    chips = cfg.devices * stages
    return {
        "schema_version": 1,
        "name": "pipeline-moe",
        "topology": "m2000" if chips == 4 else inline_gc200_ring(chips),
        "model": model(cfg),
        "strategy": {
            "type": "pipeline",
            "stages": stages,
            "replicas": cfg.devices,
            "expert_parallel": True,
            "capacity_factor": cfg.capacity_factor,
            **strategy,
        },
        "training": {
            "micro_batch": cfg.tokens // SEQ,
            "grad_accum": cfg.micro_batches,
            "dtype": "fp32",
            "optimizer": "sgd",
        },
    }


CASES = {
    "K1-E4-R4": (MoeConfig(devices=4, noisy=False, micro_batches=2), 1),
    "K2-E4-R2": (MoeConfig(devices=2, noisy=False, micro_batches=2), 2),
    "K1-E2-R4": (MoeConfig(devices=4, experts=2, top_k=1, noisy=False), 1),
    "K2-E8-R2-cf1": (MoeConfig(devices=2, experts=8, capacity_factor=1.0, noisy=False), 2),
}


@pytest.mark.parametrize("case", list(CASES))
def test_pipeline_moe_equals_the_reference_ledger(case: str) -> None:
    cfg, stages = CASES[case]
    out = run_scenario(scenario(cfg, stages))
    assert out.result.feasible, out.result.reason
    led = reference_moe_ledger(cfg)
    lay = out.plan.info["layout"]
    split = lay.shard
    ((i, moe),) = split.moe.items()
    d = next(k for k in range(lay.stages) if i in lay.vstage_layers[k])
    chip_of = [lay.chips[r][d] for r in range(lay.replicas)]  # reference device -> chip
    device_of = {c: r for r, c in enumerate(chip_of)}
    assert moe.capacity == led.capacity
    for m in range(cfg.micro_batches):
        for r in range(cfg.devices):
            assert moe.rows == led.expert_rows[(m, r)]
    # every all-to-all, per (src, dst, tag) over the step
    plan: dict[tuple[int, int, str], float] = defaultdict(float)
    for node in out.plan.graph.nodes:
        t = node.task
        if isinstance(t, Collective) and t.label.startswith("ep ") and t.kind == "all_to_all":
            tag = t.label.split(": ")[1]
            assert tag in TAGS
            for a in t.group:
                for b in t.group:
                    if a != b:
                        plan[(device_of[a], device_of[b], tag)] += t.bytes / len(t.group)
    assert dict(plan) == {k: float(v) for k, v in led.ledger.transfers.items()}
    # the experts' work on replica 0's chip
    fwd = bwd = 0.0
    for node in out.plan.graph.nodes:
        t = node.task
        if isinstance(t, Compute) and t.label.endswith(" experts"):
            assert t.chip == chip_of[0]
            if t.label.startswith("F"):
                fwd += t.flops
            else:
                bwd += t.flops
    x = led.expert_flops[0]
    assert fwd == x["forward"]
    assert bwd == x["backward_input"] + x["backward_weight"]
    # gradient all-reduces: the non-expert weights over the replicas (summed over stages), an
    # expert's over its replicas
    shared = sum(
        t.bytes
        for t in (n.task for n in out.plan.graph.nodes)
        if isinstance(t, Collective) and t.label.startswith("all_reduce stage")
    )
    experts = sorted(
        (tuple(sorted(device_of[c] for c in t.group)), t.bytes)
        for t in (n.task for n in out.plan.graph.nodes)
        if isinstance(t, Collective) and t.label.startswith("ep all_reduce")
    )
    recs = led.ledger.collectives
    everyone = tuple(range(cfg.devices))
    assert shared == sum(c.nbytes for c in recs if c.group == everyone)
    assert experts == sorted(
        (tuple(sorted(c.group)), float(c.nbytes)) for c in recs if c.group != everyone
    )
    assert out.result.expert_parallel["capacity"] == led.capacity  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("strategy", "key", "words"),
    [
        ({"expert_parallel": False, "capacity_factor": 2.0}, "strategy.capacity_factor", "needs"),
        ({"replicas": 1, "stages": 4}, "strategy.expert_parallel", "replicas >= 2"),
        ({"replicated_tensor_sharding": True}, "strategy.replicated_tensor_sharding", "not"),
        ({"tensor_parallel": 2, "replicas": 2}, "strategy.tensor_parallel", "moe_ffn"),
    ],
)
def test_what_cannot_be_done_names_the_key(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    strategy: dict[str, Any],
    key: str,
    words: str,
) -> None:
    doc = scenario(MoeConfig(devices=4, noisy=False), 1)
    doc["strategy"].update(strategy)
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert key in err and words in err
