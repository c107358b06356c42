"""Sensitivity analyses (issue 13): ``ipusim run FILE --sensitivity``.

The issue's tests: the band contains the point prediction; an assumption the run does not touch
is not listed (and was not run); a scenario whose only varied assumption is pinned has a
zero-width band; the ranking on a hand-built case where one assumption obviously dominates.
Beyond them, the sharing is checked against brute force: every end of every assumption — the
listed ones and the ones left out as untouched — is run from scratch (new System, new plan, full
execution) and must give the time the analysis reports; a plan the analysis shared must equal
the plan made anew; and the processes used do not change the output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import strategies  # noqa: F401 - registers the strategies
from simulator.cli import main
from simulator.config.scenario import load_scenario
from simulator.run import run_loaded
from simulator.sensitivity import analyse
from simulator.sensitivity import runner as sens_runner
from simulator.sensitivity.variants import Variant, assumptions_of, build_variant
from simulator.strategy import PlanContext, lookup

CHIP = Path(__file__).resolve().parents[1] / "topologies" / "chips" / "gc2.yaml"


def _scenario(tmp: Path, assumptions: dict[str, Any], *, chip: str = "gc2") -> Path:
    """A 2-chip p2p comm scenario on an inline system whose assumptions are ``assumptions``;
    the system has a gateway with Streaming Memory, which p2p never uses."""
    path = tmp / "p2p.yaml"
    topology = {
        "chip": chip,
        "machines_per_pod": 1,
        "chips_per_machine": 2,
        "ipu_link_GBps": 32,
        "ipu_link_efficiency": 0.86625,
        "ipu_link_hop_latency_ns": 160,
        "fabric": {"pattern": "fully_connected", "links": 2},
        "gateway": {
            "pcie_GBps": 16, "pcie_efficiency": 0.7439, "pcie_latency_ns": 1000,
            "streaming_memory_GB": 256, "streaming_memory_GBps": 20,
            "streaming_memory_latency_ns": 100,
        },
        "assumptions": assumptions,
    }  # fmt: skip
    doc = {
        "schema_version": 1,
        "name": "p2p",
        "topology": topology,
        # 4 MiB: bandwidth-bound (a few kB would be bound by the per-message engines)
        "strategy": {
            "type": "comm",
            "pattern": "p2p",
            "chips": [0, 1],
            "bytes_per_chip": 4 * 2**20,
        },
    }
    path.write_text(json.dumps(doc))
    return path


def _pinned_chip(tmp: Path) -> str:
    """gc2 with every assumption pinned at its value (so only the system's count)."""
    text = CHIP.read_text()
    head = text.split("\nassumptions:", 1)[0]
    tail = "\ncalibrated:" + text.split("\ncalibrated:", 1)[1]
    path = tmp / "gc2-pinned.yaml"
    path.write_text(head + "\nassumptions: {}" + tail)
    return str(path)


BIG = {"name": "BIG", "range": [160, 50_000], "reason": "test: a hop of up to 50 µs"}
SMALL = {"name": "SMALL", "range": [0.86, 0.87], "reason": "test: within 1 %"}
SM = {"name": "SM-TEST", "range": [10, 40], "reason": "test: p2p never reads DDR"}


def test_ranking_puts_the_obviously_dominant_assumption_first(tmp_path: Path) -> None:
    path = _scenario(tmp_path, {"ipu_link_hop_latency_ns": BIG, "ipu_link_efficiency": SMALL})
    _, s = analyse(load_scenario(path), jobs=1)
    assert s is not None
    names = [e.name for e in s.assumptions]
    assert names[0] == "ipu_link_hop_latency_ns"
    assert names.index("ipu_link_efficiency") > 0
    big, small = s.assumptions[0], next(e for e in s.assumptions if e.name == "ipu_link_efficiency")
    assert big.effect(s.value_s) > 10 * small.effect(s.value_s) > 0
    assert big.high_s is not None and big.high_s > s.value_s + 40e-6  # 50 µs hop, one hop
    assert s.band_s[1] == big.high_s  # the band is the envelope of the ends


def test_untouched_assumption_is_left_out_and_not_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _scenario(
        tmp_path, {"gateway.streaming_memory_GBps": SM, "ipu_link_hop_latency_ns": BIG}
    )
    ran: list[str] = []
    real = sens_runner._run

    def spy(i: int) -> Any:
        ran.append(sens_runner._JOBS[i].variant.record.name)
        return real(i)

    monkeypatch.setattr(sens_runner, "_run", spy)
    _, s = analyse(load_scenario(path), jobs=1)
    assert s is not None
    assert "gateway.streaming_memory_GBps" in s.untouched
    assert "gateway.streaming_memory_GBps" not in [e.name for e in s.assumptions]
    assert "gateway.streaming_memory_GBps" not in ran
    assert "ipu_link_hop_latency_ns" in ran


def test_only_pinned_assumption_gives_zero_width_band(tmp_path: Path) -> None:
    pinned = {"name": "PINNED", "range": [160, 160], "reason": "test: known exactly"}
    path = _scenario(tmp_path, {"ipu_link_hop_latency_ns": pinned}, chip=_pinned_chip(tmp_path))
    out, s = analyse(load_scenario(path), jobs=1)
    assert s is not None
    assert s.band_s == (s.value_s, s.value_s) == (out.result.time_s, out.result.time_s)
    assert s.assumptions == ()
    assert s.pinned == ("ipu_link_hop_latency_ns",)
    assert s.counts.executions == 0


MLP = {
    "schema_version": 1,
    "name": "mlp-data",
    "topology": "pod4",
    "model": "mlp",
    "strategy": {"type": "data", "replicas": 4},
    "training": {"micro_batch": 32, "grad_accum": 2, "dtype": "fp32", "optimizer": "sgd"},
}
MLP_PIPE = {
    **MLP,
    "name": "mlp-pipe",
    "model": {"name": "mlp", "params": {"depth": 3, "hidden": 512}},
    "strategy": {"type": "pipeline", "stages": 2, "replicas": 2, "schedule": "1f1b"},
    "training": {"micro_batch": 16, "grad_accum": 4, "dtype": "fp16", "optimizer": "adam"},
}


def _write(tmp: Path, doc: dict[str, Any]) -> Path:
    path = tmp / f"{doc['name']}.yaml"
    path.write_text(json.dumps(doc))
    return path


def _brute(loaded: Any, v: Variant) -> float | None:
    """One end from scratch: a new System, a new plan, a full execution."""
    from simulator.run import system_source_of

    src = system_source_of(loaded)
    from simulator.hardware.build import build_source

    system = build_source(src)
    v_loaded, v_system = build_variant(loaded, src, system, v)
    out = run_loaded(v_loaded, system=v_system, baseline=False, details=False)
    return sens_runner.time_of(out.result)


@pytest.mark.parametrize("doc", [MLP, MLP_PIPE], ids=["data", "pipeline"])
def test_shared_runs_match_brute_force(tmp_path: Path, doc: dict[str, Any]) -> None:
    """Every end the analysis shared, reused or left out takes, from scratch, the time it
    reports; the band contains the point prediction."""
    loaded = load_scenario(_write(tmp_path, doc))
    out, s = analyse(loaded, jobs=1)
    assert s is not None
    assert s.band_s[0] <= out.result.step_time_s == s.value_s <= s.band_s[1]
    assert s.counts.shared_plans > 0 and s.counts.reused > 0 and s.untouched
    from simulator.run import build_system

    records = {r.name: r for r in assumptions_of(loaded, build_system(loaded))}
    effects = {e.name: e for e in s.assumptions}
    for name, r in records.items():
        if r.pinned:
            continue
        for end in ("low", "high"):
            want = _brute(loaded, Variant(r, end, getattr(r, end)))
            if name in effects:
                got = getattr(effects[name], f"{end}_s")
            else:
                assert name in s.untouched
                got = s.value_s
            if want is None:
                assert got is None, (name, end)
            else:
                assert got == pytest.approx(want, rel=1e-12, abs=0), (name, end)


def test_a_shared_plan_equals_the_plan_made_anew(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The contract sharing rests on: link, sync and host values never change a task graph."""
    jobs: list[Any] = []
    real = sens_runner._execute

    def keep(work: list[Any], workers: int) -> Any:
        jobs.extend(work)
        return real(work, workers)

    monkeypatch.setattr(sens_runner, "_execute", keep)
    for doc in (MLP, MLP_PIPE):
        loaded = load_scenario(_write(tmp_path, doc))
        analyse(loaded, jobs=1)
        shared = [j for j in jobs if j.plan is not None]
        assert shared
        for j in shared:
            strategy = lookup(j.loaded.scenario.strategy.type)
            anew = strategy.plan(PlanContext(j.loaded, j.system, j.loaded.strategy))
            assert list(anew.graph.nodes) == list(j.plan.graph.nodes), j.variant.label
        jobs.clear()


def test_processes_do_not_change_the_output(tmp_path: Path) -> None:
    loaded = load_scenario(_write(tmp_path, MLP_PIPE))
    _, one = analyse(loaded, jobs=1)
    _, two = analyse(loaded, jobs=2)
    assert one is not None and two is not None
    assert json.dumps(one.to_json()) == json.dumps(two.to_json())


def test_cli_json_text_and_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, MLP)
    assert main(["run", str(path), "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    report = tmp_path / "report.html"
    args = ["run", str(path), "--sensitivity", "--json", "--jobs", "1", "--report", str(report)]
    assert main(args) == 0
    doc = json.loads(capsys.readouterr().out)
    sens = doc.pop("sensitivity")
    assert doc == plain  # the result itself is the plain run's
    lo, hi = sens["band_s"]
    assert lo <= doc["step_time_s"] <= hi
    first = sens["assumptions"][0]
    assert set(first) >= {"name", "low_s", "high_s"}
    moves = [max(abs(a["low_s"] - doc["step_time_s"]), abs(a["high_s"] - doc["step_time_s"]))
             for a in sens["assumptions"]]  # fmt: skip
    assert moves == sorted(moves, reverse=True)
    assert "tornado-figure" in report.read_text()
    assert main(["run", str(path), "--sensitivity", "--jobs", "1"]) == 0
    text = capsys.readouterr().out
    assert "band" in text and "ranked" in text and "HOST-STEP" in text


def test_jobs_without_sensitivity_is_invalid(tmp_path: Path) -> None:
    assert main(["run", str(_write(tmp_path, MLP)), "--jobs", "2"]) == 2


def test_infeasible_end_is_reported_not_crashed(tmp_path: Path) -> None:
    """A scenario-level assumption whose high end does not fit in SRAM."""
    doc = {
        **MLP,
        "name": "mlp-big",
        "training": {**MLP["training"], "micro_batch": 32},
        "assumptions": {
            "training.micro_batch": {
                "name": "BATCH", "range": [16, 2_000_000], "reason": "test: far too big",
            }
        },
    }  # fmt: skip
    _, s = analyse(load_scenario(_write(tmp_path, doc)), jobs=1)
    assert s is not None
    batch = next(e for e in s.assumptions if e.name == "training.micro_batch")
    assert batch.high_s is None and batch.high_reason
    assert s.assumptions[0].name == "training.micro_batch"  # infeasible ranks first
    assert s.infeasible == ["training.micro_batch at its high end"]


def test_an_end_the_builder_rejects_is_an_error_at_its_range(tmp_path: Path) -> None:
    """rail_links 4 passes the schema, but a middle chip would need 4 + 2 x 4 > 10 IPU-Links."""
    from simulator.errors import InputError

    doc = {
        **MLP,
        "name": "mlp-rails",
        "topology": {
            "chip": "gc200", "machines_per_pod": 4, "chips_per_machine": 2,
            "ipu_link_GBps": 32, "ipu_link_efficiency": 0.86625, "ipu_link_hop_latency_ns": 160,
            "fabric": {"pattern": "ladder", "rung_links": 4, "rail_links": 1, "wrap": False},
            "assumptions": {
                "fabric.rail_links": {"name": "RAILS", "range": [1, 4], "reason": "test"},
            },
        },
        "strategy": {"type": "data"},
    }  # fmt: skip
    path = _write(tmp_path, doc)
    with pytest.raises(InputError) as err:
        analyse(load_scenario(path), jobs=1)
    loc = err.value.location
    assert loc.file == str(path) and loc.key_path == "topology.assumptions.fabric.rail_links.range"
    assert "the high end 4 of fabric.rail_links (RAILS) gives invalid input" in str(err.value)
