"""``random_subspace`` plans equal the reference run's ledger exactly, and bad input is refused.

For each configuration — the MLP 64-32-10 (ReLU, D = 2,410), batch 8 per replica, fp32, d = 24
— the planner builds the plan from a scenario file and
:func:`strategies.reference.rbd.subspace_ledger` *runs* one step of the same configuration in
NumPy. Compared with ``==`` (docs/strategies/random_subspace.md, "Plan = ledger"):

* random samples: the plan's Rng tasks on the simulated worker chip sum to the ledger's
  ``samples`` of *every* device (workers are identical);
* projection FLOPs: ``project forward`` / ``project backward`` / ``project update`` Compute tasks
  equal the ledger's per-step (micro-batch ``None``) FLOPs of phases forward, backward_weight
  and optimizer;
* the network: ``F mb0`` equals the ledger's forward of micro-batch 0, ``B mb0`` its
  backward_input + backward_weight (the ledger's ``loss`` phase has no layer in a model file);
* bytes: the plan's Collective tasks are the ledger's collectives (kind, chips, bytes), and the
  plan's ``comm_bytes_per_step`` equals the bytes every device sent on its ring.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

import strategies  # noqa: F401 - registers the strategies
from simulator.cli import main
from simulator.engine.tasks import Collective, Compute, Rng
from simulator.run import Outcome, run_scenario
from strategies.reference.rbd import SubspaceConfig, subspace_ledger
from strategies.subspace_counts import CompartmentError, compartments, step_counts

SIZES = (64, 32, 10)
BATCH = 8
D = 24


def mlp(sizes: tuple[int, ...]) -> dict[str, Any]:
    """An inline dense-ReLU-dense model."""
    layers: list[Any] = []
    for i, width in enumerate(sizes[1:]):
        layers.append({"dense": {"out": width}})
        if i < len(sizes) - 2:
            layers.append("relu")
    return {
        "schema_version": 1,
        "kind": "model",
        "name": "mlp",
        "input": [sizes[0]],
        "layers": layers,
    }


def write(tmp: Path, **strategy: Any) -> Path:
    doc = {
        "schema_version": 1,
        "name": "rbd-vs-ledger",
        "topology": "m2000",
        "model": mlp(SIZES),
        "strategy": {"type": "random_subspace", "d": D, **strategy},
        "training": {"micro_batch": BATCH, "dtype": "fp32", "optimizer": "sgd"},
    }
    path = tmp / "scenario.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


CASES = [
    dict(workers=1),
    dict(workers=4),
    dict(workers=4, basis="shared"),
    dict(workers=2, replicas_per_worker=2),
    dict(workers=2, replicas_per_worker=2, basis="shared"),
    dict(workers=4, compartments=3, mode="fpd"),
    dict(workers=2, compartments="layers", distribution="uniform"),
    dict(workers=4, compartments=8, distribution="bernoulli"),
]


def _config(case: dict[str, Any]) -> SubspaceConfig:
    return SubspaceConfig(
        sizes=SIZES,
        d=D,
        compartments=case.get("compartments", 1),
        mode=case.get("mode", "rbd"),
        basis=case.get("basis", "independent"),
        workers=case["workers"],
        replicas=case.get("replicas_per_worker", 1),
        batch=BATCH,
        distribution=case.get("distribution", "gaussian"),
    )


def _flops(outcome: Outcome) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for node in outcome.plan.graph.nodes:
        if isinstance(node.task, Compute):
            out[node.task.label] += node.task.flops
    return out


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_plan_equals_ledger(tmp_path: Path, case: dict[str, Any]) -> None:
    outcome = run_scenario(write(tmp_path, **case))
    ledger = subspace_ledger(_config(case))
    graph = outcome.plan.graph
    devices = case["workers"] * case.get("replicas_per_worker", 1)
    # random samples: every device draws what the simulated chip draws
    rng = [n.task for n in graph.nodes if isinstance(n.task, Rng)]
    assert {t.chip for t in rng} == {0}
    assert {t.distribution for t in rng} == {case.get("distribution", "gaussian")}
    assert set(ledger.samples) == set(range(devices))
    assert set(ledger.samples.values()) == {sum(t.samples for t in rng)}
    # projection and network FLOPs
    flops = _flops(outcome)
    per = ledger.flops_per_micro_batch
    for dev in range(devices):
        assert per[(dev, "forward", None)] == flops["project forward"]
        assert per[(dev, "backward_weight", None)] == flops["project backward"]
        assert per[(dev, "optimizer", None)] == flops["project update"]
        assert per[(dev, "forward", 0)] == flops["F mb0"]
        bwd = per[(dev, "backward_input", 0)] + per[(dev, "backward_weight", 0)]
        assert bwd == flops["B mb0"]
    # bytes: the same collectives, and the bytes each device sends
    planned = sorted(
        (t.kind, tuple(sorted(t.group)), t.bytes)
        for t in (n.task for n in graph.nodes)
        if isinstance(t, Collective)
    )
    counted = sorted((c.kind, tuple(sorted(c.group)), float(c.nbytes)) for c in ledger.collectives)
    assert planned == counted
    result = outcome.result
    assert set(ledger.ring_bytes.values()) == {result.comm_bytes_per_step}
    assert result.samples_per_step == ledger.samples[0]


def test_no_direction_is_held_in_memory(tmp_path: Path) -> None:
    """The SRAM plan is the model's: weights, gradients, activations; no optimizer state and
    nothing the size of a basis (d x D values)."""
    result = run_scenario(write(tmp_path, workers=4)).result
    mem = result.memory["0"]
    assert mem["optimizer_state"] == 0
    assert mem["weights"] == 2410 * 4 and mem["gradients"] == 2410 * 4
    assert mem["total"] < mem["capacity"]


def test_generation_grows_with_workers_only_for_independent_bases(tmp_path: Path) -> None:
    s = {}
    for basis in ("independent", "shared"):
        for w in (1, 4):
            s[(basis, w)] = run_scenario(write(tmp_path, workers=w, basis=basis)).result
    assert s[("independent", 4)].samples_per_step == (2 + 4) * D * 2410
    assert s[("shared", 4)].samples_per_step == 3 * D * 2410 == s[("shared", 1)].samples_per_step
    assert s[("independent", 1)].samples_per_step == s[("shared", 1)].samples_per_step
    # the RNG units' busy time follows the samples
    rng = {k: r.breakdown_mean["rng"] for k, r in s.items()}
    assert rng[("independent", 4)] == pytest.approx(2 * rng[("independent", 1)])
    assert rng[("shared", 4)] == pytest.approx(rng[("shared", 1)])


def test_speedup_against_one_worker(tmp_path: Path) -> None:
    """With a baseline of W = 1, speedup is the throughput ratio; comm is O(d), not O(D)."""
    path = write(tmp_path, workers=4, basis="shared")
    doc = yaml.safe_load(path.read_text())
    doc["baseline"] = {"strategy.workers": 1}
    path.write_text(yaml.safe_dump(doc))
    r = run_scenario(path).result
    assert r.baseline is not None and r.baseline.chips == 1
    assert r.speedup == pytest.approx(
        r.throughput_samples_per_s / r.baseline.throughput_samples_per_s
    )
    assert r.comm_bytes_per_step == 2 * 3 / 4 * 4 * D
    assert r.dp_sgd_comm_bytes_per_step == 2 * 3 / 4 * 4 * 2410
    assert r.comm_saved == pytest.approx(1 - D / 2410)
    assert 0 < r.rng_utilisation < 1


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("strategy.workers=0", "strategy.workers: out of range (got 0; must be >= 1)"),
        ("strategy.distribution=cauchy", "one of: gaussian, uniform, bernoulli"),
        ("strategy.d=3000", "d is larger than the compartment size"),
        ("strategy.compartments=layers", None),
        ("strategy.workers=5", "m2000 has 4; use at most 4 workers"),
    ],
)
def test_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str, message: str | None
) -> None:
    code = main(["run", str(write(tmp_path, workers=2)), "--set", override, "--json"])
    err = capsys.readouterr().err
    if message is None:
        assert code == 0
    else:
        assert code == 2 and message in err, err


def test_d_larger_than_a_layer_compartment() -> None:
    """With one compartment per layer, d/c must fit the smallest layer (330 parameters)."""
    assert [p.params for p in compartments([2080, 0, 330], 660, "layers")] == [2080, 330]
    with pytest.raises(CompartmentError, match="compartment 1 331 coefficients"):
        compartments([2080, 0, 330], 662, "layers")


def test_counts_by_compartment_size() -> None:
    parts = compartments([1000], 10, size=300)
    assert [p.params for p in parts] == [300, 300, 300, 100]
    assert [p.coefficients for p in parts] == [3, 3, 2, 2]
    c = step_counts(parts, 2, 1, "independent", 2)
    assert c.samples_forward == 3 * 300 * 2 + 2 * 300 + 2 * 100
    assert c.exchange_kind == "all_gather" and c.exchange_bytes == 2 * (4 + 40)
