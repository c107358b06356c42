"""``training.sparsity`` in training scenarios (docs/strategies/sparsity.md, "Sparse training").

Runs the real planner on BERT-Large (Bow Pod16, the MLPerf layout with few micro-batches) and on
small inline models, and checks what a user relies on: density 1 static is dense (2 %); sparse
layers shrink weights, gradients and optimizer state and add their indices; dynamic patterns add
labelled update tasks after the optimizer (RigL: a dense-gradient all-reduce with replicas and
the dense gradient's memory); refusals and invalid selections are exit-2 errors at the key; the
result's ``sparsity`` entry; time-to-train of sparse runs (``statistics.sparse``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import strategies  # noqa: F401 - registers the strategies
from simulator.capacity.ttt import Statistics, resolve
from simulator.cli import main
from simulator.engine.tasks import Collective, Compute, Exchange, Rng
from simulator.errors import InputError
from simulator.run import run_scenario
from strategies.sparse.hooks import UPDATE_LABEL

ROOT = Path(__file__).resolve().parents[1]
BERT = ROOT / "scenarios" / "sparse" / "bert-large-static-b16-bow-pod16.yaml"
SHORT = ["training.grad_accum=8", "training.global_batch=96", "baseline=null"]
STATIC = "{density: 0.1, block: 16, layers: [attention, ffn]}"
RIGL = (
    "{density: 0.1, block: 16, mode: dynamic, update_every_steps: 50, regrow: gradient, "
    "layers: [attention, ffn]}"
)


def bert(sparsity: str, *extra: str) -> Any:
    return run_scenario(BERT, [*SHORT, f"training.sparsity={sparsity}", *extra])


@pytest.fixture(scope="module")
def dense() -> Any:
    return bert("null")


def test_density_one_static_is_dense_within_two_percent(dense: Any) -> None:
    for block in (1, 16):
        one = bert(f"{{density: 1.0, block: {block}, layers: [attention, ffn]}}")
        assert one.result.step_time_s == pytest.approx(dense.result.step_time_s, rel=0.02)
        assert one.result.sparsity.nonzero_weights == one.result.sparsity.dense_weights


def test_static_sparsity_is_faster_and_smaller(dense: Any) -> None:
    sparse = bert(STATIC)
    r, d = sparse.result, dense.result
    assert r.feasible and r.step_time_s < d.step_time_s
    sp = r.sparsity
    assert sp.sparse_layers == 48 and sp.mode == "static" and sp.update_step == {}
    assert sp.nonzero_weights == pytest.approx(0.1 * sp.dense_weights, rel=0.01)
    assert sp.flops_per_sample["nonzero"] < 0.25 * sp.flops_per_sample["dense"]
    for chip in ("1", "2"):  # encoder stages: weights, gradients and state shrink
        for cat in ("weights", "gradients", "optimizer_state"):
            assert r.memory[chip][cat] < 0.3 * d.memory[chip][cat], (chip, cat)
        assert r.memory[chip]["activations"] == d.memory[chip]["activations"]
    assert sp.metadata_bytes == 4 * sp.nonzero_weights // 256  # 4 B per non-zero 16x16 block
    assert not [n for n in sparse.plan.graph.nodes if UPDATE_LABEL in getattr(n.task, "label", "")]


def test_rigl_update_tasks_memory_and_allreduce(dense: Any) -> None:
    rigl = bert(RIGL)
    r = rigl.result
    assert r.feasible
    tasks = [
        n.task
        for n in rigl.plan.graph.nodes
        if getattr(n.task, "label", "").startswith(UPDATE_LABEL)
    ]
    chips = rigl.plan.info["layout"].chips[0]
    computes = [t for t in tasks if isinstance(t, Compute)]
    assert sorted(t.chip for t in computes) == sorted(chips)  # every stage holds an FFN
    assert all(t.kind == "optimizer" and "1/50" in t.label for t in computes)
    assert any(isinstance(t, Exchange) for t in tasks)
    colls = [t for t in tasks if isinstance(t, Collective)]
    assert colls and all(c.kind == "all_reduce" and len(c.group) == 2 for c in colls)
    assert not any(isinstance(t, Rng) for t in tasks)  # gradient regrow draws nothing
    # the update runs after each stage's optimizer
    spans = {s.task: s for s in rigl.trace.chip_spans}
    for node in rigl.plan.graph.nodes:
        t = node.task
        if isinstance(t, Compute) and t.label.startswith("optimizer stage"):
            after = [
                s
                for s in rigl.trace.chip_spans
                if s.row == t.chip and s.label.startswith(UPDATE_LABEL)
            ]
            assert after and min(s.start for s in after) >= spans[node.id].end
    sp = r.sparsity
    assert sp.update_step["dense_gradient_flops"] > 0 and sp.update_step["rng_samples"] == 0
    static = bert(STATIC).result
    for chip in ("1", "2"):  # the dense gradient of one layer is held on update steps
        assert r.memory[chip]["gradients"] > static.memory[chip]["gradients"]


def test_set_draws_random_keys() -> None:
    out = bert(RIGL.replace("gradient", "random"))
    rng = [n.task for n in out.plan.graph.nodes if isinstance(n.task, Rng)]
    assert rng and all(t.label.startswith(UPDATE_LABEL) for t in rng)
    assert out.result.sparsity.update_step["rng_samples"] > 0
    assert not [n for n in out.plan.graph.nodes if isinstance(n.task, Collective)
                and n.task.label.startswith(UPDATE_LABEL)]  # fmt: skip


def test_data_and_single_accept_sparsity(tmp_path: Path) -> None:
    for strat in ({"type": "data"}, {"type": "single"}):
        out = run_scenario(_mlp(tmp_path, strat, {"density": 0.25, "block": 8}))
        assert out.result.feasible and out.result.sparsity.sparse_layers == 3


def _mlp(tmp: Path, strategy: dict[str, Any], sparsity: dict[str, Any] | None) -> Path:
    from simulator.config.yamlio import dump_yaml

    doc: dict[str, Any] = {
        "schema_version": 1,
        "name": "mlp-sparse",
        "topology": "m2000",
        "model": {
            "schema_version": 1,
            "kind": "model",
            "name": "mlp",
            "input": [64],
            "layers": [{"dense": {"out": 64}}, "relu", {"dense": {"out": 32}}, "relu",
                       {"dense": {"out": 16}}],
        },
        "strategy": strategy,
        "training": {"micro_batch": 16, "dtype": "fp16"},
    }
    if sparsity is not None:
        doc["training"]["sparsity"] = {"layers": ["dense"], **sparsity}
    path = tmp / "mlp.yaml"
    path.write_text(dump_yaml(doc))
    return path


def error_of(path: Path, capsys: pytest.CaptureFixture[str], *overrides: str) -> str:
    code = main(["run", str(path), *(a for o in overrides for a in ("--set", o))])
    _, err = capsys.readouterr()
    assert code == 2, err
    return err


def test_invalid_selections(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _mlp(tmp_path, {"type": "data"}, {"density": 0.5})
    # 16 outputs are not a multiple of 32: the message names the layer and the blocks that fit
    err = error_of(path, capsys, "training.sparsity.block=16", "model.layers[4].dense.out=12")
    assert "training.sparsity.block" in err and "not a multiple of block 16" in err
    err = error_of(path, capsys, "training.sparsity.layers=[conv2d]")
    assert "training.sparsity.layers[0]" in err and "not linear" in err
    err = error_of(path, capsys, "training.sparsity.layers=[nosuch]")
    assert "training.sparsity.layers[0]" in err and "neither" in err
    err = error_of(path, capsys, "training.sparsity.layers=[pooler]")
    assert "selects no linear layer" in err
    err = error_of(path, capsys, "training.sparsity.regrow=random")
    assert "static pattern never changes" in err
    err = error_of(path, capsys, "training.sparsity.mode=dynamic")
    assert "update_every_steps" in err and "regrow" in err
    err = error_of(path, capsys, "training.sparsity.density=1.5")
    assert "training.sparsity.density" in err


def test_tied_lm_head_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    gpt = ROOT / "scenarios" / "sparse" / "gpt2-xl-static-b16-bow-pod16.yaml"
    err = error_of(gpt, capsys, "training.sparsity.layers=[lm_head]")
    assert "tied lm_head" in err


@pytest.mark.parametrize(
    "scenario",
    ["random_subspace/mlp-w1.yaml", "moe/switch-pod16-cf1.0.yaml"],
)
def test_strategies_that_refuse_sparsity(
    scenario: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = error_of(ROOT / "scenarios" / scenario, capsys, f"training.sparsity={STATIC}")
    assert "training.sparsity is not supported with strategy" in err


def test_gpt2_xl_fits_only_sparse(capsys: pytest.CaptureFixture[str]) -> None:
    """The memory planner's "how much larger a model fits": dense GPT-2 XL does not fit in this
    layout, 90 % sparse it does, and the result says so about its dense baseline."""
    path = ROOT / "scenarios" / "sparse" / "gpt2-xl-static-b16-bow-pod16.yaml"
    code = main(["run", str(path), "--json"])
    r = json.loads(capsys.readouterr().out)
    assert code == 0 and r["feasible"]
    assert any("baseline" in w and "does not fit in SRAM" in w for w in r["warnings"])


# ---- time-to-train -------------------------------------------------------------------------
def stats(**sparse: Any) -> Statistics:
    return Statistics.model_validate(
        {"samples_to_target": 1000.0, "sparse": {"source": "test", **sparse}}
    )


def test_sparse_time_to_train() -> None:
    curve = resolve(stats(ratios=[{"block": 16, "mode": "dynamic", "flops_ratio": 0.8}]))
    flops = {"dense": 100.0, "nonzero": 20.0}
    sp = {"mode": "dynamic", "block": 16, "flops_per_sample": flops}
    out = curve.time_to_train(10, 2.0, sp)
    assert out["sparse_samples_factor"] == pytest.approx(0.8 * 100 / 20)
    assert out["samples_to_target"] == pytest.approx(4000)
    assert out["steps_to_target"] == 400 and out["time_to_train_s"] == pytest.approx(800)
    dense = curve.time_to_train(10, 2.0)
    assert dense == {"samples_to_target": 1000.0, "steps_to_target": 100, "time_to_train_s": 200.0}
    none = curve.time_to_train(10, 2.0, {**sp, "mode": "static"})
    assert none["time_to_train_s"] is None and "static 16x16" in none["statistics_note"]
    any_mode = resolve(stats(ratios=[{"block": 16, "flops_ratio": 0.5}]))
    assert any_mode.time_to_train(10, 1.0, {**sp, "mode": "static"})["steps_to_target"] == 250


def test_sparse_statistics_need_a_source() -> None:
    with pytest.raises(ValueError):
        Statistics.model_validate({"samples_to_target": 1.0, "sparse": {"ratios": []}})
    with pytest.raises(ValueError):
        Statistics.model_validate(
            {
                "samples_to_target": 1.0,
                "sparse": {"source": "x", "ratios": [{"block": 3, "flops_ratio": 1}]},
            }
        )


def test_input_error_type_is_raised_in_process(tmp_path: Path) -> None:
    path = _mlp(tmp_path, {"type": "data"}, {"density": 0.5, "block": 16})
    with pytest.raises(InputError, match=r"training\.sparsity\.block"):
        run_scenario(path, ["model.layers[4].dense.out=10"])
