"""Sparse training plans equal the masked-MLP reference run's ledger exactly
(docs/reference_runs.md, "Sparse training"; strategies/sparse/reference.py).

For each configuration the real planner builds the plan from a scenario file (an inline MLP
whose layers are repeat blocks l0, l1, … so ``training.sparsity.layers`` can name them) and
:func:`strategies.sparse.reference.sparse_ledger` *runs* a normal step and, for dynamic
patterns, an update step of the same configuration in NumPy (fp16, as the plan). Compared with
``==``:

* the plan's Compute FLOPs per phase — ``F`` = the ledger's forward, ``B`` = backward_input +
  backward_weight, ``optimizer`` = optimizer — from the normal step (the loss, 7BC + 3B, has no
  layer in the model and is asserted apart, as for dense plans);
* the pattern update's work the plan costs (``StageCost.update.work``) — scores, selection
  operations and passes, random keys, dropped blocks, bytes re-bucketed — against the ledger's
  counts, and its dense-gradient FLOPs against the update step's backward_weight minus the normal
  step's;
* the amortised update task's FLOPs: (vector operations + dense-gradient FLOPs) / N;
* non-zero weights: the plan's sparsity entry and the reference's masks.

Also here: the accuracy-against-density shape of the sparse training study (digits).
"""

from __future__ import annotations

from collections import defaultdict
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

import strategies  # noqa: F401 - registers the strategies
from simulator.config.yamlio import dump_yaml
from simulator.engine.tasks import Compute, Rng
from simulator.run import Outcome, run_scenario
from strategies.reference.data import digits
from strategies.sparse.hooks import UPDATE_LABEL
from strategies.sparse.reference import (
    STUDY_EPOCHS,
    SparseConfig,
    SparseLedger,
    sparse_ledger,
    study_configs,
    train_sparse,
)
from tests.helpers import inline_gc200_ring
from tests.test_training_plans import mlp_model

BATCH = 8
EVERY = 10


def scenario(
    tmp: Path, sizes: tuple[int, ...], sparsity: dict[str, Any] | None, stages: int = 1
) -> Path:
    strat: dict[str, Any] = {"type": "single"}
    if stages > 1:
        strat = {"type": "pipeline", "stages": stages, "layers_per_stage": [2, 1]}
    doc = {
        "schema_version": 1,
        "name": "sparse-plan-vs-ledger",
        "topology": inline_gc200_ring(stages),
        "model": mlp_model(sizes),
        "strategy": strat,
        "training": {
            "micro_batch": BATCH,
            "grad_accum": 1,
            "dtype": "fp16",
            "optimizer": "sgd",
            **({"sparsity": sparsity} if sparsity is not None else {}),
        },
    }
    path = tmp / "scenario.yaml"
    path.write_text(dump_yaml(doc))
    return path


def reference(sizes: tuple[int, ...], sp: dict[str, Any], layers: tuple[int, ...]) -> SparseLedger:
    return sparse_ledger(
        SparseConfig(
            sizes=sizes,
            density=sp["density"],
            block=sp.get("block", 1),
            mode=sp.get("mode", "static"),
            regrow=sp.get("regrow"),
            update_every_steps=sp.get("update_every_steps"),
            drop_fraction=sp.get("drop_fraction", 0.3),
            sparse_layers=layers,
            global_batch=BATCH,
            dtype="fp16",
        )
    )


def plan_phases(outcome: Outcome) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for node in outcome.plan.graph.nodes:
        t = node.task
        if isinstance(t, Compute):
            if t.label.startswith(UPDATE_LABEL):
                out["update"] += t.flops
            else:
                out[{"F": "forward", "B": "backward", "o": "optimizer"}[t.label[0]]] += t.flops
        if isinstance(t, Rng):
            out["rng"] += t.samples
    return dict(out)


CASES = [
    # (sizes, sparsity, sparse layer indices)
    ((64, 32, 16, 10), {"density": 0.25, "layers": ["l*"]}, (0, 1, 2)),
    ((64, 32, 16, 10), {"density": 0.5, "block": 4, "layers": ["l0.*", "l1.*"]}, (0, 1)),
    ((64, 32, 16, 8), {"density": 0.3, "block": 8, "layers": ["l*"]}, (0, 1, 2)),
    (
        (64, 32, 16, 10),
        {"density": 0.2, "mode": "dynamic", "regrow": "random", "update_every_steps": EVERY,
         "layers": ["l*"]},
        (0, 1, 2),
    ),
    (
        (64, 32, 16, 8),
        {"density": 0.4, "block": 4, "mode": "dynamic", "regrow": "gradient",
         "update_every_steps": EVERY, "drop_fraction": 0.5, "layers": ["l*"]},
        (0, 1, 2),
    ),
    (
        (64, 32, 16, 10),
        {"density": 0.1, "mode": "dynamic", "regrow": "gradient", "update_every_steps": EVERY,
         "layers": ["l1.*"]},
        (1,),
    ),
]


@pytest.mark.parametrize(("sizes", "sparsity", "layers"), CASES)
def test_plan_equals_ledger(tmp_path: Path, sizes: Any, sparsity: Any, layers: Any) -> None:
    outcome = run_scenario(scenario(tmp_path, sizes, sparsity))
    assert outcome.result.feasible, outcome.result.reason
    led = reference(sizes, sparsity, layers)
    flops = plan_phases(outcome)
    want = led.normal.flops[0]
    assert flops["forward"] == want["forward"]
    assert flops["backward"] == want["backward_input"] + want["backward_weight"]
    assert flops["optimizer"] == want["optimizer"]
    assert want["loss"] == 7 * BATCH * sizes[-1] + 3 * BATCH
    info = outcome.result.sparsity
    dense_layers = sum(a * b for i, (a, b) in enumerate(pairwise(sizes)) if i not in layers)
    assert info is not None and info.nonzero_weights + dense_layers == led.nonzero_weights
    if led.work is None:
        assert "update" not in flops and "rng" not in flops
        return
    assert led.update is not None
    (cost,) = outcome.plan.info["built"].costs
    work = cost.update.work
    assert work.score_ops == led.work.score_ops
    assert work.select_ops == led.work.select_ops
    assert work.select_passes == led.work.select_passes
    assert work.rng_samples == led.work.rng_samples
    assert work.dropped_blocks == led.work.dropped_blocks
    assert work.moved_bytes == led.work.moved_bytes
    extra = led.update.flops[0]["backward_weight"] - led.normal.flops[0]["backward_weight"]
    assert work.dense_gradient_flops == extra
    if sparsity["regrow"] == "gradient":
        assert extra > 0
    # the timeline carries 1/N of it per step
    assert flops["update"] == pytest.approx((work.vector_ops + extra) / EVERY, rel=1e-12)
    assert flops.get("rng", 0) == pytest.approx(led.work.rng_samples / EVERY, rel=1e-12)
    # and the result reports the same update work for the whole model
    assert info.update_step["vector_ops"] == work.vector_ops
    assert info.update_step["dense_gradient_flops"] == extra


def test_pipeline_plan_totals_equal_ledger(tmp_path: Path) -> None:
    """Two stages: the stages' FLOPs add up to the single-device ledger's (minus the loss)."""
    sizes, sp = (64, 32, 16, 10), {"density": 0.25, "layers": ["l*"]}
    outcome = run_scenario(scenario(tmp_path, sizes, sp, stages=2))
    led = reference(sizes, sp, (0, 1, 2)).normal.flops[0]
    flops = plan_phases(outcome)
    assert flops["forward"] == led["forward"]
    assert flops["backward"] == led["backward_input"] + led["backward_weight"]
    assert flops["optimizer"] == led["optimizer"]


def test_density_one_static_is_dense(tmp_path: Path) -> None:
    """density 1 static: the same FLOPs as the dense plan (and the same ledger as dense)."""
    sizes = (64, 32, 16, 10)
    one = {"density": 1.0, "layers": ["l*"]}
    sparse = plan_phases(run_scenario(scenario(tmp_path, sizes, one)))
    dense = plan_phases(run_scenario(scenario(tmp_path, sizes, None)))
    assert sparse == dense


def test_reference_update_keeps_density_and_is_exact() -> None:
    """The update drops and regrows as many blocks, and the selections are exact (bisection)."""
    from strategies.reference.data import blobs
    from strategies.sparse.reference import MaskedMLP

    cfg = SparseConfig(sizes=(16, 16, 8), density=0.25, block=4, mode="dynamic",
                       regrow="random", update_every_steps=1, global_batch=8)  # fmt: skip
    model = MaskedMLP.build(cfg)
    before = [m.copy() for m in model.masks if m is not None]
    data = blobs(8, 16, 8, seed=0, test_fraction=0.0)
    model.step(data.x_train.astype("float32"), data.y_train)
    after = [m for m in model.masks if m is not None]
    for a, b in zip(before, after, strict=True):
        assert a.sum() == b.sum()
        assert (a != b).any()  # the pattern moved
    for layer, m in zip(model.layers, model.emasks, strict=True):
        assert m is not None and not layer.w[~m].any()  # zeros stay zero


def test_select_is_the_k_smallest() -> None:
    import numpy as np

    from strategies.reference.ledger import Ledger
    from strategies.reference.nn import Ops
    from strategies.sparse.reference import SparseOps, UpdateCounts

    rng = np.random.default_rng(3)
    for dtype in (np.float16, np.float32):
        keys = np.abs(rng.standard_normal(200)).astype(dtype)
        counts = UpdateCounts()
        sops = SparseOps(Ops(Ledger()), counts)
        got = sops.select(keys, 17, largest=False)
        assert sorted(keys[got]) == sorted(np.sort(keys)[:17])
        top = sops.select(keys, 17, largest=True)
        assert sorted(keys[top]) == sorted(np.sort(keys)[-17:])
        bits = np.dtype(dtype).itemsize * 8
        assert counts.select_passes == 2 * bits
        assert counts.select_ops == 2 * 2 * bits * 200


@pytest.mark.slow
def test_accuracy_against_density_has_the_known_shape() -> None:
    """Digits, MLP 64-256-256-10 (docs/strategies/sparsity.md table): little loss to 90 %
    sparsity, a clear loss at 98 %; dynamic regrow helps most at the lowest densities."""
    data = digits()
    acc = {
        (d, name): train_sparse(cfg, data, STUDY_EPOCHS).test_accuracy
        for d in (1.0, 0.1, 0.02)
        for name, cfg in study_configs(d).items()
    }
    dense = acc[(1.0, "static")]
    assert dense > 0.96
    for name in ("static", "SET", "RigL"):
        assert acc[(0.1, name)] > dense - 0.04
        assert acc[(0.02, name)] < dense - 0.04
    assert max(acc[(0.02, "SET")], acc[(0.02, "RigL")]) > acc[(0.02, "static")]


def test_accuracy_at_eighty_percent_sparsity() -> None:
    """One point of the study (docs/strategies/sparsity.md): 80 % sparse, static, within 3
    points of the dense network."""
    data = digits()
    sparse = train_sparse(study_configs(0.2)["static"], data, STUDY_EPOCHS).test_accuracy
    dense = train_sparse(study_configs(1.0)["static"], data, STUDY_EPOCHS).test_accuracy
    assert dense > 0.96
    assert sparse > dense - 0.03
