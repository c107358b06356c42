"""Scenarios with ``variability:`` end to end (docs/variability.md): input errors, results that
do not change when nothing varies, a slow chip in a data-parallel pod, seeds, degraded and
failed links, every strategy's distribution, the report and sweep pages.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from simulator.cli import main
from simulator.engine.tasks import Compute
from simulator.errors import InputError
from simulator.run import run_scenario

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"

ZERO = (
    "variability={compute_cv: 0, host_jitter: 0, slow_chips: {3: 1.0}, "
    "link_derate: [{chips: [0, 1], factor: 1}], samples: 5}"
)


def run_json(path: Path | str, *sets: str) -> tuple[int, str]:
    """``ipusim run PATH --json --full [--set ...]``: exit code and stdout."""
    import contextlib
    import io

    out = io.StringIO()
    args = ["run", str(path), "--json", "--full"]
    for s in sets:
        args += ["--set", s]
    with contextlib.redirect_stdout(out):
        code = main(args)
    return code, out.getvalue()


def _is_scenario(path: Path) -> bool:
    return yaml.safe_load(path.read_text()).get("kind", "scenario") == "scenario"


ALL = sorted(p for p in SCENARIOS.rglob("*.yaml") if _is_scenario(p))
REPRESENTATIVE = [
    "quickstart.yaml",
    "ensemble/resnet50-codistill-pod16.yaml",
    "local/resnet50-overlapping-m2000.yaml",
    "mlperf/bert-large-v1.1-pod16.yaml",
    "random_subspace/mlp-independent-w8.yaml",
    "moe/switch-pod16-cf1.0.yaml",
    "microbench/all-reduce-64MiB-pod16.yaml",
    "single/bert-large-gc200.yaml",  # infeasible
]


def _without_overrides(text: str) -> str:
    """The JSON text without its ``overrides`` entry (it names the --set texts)."""
    doc = json.loads(text)
    doc.pop("overrides", None)
    return json.dumps(doc, indent=2)


def _zero_unchanged(path: Path) -> None:
    text = path.read_text()
    given = "variability" in yaml.safe_load(text)
    code, plain = run_json(path, "variability=null") if given else run_json(path)
    code_zero, zero = run_json(path, ZERO)
    assert code == code_zero
    assert _without_overrides(plain) == _without_overrides(zero)
    assert '"step_time_mean_s"' not in zero and '"variability"' not in zero


@pytest.mark.parametrize("rel", REPRESENTATIVE)
def test_zero_variability_changes_nothing(rel: str) -> None:
    """Zero CV, no jitter, factors of 1 and any number of samples: byte-identical JSON to the
    run without the key (the full list of shipped scenarios is the slow test below)."""
    _zero_unchanged(SCENARIOS / rel)


@pytest.mark.slow
@pytest.mark.parametrize("path", ALL, ids=[p.relative_to(SCENARIOS).as_posix() for p in ALL])
def test_zero_variability_changes_nothing_anywhere(path: Path) -> None:
    _zero_unchanged(path)


# ---- input ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "setting,message",
    [
        ("variability.compute_cv=-0.1", "compute_cv"),
        ("variability.compute_cv=3", "compute_cv"),
        ("variability.samples=0", "samples"),
        ("variability.slow_chips={99: 2}", "chip 99 is not in pod16"),
        ("variability.slow_chips={3: 0}", "slow_chips"),
        ("variability.link_derate=[{chips: [0, 99], factor: 0.5}]", "chip 99 is not in pod16"),
        ("variability.link_derate=[{chips: [0, 15], factor: 0.5}]", "no link joins"),
        ("variability.link_derate=[{link: [gw:0, nowhere], factor: 0}]", "no node 'nowhere'"),
        ("variability.link_derate=[{chips: [0, 1], link: [gw:0, ddr:0], factor: 0}]", "exactly"),
        ("variability.link_derate=[{chips: [0, 1], factor: 1.5}]", "factor"),
        ("variability.noise=0.1", "noise"),
    ],
)
def test_invalid_variability_is_input_error(setting: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        run_scenario("quickstart", [setting])


def test_invalid_variability_names_file_and_line(tmp_path: Path) -> None:
    data = yaml.safe_load((SCENARIOS / "quickstart.yaml").read_text())
    data.pop("baseline", None)
    data["variability"] = {"slow_chips": {40: 2.0}}
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(InputError) as err:
        run_scenario(f)
    text = str(err.value)
    assert f"{f}:" in text and "variability.slow_chips.40" in text


# ---- what it does --------------------------------------------------------------------------
def test_slow_chip_slows_data_parallel_step_by_its_compute_share() -> None:
    """A chip 1.5x slower in a 16-replica data-parallel pod: the step grows by 0.5 x one
    replica's compute seconds (its share of the step), whether the slow chip is the simulated
    replica or another one."""
    base = run_scenario("quickstart", ["baseline=null"])
    assert base.trace is not None
    compute = sum(
        base.trace.task_end[n.id] - base.trace.task_start[n.id]
        for n in base.plan.graph.nodes
        if isinstance(n.task, Compute) and n.task.chip == 0
    )
    assert compute > 0
    for chip in (5, 0, 15):
        slow = run_scenario(
            "quickstart", ["baseline=null", f"variability.slow_chips={{{chip}: 1.5}}"]
        ).result
        assert slow.step_time_s is not None and base.result.step_time_s is not None
        assert slow.step_time_s - base.result.step_time_s == pytest.approx(0.5 * compute, rel=1e-9)
        assert slow.variability is not None and slow.variability["samples"] == 1


def test_seeds_reproduce_exactly() -> None:
    sets = ("baseline=null", "variability.compute_cv=0.1", "variability.samples=6")
    assert run_json(SCENARIOS / "quickstart.yaml", *sets) == run_json(
        SCENARIOS / "quickstart.yaml", *sets
    )
    other = run_json(SCENARIOS / "quickstart.yaml", *sets, "seed=1")[1]
    assert other != run_json(SCENARIOS / "quickstart.yaml", *sets)[1]
    seeded = run_json(SCENARIOS / "quickstart.yaml", *sets, "variability.seed=1")[1]
    assert json.loads(seeded)["step_time_samples_s"] == json.loads(other)["step_time_samples_s"]


def test_result_fields_and_throughput_from_the_mean() -> None:
    r = run_scenario(
        "quickstart", ["baseline=null", "variability.compute_cv=0.1", "variability.samples=9"]
    ).result
    samples = r.step_time_samples_s
    assert samples is not None and len(samples) == 9
    assert r.step_time_s == pytest.approx(sum(samples) / 9, rel=1e-12)
    assert r.step_time_mean_s == r.step_time_s
    assert r.step_time_p50_s == pytest.approx(sorted(samples)[4], rel=1e-12)
    assert min(samples) <= r.step_time_p50_s <= r.step_time_p99_s <= max(samples)
    assert r.throughput_samples_per_s == pytest.approx(r.global_batch / r.step_time_s, rel=1e-12)
    assert r.step_breakdown is not None
    assert sum(r.step_breakdown.values()) == pytest.approx(r.step_time_s, rel=0.01)
    assert r.step_breakdown["stragglers"] > 0  # replicas waited for the slowest at the sync
    assert "variability" in r.text() and "p99" in r.text()


def test_noise_costs_data_parallel_more_than_an_ensemble() -> None:
    """Both on 16 IPUs at compute_cv 0.2: the data-parallel step waits for the slowest of 16
    replicas, an ensemble member (4 x 4 IPUs) for the slowest of its 4 only."""
    sets = ["variability.compute_cv=0.2", "variability.samples=12", "baseline=null"]
    grew = {}
    for rel in ("quickstart", "ensemble/resnet50-4x4-pod16"):
        steady = run_scenario(rel, ["baseline=null"]).result.step_time_s
        noisy = run_scenario(rel, sets).result
        assert noisy.step_time_s is not None and steady is not None
        grew[rel] = noisy.step_time_s / steady - 1
    assert grew["quickstart"] > grew["ensemble/resnet50-4x4-pod16"] > 0


def test_ensemble_members_run_at_their_own_pace() -> None:
    """A slow chip in member 2 slows member 2 only: the others keep the steady step, and
    throughput counts each member at its own pace."""
    steady = run_scenario("ensemble/resnet50-4x4-pod16", ["baseline=null"]).result
    r = run_scenario(
        "ensemble/resnet50-4x4-pod16", ["baseline=null", "variability.slow_chips={9: 2.0}"]
    ).result
    facts = r.variability
    assert facts is not None and facts["members"] == 4
    means = facts["member_step_time_mean_s"]
    assert means[0] == means[1] == means[3] == pytest.approx(steady.step_time_s, rel=1e-9)
    assert means[2] > 1.3 * means[0]
    per = r.global_batch / 4
    assert r.throughput_samples_per_s == pytest.approx(sum(per / m for m in means), rel=1e-12)


@pytest.mark.parametrize(
    "rel",
    [
        "mlperf/bert-large-v1.1-pod16.yaml",
        "local/resnet50-greedy-m2000.yaml",
        "random_subspace/mlp-independent-w8.yaml",
        "moe/switch-pod16-cf1.0.yaml",
        "ensemble/resnet50-online-pod16.yaml",
    ],
)
def test_every_strategy_samples(rel: str) -> None:
    r = run_scenario(
        SCENARIOS / rel, ["baseline=null", "variability.compute_cv=0.1", "variability.samples=2"]
    ).result
    assert r.feasible and r.step_time_p99_s is not None and r.step_time_samples_s
    assert r.step_time_s == pytest.approx(r.step_time_mean_s)


def test_a_degraded_link_slows_the_collective_and_a_failed_one_reroutes() -> None:
    """Chips 0 and 1 of a POD16 share 4 IPU-Links (twice the ring's narrowest edge): a quarter
    of them makes that edge the bottleneck; failing them sends the ring's traffic round."""
    path = SCENARIOS / "microbench/all-reduce-64MiB-pod16.yaml"
    base = run_scenario(path).result.time_s
    half = run_scenario(path, ["variability.link_derate=[{chips: [0, 1], factor: 0.25}]"]).result
    gone = run_scenario(path, ["variability.link_derate=[{chips: [0, 1], factor: 0}]"]).result
    assert half.feasible and gone.feasible
    assert half.time_s > base and gone.time_s > base


def test_a_chip_cut_off_is_an_infeasible_plan() -> None:
    """Every link of chip 3 of an IPU-M2000 failed: the plan is infeasible (exit 3), the
    reason names the chip."""
    links = (
        "variability.link_derate=[{chips: [3, 1], factor: 0}, {chips: [3, 2], factor: 0}, "
        "{link: [ipu:3, gw:0], factor: 0}]"
    )
    code, out = run_json(SCENARIOS / "local/resnet50-greedy-m2000.yaml", "baseline=null", links)
    doc = json.loads(out)
    assert code == 3 and doc["feasible"] is False
    assert "chips 0-2 | 3" in doc["reason"] and "link_derate" in doc["reason"]


def test_a_chip_the_plan_does_not_use_may_be_cut_off() -> None:
    """A p2p test between chips 0 and 1 of an IPU-M2000 runs with chip 3 cut off."""
    scenario = {
        "schema_version": 1,
        "topology": "m2000",
        "strategy": {
            "type": "comm",
            "pattern": "p2p",
            "chips": [0, 1],
            "bytes_per_chip": 1048576,
        },
        "variability": {
            "link_derate": [
                {"chips": [3, 1], "factor": 0},
                {"chips": [3, 2], "factor": 0},
                {"link": ["ipu:3", "gw:0"], "factor": 0},
            ]
        },
    }
    r = run_scenario(scenario).result
    assert r.feasible
    scenario["strategy"]["chips"] = [0, 3]  # type: ignore[index]
    cut = run_scenario(scenario).result
    assert not cut.feasible and "chips 0 | 3" in str(cut.reason)
    assert cut.exit_code == 3 and "INFEASIBLE" in cut.text()


def test_report_page_has_the_distribution(tmp_path: Path) -> None:
    page = tmp_path / "r.html"
    code = main(
        [
            "run",
            "quickstart",
            "--set",
            "baseline=null",
            "--set",
            "variability.compute_cv=0.1",
            "--set",
            "variability.samples=4",
            "--report",
            str(page),
        ]
    )
    assert code == 0
    text = page.read_text()
    assert "Step-time distribution" in text and "distribution-run" in text


def test_sweep_page_ranks_strategies(tmp_path: Path) -> None:
    """A sweep over strategies and compute_cv: the page draws one distribution per strategy
    per noise level and ranks them by mean and p99."""
    from simulator.sweep.store import Store
    from simulator.viz.variability import conditions, from_store, ranking

    sweep = tmp_path / "s.yaml"
    sweep.write_text(
        yaml.safe_dump(
            {
                "schema_version": 1,
                "kind": "sweep",
                "name": "noise",
                "base": str(SCENARIOS / "quickstart.yaml"),
                "zip": [
                    {
                        "strategy": [{"type": "data"}, {"type": "ensemble", "members": 4}],
                    }
                ],
                "grid": {"variability.compute_cv": [0.0, 0.2], "variability.samples": [4]},
            },
            sort_keys=False,
        )
    )
    store = tmp_path / "s.sqlite"
    assert main(["sweep", str(sweep), "--out", str(store), "--jobs", "1", "--no-progress"]) == 0
    html = tmp_path / "s.html"
    assert main(["results", "plot", str(store), "--html", str(html)]) == 0
    assert "Step-time distribution by strategy" in html.read_text()
    with Store.open(store, create=False, readonly=True) as s:
        points = from_store(s.rows(None))
    groups = conditions(points)
    assert set(groups) == {"compute_cv 0, samples 4", "compute_cv 0.2, samples 4"}
    rows = ranking(groups["compute_cv 0.2, samples 4"])
    assert [r[2] for r in rows] == ["ensemble", "data"]  # fewer replicas to wait for
    assert rows[0][7] == 16 and rows[1][7] == 4  # 4 members x 4 samples; 4 samples


def _loaded(data: dict[str, Any]) -> Any:
    return run_scenario(data)
