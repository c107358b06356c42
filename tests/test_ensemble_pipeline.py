"""Ensemble members that are pipelines and tensor-parallel pipelines
(strategies/ensemble_pipeline.py): the plan of member 0 equals the reference ledger of a
pipelined member, every other member's ledger is member 0's on its own chips (so the twins the
plan copies are exact), the result covers every member's chips, and what is still refused
exits 2 naming the key.

Ledgers: N members = N independent NumPy pipelines (strategies/reference, the MLP 64-32-16-10,
each member its own seed) on the members' chip grids; for tensor-parallel members, the
collectives per layer of the tensor reference (strategies/tensor/reference.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

import strategies  # noqa: F401 - registers the strategies
from simulator.cli import main
from simulator.metrics import to_json
from simulator.run import run_scenario
from strategies.reference import ReferenceConfig, reference_ledger
from strategies.tensor.reference import ReferenceConfig as TensorConfig
from tests.helpers import inline_gc200_ring
from tests.test_tensor_plans import ledger_collectives, plan_collectives, reference_model
from tests.test_training_plans import MICRO_BATCH, SIZES, assert_plan_equals_ledger, mlp_model


def ensemble(model: dict[str, Any], chips: int, **strategy: Any) -> dict[str, Any]:
    m = strategy.pop("grad_accum", 3)
    return {
        "schema_version": 1,
        "name": "ensemble-of-pipelines",
        "topology": inline_gc200_ring(chips),
        "model": model,
        "strategy": {"type": "ensemble", **strategy},
        "training": {"micro_batch": MICRO_BATCH, "grad_accum": m, "dtype": "fp16"},
    }


@pytest.mark.parametrize(("members", "stages", "replicas"), [(2, 2, 1), (2, 2, 2), (3, 3, 1)])
def test_pipelined_members_equal_their_ledgers(members: int, stages: int, replicas: int) -> None:
    placement = (0, 1, 1) if stages == 2 else (0, 1, 2)
    counts = [placement.count(s) for s in range(stages)]
    doc = ensemble(
        mlp_model(SIZES),
        members * stages * replicas,
        members=members,
        stages=stages,
        layers_per_stage=counts,
        schedule="1f1b",
    )
    out = run_scenario(doc)
    assert out.result.feasible
    lay = out.plan.info["layout"]
    groups = out.plan.info["groups"]
    tp = out.plan.info["training"]
    ledgers = []
    for i, grp in enumerate(groups):
        grid = tuple(tuple(grp[0] + c - groups[0][0] for c in row) for row in lay.chips)
        ledgers.append(
            reference_ledger(
                ReferenceConfig(
                    sizes=SIZES,
                    global_batch=MICRO_BATCH * tp.grad_accum * replicas,
                    micro_batch=MICRO_BATCH,
                    replicas=replicas,
                    stages=stages,
                    placement=placement,
                    grid=grid,
                    schedule="1f1b",
                    dtype="fp16",
                    seed=i,
                )
            )
        )
    assert_plan_equals_ledger(out, ledgers[0])
    shift = len(groups[0])
    for i, led in enumerate(ledgers[1:], start=1):  # member i is member 0 on its own chips
        assert {c - i * shift: f for c, f in led.flops.items()} == ledgers[0].flops
        assert {
            (a - i * shift, b - i * shift, tag): n for (a, b, tag), n in led.transfers.items()
        } == ledgers[0].transfers
        assert {c - i * shift: n for c, n in led.all_reduce_bytes.items()} == (
            ledgers[0].all_reduce_bytes
        )
    doc_out = json.loads(to_json(out.result))
    assert doc_out["chips"] == members * stages * replicas
    assert sorted(map(int, doc_out["memory"])) == list(range(members * stages * replicas))
    for i in range(1, members):
        for pos, chip in enumerate(groups[i]):
            twin = str(groups[0][pos])
            assert doc_out["breakdown"][str(chip)] == doc_out["breakdown"][twin]
    assert doc_out["global_batch"] == members * MICRO_BATCH * tp.grad_accum * replicas
    assert doc_out["member_stages"] == stages


def test_tensor_parallel_members_run_the_reference_collectives() -> None:
    """Two members, each 2 stages of 2-chip tensor groups: member 0's group collectives per
    layer are the tensor reference's; its groups lie inside member 0's chips."""
    cfg = TensorConfig(tensor=2, dtype="fp16")
    doc = ensemble(
        reference_model(cfg),
        8,
        members=2,
        stages=2,
        tensor_parallel=2,
        layers_per_stage=[1, 1],
        grad_accum=cfg.micro_batches,
    )
    doc["training"]["micro_batch"] = cfg.micro_batch
    out = run_scenario(doc)
    assert plan_collectives(out) == ledger_collectives(cfg)
    lay = out.plan.info["layout"]
    member0 = set(out.plan.info["groups"][0])
    assert {c for row in lay.groups for g in row for c in g} == member0
    assert out.result.member_tensor["tensor_groups"] == [[0, 1], [2, 3]]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("strategy", "key", "words"),
    [
        ({"stages": 2, "codistillation": "checkpoint"}, "strategy.codistillation", "one stage"),
        ({"stages": 3}, "strategy.stages", "do not divide"),
        ({"schedule": "gpipe"}, "strategy.schedule", "pipelined members"),
    ],
)
def test_what_is_still_refused_names_the_key(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    strategy: dict[str, Any],
    key: str,
    words: str,
) -> None:
    doc = ensemble(mlp_model(SIZES), 4, members=2, **strategy)
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert key in err and words in err
