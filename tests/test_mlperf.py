"""Published measurements: Graphcore's MLPerf 16- and 64-IPU points (validation/mlperf.yaml).

Calibration points solve a constant (``training.compute_scale`` per model and round on the
16-IPU point; ``hosts.step_overhead_us`` per model on the v1.1 pair), so they must reproduce the
measured throughput; a change to the model that moves them fails here until the calibration is
rerun. Predictions had no constant solved on them: each is asserted within the tolerance fixed
before any fit (10 %), or — a documented miss — within its guard bound. docs/validation.md must
equal a fresh report. The 128/256-IPU systems have no measured figure in this repository.
"""

from __future__ import annotations

import pytest

from validation.mlperf import (
    BEGIN,
    DOC,
    END,
    HOST_KEY,
    SCALE_KEY,
    committed_constants,
    error_of,
    load_points,
    report,
    scenarios_of,
    simulate,
    simulated,
    verdict,
)

POINTS = load_points()


@pytest.mark.parametrize("point", POINTS, ids=[p.id for p in POINTS])
def test_measured_point(point) -> None:  # type: ignore[no-untyped-def]
    result = simulated(point.scenario)
    assert result.feasible, result.reason
    error = error_of(result, point)
    if point.kind == "calibration" or not point.expected_to_miss:
        assert abs(error) <= point.tolerance, f"{point.id}: {error:+.2%}"
    else:  # a documented miss: still guarded, and still a miss (else drop the flag)
        assert verdict(point, error) == "known miss", f"{point.id}: {error:+.2%}"


def test_every_64_ipu_point_is_within_reach_of_its_measurement() -> None:
    """The issue's target: each 64-IPU point within 10 % (the known miss is listed)."""
    misses = {
        p.id for p in POINTS if p.chips == 64 and abs(error_of(simulated(p.scenario), p)) > 0.10
    }
    assert misses == {p.id for p in POINTS if p.expected_to_miss}


@pytest.mark.parametrize("point", POINTS, ids=[p.id for p in POINTS])
def test_one_constant_per_model_and_round(point) -> None:  # type: ignore[no-untyped-def]
    """Every scenario of a model and round carries the same compute_scale, every scenario of a
    model the same host cost per step."""
    rnd = {committed_constants(path)[SCALE_KEY] for path in scenarios_of(point.model, point.round)}
    assert len(rnd) == 1, rnd
    host = {committed_constants(path)[HOST_KEY] for path in scenarios_of(point.model)}
    assert len(host) == 1, host


def test_calibration_does_real_work() -> None:
    """Without the solved constants the points differ from their measurements: docs show it."""
    point = next(p for p in POINTS if p.id == "resnet50-v1.1-pod16")
    raw = simulate(point.scenario, {SCALE_KEY: 1.0})
    assert error_of(raw, point) > 0.05
    point = next(p for p in POINTS if p.id == "bert-large-v1.1-pod64")
    raw = simulate(point.scenario, {HOST_KEY: 100.0})
    assert error_of(raw, point) > 0.05


def test_per_ipu_efficiency_falls_with_system_size() -> None:
    """The predictions lose per-IPU throughput from 16 to 64 to 256 IPUs, as the measured
    16/64 points do."""
    for model in ("resnet50", "bert-large"):
        paths = {p.stem.rsplit("-", 1)[1]: p for p in scenarios_of(model, "v2.0")}
        per_ipu = [
            simulated(paths[k]).throughput_samples_per_s / simulated(paths[k]).chips
            for k in ("pod16", "pod64", "pod256")
        ]
        assert per_ipu[0] > per_ipu[1] > per_ipu[2], (model, per_ipu)


def test_docs_validation_is_a_fresh_report() -> None:
    text = DOC.read_text()
    block = text.split(BEGIN, 1)[1].split(END, 1)[0]
    assert block == "\n" + report(), (
        "docs/validation.md is stale: python -m validation.mlperf --report --write"
    )
