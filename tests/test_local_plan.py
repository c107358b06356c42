"""The ``local`` strategy's plan equals the local-learning reference run's ledgers exactly.

For each configuration — an MLP with one repeated block per dense layer (so
``layers_per_block`` places it like the reference's ``placement``), K blocks on a ring of K
chips, M micro-batches of 4, greedy or overlapping, fp16 — the planner builds the plan from a
scenario file and :func:`strategies.reference.local.local_ledger` *runs* one step of the same
configuration in NumPy on the plan's own chips. Compared with ``==``:

* ``F mb<m> s<d> step0`` Compute FLOPs = the block ledger's ``forward`` of (chip, m);
* ``H ...`` = the head ledger's forward + backward_input + backward_weight (the auxiliary
  head's forward and backward pass); ``B ...`` = the block ledger's backward_input +
  backward_weight — local input gradients only, so the block's first dense computes none;
* the update (``optimizer stage <d>`` plus ``shared sum ...``) = both ledgers' ``optimizer``
  (SGD on block and head, plus adding the neighbour's shared-layer gradient);
* Transfers ``act ...`` per (src, dst) = ``activation`` bytes; ``shared ...`` = the
  ``shared_gradient`` bytes; there is no ``gradient`` transfer at all;
* each chip's F/B order = the ledger's ``order``; one step takes 2M + K - 1 ticks.

The losses (7BC + 3B per block: the local losses and the network's) are the one term the
plan leaves out, as for every strategy (docs/reference_runs.md).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

import strategies  # noqa: F401 - registers the strategies
from simulator.engine.tasks import Compute, Transfer
from simulator.run import Outcome, run_scenario
from strategies.reference.local import LocalConfig, LocalLedger, local_ledger
from tests.helpers import inline_gc200_ring

MICRO_BATCH = 4
CLASSES = 10


def mlp_model(sizes: tuple[int, ...]) -> dict[str, Any]:
    """An inline MLP, one repeated block (dense + relu, the last dense alone) per layer."""
    layers = []
    for i, width in enumerate(sizes[1:]):
        body: list[Any] = [{"dense": {"out": width}}]
        if i < len(sizes) - 2:
            body.append("relu")
        layers.append({"repeat": {"name": f"l{i}", "times": 1, "body": body}})
    return {
        "schema_version": 1,
        "kind": "model",
        "name": "mlp",
        "input": [sizes[0]],
        "layers": layers,
    }


def ring(chips: int) -> dict[str, Any]:
    return inline_gc200_ring(chips)


def run_local(
    tmp: Path, sizes: tuple[int, ...], placement: tuple[int, ...], m: int, variant: str
) -> Outcome:
    k = max(placement) + 1
    doc = {
        "schema_version": 1,
        "name": "local-vs-ledger",
        "topology": ring(k),
        "model": mlp_model(sizes),
        "strategy": {
            "type": "local",
            "blocks": k,
            "variant": variant,
            "layers_per_block": [placement.count(d) for d in range(k)],
        },
        "training": {"micro_batch": MICRO_BATCH, "grad_accum": m, "dtype": "fp16"},
    }
    path = tmp / "local.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return run_scenario(path)


def plan_work(outcome: Outcome) -> tuple[dict[tuple[int, str, int | None], float], dict]:
    """Step 0's Compute FLOPs by (chip, F/H/B/update, micro-batch) and Transfer bytes."""
    flops: dict[tuple[int, str, int | None], float] = defaultdict(float)
    sent: dict[tuple[int, int, str], float] = defaultdict(float)
    step0 = outcome.plan.info["built"].steps[0]
    for node in outcome.plan.graph.nodes:
        t = node.task
        if node.id not in step0:
            continue
        if isinstance(t, Compute):
            if t.kind == "optimizer":
                flops[(t.chip, "update", None)] += t.flops
            else:
                kind, mb = t.label.split()[:2]
                flops[(t.chip, kind, int(mb.removeprefix("mb")))] += t.flops
        elif isinstance(t, Transfer):
            tag = {"act": "activation", "shared": "shared_gradient"}[t.label.split()[0]]
            sent[(t.src, t.dst, tag)] += t.bytes
    return dict(flops), dict(sent)


def ledger_for(outcome: Outcome, sizes, placement, m, variant) -> LocalLedger:  # type: ignore[no-untyped-def]
    lay = outcome.plan.info["layout"]
    return local_ledger(
        LocalConfig(
            sizes=sizes,
            placement=placement,
            micro_batch=MICRO_BATCH,
            micro_batches=m,
            variant=variant,
            devices=tuple(lay.chips[0]),
            dtype="fp16",
        )
    )


CASES = [
    ((64, 32, 16, 10), (0, 1, 2), 3, "greedy"),
    ((64, 32, 32, 16, 10), (0, 0, 1, 1), 4, "greedy"),
    ((64, 32, 32, 16, 10), (0, 0, 1, 1), 2, "overlapping"),
    ((64, 32, 32, 24, 16, 10), (0, 0, 1, 1, 2), 3, "overlapping"),
    ((64, 48, 32, 24, 16, 10), (0, 0, 1, 1, 1), 1, "overlapping"),
]


@pytest.mark.parametrize(("sizes", "placement", "m", "variant"), CASES)
def test_plan_equals_ledger(
    tmp_path: Path, sizes: tuple[int, ...], placement: tuple[int, ...], m: int, variant: str
) -> None:
    out = run_local(tmp_path, sizes, placement, m, variant)
    assert out.result.feasible
    led = ledger_for(out, sizes, placement, m, variant)
    chips = out.plan.info["layout"].chips[0]
    flops, sent = plan_work(out)
    blk, head = led.block.flops_per_micro_batch, led.head.flops_per_micro_batch
    for d, chip in enumerate(chips):
        for mb in range(m):
            assert flops[(chip, "F", mb)] == blk[(chip, "forward", mb)]
            want_b = blk.get((chip, "backward_input", mb), 0) + blk[(chip, "backward_weight", mb)]
            assert flops[(chip, "B", mb)] == want_b
            want_h = sum(
                head.get((chip, p, mb), 0) for p in ("forward", "backward_input", "backward_weight")
            )
            assert flops.get((chip, "H", mb), 0) == want_h
            assert (want_h > 0) == (d < len(chips) - 1)  # every block but the last has a head
        assert flops[(chip, "update", None)] == (
            led.block.flops[chip]["optimizer"] + led.head.flops[chip]["optimizer"]
        )
        # the loss is the only work left out: 7BC + 3B per block, on every chip
        rows = MICRO_BATCH * m
        loss = led.block.flops[chip]["loss"] + led.head.flops[chip]["loss"]
        assert loss == 7 * rows * CLASSES + 3 * rows
    assert sent == {k: float(v) for k, v in led.block.transfers.items()}
    assert not any(tag == "gradient" for _, _, tag in sent)
    assert any(tag == "shared_gradient" for _, _, tag in sent) == (variant == "overlapping")
    # schedule: F then B per micro-batch on every chip, no waiting for later chips
    for chip in chips:
        got = tuple(
            (n.task.label[0], int(n.task.label.split()[1].removeprefix("mb")))
            for n in out.plan.graph.nodes
            if isinstance(n.task, Compute)
            and n.task.chip == chip
            and n.id in out.plan.info["built"].steps[0]
            and n.task.label[0] in "FB"
        )
        assert got == led.block.order[chip]
    assert led.ticks == 2 * m + len(chips) - 1


# ---- bad input, infeasible plans, and the comparison with the pipeline -----------------------
def _scenario(tmp: Path, strategy: dict[str, Any], **extra: Any) -> Path:
    doc = {
        "schema_version": 1,
        "name": "local-check",
        "topology": extra.pop("topology", ring(4)),
        "model": extra.pop("model", mlp_model((64, 32, 32, 16, 10))),
        "strategy": {"type": "local", **strategy},
        "training": {"micro_batch": 4, "grad_accum": 4, "dtype": "fp16", **extra},
    }
    path = tmp / "s.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.mark.parametrize(
    ("strategy", "words"),
    [
        ({"blocks": 8, "replicas": 1}, "blocks"),  # 8 blocks on 4 chips
        ({"blocks": 4, "replicas": 2}, "replica(s)"),
        ({"blocks": 2, "replicas": 2, "variant": "overlapping", "overlap": 2}, "overlap"),
        ({"blocks": 4, "overlap": 1}, "overlapping"),
        ({"blocks": 2, "replicas": 2, "layers_per_block": [3, 2]}, "add up"),
    ],
)
def test_invalid_input_exits_2(
    tmp_path: Path, strategy: dict[str, Any], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from simulator.cli import main

    code = main(["run", str(_scenario(tmp_path, strategy)), "--json"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "s.yaml" in err and words in err


def test_more_blocks_than_layers_is_invalid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from simulator.cli import main

    path = _scenario(tmp_path, {"blocks": 8}, topology=ring(8))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "8 blocks but the model has only 4" in err and "strategy.blocks" in err


def test_block_that_does_not_fit_is_infeasible(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from simulator.cli import main

    big = mlp_model((16384, 16384, 16384, 10))
    path = _scenario(tmp_path, {"blocks": 2}, topology=ring(2), model=big)
    assert main(["run", str(path), "--json"]) == 3
    assert "does not fit in SRAM" in capsys.readouterr().out


def test_local_beats_the_pipeline_on_the_same_chips(tmp_path: Path) -> None:
    """Same model, chips and micro-batches: local's steady state has no fill/drain and no
    backward wait, so it is faster than 1F1B despite its heads; its first step (fill
    included) is slower than its steady state; the closed form is the slowest block."""
    path = _scenario(tmp_path, {"blocks": 4}, grad_accum=8)
    doc = yaml.safe_load(path.read_text())
    doc["baseline"] = {"strategy": {"type": "pipeline", "stages": 4, "layers_per_stage": [1] * 4}}
    doc["strategy"]["layers_per_block"] = [1] * 4
    path.write_text(yaml.safe_dump(doc))
    res = run_scenario(path).result
    assert res.baseline is not None and res.speedup is not None
    assert res.speedup > 1.2
    assert res.first_step_s > res.step_time_s
    assert res.analytic.difference == pytest.approx(0.0, abs=0.02)
    assert 0 < res.aux_head_flops_fraction < 0.5  # heads are big next to a tiny MLP
