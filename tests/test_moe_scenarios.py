"""The moe strategy as a user sees it: the capacity sweep, stragglers, errors, determinism.

* scenarios/moe/switch-pod16-cf{1.0,1.25,2.0}: the trade-off Switch Transformer measured
  (Table 1: 1000 / 910 / 860 examples/s) — more capacity, slower steps, fewer dropped tokens;
* with static capacity the step time does not depend on the routing (padding is computed);
  with dynamic shapes a skewed routing makes the busiest expert's chip a straggler;
* top_k > experts, capacity_factor <= 0, experts that do not spread over the chips: exit 2;
  a plan that does not fit in SRAM: exit 3;
* the same scenario gives byte-identical JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import strategies  # noqa: F401 - registers the strategies
from simulator.cli import main
from simulator.config.scenario import load_scenario
from simulator.metrics import to_json
from simulator.run import run_loaded

ROOT = Path(__file__).resolve().parents[1]
SWEEP = [ROOT / f"scenarios/moe/switch-pod16-cf{cf}.yaml" for cf in ("1.0", "1.25", "2.0")]
SMALL = [  # 4 IPUs, 4 experts, two 64-token sequences per IPU: fast
    "topology=m2000",
    "strategy.experts=4",
    "strategy.top_k=2",
    "model={name: moe-transformer, params: {seq_len: 64, positions: 64, pairs: 1}}",
]


def _run(path: Path, sets: list[str] = ()):  # type: ignore[no-untyped-def,assignment]
    return run_loaded(load_scenario(path, list(sets)), baseline=False).result


def test_capacity_sweep_has_switch_direction() -> None:
    results = [_run(p) for p in SWEEP]
    steps = [r.step_time_s for r in results]
    dropped = [r.dropped_token_fraction for r in results]
    assert steps[0] < steps[1] < steps[2], steps
    assert dropped[0] > dropped[1] > dropped[2], dropped
    assert [r.capacity_factor for r in results] == [1.0, 1.25, 2.0]


def test_static_capacity_time_ignores_routing() -> None:
    base = SWEEP[1]
    times = {
        r: _run(base, [*SMALL, f"strategy.routing={r}"]).step_time_s
        for r in ("uniform", "zipf", "reference")
    }
    assert times["uniform"] == times["zipf"] == times["reference"]


def test_skew_makes_stragglers_without_static_capacity() -> None:
    sets = [
        *SMALL,
        "strategy.top_k=1",
        "strategy.static_capacity=false",
        "strategy.capacity_factor=4.0",
    ]
    even = _run(SWEEP[1], [*sets, "strategy.routing=uniform"])
    skew = _run(SWEEP[1], [*sets, "strategy.routing=zipf", "strategy.skew=1.5"])
    assert skew.expert_load > 1.5 and even.expert_load == 1.0
    assert skew.expert_rows_imbalance > 1.2
    assert skew.step_time_s > even.step_time_s
    computes = [b["compute"] for b in skew.breakdown.values()]
    idles = [b["idle"] for b in skew.breakdown.values()]
    busiest = max(range(4), key=lambda c: computes[c])
    assert idles[busiest] == min(idles)  # the straggler is the one nobody waits for


@pytest.mark.parametrize(
    ("sets", "needle"),
    [
        (["strategy.top_k=17"], "top_k 17 exceeds the 16 experts"),
        (["strategy.capacity_factor=0"], "capacity_factor"),
        (["strategy.capacity_factor=-1.5"], "capacity_factor"),
        (["strategy.experts=12"], "12 experts do not spread evenly"),
        (["training.offload_weights=true"], "offload_weights"),
    ],
)
def test_invalid_input_exits_2(
    sets: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["run", str(SWEEP[0]), "--json"]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert out == "" and needle in err


def test_does_not_fit_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", str(SWEEP[0]), "--json", "--set", "training.micro_batch=8"])
    result = json.loads(capsys.readouterr().out)
    assert code == 3 and result["feasible"] is False and "SRAM" in result["reason"]
    assert result["dropped_token_fraction"] >= 0  # routing figures are still reported


def test_json_is_deterministic() -> None:
    a = to_json(_run(SWEEP[1], SMALL))
    b = to_json(_run(SWEEP[1], SMALL))
    assert a == b
    doc = json.loads(a)
    for key in (
        "dropped_token_fraction",
        "expert_load",
        "all_to_all_bytes_per_step",
        "expert_capacity",
        "all_to_all_bytes_by_tag",
    ):
        assert key in doc
