"""What one random-subspace step does, as counts: compartments, random samples, FLOPs, bytes.

Pure functions of the configuration (no hardware), shared by the plan
(:mod:`strategies.random_subspace`) and its tests. The reference run
(:mod:`strategies.reference.rbd`) counts the same things independently while it runs; the
tests assert the two agree exactly. Notation: D parameters split into c compartments, the k-th
holding D_k parameters and d_k of the d coefficients; S = Σ_k d_k·D_k (= d·D/c when c divides
both) samples per *pass* over the bases; W workers of R replicas each.

Per worker chip and step:

============  =========================  ===============================================
phase         random samples             projection FLOPs (vector units)
============  =========================  ===============================================
forward       S                          2S      θ_k += c_kᵀ E_k (c = 0: the paper's form)
backward      S (regenerated)            2S      g_k = E_k ∇θ_k
update        W·S independent, S shared  W·(2S + d) independent, 2S + d shared
============  =========================  ===============================================

The update scales each received coefficient vector (d FLOPs) and applies it.

Bytes per step (coefficients fp32, the step counter a uint32):

* replicas of a worker all-reduce their d coefficient gradients: 4d bytes per chip (R > 1);
* independent bases: every chip of replica index r all-gathers (t, g) from the W workers: an
  output buffer of W·(4 + 4d) bytes per chip (W > 1);
* shared basis: all W·R chips all-reduce 4d bytes (W·R > 1), and no replica all-reduce.

Bytes each chip *sends* (the ring's, algorithm-independent per-chip minimum): an all-reduce of
M bytes over N chips 2(N−1)/N·M, an all-gather of output M over N chips (N−1)/N·M.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

COEFFICIENT_BYTES = 4  # fp32 coordinates and coordinate gradients
STEP_COUNTER_BYTES = 4  # uint32 step counter sent with the coefficients (independent bases)

Basis = Literal["independent", "shared"]


@dataclass(frozen=True)
class Compartment:
    """One compartment: its parameters (D_k) and coefficients (d_k)."""

    params: int
    coefficients: int


class CompartmentError(ValueError):
    """A compartment would hold more coefficients than parameters (or none at all)."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


def compartments(
    layer_params: Sequence[int],
    d: int,
    spec: int | Literal["layers"] = 1,
    size: int | None = None,
) -> list[Compartment]:
    """Split D = sum(layer_params) parameters and d coefficients into compartments.

    ``spec = "layers"``: one compartment per layer with parameters; an integer c: D cut into c
    consecutive parts, D // c each and the first D % c one more; ``size`` (instead of ``spec``):
    parts of ``size`` parameters, the last one the remainder. Coefficients: d // c each, the
    first d % c one more. Raises :class:`CompartmentError` if any d_k > D_k.
    """
    total = sum(layer_params)
    if total < 1:
        raise CompartmentError("the model has no parameters to train")
    if size is not None:
        lengths = [size] * (total // size) + ([total % size] if total % size else [])
    elif spec == "layers":
        lengths = [p for p in layer_params if p > 0]
    else:
        if not 1 <= spec <= total:
            raise CompartmentError(f"compartments must be in 1..{total} (got {spec})")
        lengths = [total // spec + (i < total % spec) for i in range(spec)]
    c = len(lengths)
    coeffs = [d // c + (i < d % c) for i in range(c)]
    for i, (n, k) in enumerate(zip(lengths, coeffs, strict=True)):
        if k > n:
            raise CompartmentError(
                f"d = {d:,} over {c:,} compartment(s) gives compartment {i} {k:,} coefficients "
                f"but it holds only {n:,} parameters: d is larger than the compartment size "
                f"(use d <= {n * c:,}, fewer compartments, or larger ones)",
                i,
            )
    if d < c:
        raise CompartmentError(
            f"d = {d:,} is smaller than the {c:,} compartments: every compartment needs at "
            "least one coefficient (use fewer compartments or a larger d)"
        )
    return [Compartment(n, k) for n, k in zip(lengths, coeffs, strict=True)]


def samples_per_pass(parts: Sequence[Compartment]) -> int:
    """S = Σ_k d_k·D_k: samples one pass over every compartment's basis draws."""
    return sum(p.params * p.coefficients for p in parts)


@dataclass(frozen=True)
class StepCounts:
    """Per worker chip and step (see the module docstring)."""

    samples_forward: int
    samples_backward: int
    samples_update: int
    flops_forward: int
    flops_backward: int
    flops_update: int
    replica_all_reduce_bytes: int  # buffer per chip (0: none)
    exchange_kind: Literal["all_gather", "all_reduce"] | None
    exchange_bytes: int  # buffer per chip of the exchange (all-gather: the output)
    sent_bytes: float  # bytes a chip sends per step (ring minimum)
    dp_sgd_sent_bytes: float  # the same for data-parallel SGD over the same chips

    @property
    def samples(self) -> int:
        """All samples a worker chip draws per step."""
        return self.samples_forward + self.samples_backward + self.samples_update

    @property
    def projection_flops(self) -> int:
        """All projection FLOPs of a worker chip per step."""
        return self.flops_forward + self.flops_backward + self.flops_update


def step_counts(
    parts: Sequence[Compartment],
    workers: int,
    replicas: int,
    basis: Basis,
    gradient_bytes_per_param: int,
) -> StepCounts:
    """The counts of one step; ``gradient_bytes_per_param`` prices the data-parallel SGD
    comparison (the training dtype's bytes)."""
    s = samples_per_pass(parts)
    d = sum(p.coefficients for p in parts)
    params = sum(p.params for p in parts)
    n = workers * replicas
    coeff_bytes = COEFFICIENT_BYTES * d
    applied = workers if basis == "independent" else 1
    replica_bytes = coeff_bytes if replicas > 1 and basis == "independent" else 0
    sent = 2 * (replicas - 1) / replicas * replica_bytes
    kind: Literal["all_gather", "all_reduce"] | None = None
    xbytes = 0
    if basis == "independent" and workers > 1:
        kind, xbytes = "all_gather", workers * (STEP_COUNTER_BYTES + coeff_bytes)
        sent += (workers - 1) / workers * xbytes
    elif basis == "shared" and n > 1:
        kind, xbytes = "all_reduce", coeff_bytes
        sent += 2 * (n - 1) / n * xbytes
    dp = 2 * (n - 1) / n * params * gradient_bytes_per_param if n > 1 else 0.0
    return StepCounts(
        samples_forward=s,
        samples_backward=s,
        samples_update=applied * s,
        flops_forward=2 * s,
        flops_backward=2 * s,
        flops_update=applied * (2 * s + d),
        replica_all_reduce_bytes=replica_bytes,
        exchange_kind=kind,
        exchange_bytes=xbytes,
        sent_bytes=sent,
        dp_sgd_sent_bytes=dp,
    )


def compartment_count(layer_params: Sequence[int], spec: int | str, size: int | None) -> int:
    """How many compartments a specification gives (without the d check)."""
    total = sum(layer_params)
    if size is not None:
        return math.ceil(total / size)
    if spec == "layers":
        return sum(1 for p in layer_params if p > 0)
    return int(spec)
