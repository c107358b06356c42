"""Schemas of model files (``models/*.yaml``): the file header and one spec per layer type.

A model file is validated in two steps, because its layer specs may hold ``${...}``
references to ``params`` that a scenario can override:

1. :class:`ModelFile` checks the header (``schema_version``, ``kind``, ``name``, ``params``,
   ``input``, ``dtype``, ``blocks``) and that ``layers`` is a non-empty list.
2. :mod:`simulator.workloads.model` walks ``layers``, substitutes parameters into each spec and
   validates it with the class registered for its type in :data:`LAYER_SPECS`; errors name
   the file, line and key path of the spec.

A layer entry is either a bare type name (``- relu``) or a mapping with exactly one key, the
type, whose value holds the hyper-parameters (``- conv2d: {kernel: 3, out_channels: 16}``).
Sizes are hyper-parameters, never totals: parameter counts and FLOPs are derived in
:mod:`simulator.workloads.layers`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from simulator.config.base import NonNegativeInt, PositiveInt, SchemaVersion, StrictModel
from simulator.config.jsonschema import register_file_kind
from simulator.config.limits import MAX_REPEAT

Dtype = Literal["fp16", "fp32"]
ParamValue = int | float
#: A model parameter default: a number, or a "${...}" expression over earlier parameters.
ParamDefault = int | float | str


class Conv2dSpec(StrictModel):
    """2-D convolution on (channels, height, width); square kernel, equal padding on all sides."""

    kernel: PositiveInt
    out_channels: PositiveInt
    stride: PositiveInt = 1
    pad: NonNegativeInt = 0
    bias: bool = False


class BatchNormSpec(StrictModel):
    """Batch normalisation over the channel axis (axis 0 of a per-sample shape)."""

    affine: bool = True


class LayerNormSpec(StrictModel):
    """Layer normalisation over the last axis."""

    affine: bool = True


class NoArgsSpec(StrictModel):
    """Element-wise activations and reshapes that take no hyper-parameters."""


class DenseSpec(StrictModel):
    """Fully connected layer applied to the last axis (every token of a sequence)."""

    out: PositiveInt
    bias: bool = True


class EmbeddingSpec(StrictModel):
    """Token embedding, optionally summed with learned position and token-type tables."""

    vocab: PositiveInt
    hidden: PositiveInt
    positions: NonNegativeInt = 0
    token_types: NonNegativeInt = 0


class AttentionSpec(StrictModel):
    """Multi-head self-attention: Q, K, V projections, scores, softmax, context, output."""

    heads: PositiveInt
    hidden: PositiveInt
    bias: bool = True
    causal: bool = False


class FfnSpec(StrictModel):
    """Transformer feed-forward: dense hidden->intermediate, activation, dense back."""

    hidden: PositiveInt
    intermediate: PositiveInt
    activation: Literal["gelu", "relu"] = "gelu"
    bias: bool = True


class MoeFfnSpec(StrictModel):
    """Mixture-of-experts feed-forward: a router picks ``top_k`` of ``experts`` FFNs per token."""

    experts: PositiveInt
    top_k: PositiveInt
    hidden: PositiveInt
    intermediate: PositiveInt
    activation: Literal["gelu", "relu"] = "gelu"
    bias: bool = True
    router_bias: bool = False


class PoolSpec(StrictModel):
    """Windowed max or average pooling on (channels, height, width)."""

    op: Literal["max", "avg"]
    kernel: PositiveInt
    stride: PositiveInt | None = None  # defaults to the kernel size
    pad: NonNegativeInt = 0


class GlobalPoolSpec(StrictModel):
    """Pooling over all spatial positions: (C, H, W) -> (C,)."""

    op: Literal["max", "avg"] = "avg"


class PoolerSpec(StrictModel):
    """BERT pooler: dense + tanh on the first token: (S, H) -> (H,)."""

    bias: bool = True


class LmHeadSpec(StrictModel):
    """Projection of every token onto the vocabulary; ``tied`` reuses the embedding matrix."""

    vocab: PositiveInt
    tied: bool = True
    bias: bool = False


class ResidualSpec(StrictModel):
    """``post(body(x) + shortcut(x))``; an empty shortcut is the identity."""

    name: str | None = None
    body: list[Any] = Field(min_length=1)
    shortcut: list[Any] = Field(default_factory=list)
    post: list[Any] = Field(default_factory=list)


class RepeatSpec(StrictModel):
    """``times`` copies of ``body`` in sequence; ``${i}`` inside the body is the copy index."""

    times: Annotated[int, Field(gt=0, le=MAX_REPEAT)]
    name: str | None = None
    body: list[Any] = Field(min_length=1)


#: Layer type name -> schema of its hyper-parameters. Container types are handled by the walker.
LAYER_SPECS: dict[str, type[StrictModel]] = {
    "conv2d": Conv2dSpec,
    "batchnorm": BatchNormSpec,
    "layernorm": LayerNormSpec,
    "relu": NoArgsSpec,
    "gelu": NoArgsSpec,
    "tanh": NoArgsSpec,
    "flatten": NoArgsSpec,
    "dense": DenseSpec,
    "embedding": EmbeddingSpec,
    "attention": AttentionSpec,
    "ffn": FfnSpec,
    "moe_ffn": MoeFfnSpec,
    "pool": PoolSpec,
    "global_pool": GlobalPoolSpec,
    "pooler": PoolerSpec,
    "lm_head": LmHeadSpec,
}

CONTAINER_SPECS: dict[str, type[StrictModel]] = {
    "residual": ResidualSpec,
    "repeat": RepeatSpec,
}


class BlockSpec(StrictModel):
    """Named, parameterised list of layers, used like a type: ``- bottleneck: {width: 64}``."""

    params: dict[str, ParamDefault] = Field(default_factory=dict)
    layers: list[Any] = Field(min_length=1)


class ModelFile(StrictModel):
    """Header of a model file; ``layers`` entries are validated one by one by the walker."""

    schema_version: SchemaVersion
    kind: Literal["model"]
    name: str
    description: str = ""
    source: str = ""
    params: dict[str, ParamDefault] = Field(default_factory=dict)
    input: list[int | str] = Field(min_length=1)
    dtype: Dtype = "fp16"
    blocks: dict[str, BlockSpec] = Field(default_factory=dict)
    layers: list[Any] = Field(min_length=1)


register_file_kind("model", ModelFile)
