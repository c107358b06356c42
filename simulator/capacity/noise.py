"""B_noise from a real NumPy reference run at two batch sizes (McCandlish et al. 2018, App. A).

The gradient of the mean loss over a batch of B samples, G_B, has
E|G_B|^2 = |G|^2 + tr(Sigma) / B. Measuring the mean of |G_B|^2 over ``repeats`` batches at
B_small and B_big gives unbiased estimates (docs/reference/algorithms.md)::

    |G|^2     ~ (B_big |G_big|^2 - B_small |G_small|^2) / (B_big - B_small)
    tr(Sigma) ~ (|G_small|^2 - |G_big|^2) / (1 / B_small - 1 / B_big)
    B_noise   ~ B_simple = tr(Sigma) / |G|^2

The run is the MLP of :mod:`strategies.reference` (one replica, one stage) on scikit-learn's
shipped digits, first trained ``warmup_steps`` SGD steps so that the gradient is measured
away from the initialisation. Its B_noise is that network's, in its samples: it shows the
method and the saturation, it is not BERT's. For a real model give ``b_noise`` directly.

This module sits at the top of the package graph, like the CLI: it is the one place under
``simulator`` that imports the NumPy reference package (which never imports ``simulator``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from simulator.capacity.ttt import NoiseEstimate
from simulator.errors import InputError


@dataclass(frozen=True)
class NoiseResult:
    """The two measured means and what follows from them."""

    small_batch: int
    big_batch: int
    g2_small: float
    g2_big: float
    g2: float
    trace_sigma: float
    b_noise: float


def _flat_gradient(model: object) -> np.ndarray:
    layers = model.layers(0)  # type: ignore[attr-defined]
    return np.concatenate([a.ravel() for lay in layers for a in (lay.gw, lay.gb)]).astype(
        np.float64
    )


def estimate_b_noise(spec: NoiseEstimate) -> NoiseResult:
    """Run the reference MLP and estimate B_noise (deterministic; cached per process)."""
    return _estimate(spec.model_dump_json())


@lru_cache(maxsize=8)
def _estimate(spec_json: str) -> NoiseResult:
    spec = NoiseEstimate.model_validate_json(spec_json)
    from strategies.reference.data import digits
    from strategies.reference.runs import ReferenceConfig, build

    data = digits(seed=spec.seed)
    n = len(data.y_train)
    if not spec.small_batch < spec.big_batch <= n:
        raise InputError(
            f"noise estimate: need small_batch < big_batch <= {n} (the digits training set), "
            f"got {spec.small_batch} and {spec.big_batch}"
        )
    sizes = tuple(spec.sizes)
    if sizes[0] != data.features or sizes[-1] != data.classes:
        raise InputError(
            f"noise estimate: sizes must start with {data.features} inputs and end with "
            f"{data.classes} classes (got {list(sizes)})"
        )
    config = ReferenceConfig(sizes=sizes, global_batch=spec.small_batch, seed=spec.seed)
    model = build(config)
    x, y = data.x_train.astype(np.float32), data.y_train
    rng = np.random.default_rng(spec.seed)
    for _ in range(spec.warmup_steps):
        rows = rng.choice(n, spec.small_batch, replace=False)
        model.step(x[rows], y[rows], spec.small_batch, config.learning_rate)

    def mean_g2(batch: int) -> float:
        total = 0.0
        for _ in range(spec.repeats):
            rows = rng.choice(n, batch, replace=False)
            model.gradients(x[rows], y[rows], batch)
            g = _flat_gradient(model)
            total += float(g @ g)
        return total / spec.repeats

    b_s, b_b = spec.small_batch, spec.big_batch
    return two_batch_estimate(b_s, mean_g2(b_s), b_b, mean_g2(b_b))


def two_batch_estimate(b_s: int, g2_s: float, b_b: int, g2_b: float) -> NoiseResult:
    """McCandlish's unbiased |G|^2 and tr(Sigma) from mean |G_B|^2 at two batch sizes."""
    g2 = (b_b * g2_b - b_s * g2_s) / (b_b - b_s)
    trace = (g2_s - g2_b) / (1.0 / b_s - 1.0 / b_b)
    if g2 <= 0 or trace <= 0:
        raise InputError(
            "noise estimate: the measured gradients give no positive |G|^2 and tr(Sigma) "
            f"(got {g2:.3g} and {trace:.3g}); raise repeats or widen the two batch sizes"
        )
    return NoiseResult(b_s, b_b, g2_s, g2_b, g2, trace, trace / g2)
