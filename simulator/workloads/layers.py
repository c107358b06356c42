"""Layer algebra: parameters, FLOPs and stored activations of one layer from its hyper-parameters.

Conventions (internal units: FLOP, element counts, bytes):

* Everything is **per sample** (one image, one sequence); the caller multiplies by the batch.
* A multiply-add is **2 FLOP**. Bias additions are not counted in matmul FLOPs (a dense 3->4
  layer is 24 FLOP forward, as in the usual "2 x MACs" totals); bias *gradients* are counted
  (one add per output element) in the weight gradient.
* Backward is split into the gradient with respect to the layer input (``backward_input``)
  and with respect to its weights (``backward_weight``). For a weight matmul each equals the
  forward matmul FLOPs; the attention score matmuls have no weights, so both their backward
  matmuls are input gradients.
* ``activation_elems`` is what the layer keeps for the backward pass *besides its input*
  (which is the previous layer's output, counted there): its output plus internal tensors
  (attention Q, K, V and probabilities; FFN intermediates). Summing it over a model plus the
  model input gives the stored activations without recomputation.
* Element-wise costs (:data:`VECTOR_FLOP`) are operation counts per element, an estimate of
  the vector-unit work, not a hardware number. They matter little next to matmuls but keep
  normalisation-heavy layers from being free.

Shapes are per sample: images ``(C, H, W)``, token sequences ``(S,)`` of ids and ``(S, H)``
of features, vectors ``(F,)``. A builder that finds a mismatch raises :class:`ShapeError`
naming the spec key at fault; the model walker turns it into an InputError with file and line.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from simulator.config import workload as spec

DTYPE_BYTES: dict[str, int] = {"fp16": 2, "fp32": 4}

Unit = Literal["matmul", "elementwise", "memory"]

#: Element-wise FLOP per element: (forward, backward input, backward weight). Estimates:
#: relu compare/select; gelu (tanh form) ~8 operations and ~8 for its derivative; norm
#: layers in training mode compute mean (1), variance (2), normalise (2), scale and shift (2)
#: forward, and about 9 per element for the input gradient, 2 for the affine gradients.
VECTOR_FLOP: dict[str, tuple[int, int, int]] = {
    "relu": (1, 1, 0),
    "gelu": (8, 8, 0),
    "tanh": (2, 2, 0),
    "add": (1, 0, 0),
    "norm": (7, 9, 2),
    "softmax": (5, 4, 0),
    # silu x * sigmoid(x): exp, add, divide, multiply (~4) and about as many for its derivative
    "silu": (4, 4, 0),
    # rms norm: square, mean, scale, weight (4); input gradient ~6; weight gradient 1
    "rmsnorm": (4, 6, 1),
    # the gate product of a gated linear unit: 1 multiply forward, 2 for the two input gradients
    "gate": (1, 2, 0),
    # rotary position embedding of Q and K: 2 multiplies and an add per element, the same back
    "rotary": (3, 3, 0),
}


class ShapeError(ValueError):
    """Shapes that do not compose; ``key`` is the spec key at fault (None: the layer itself)."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True, slots=True)
class MatMul:
    """One forward matrix product per sample: (m x k) @ (k x n), ``count`` times."""

    m: int
    n: int
    k: int
    count: int = 1

    @property
    def flops(self) -> int:
        """2 FLOP per multiply-add."""
        return 2 * self.m * self.n * self.k * self.count


@dataclass(frozen=True, slots=True)
class Layer:
    """One layer after shape propagation. All figures are per sample."""

    name: str  # unique dotted path, e.g. "encoder.3.attention.attention"
    kind: str  # layer type (conv2d, dense, attention, add, ...)
    group: str  # nearest named container (a residual or repeat copy), "" at top level
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    params: int
    forward_flops: int
    backward_input_flops: int
    backward_weight_flops: int
    activation_elems: int
    unit: Unit  # the unit that does most of the work: AMP (matmul) or vector
    matmuls: tuple[MatMul, ...] = ()
    #: The validated layer spec it was built from (None for implicit layers such as a
    #: residual's add), so a strategy can re-cost the layer under other hyper-parameters.
    #: Not compared or hashed: two layers with equal figures are equal.
    spec: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def from_cost(
        cls,
        name: str,
        kind: str,
        group: str,
        input_shape: tuple[int, ...],
        cost: Cost,
        spec: Any = None,
    ) -> Layer:
        """The layer a builder's :class:`Cost` describes, named and placed."""
        return cls(
            name=name,
            kind=kind,
            group=group,
            input_shape=input_shape,
            output_shape=cost.output_shape,
            params=cost.params,
            forward_flops=cost.forward_flops,
            backward_input_flops=cost.backward_input_flops,
            backward_weight_flops=cost.backward_weight_flops,
            activation_elems=cost.activation_elems,
            unit=cost.unit,
            matmuls=cost.matmuls,
            spec=spec,
        )

    @property
    def input_elems(self) -> int:
        """Elements of the input tensor."""
        return math.prod(self.input_shape)

    @property
    def output_elems(self) -> int:
        """Elements of the output tensor (what a pipeline stage boundary sends)."""
        return math.prod(self.output_shape)

    @property
    def forward_matmul_flops(self) -> int:
        """Forward FLOPs done by matrix products (the AMP's share)."""
        return sum(mm.flops for mm in self.matmuls)

    @property
    def forward_vector_flops(self) -> int:
        """Forward FLOPs done element-wise (the vector unit's share)."""
        return self.forward_flops - self.forward_matmul_flops

    @property
    def backward_flops(self) -> int:
        """Input plus weight gradient FLOPs."""
        return self.backward_input_flops + self.backward_weight_flops

    def param_bytes(self, dtype: str) -> int:
        """Bytes of the weights in ``dtype``."""
        return self.params * DTYPE_BYTES[dtype]

    def activation_bytes(self, dtype: str) -> int:
        """Bytes stored for the backward pass, per sample, in ``dtype``."""
        return self.activation_elems * DTYPE_BYTES[dtype]


@dataclass(frozen=True, slots=True)
class Cost:
    """What a builder returns; the walker adds name, group and input shape."""

    output_shape: tuple[int, ...]
    params: int = 0
    forward_flops: int = 0
    backward_input_flops: int = 0
    backward_weight_flops: int = 0
    activation_elems: int = 0
    unit: Unit = "elementwise"
    matmuls: tuple[MatMul, ...] = ()


def elementwise(kind: str, shape: tuple[int, ...], *, params: int = 0) -> Cost:
    """Cost of an element-wise op of class ``kind`` (a key of :data:`VECTOR_FLOP`)."""
    n = math.prod(shape)
    fwd, bwd_in, bwd_w = VECTOR_FLOP[kind]
    return Cost(
        output_shape=shape,
        params=params,
        forward_flops=fwd * n,
        backward_input_flops=bwd_in * n,
        backward_weight_flops=bwd_w * n if params else 0,
        activation_elems=n,
    )


def weight_matmul(mm: MatMul, out_shape: tuple[int, ...], *, bias: bool) -> Cost:
    """A matmul against weights of shape (k, n), optional bias of n."""
    out_elems = math.prod(out_shape)
    return Cost(
        output_shape=out_shape,
        params=mm.k * mm.n + (mm.n if bias else 0),
        forward_flops=mm.flops,
        backward_input_flops=mm.flops,
        backward_weight_flops=mm.flops + (out_elems if bias else 0),
        activation_elems=out_elems,
        unit="matmul",
        matmuls=(mm,),
    )


def _rank(shape: tuple[int, ...], rank: int, what: str) -> None:
    if len(shape) != rank:
        raise ShapeError(f"{what} needs a rank-{rank} input per sample, got shape {list(shape)}")


def conv2d(s: spec.Conv2dSpec, shape: tuple[int, ...]) -> Cost:
    """Implicit GEMM: M = output positions, N = out channels, K = kernel area x in channels."""
    _rank(shape, 3, "conv2d (channels, height, width)")
    c, h, w = shape
    ho = (h + 2 * s.pad - s.kernel) // s.stride + 1
    wo = (w + 2 * s.pad - s.kernel) // s.stride + 1
    if ho <= 0 or wo <= 0:
        raise ShapeError(f"kernel {s.kernel} does not fit input {h}x{w} with pad {s.pad}", "kernel")
    mm = MatMul(m=ho * wo, n=s.out_channels, k=s.kernel * s.kernel * c)
    return weight_matmul(mm, (s.out_channels, ho, wo), bias=s.bias)


def dense(s: spec.DenseSpec, shape: tuple[int, ...]) -> Cost:
    """Applied to the last axis; leading axes are tokens."""
    tokens = math.prod(shape[:-1])
    mm = MatMul(m=tokens, n=s.out, k=shape[-1])
    return weight_matmul(mm, (*shape[:-1], s.out), bias=s.bias)


def _norm(channels: int, shape: tuple[int, ...], affine: bool) -> Cost:
    return elementwise("norm", shape, params=2 * channels if affine else 0)


def batchnorm(s: spec.BatchNormSpec, shape: tuple[int, ...]) -> Cost:
    """Per-channel statistics; affine scale and shift per channel (axis 0)."""
    return _norm(shape[0], shape, s.affine)


def layernorm(s: spec.LayerNormSpec, shape: tuple[int, ...]) -> Cost:
    """Statistics over the last axis; affine scale and shift per feature."""
    return _norm(shape[-1], shape, s.affine)


def rmsnorm(s: spec.RmsNormSpec, shape: tuple[int, ...]) -> Cost:
    """Root-mean-square statistics over the last axis; a scale (no shift) per feature."""
    return elementwise("rmsnorm", shape, params=shape[-1] if s.affine else 0)


def activation(kind: str) -> Callable[[Any, tuple[int, ...]], Cost]:
    """Builder of a parameterless element-wise activation."""
    return lambda _s, shape: elementwise(kind, shape)


def flatten(_s: Any, shape: tuple[int, ...]) -> Cost:
    """Reshape to a vector: no work, nothing stored (it is a view)."""
    return Cost(output_shape=(math.prod(shape),), unit="memory")


def embedding(s: spec.EmbeddingSpec, shape: tuple[int, ...]) -> Cost:
    """Gather rows of the tables (no FLOPs); tables summed; scatter-add in the weight gradient."""
    _rank(shape, 1, "embedding (a sequence of token ids)")
    seq = shape[0]
    if s.positions and seq > s.positions:
        raise ShapeError(f"sequence length {seq} exceeds the {s.positions} positions", "positions")
    tables = 1 + (s.positions > 0) + (s.token_types > 0)
    out = seq * s.hidden
    return Cost(
        output_shape=(seq, s.hidden),
        params=(s.vocab + s.positions + s.token_types) * s.hidden,
        forward_flops=(tables - 1) * out,
        backward_weight_flops=tables * out,
        activation_elems=out,
        unit="memory",
    )


def _hidden(shape: tuple[int, ...], hidden: int, what: str) -> int:
    _rank(shape, 2, f"{what} (sequence, hidden)")
    if shape[1] != hidden:
        raise ShapeError(
            f"hidden {hidden} does not match the input's {shape[1]} features", "hidden"
        )
    return shape[0]


def attention(s: spec.AttentionSpec, shape: tuple[int, ...]) -> Cost:
    """QKV projection, per-head scores Q Kᵀ, softmax, context P V, output projection.

    With ``kv_heads`` < ``heads`` (grouped-query attention) K and V are narrower; each query
    head still scores against its group's K, so the score and context products keep ``heads``
    heads. ``rotary`` costs the rotation of Q and K element-wise.
    """
    seq = _hidden(shape, s.hidden, "attention")
    h = s.hidden
    if s.head_dim is None and h % s.heads:
        raise ShapeError(f"hidden {h} is not divisible by {s.heads} heads", "heads")
    kv = s.kv_heads or s.heads
    if s.heads % kv:
        raise ShapeError(f"{s.heads} heads are not divisible by {kv} kv_heads", "kv_heads")
    d = s.head_dim or h // s.heads
    q_width, kv_width = s.heads * d, kv * d
    qkv_width = q_width + 2 * kv_width
    qkv, proj = MatMul(seq, qkv_width, h), MatMul(seq, h, q_width)
    scores, context = MatMul(seq, seq, d, s.heads), MatMul(seq, d, seq, s.heads)
    probs = s.heads * seq * seq
    sm_f, sm_b, _ = VECTOR_FLOP["softmax"]
    rot_f, rot_b, _ = VECTOR_FLOP["rotary"] if s.rotary else (0, 0, 0)
    rotated = seq * (q_width + kv_width)
    bias_grads = (qkv_width + h) * seq if s.bias else 0
    core = scores.flops + context.flops
    return Cost(
        output_shape=shape,
        params=h * qkv_width + q_width * h + ((qkv_width + h) if s.bias else 0),
        forward_flops=qkv.flops + proj.flops + core + sm_f * probs + rot_f * rotated,
        backward_input_flops=qkv.flops + proj.flops + 2 * core + sm_b * probs + rot_b * rotated,
        backward_weight_flops=qkv.flops + proj.flops + bias_grads,
        # Q K V, P, context, output
        activation_elems=seq * qkv_width + probs + seq * q_width + seq * h,
        unit="matmul",
        matmuls=(qkv, scores, context, proj),
    )


def _ffn_cost(seq: int, h: int, inter: int, act: str, bias: bool, gated: bool = False) -> Cost:
    """Up (and gate, fused into one product of twice the width), activation, down."""
    ups = 2 if gated else 1
    up, down = MatMul(seq, ups * inter, h), MatMul(seq, h, inter)
    af, ab, _ = VECTOR_FLOP[act]
    gf, gb, _ = VECTOR_FLOP["gate"] if gated else (0, 0, 0)
    mid = seq * inter
    return Cost(
        output_shape=(seq, h),
        params=(ups + 1) * h * inter + ((ups * inter + h) if bias else 0),
        forward_flops=up.flops + down.flops + (af + gf) * mid,
        backward_input_flops=up.flops + down.flops + (ab + gb) * mid,
        backward_weight_flops=up.flops + down.flops + ((ups * mid + seq * h) if bias else 0),
        # pre-activation(s), post-activation (the gated product), output
        activation_elems=(ups + 1) * mid + seq * h,
        unit="matmul",
        matmuls=(up, down),
    )


def ffn(s: spec.FfnSpec, shape: tuple[int, ...]) -> Cost:
    """Two dense layers with an activation between them (three with ``gated``)."""
    seq = _hidden(shape, s.hidden, "ffn")
    return _ffn_cost(seq, s.hidden, s.intermediate, s.activation, s.bias, s.gated)


def moe_ffn(s: spec.MoeFfnSpec, shape: tuple[int, ...]) -> Cost:
    """Router (hidden x experts) plus ``top_k`` expert FFNs per token; all experts' weights held.

    FLOPs count the tokens actually routed (top_k per token, no capacity padding: capacity and
    dropping are the moe strategy's concern).
    """
    seq = _hidden(shape, s.hidden, "moe_ffn")
    if s.top_k > s.experts:
        raise ShapeError(f"top_k {s.top_k} exceeds the {s.experts} experts", "top_k")
    router = weight_matmul(MatMul(seq, s.experts, s.hidden), (seq, s.experts), bias=s.router_bias)
    one = _ffn_cost(seq, s.hidden, s.intermediate, s.activation, s.bias, s.gated)
    k = s.top_k
    expert_params = _ffn_cost(1, s.hidden, s.intermediate, s.activation, s.bias, s.gated).params
    sm_f, sm_b, _ = VECTOR_FLOP["softmax"]
    gates = seq * s.experts
    return Cost(
        output_shape=shape,
        params=router.params + s.experts * expert_params,
        forward_flops=router.forward_flops + k * one.forward_flops + sm_f * gates,
        backward_input_flops=router.backward_input_flops
        + k * one.backward_input_flops
        + sm_b * gates,
        backward_weight_flops=router.backward_weight_flops + k * one.backward_weight_flops,
        activation_elems=gates + k * seq * s.hidden + k * one.activation_elems,
        unit="matmul",
        matmuls=(
            *router.matmuls,
            *(MatMul(mm.m, mm.n, mm.k, mm.count * k) for mm in one.matmuls),
        ),
    )


def pool(s: spec.PoolSpec, shape: tuple[int, ...]) -> Cost:
    """Window of kernel x kernel: one operation per window element forward, one per output back."""
    _rank(shape, 3, "pool (channels, height, width)")
    c, h, w = shape
    stride = s.stride or s.kernel
    ho = (h + 2 * s.pad - s.kernel) // stride + 1
    wo = (w + 2 * s.pad - s.kernel) // stride + 1
    if ho <= 0 or wo <= 0:
        raise ShapeError(f"kernel {s.kernel} does not fit input {h}x{w} with pad {s.pad}", "kernel")
    out = c * ho * wo
    return Cost(
        output_shape=(c, ho, wo),
        forward_flops=out * s.kernel * s.kernel,
        backward_input_flops=out * (s.kernel * s.kernel if s.op == "avg" else 1),
        activation_elems=out,
    )


def global_pool(_s: spec.GlobalPoolSpec, shape: tuple[int, ...]) -> Cost:
    """(C, H, W) -> (C,): one operation per input element each way."""
    _rank(shape, 3, "global_pool (channels, height, width)")
    n = math.prod(shape)
    return Cost(
        output_shape=(shape[0],), forward_flops=n, backward_input_flops=n, activation_elems=shape[0]
    )


def pooler(s: spec.PoolerSpec, shape: tuple[int, ...]) -> Cost:
    """BERT pooler: dense(H, H) + tanh on the first token of (S, H)."""
    _rank(shape, 2, "pooler (sequence, hidden)")
    h = shape[1]
    d = weight_matmul(MatMul(1, h, h), (h,), bias=s.bias)
    tf, tb, _ = VECTOR_FLOP["tanh"]
    return Cost(
        output_shape=(h,),
        params=d.params,
        forward_flops=d.forward_flops + tf * h,
        backward_input_flops=d.backward_input_flops + tb * h,
        backward_weight_flops=d.backward_weight_flops,
        activation_elems=2 * h,
        unit="matmul",
        matmuls=d.matmuls,
    )


def first_token(_s: spec.FirstTokenSpec, shape: tuple[int, ...]) -> Cost:
    """(S, H) -> (H,): a view of the first token, no work and nothing stored."""
    _rank(shape, 2, "first_token (sequence, hidden)")
    return Cost(output_shape=(shape[1],), unit="memory")


def image_tokens(s: spec.ImageTokensSpec, shape: tuple[int, ...]) -> Cost:
    """(C, H, W) patch features -> (H·W [+1], C) tokens: a transpose, the class token, the sum
    with learned position embeddings (one add per element; the gradient of the tables)."""
    _rank(shape, 3, "image_tokens (channels, height, width)")
    c, hh, ww = shape
    seq = hh * ww + (1 if s.class_token else 0)
    out = seq * c
    params = (c if s.class_token else 0) + (out if s.positions else 0)
    return Cost(
        output_shape=(seq, c),
        params=params,
        forward_flops=out if s.positions else 0,
        backward_weight_flops=(out if s.positions else 0) + (c if s.class_token else 0),
        activation_elems=out,
        unit="memory",
    )


def side_head(s: spec.SideHeadSpec, shape: tuple[int, ...]) -> Cost:
    """Pooler (optional) and classifier on the first token; the sequence passes through."""
    _rank(shape, 2, "side_head (sequence, hidden)")
    h = shape[1]
    parts = [pooler(spec.PoolerSpec(), shape)] if s.pooler else []
    parts.append(weight_matmul(MatMul(1, s.classes, h), (s.classes,), bias=True))
    return Cost(
        output_shape=shape,
        params=sum(p.params for p in parts),
        forward_flops=sum(p.forward_flops for p in parts),
        backward_input_flops=sum(p.backward_input_flops for p in parts),
        backward_weight_flops=sum(p.backward_weight_flops for p in parts),
        activation_elems=sum(p.activation_elems for p in parts),
        unit="matmul",
        matmuls=tuple(mm for p in parts for mm in p.matmuls),
    )


def lm_head(s: spec.LmHeadSpec, shape: tuple[int, ...]) -> Cost:
    """Every token onto the vocabulary; with ``tied`` the weights belong to the embedding."""
    _rank(shape, 2, "lm_head (sequence, hidden)")
    d = dense(spec.DenseSpec(out=s.vocab, bias=s.bias), shape)
    owned = (s.vocab if s.bias else 0) + (0 if s.tied else s.vocab * shape[1])
    return Cost(
        output_shape=d.output_shape,
        params=owned,
        forward_flops=d.forward_flops,
        backward_input_flops=d.backward_input_flops,
        backward_weight_flops=d.backward_weight_flops,
        activation_elems=d.activation_elems,
        unit="matmul",
        matmuls=d.matmuls,
    )


def pretraining_heads(s: spec.PretrainingHeadsSpec, shape: tuple[int, ...]) -> Cost:
    """BERT pre-training heads (Devlin et al. 2019; Hugging Face ``BertForPreTraining``).

    Pooler dense(H, H) + tanh on the first token, NSP dense(H, classes); MLM transform dense(H,
    H) + GELU + layer norm and decoder dense(H, vocab) + bias on the ``masked`` positions only
    (the gather of those rows is free). The tied decoder owns only its bias; its weight
    gradient still costs its FLOPs (it accumulates into the embedding's gradient).
    Stored: transform output, GELU output and norm output, the logits (for the softmax
    gradient), the pooler's two tensors and the NSP logits.
    """
    _rank(shape, 2, "pretraining_heads (sequence, hidden)")
    h = shape[1]
    m = s.masked
    if m > shape[0]:
        raise ShapeError(f"masked {m} exceeds the sequence length {shape[0]}", "masked")
    mms = (
        MatMul(1, h, h),  # pooler
        MatMul(1, s.nsp_classes, h),  # NSP classifier
        MatMul(m, h, h),  # MLM transform
        MatMul(m, s.vocab, h),  # MLM decoder
    )
    mm_flops = sum(x.flops for x in mms)
    gf, gb, _ = VECTOR_FLOP["gelu"]
    nf, nb, nw = VECTOR_FLOP["norm"]
    tf, tb, _ = VECTOR_FLOP["tanh"]
    vec_f = gf * m * h + nf * m * h + tf * h
    vec_b = gb * m * h + nb * m * h + tb * h
    bias_grads = h + s.nsp_classes + h + s.vocab  # pooler, NSP, transform, decoder
    return Cost(
        output_shape=(m, s.vocab),
        params=(h * h + h)  # pooler
        + (h * s.nsp_classes + s.nsp_classes)  # NSP
        + (h * h + h + 2 * h)  # transform and its layer norm
        + s.vocab  # decoder bias
        + (0 if s.tied else s.vocab * h),
        forward_flops=mm_flops + vec_f,
        backward_input_flops=mm_flops + vec_b,
        backward_weight_flops=mm_flops + bias_grads + nw * m * h,
        activation_elems=3 * m * h + m * s.vocab + 2 * h + s.nsp_classes,
        unit="matmul",
        matmuls=mms,
    )


def add(shape: tuple[int, ...]) -> Cost:
    """The sum closing a residual block."""
    return elementwise("add", shape)


#: Layer type -> builder(spec, input shape) -> Cost. Keys match LAYER_SPECS.
BUILDERS: dict[str, Callable[[Any, tuple[int, ...]], Cost]] = {
    "conv2d": conv2d,
    "batchnorm": batchnorm,
    "layernorm": layernorm,
    "rmsnorm": rmsnorm,
    "relu": activation("relu"),
    "gelu": activation("gelu"),
    "silu": activation("silu"),
    "tanh": activation("tanh"),
    "flatten": flatten,
    "dense": dense,
    "embedding": embedding,
    "attention": attention,
    "ffn": ffn,
    "moe_ffn": moe_ffn,
    "pool": pool,
    "global_pool": global_pool,
    "pooler": pooler,
    "first_token": first_token,
    "image_tokens": image_tokens,
    "side_head": side_head,
    "lm_head": lm_head,
    "pretraining_heads": pretraining_heads,
}
