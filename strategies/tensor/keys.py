"""The scenario keys of tensor parallelism, shared by ``type: data`` and ``type: pipeline``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from simulator.config.base import PositiveInt, StrictModel

TensorCollective = Literal["all_reduce", "reduce_scatter"]


class TensorKeys(StrictModel):
    """``strategy.tensor_parallel`` and ``strategy.tensor_collective`` (docs/strategies/
    tensor_parallel.md)."""

    tensor_parallel: PositiveInt = Field(
        default=1,
        description="T: chips that split every stage's attention heads, FFN width and "
        "vocabulary between them (Megatron-style); chips = stages x T x replicas. 1: no split.",
    )
    tensor_collective: TensorCollective = Field(
        default="all_reduce",
        description="How a tensor group joins its partial activations: all_reduce "
        "(Megatron-LM), or reduce_scatter + all_gather with the layers between the split ones "
        "split over the sequence (sequence parallelism). No effect at tensor_parallel 1.",
    )
