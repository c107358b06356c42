"""Time-to-train: step time x steps to reach the target (docs/sweeps.md § Time-to-train).

Steps to the target come from a statistical-efficiency model of the global batch B (in
samples), the form of McCandlish et al. 2018 (docs/reference/algorithms.md)::

    S(B) = S_min (1 + B_noise / B)          steps
    E(B) = S(B) B = E_min (1 + B / B_noise)  samples, with E_min = S_min B_noise

so doubling B halves the steps while B << B_noise (perfect scaling) and stops helping once
B >> B_noise (data parallelism saturates: the steps tend to S_min). The model is given by
``b_noise`` (or estimated, :mod:`simulator.capacity.noise`) and one of ``samples_min``
(E_min), ``steps_min`` (S_min) or a ``reference`` point (the samples one known batch needed).
Alternatively ``samples_to_target`` fixes E(B) for every batch (the MLPerf reference note:
BERT-Large needs ~2.8 M sequences at the submitted batches).

Sparse runs (``statistics.sparse``): a run with ``training.sparsity`` needs
``flops_ratio × E(B) × dense / non-zero training FLOPs per sample`` samples — the ratio of the
training work a sparse run needs to reach the dense run's target (e.g. Dietrich et al. 2021 for
BERT pre-training), done at the run's own non-zero FLOPs per sample (:meth:`Curve.sparse_factor`).

Steps are whole: ``ceil(E(B) / B)``. time_to_train_s = steps x step_time_s +
``evaluation_overhead_s`` (0 by default: evaluation, initialisation and data loading are left
out, as documented).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, model_validator

from simulator.config.base import (
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    StrictModel,
)


class ReferencePoint(StrictModel):
    """A known point of the curve: ``samples`` were needed at global batch ``global_batch``."""

    global_batch: PositiveFloat = Field(description="Global batch in samples.")
    samples: PositiveFloat = Field(description="Samples to reach the target at that batch.")


class NoiseEstimate(StrictModel):
    """Estimate B_noise from a NumPy reference run (MLP on scikit-learn's digits)."""

    small_batch: PositiveInt = Field(32, description="B_small of the two-batch estimator.")
    big_batch: PositiveInt = Field(512, description="B_big of the two-batch estimator.")
    sizes: list[PositiveInt] = Field(
        default_factory=lambda: [64, 32, 10], description="MLP widths, input (64) first."
    )
    warmup_steps: NonNegativeInt = Field(
        100, description="SGD steps (batch 32) before measuring, away from the initialisation."
    )
    repeats: PositiveInt = Field(64, description="Gradients averaged per batch size.")
    seed: NonNegativeInt = Field(0, description="Seed of the weights and batch draws.")


class SparseRatio(StrictModel):
    """Statistical efficiency of one kind of sparse training (docs/sweeps.md § Sparse runs)."""

    block: Literal[1, 4, 8, 16] = Field(description="Block side the ratio was measured with.")
    mode: Literal["static", "dynamic", "any"] = Field(
        "any", description="Sparsity mode it applies to (any: both)."
    )
    flops_ratio: PositiveFloat = Field(
        description="Training FLOPs a sparse run needs to reach the dense run's target, as a "
        "multiple of the dense run's."
    )


class SparseStatistics(StrictModel):
    """How much (non-zero) training work sparse runs need, relative to the dense target."""

    source: str = Field(min_length=1, description="Where the ratios come from (required).")
    ratios: list[SparseRatio] = Field(min_length=1, description="One per block size and mode.")


class Statistics(StrictModel):
    """How many samples reach the target at a given global batch (see the module docstring)."""

    samples_to_target: PositiveFloat | None = Field(
        None, description="Samples to the target, the same at every batch (no noise model)."
    )
    b_noise: PositiveFloat | NoiseEstimate | None = Field(
        None, description="McCandlish B_noise in samples, or {estimate keys} to measure it."
    )
    samples_min: PositiveFloat | None = Field(None, description="E_min (samples at B -> 0).")
    steps_min: PositiveFloat | None = Field(None, description="S_min (steps at B -> inf).")
    reference: ReferencePoint | None = Field(None, description="A known (batch, samples).")
    evaluation_overhead_s: NonNegativeFloat = Field(
        0.0, description="Seconds added to every time-to-train (evaluation etc.; 0: ignored)."
    )
    sparse: SparseStatistics | None = Field(
        None, description="Statistical efficiency of sparse runs (training.sparsity)."
    )

    @model_validator(mode="after")
    def _one_model(self) -> Statistics:
        anchors = [
            k for k in ("samples_min", "steps_min", "reference") if getattr(self, k) is not None
        ]
        if self.samples_to_target is not None:
            if self.b_noise is not None or anchors:
                raise ValueError(
                    "give samples_to_target alone, or b_noise with one of samples_min, "
                    "steps_min, reference"
                )
        elif self.b_noise is None or len(anchors) != 1:
            raise ValueError(
                "give samples_to_target, or b_noise with exactly one of samples_min, "
                f"steps_min, reference (got {', '.join(anchors) or 'none of them'})"
            )
        return self


@dataclass(frozen=True)
class Curve:
    """A resolved model: E(B) samples to the target at global batch B.

    ``sparse``: (mode, block, flops_ratio) of sparse runs. A sparse run (a result whose
    ``sparsity`` entry gives its training FLOPs per sample, dense and non-zero) needs
    ``flops_ratio × E(B) × dense / non-zero`` samples: ``flops_ratio`` times the dense run's
    training FLOPs to the target, done at its own non-zero FLOPs per sample.
    """

    samples_fixed: float | None
    b_noise: float | None
    samples_min: float | None
    overhead_s: float = 0.0
    sparse: tuple[tuple[str, int, float], ...] = ()

    def samples(self, batch: float) -> float:
        """E(B)."""
        if self.samples_fixed is not None:
            return self.samples_fixed
        assert self.b_noise is not None and self.samples_min is not None
        return self.samples_min * (1.0 + batch / self.b_noise)

    def steps(self, batch: float) -> int:
        """Whole steps to the target: ceil(E(B) / B)."""
        return math.ceil(self.samples(batch) / batch - 1e-9)

    def describe(self) -> str:
        """The formula in words, for reports."""
        if self.samples_fixed is not None:
            return f"samples to target {self.samples_fixed:,.0f} at every batch"
        return f"McCandlish: E(B) = {self.samples_min:,.0f} (1 + B / {self.b_noise:,.1f}) samples"

    def sparse_factor(self, sparsity: dict[str, Any] | None) -> tuple[float | None, str | None]:
        """(samples multiplier of a sparse result, why there is none); (1, None) for dense."""
        if not sparsity:
            return 1.0, None
        mode, block = sparsity.get("mode"), sparsity.get("block")
        ratio = next(
            (r for m, b, r in self.sparse if b == block and m in ("any", mode)), None
        )
        if ratio is None:
            return None, f"no statistical efficiency given for {mode} {block}x{block} sparsity"
        flops = sparsity.get("flops_per_sample") or {}
        dense, nonzero = flops.get("dense"), flops.get("nonzero")
        if not dense or not nonzero:
            return None, "the result gives no training FLOPs per sample"
        return ratio * dense / nonzero, None

    def time_to_train(
        self, batch: float, step_time_s: float | None, sparsity: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """``{samples_to_target, steps_to_target, time_to_train_s}`` (time None if no step);
        for a sparse result (its ``sparsity`` entry) also ``sparse_samples_factor``, and all
        None with ``statistics_note`` when no ratio applies."""
        factor, note = self.sparse_factor(sparsity)
        if factor is None:
            return {
                "samples_to_target": None,
                "steps_to_target": None,
                "time_to_train_s": None,
                "statistics_note": note,
            }
        samples = self.samples(batch) * factor
        steps = math.ceil(samples / batch - 1e-9)
        ttt = None if step_time_s is None else steps * step_time_s + self.overhead_s
        out: dict[str, Any] = {
            "samples_to_target": samples,
            "steps_to_target": steps,
            "time_to_train_s": ttt,
        }
        if sparsity:
            out["sparse_samples_factor"] = factor
        return out


def resolve(stats: Statistics, b_noise: float | None = None) -> Curve:
    """The :class:`Curve` of ``stats``; ``b_noise`` replaces an estimate request."""
    sparse = tuple(
        (r.mode, r.block, r.flops_ratio) for r in (stats.sparse.ratios if stats.sparse else [])
    )
    if stats.samples_to_target is not None:
        return Curve(stats.samples_to_target, None, None, stats.evaluation_overhead_s, sparse)
    if isinstance(stats.b_noise, int | float):
        b_noise = float(stats.b_noise)
    if b_noise is None:
        from simulator.capacity.noise import estimate_b_noise

        assert isinstance(stats.b_noise, NoiseEstimate)
        b_noise = estimate_b_noise(stats.b_noise).b_noise
    if stats.samples_min is not None:
        e_min = stats.samples_min
    elif stats.steps_min is not None:
        e_min = stats.steps_min * b_noise
    else:
        assert stats.reference is not None
        e_min = stats.reference.samples / (1.0 + stats.reference.global_batch / b_noise)
    return Curve(None, b_noise, e_min, stats.evaluation_overhead_s, sparse)
