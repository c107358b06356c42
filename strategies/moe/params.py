"""The keys of ``strategy:`` for ``type: moe`` (docs/strategies/moe.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from simulator.config.base import NonNegativeFloat, PositiveFloat, PositiveInt, StrictModel
from simulator.engine.tasks import ALGORITHMS


class MoeParams(StrictModel):
    """Keys of ``strategy:`` for ``type: moe``."""

    experts: PositiveInt | None = Field(
        None, description="E experts per MoE layer (default: the model's moe_ffn layers')."
    )
    top_k: PositiveInt | None = Field(
        None, description="Experts each token is sent to (default: the model's)."
    )
    capacity_factor: PositiveFloat = Field(
        1.25,
        description="Expert capacity C = ceil(top_k x tokens per chip x capacity_factor / "
        "experts) per (source chip, expert); assignments over C are dropped.",
    )
    static_capacity: bool = Field(
        True,
        description="Static shapes (IPU): every expert buffer is C rows, sent and computed "
        "whether filled or not. false: only kept tokens are sent and computed.",
    )
    routing: Literal["reference", "zipf", "uniform"] = Field(
        "reference",
        description="Where the per-expert token counts come from: the NumPy reference "
        "router on the scenario seed, a Zipf popularity over experts (skew), or even.",
    )
    skew: NonNegativeFloat = Field(
        1.0, description="routing: zipf — exponent s: expert of rank r gets weight (r+1)^-s."
    )
    noisy_gating: bool = Field(
        True,
        description="Noisy top-k gating (Shazeer): a second router product and T x E "
        "Gaussian samples per MoE layer.",
    )
    reference_vocab: PositiveInt = Field(
        4096, description="routing: reference — vocabulary of the generated tokens."
    )
    reference_token_zipf: NonNegativeFloat = Field(
        1.0, description="routing: reference — Zipf exponent of the token frequencies."
    )
    all_reduce: Literal[ALGORITHMS] = Field(  # type: ignore[valid-type]
        "auto", description="Gradient all-reduce algorithm."
    )


__all__ = ["MoeParams"]
