"""Time-to-train: the McCandlish statistical-efficiency model and the B_noise estimate.

Hand-computed values from S(B) = S_min (1 + B_noise / B), E(B) = E_min (1 + B / B_noise)
(docs/reference/algorithms.md) and the MLPerf samples-to-target note (2.8 M sequences).
"""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from simulator.capacity.noise import estimate_b_noise, two_batch_estimate
from simulator.capacity.ttt import NoiseEstimate, Statistics, resolve


def test_fixed_samples_to_target_mlperf_bert() -> None:
    curve = resolve(Statistics(samples_to_target=2.8e6))
    assert curve.steps(3072) == math.ceil(2.8e6 / 3072) == 912
    out = curve.time_to_train(3072, 1.33)
    assert out["time_to_train_s"] == pytest.approx(912 * 1.33)
    assert curve.time_to_train(3072, None)["time_to_train_s"] is None


def test_mccandlish_steps_and_saturation() -> None:
    curve = resolve(Statistics(b_noise=1000.0, steps_min=500.0))
    assert curve.samples_min == 500.0 * 1000.0
    assert curve.steps(1000) == 1000  # S_min (1 + 1) at B = B_noise
    assert curve.steps(10) == 50_500  # B << B_noise: doubling B ~ halves the steps
    assert curve.steps(20) == 25_500
    assert curve.steps(1_000_000) == 501  # B >> B_noise: steps saturate at S_min
    # more data parallelism past B_noise buys little: 8x the batch, 1.8x fewer steps
    assert curve.steps(1000) / curve.steps(8000) == pytest.approx(1000 / 563, rel=1e-3)


def test_reference_point_anchors_the_curve() -> None:
    curve = resolve(Statistics(b_noise=4000.0, reference={"global_batch": 3072, "samples": 2.8e6}))
    assert curve.samples(3072) == pytest.approx(2.8e6)
    assert curve.samples(6144) > curve.samples(3072)  # larger batches need more samples


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"samples_to_target": 1e6, "b_noise": 10.0},
        {"b_noise": 10.0},
        {"b_noise": 10.0, "steps_min": 1.0, "samples_min": 1.0},
    ],
)
def test_statistics_must_name_one_model(kwargs: dict) -> None:
    with pytest.raises(ValidationError):
        Statistics(**kwargs)


def test_two_batch_estimator_recovers_known_values() -> None:
    g2, trace = 0.5, 40.0  # |G|^2 and tr(Sigma): B_simple = 80
    est = two_batch_estimate(16, g2 + trace / 16, 256, g2 + trace / 256)
    assert est.g2 == pytest.approx(g2) and est.trace_sigma == pytest.approx(trace)
    assert est.b_noise == pytest.approx(80.0)


def test_b_noise_from_a_numpy_reference_run_is_positive_and_deterministic() -> None:
    spec = NoiseEstimate(warmup_steps=30, repeats=16)
    a = estimate_b_noise(spec)
    assert a.b_noise > 0 and a.g2_small > a.g2_big  # small batches are noisier
    assert estimate_b_noise(NoiseEstimate(warmup_steps=30, repeats=16)) == a
    curve = resolve(Statistics(b_noise=spec, steps_min=100.0))
    assert curve.b_noise == pytest.approx(a.b_noise)
