"""Layer 1 for the training strategies: the plans of ``single``, ``data`` and ``pipeline``
equal the reference runs' ledgers exactly (DESIGN.md § Validation; docs/reference_runs.md).

For each configuration — the MLP 64-32-16-10 with ReLU, R replicas x K stages placed
explicitly (``layers_per_stage``), M micro-batches of 4, GPipe or 1F1B, fp16 — the real
planner builds the plan from a scenario file (``simulator.run.run_scenario``) and
:func:`strategies.reference.reference_ledger` *runs* one step of the same configuration in
NumPy (fp16, so its bytes are ``ndarray.nbytes`` of fp16 arrays, the plan's ``training.dtype``),
on the plan's own chip grid (``ReferenceConfig.grid = Layout.chips``), so device ids agree.

Compared with ``==`` (no tolerance), field by field:

* FLOPs per chip and phase, and per chip, phase and micro-batch: the plan's Compute tasks
  labelled ``F mb<m> s<j>`` are the ledger's ``forward``; ``B mb<m> s<j>`` are the ledger's
  ``backward_input + backward_weight`` (the plan costs a stage's backward pass as one phase, so
  the sums are compared); ``optimizer stage <d>`` is ``optimizer`` (SGD, 2 FLOP per parameter).
* Bytes crossing each stage boundary: Transfer tasks ``act ...`` / ``grad ...`` per
  (src, dst) equal ``transfers[(src, dst, "activation" | "gradient")]``, and their per-boundary
  sums ``activation_bytes`` / ``gradient_bytes``.
* Bytes all-reduced per device: the plan simulates replica 0 only and puts every replica's
  chip of a stage in that stage's Collective group; a chip's summed Collective bytes equal
  ``all_reduce_bytes[chip]`` for *every* chip of every replica, and the groups are the ledger's.
* The schedule: each chip's F/B sequence in the plan equals the ledger's ``order`` and
  :func:`strategies.schedule.in_flight` equals ``peak_stash``.

Conventions that genuinely differ, made explicit:

* ``loss``: the ledger charges softmax cross-entropy (7BC + 3B per step) to the last stage;
  model layer tables have no loss layer, so the plan has none. Asserted: the plan's total
  FLOPs equal the ledger's total minus ``loss`` exactly, and ``loss`` sits on the last stage
  only.
* First layer's input gradient: neither computes it — the plan skips it through
  ``Model.needs_input_grad`` (False for the first dense), the reference because nothing uses
  it. Asserted by the equality itself and by a test that the first dense's ``bwd_input`` is
  left out of stage 0's B task.
* tanh costs 1 / 3 FLOP per element in the reference and 2 / 2 in ``VECTOR_FLOP``: the test
  model uses ReLU (1 / 1 in both), and a tanh test shows the documented difference,
  B·width·(2−1) forward and B·width·(2−3) backward per tanh layer.
* Replicas: the plan's tasks are replica 0's; the ledger has every replica. The ledger's other
  replicas are asserted to do exactly replica 0's work, so comparing replica 0 is complete.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

import strategies  # noqa: F401 - registers the strategies
from simulator.config.yamlio import dump_yaml
from simulator.engine.tasks import Collective, Compute, Transfer
from simulator.run import Outcome, run_scenario
from strategies.reference import LedgerSummary, ReferenceConfig, reference_ledger
from strategies.schedule import in_flight
from tests.helpers import inline_gc200_ring

SIZES = (64, 32, 16, 10)
MICRO_BATCH = 4


def mlp_model(sizes: tuple[int, ...], activation: str = "relu") -> dict[str, Any]:
    """An inline model: one repeated block per dense layer (so ``layers_per_stage`` places it),
    each dense followed by the activation except the last."""
    layers = []
    for i, width in enumerate(sizes[1:]):
        body: list[Any] = [{"dense": {"out": width}}]
        if i < len(sizes) - 2:
            body.append(activation)
        layers.append({"repeat": {"name": f"l{i}", "times": 1, "body": body}})
    return {
        "schema_version": 1,
        "kind": "model",
        "name": "mlp-" + "-".join(map(str, sizes)),
        "input": [sizes[0]],
        "layers": layers,
    }


def ring_topology(chips: int) -> dict[str, Any] | str:
    """m2000 for 4 chips, else an inline one-machine system of GC200s on an IPU-Link ring."""
    if chips == 4:
        return "m2000"
    return inline_gc200_ring(chips)


def placement_counts(placement: tuple[int, ...], stages: int) -> list[int]:
    return [placement.count(s) for s in range(stages)]


def write_scenario(
    tmp: Path,
    *,
    replicas: int,
    stages: int,
    micro_batches: int,
    schedule: str = "gpipe",
    placement: tuple[int, ...] | None = None,
    strategy: str = "pipeline",
    sizes: tuple[int, ...] = SIZES,
    activation: str = "relu",
) -> Path:
    strat: dict[str, Any] = {"type": strategy}
    if strategy == "pipeline":
        strat.update(stages=stages, replicas=replicas, schedule=schedule)
        if placement is not None:
            strat["layers_per_stage"] = placement_counts(placement, stages)
    elif strategy == "data":
        strat["replicas"] = replicas
    doc = {
        "schema_version": 1,
        "name": "plan-vs-ledger",
        "topology": ring_topology(replicas * stages),
        "model": mlp_model(sizes, activation),
        "strategy": strat,
        "training": {
            "micro_batch": MICRO_BATCH,
            "grad_accum": micro_batches,
            "global_batch": MICRO_BATCH * micro_batches * replicas,
            "dtype": "fp16",
            "optimizer": "sgd",
        },
    }
    path = tmp / "scenario.yaml"
    path.write_text(dump_yaml(doc))
    return path


def ledger_for(outcome: Outcome, placement: tuple[int, ...], **kw: Any) -> LedgerSummary:
    lay = outcome.plan.info["layout"]
    tp = outcome.plan.info["training"]
    return reference_ledger(
        ReferenceConfig(
            sizes=kw.pop("sizes", SIZES),
            global_batch=tp.micro_batch * tp.grad_accum * lay.replicas,
            micro_batch=tp.micro_batch,
            replicas=lay.replicas,
            stages=lay.stages,
            placement=placement,
            grid=tuple(tuple(row) for row in lay.chips),
            schedule=lay.schedule,
            dtype=tp.dtype,
            **kw,
        )
    )


# ---- what the plan holds, gathered by label ---------------------------------------------------
def plan_flops(outcome: Outcome) -> dict[int, dict[str, float]]:
    out: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for node in outcome.plan.graph.nodes:
        t = node.task
        if isinstance(t, Compute):
            phase = {"F": "forward", "B": "backward", "R": "recompute", "o": "optimizer"}[
                t.label[0]
            ]
            out[t.chip][phase] += t.flops
    return out


def plan_flops_per_micro_batch(outcome: Outcome) -> dict[tuple[int, str, int], float]:
    out: dict[tuple[int, str, int], float] = defaultdict(float)
    for node in outcome.plan.graph.nodes:
        t = node.task
        if isinstance(t, Compute) and t.label[0] in "FB":
            mb = int(t.label.split()[1].removeprefix("mb"))
            out[(t.chip, "forward" if t.label[0] == "F" else "backward", mb)] += t.flops
    return out


def plan_transfers(outcome: Outcome) -> dict[tuple[int, int, str], float]:
    out: dict[tuple[int, int, str], float] = defaultdict(float)
    for node in outcome.plan.graph.nodes:
        t = node.task
        if isinstance(t, Transfer):
            tag = {"act": "activation", "grad": "gradient"}[t.label.split()[0]]
            out[(t.src, t.dst, tag)] += t.bytes
    return dict(out)


def plan_collectives(outcome: Outcome) -> list[Collective]:
    return [n.task for n in outcome.plan.graph.nodes if isinstance(n.task, Collective)]


def plan_orders(outcome: Outcome) -> dict[int, tuple[tuple[str, int], ...]]:
    """Each chip's F/B blocks in graph order (a chip's blocks form one dependency chain)."""
    out: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for node in outcome.plan.graph.nodes:
        t = node.task
        if isinstance(t, Compute) and t.label[0] in "FB":
            out[t.chip].append((t.label[0], int(t.label.split()[1].removeprefix("mb"))))
    return {c: tuple(o) for c, o in out.items()}


# ---- the comparison -----------------------------------------------------------------------------
def assert_plan_equals_ledger(outcome: Outcome, led: LedgerSummary) -> None:
    lay = outcome.plan.info["layout"]
    tp = outcome.plan.info["training"]
    assert led.dtype == tp.dtype == "fp16"
    flops = plan_flops(outcome)
    last = lay.chips[0][-1]

    # replicas > 0 do exactly what replica 0 does (so replica 0's tasks are the whole story)
    for r in range(1, lay.replicas):
        for s in range(lay.stages):
            assert led.flops[lay.chips[r][s]] == led.flops[lay.chips[0][s]]

    # FLOPs per chip and phase
    for chip in lay.chips[0]:
        want = led.flops[chip]
        got = flops[chip]
        assert got["forward"] == want["forward"], chip
        assert got["backward"] == want["backward_input"] + want["backward_weight"], chip
        assert got["optimizer"] == want["optimizer"], chip
        assert got["recompute"] == 0
        assert want["loss"] == 0 or chip == last  # the loss lives on the last stage only
    # ... and in total the plan is the ledger minus the loss, nothing more, nothing less
    replica0 = sum(sum(flops[c].values()) for c in lay.chips[0])
    ledger0 = sum(sum(led.flops[c].values()) for c in lay.chips[0])
    assert replica0 == ledger0 - led.flops[last]["loss"]
    assert led.flops[last]["loss"] == 7 * MICRO_BATCH * tp.grad_accum * SIZES[-1] + 3 * (
        MICRO_BATCH * tp.grad_accum
    )
    # the plan's tasks land on replica 0's chips only
    assert set(flops) == set(lay.chips[0])

    # FLOPs per chip, phase and micro-batch
    per_mb = plan_flops_per_micro_batch(outcome)
    for chip in lay.chips[0]:
        for m in range(tp.grad_accum):
            fwd = led.flops_per_micro_batch.get((chip, "forward", m), 0)
            bwd = led.flops_per_micro_batch.get(
                (chip, "backward_input", m), 0
            ) + led.flops_per_micro_batch.get((chip, "backward_weight", m), 0)
            assert per_mb[(chip, "forward", m)] == fwd
            assert per_mb[(chip, "backward", m)] == bwd

    # bytes crossing each stage boundary
    transfers = plan_transfers(outcome)
    replica0_sent = {
        k: v for k, v in led.transfers.items() if k[0] in lay.chips[0] and k[1] in lay.chips[0]
    }
    assert transfers == replica0_sent
    row = lay.chips[0]
    act = tuple(transfers.get((row[i], row[i + 1], "activation"), 0) for i in range(len(row) - 1))
    grad = tuple(transfers.get((row[i + 1], row[i], "gradient"), 0) for i in range(len(row) - 1))
    assert act == led.activation_bytes
    assert grad == led.gradient_bytes

    # bytes all-reduced per device, every replica's chips included
    colls = plan_collectives(outcome)
    per_chip: dict[int, float] = defaultdict(float)
    for c in colls:
        assert c.kind == "all_reduce"
        for chip in c.group:
            per_chip[chip] += c.bytes
    for chip, nbytes in led.all_reduce_bytes.items():
        assert per_chip.get(chip, 0) == nbytes, chip
    assert sorted(sorted(c.group) for c in colls) == sorted(
        sorted(rec.group) for rec in led.collectives
    )
    assert sorted(c.bytes for c in colls) == sorted(rec.nbytes for rec in led.collectives)

    # the schedule and the stash
    orders = plan_orders(outcome)
    for s, chip in enumerate(lay.chips[0]):
        assert orders[chip] == led.order[chip], chip
        assert in_flight(lay.schedule, lay.stages, tp.grad_accum, s) == led.peak_stash[chip]


CASES = [
    # (R, K, M, schedule, stage of each dense layer)
    (1, 1, 1, "gpipe", (0, 0, 0)),
    (1, 2, 3, "1f1b", (0, 0, 1)),
    (1, 2, 4, "gpipe", (0, 1, 1)),
    (1, 3, 4, "gpipe", (0, 1, 2)),
    (1, 3, 4, "1f1b", (0, 1, 2)),
    (1, 3, 1, "1f1b", (0, 1, 2)),
    (2, 1, 3, "gpipe", (0, 0, 0)),
    (4, 1, 1, "gpipe", (0, 0, 0)),
    (2, 2, 4, "1f1b", (0, 1, 1)),
    (2, 2, 3, "gpipe", (0, 0, 1)),
    (2, 3, 3, "gpipe", (0, 1, 2)),
    (4, 3, 4, "1f1b", (0, 1, 2)),
]


@pytest.mark.parametrize(("replicas", "stages", "micro_batches", "schedule", "placement"), CASES)
def test_pipeline_plan_equals_the_ledger(
    tmp_path: Path,
    replicas: int,
    stages: int,
    micro_batches: int,
    schedule: str,
    placement: tuple[int, ...],
) -> None:
    path = write_scenario(
        tmp_path,
        replicas=replicas,
        stages=stages,
        micro_batches=micro_batches,
        schedule=schedule,
        placement=placement,
    )
    outcome = run_scenario(path)
    assert outcome.result.feasible
    lay = outcome.plan.info["layout"]
    # the plan placed the dense layers where the reference does (layers 2i, 2i+1 = dense, relu)
    stage_of = {i: j for j, ls in enumerate(lay.vstage_layers) for i in ls}
    assert tuple(stage_of[2 * i] for i in range(len(SIZES) - 1)) == placement
    assert_plan_equals_ledger(outcome, ledger_for(outcome, placement))


@pytest.mark.parametrize(("replicas", "micro_batches"), [(1, 1), (2, 3), (4, 1), (4, 2)])
def test_data_strategy_plan_equals_the_ledger(
    tmp_path: Path, replicas: int, micro_batches: int
) -> None:
    path = write_scenario(
        tmp_path, replicas=replicas, stages=1, micro_batches=micro_batches, strategy="data"
    )
    outcome = run_scenario(path)
    assert outcome.result.strategy == "data"
    assert_plan_equals_ledger(outcome, ledger_for(outcome, (0, 0, 0)))


def test_single_strategy_plan_equals_the_ledger(tmp_path: Path) -> None:
    path = write_scenario(tmp_path, replicas=1, stages=1, micro_batches=2, strategy="single")
    outcome = run_scenario(path)
    assert outcome.result.strategy == "single"
    assert_plan_equals_ledger(outcome, ledger_for(outcome, (0, 0, 0)))


def test_the_first_dense_layer_has_no_input_gradient_in_either(tmp_path: Path) -> None:
    """Model.needs_input_grad is False for the first dense; the plan's stage-0 backward is
    exactly the reference's, which skips that gradient too (2·b·64·32 FLOP per micro-batch
    that neither counts)."""
    path = write_scenario(tmp_path, replicas=1, stages=3, micro_batches=1, placement=(0, 1, 2))
    outcome = run_scenario(path)
    model = outcome.plan.info["model"]
    assert model.needs_input_grad[0] is False and all(model.needs_input_grad[1:])
    first = model.layers[0]
    assert first.backward_input_flops == 2 * 64 * 32
    led = ledger_for(outcome, (0, 1, 2))
    b0 = plan_flops(outcome)[0]["backward"]
    relu = MICRO_BATCH * 32  # relu gradient of stage 0 (an input gradient both count)
    weight = MICRO_BATCH * (2 * 64 * 32 + 32)  # x^T dY and the bias column sums
    assert b0 == relu + weight == led.flops[0]["backward_input"] + led.flops[0]["backward_weight"]
    assert led.flops[0]["backward_input"] == relu


def test_tanh_costs_differ_by_the_documented_convention(tmp_path: Path) -> None:
    """tanh is 2/2 FLOP per element (forward/backward) in VECTOR_FLOP, 1/3 in the reference;
    everything else agrees, so the differences are exactly b·M·width per tanh layer: +1 per
    element forward, −1 per element backward."""
    sizes = (64, 32, 16, 10)
    path = write_scenario(
        tmp_path,
        replicas=1,
        stages=2,
        micro_batches=3,
        placement=(0, 1, 1),
        sizes=sizes,
        activation="tanh",
        schedule="1f1b",
    )
    outcome = run_scenario(path)
    led = ledger_for(outcome, (0, 1, 1), activation="tanh")
    flops = plan_flops(outcome)
    rows = MICRO_BATCH * 3
    tanh_elems = {0: rows * 32, 1: rows * 16}  # stage 0 holds tanh(32), stage 1 tanh(16)
    for chip, elems in tanh_elems.items():
        want = led.flops[chip]
        assert flops[chip]["forward"] - want["forward"] == elems * (2 - 1)
        assert flops[chip]["backward"] - (
            want["backward_input"] + want["backward_weight"]
        ) == elems * (2 - 3)
    assert plan_transfers(outcome) == dict(led.transfers)


@pytest.mark.parametrize(("replicas", "stages", "schedule"), [(1, 2, "1f1b"), (2, 2, "gpipe")])
def test_auto_placement_plan_equals_the_ledger_of_its_placement(
    tmp_path: Path, replicas: int, stages: int, schedule: str
) -> None:
    """``placement: auto`` balances by FLOPs, the reference's default by layer count; the
    reference is asked for the plan's placement explicitly."""
    path = write_scenario(
        tmp_path, replicas=replicas, stages=stages, micro_batches=4, schedule=schedule
    )
    outcome = run_scenario(path)
    lay = outcome.plan.info["layout"]
    stage_of = {i: j for j, ls in enumerate(lay.vstage_layers) for i in ls}
    placed = tuple(stage_of[2 * i] for i in range(len(SIZES) - 1))
    assert placed == (0, 1, 1)  # dense 64x32 alone outweighs 32x16 + 16x10
    assert_plan_equals_ledger(outcome, ledger_for(outcome, placed))
