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

from typing import Any, Literal

from pydantic import Field

from simulator.config.base import NonNegativeInt, PositiveInt, SchemaVersion, StrictModel
from simulator.config.jsonschema import register_file_kind

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


class RmsNormSpec(StrictModel):
    """RMS normalisation over the last axis (LLaMA, Mistral): a scale per feature, no shift."""

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
    """Multi-head self-attention: Q, K, V projections, scores, softmax, context, output.

    ``kv_heads`` below ``heads`` is grouped-query attention (K and V have ``kv_heads`` heads,
    each shared by ``heads / kv_heads`` query heads); ``head_dim`` defaults to hidden / heads;
    ``rotary`` adds the rotary position embedding of Q and K (no parameters).
    """

    heads: PositiveInt
    hidden: PositiveInt
    bias: bool = True
    causal: bool = False
    kv_heads: PositiveInt | None = None
    head_dim: PositiveInt | None = None
    rotary: bool = False


Activation = Literal["gelu", "relu", "silu"]


class FfnSpec(StrictModel):
    """Transformer feed-forward: dense hidden->intermediate, activation, dense back.

    ``gated`` is a gated linear unit (SwiGLU in LLaMA): activation(x W_gate) * (x W_up), then
    W_down — three weight matrices instead of two.
    """

    hidden: PositiveInt
    intermediate: PositiveInt
    activation: Activation = "gelu"
    bias: bool = True
    gated: bool = False


class MoeFfnSpec(StrictModel):
    """Mixture-of-experts feed-forward: a router picks ``top_k`` of ``experts`` FFNs per token."""

    experts: PositiveInt
    top_k: PositiveInt
    hidden: PositiveInt
    intermediate: PositiveInt
    activation: Activation = "gelu"
    bias: bool = True
    router_bias: bool = False
    gated: bool = False


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


class FirstTokenSpec(StrictModel):
    """The first token of a sequence ([CLS]): (S, H) -> (H,), a view (no work)."""


class ImageTokensSpec(StrictModel):
    """Vision-transformer tokens from patch features (C, H, W): the H x W patches become a
    sequence of C-wide tokens, a learned class token is prepended, and learned position
    embeddings (one per token) are added: output (H x W + 1, C) (ViT, Dosovitskiy et al. 2021)."""

    class_token: bool = True
    positions: bool = True


class SideHeadSpec(StrictModel):
    """A classifier on the first token computed beside the sequence, which passes through
    unchanged: optional pooler (dense H x H + tanh), then dense H x ``classes``. BERT's
    next-sentence head in pre-training sits beside the masked-LM head this way."""

    classes: PositiveInt
    pooler: bool = True


class LmHeadSpec(StrictModel):
    """Projection of every token onto the vocabulary; ``tied`` reuses the embedding matrix."""

    vocab: PositiveInt
    tied: bool = True
    bias: bool = False


class PretrainingHeadsSpec(StrictModel):
    """BERT's pre-training heads on an encoder output (S, H): the pooler (dense + tanh on the
    first token) with the next-sentence classifier, and the masked-LM transform (dense + GELU
    + layer norm) and decoder onto the vocabulary, computed on the ``masked`` positions only.
    ``tied``: the decoder's weights are the word embedding's (placed with it in pipelines)."""

    vocab: PositiveInt
    masked: PositiveInt = Field(description="Masked positions per sample the MLM head scores.")
    tied: bool = True
    nsp_classes: PositiveInt = 2


class ResidualSpec(StrictModel):
    """``post(body(x) + shortcut(x))``; an empty shortcut is the identity."""

    name: str | None = None
    body: list[Any] = Field(min_length=1)
    shortcut: list[Any] = Field(default_factory=list)
    post: list[Any] = Field(default_factory=list)


class RepeatSpec(StrictModel):
    """``times`` copies of ``body`` in sequence; ``${i}`` inside the body is the copy index."""

    times: PositiveInt
    name: str | None = None
    body: list[Any] = Field(min_length=1)


#: Layer type name -> schema of its hyper-parameters. Container types are handled by the walker.
LAYER_SPECS: dict[str, type[StrictModel]] = {
    "conv2d": Conv2dSpec,
    "batchnorm": BatchNormSpec,
    "layernorm": LayerNormSpec,
    "rmsnorm": RmsNormSpec,
    "relu": NoArgsSpec,
    "gelu": NoArgsSpec,
    "silu": NoArgsSpec,
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
    "first_token": FirstTokenSpec,
    "image_tokens": ImageTokensSpec,
    "side_head": SideHeadSpec,
    "lm_head": LmHeadSpec,
    "pretraining_heads": PretrainingHeadsSpec,
}

class ChooseSpec(StrictModel):
    """A model option: ``then`` when ``when`` is non-zero, else ``otherwise`` (may be empty).
    The chosen layers are named and grouped as if written in place of the ``choose``."""

    when: int | bool
    then: list[Any] = Field(min_length=1)
    otherwise: list[Any] = Field(default_factory=list)


CONTAINER_SPECS: dict[str, type[StrictModel]] = {
    "residual": ResidualSpec,
    "repeat": RepeatSpec,
    "choose": ChooseSpec,
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
    host_input_bytes: int | str | None = Field(
        default=None,
        description="Bytes the host sends per sample (an expression may use the params); "
        "default: the input's elements in the model dtype.",
    )
    blocks: dict[str, BlockSpec] = Field(default_factory=dict)
    layers: list[Any] = Field(min_length=1)


register_file_kind("model", ModelFile)
