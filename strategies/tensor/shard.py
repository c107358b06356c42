"""Splitting a model's layers over the T chips of a tensor group, and the collectives the split
needs (Megatron-LM: Shoeybi et al. 2019, §3; sequence parallelism: Korthikanti et al. 2022, §4).

Each layer becomes what *one* chip of the group holds and computes, re-costed by the layer
algebra (:mod:`simulator.workloads.layers`) with the split hyper-parameters, so FLOPs,
parameters and stored activations are divided exactly as the split divides them:

* **attention**: column-split Q, K, V projections (``heads / T`` query heads and
  ``kv_heads / T`` key/value heads per chip), each chip's heads' scores, softmax and context,
  then the row-split output projection (its ``heads / T`` x head_dim input rows). The output
  bias is whole on every chip (added once, after the partial outputs are summed).
* **ffn**: column-split up (and gate) projection (``intermediate / T`` columns), activation,
  row-split down projection; the down bias whole on every chip.
* **embedding**: the token table split over the vocabulary (``ceil(vocab / T)`` rows per chip;
  a chip looks up the tokens it holds and contributes zeros for the rest); position and
  token-type tables whole on every chip.
* **lm_head**, **pretraining_heads**: the projection onto the vocabulary split by columns
  (``ceil(vocab / T)`` per chip), the loss computed on the split logits (Megatron's
  vocabulary-parallel cross-entropy). The vocabulary is padded to a multiple of T (Megatron's
  ``make-vocab-size-divisible-by``); padded rows cost as real ones.
* every other layer (layer norms, residual adds, ...) is **replicated**: each chip computes it
  in full on the whole activation — or, with ``tensor_collective: reduce_scatter``, on its
  1/T of the sequence (**sequence** split), which needs every such layer to work token by token.

The collectives (per layer, per micro-batch; ``elems`` is the whole tensor per sample):

===================  =========================================  ==============================
layer                all_reduce                                 reduce_scatter (sequence par.)
===================  =========================================  ==============================
attention, ffn       fwd: all-reduce the output;                fwd: all-gather the input,
                     bwd: all-reduce the input gradient         reduce-scatter the output; bwd:
                                                                all-gather the output gradient,
                                                                reduce-scatter the input grad.
embedding            fwd: all-reduce the output                 fwd: reduce-scatter the output;
                                                                bwd: all-gather its gradient
lm_head              fwd: loss max and sums (fp32, per token);  fwd: all-gather the input and
                     bwd: all-reduce the input gradient         the loss terms; bwd: reduce-
                                                                scatter the input gradient
===================  =========================================  ==============================

An input gradient is only reduced where the layer's input needs one (``Model.needs_input_grad``).
With the sequence split, the parameters of the sequence-split layers (and the attention and FFN
output biases, the position tables) get a different gradient on each chip: the group
all-reduces them once per step before the gradients go to the other replicas.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from simulator.engine.tasks import CollectiveKind
from simulator.workloads import layers as L
from simulator.workloads.layers import DTYPE_BYTES, Layer
from simulator.workloads.model import Model
from strategies.tensor.keys import TensorCollective

Fail = Callable[[tuple[str | int, ...], str], Exception]
How = Literal["heads", "width", "vocab", "sequence", "replicated", "experts"]

#: Layers whose work each chip of a group does a 1/T share of.
SPLIT_KINDS = frozenset({"attention", "ffn"})
VOCAB_KINDS = frozenset({"embedding", "lm_head", "pretraining_heads"})
#: Layers that work token by token on a (sequence, features) input: sequence-split with
#: ``reduce_scatter``.
TOKENWISE_KINDS = frozenset(
    {"layernorm", "rmsnorm", "add", "relu", "gelu", "silu", "tanh", "dense"}
)


@dataclass(frozen=True)
class Comm:
    """One collective of a tensor group: ``elems`` per sample is the whole tensor (the input of
    an all-reduce or reduce-scatter, the output of an all-gather, as the engine counts bytes)."""

    kind: CollectiveKind
    elems: int
    what: str  # output, input, output gradient, input gradient, loss max, loss sums
    fp32: bool = False  # loss terms are reduced in fp32 whatever the dtype
    #: ``tensor``: over the stage's tensor group; ``replicas``: over the stage's chips in every
    #: replica (expert parallelism, strategies/moe/pipeline_experts.py)
    scope: Literal["tensor", "replicas"] = "tensor"
    batched: bool = True  # elems per sample (x micro-batch); False: per micro-batch already

    def nbytes(self, micro_batch: int, dtype: str) -> float:
        """Bytes per chip of one micro-batch's collective."""
        per = micro_batch if self.batched else 1
        return float(self.elems * per * (4 if self.fp32 else DTYPE_BYTES[dtype]))

    def dtype(self, dtype: str) -> str:
        return "fp32" if self.fp32 else dtype


@dataclass(frozen=True)
class LayerSplit:
    """How one layer is split and the collectives around it (forward and backward order)."""

    how: How
    fwd_before: tuple[Comm, ...] = ()
    fwd_after: tuple[Comm, ...] = ()
    bwd_before: tuple[Comm, ...] = ()
    bwd_after: tuple[Comm, ...] = ()
    #: between the two parts of a layer costed in two (a MoE layer's router and experts)
    fwd_mid: tuple[Comm, ...] = ()
    bwd_mid: tuple[Comm, ...] = ()
    held_elems: int = 0  # elements of the output one chip holds afterwards, per sample
    replicated_params: int = 0  # parameters whose gradient the group all-reduces per step
    split_tensor: bool = False  # holds a shard of a weight tensor (LAMB/LARS norms)

    def comms(self, phase: str) -> tuple[Comm, ...]:
        """Every collective of ``phase`` (``F`` or ``B``), in the order they run."""
        if phase == "F":
            return self.fwd_before + self.fwd_mid + self.fwd_after
        return self.bwd_before + self.bwd_mid + self.bwd_after


def _recost(x: Layer, c: L.Cost, spec: object, shape: tuple[int, ...] | None = None) -> Layer:
    return replace(
        x,
        input_shape=shape or x.input_shape,
        output_shape=c.output_shape,
        params=c.params,
        forward_flops=c.forward_flops,
        backward_input_flops=c.backward_input_flops,
        backward_weight_flops=c.backward_weight_flops,
        activation_elems=c.activation_elems,
        unit=c.unit,
        matmuls=c.matmuls,
        spec=spec,
    )


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def check(model: Model, t: int, mode: TensorCollective, fail: Fail) -> None:
    """Invalid input (exit 2, naming the key) for a split that cannot be made."""
    kinds = {x.kind for x in model.layers}
    moe = [x for x in model.layers if x.kind == "moe_ffn"]
    if moe:
        raise fail(
            ("strategy", "tensor_parallel"),
            f"tensor_parallel {t} splits attention, FFN and vocabulary layers, but "
            f"{model.name} has moe_ffn layers ({moe[0].name}, ...): their experts are spread "
            "over the replicas of a stage instead (expert parallelism); use tensor_parallel: 1 "
            "with mixture-of-experts models",
        )
    if not kinds & (SPLIT_KINDS | VOCAB_KINDS):
        raise fail(
            ("strategy", "tensor_parallel"),
            f"tensor_parallel {t}: {model.name} has no attention, ffn, embedding or vocabulary "
            "head layer to split over a tensor group (its layers would only be repeated on "
            "every chip); use tensor_parallel: 1 (or more replicas or stages)",
        )
    sizes: list[tuple[str, int]] = []
    for x in model.layers:
        if x.kind == "attention":
            sizes.append((f"{x.spec.heads} heads of {x.name}", x.spec.heads))
            kv = x.spec.kv_heads or x.spec.heads
            sizes.append((f"{kv} key/value heads of {x.name}", kv))
        elif x.kind == "ffn":
            sizes.append((f"FFN width {x.spec.intermediate} of {x.name}", x.spec.intermediate))
        elif mode == "reduce_scatter" and x.kind in TOKENWISE_KINDS and len(x.input_shape) == 2:
            sizes.append((f"sequence of {x.input_shape[0]} tokens of {x.name}", x.input_shape[0]))
    valid = set(range(1, 1025))
    for _, n in sizes:
        valid &= set(_divisors(n))
    for what, n in sizes:
        if n % t:
            key = "tensor_collective" if what.startswith("sequence") else "tensor_parallel"
            raise fail(
                ("strategy", "tensor_parallel"),
                f"tensor_parallel {t} does not divide the {what} ({model.name}); "
                f"choose T from {sorted(valid)}"
                + ("" if key == "tensor_parallel" else " or tensor_collective: all_reduce"),
            )
    if mode == "reduce_scatter":
        for x in model.layers:
            splittable = x.kind in SPLIT_KINDS | VOCAB_KINDS
            tokenwise = x.kind in TOKENWISE_KINDS and len(x.input_shape) == 2
            if not splittable and not tokenwise:
                raise fail(
                    ("strategy", "tensor_collective"),
                    "reduce_scatter splits the layers between the attention, FFN and "
                    f"vocabulary layers over the sequence, token by token, but {x.name} "
                    f"({x.kind}, input {list(x.input_shape)}) is not token-wise; use "
                    "tensor_collective: all_reduce",
                )


def split_model(
    model: Model, t: int, mode: TensorCollective, fail: Fail
) -> tuple[Model, tuple[LayerSplit, ...]]:
    """What one chip of a T-chip group holds of ``model``, and how each layer is split."""
    check(model, t, mode, fail)
    seq_par = mode == "reduce_scatter"
    grads = model.needs_input_grad
    out: list[Layer] = []
    splits: list[LayerSplit] = []
    for i, x in enumerate(model.layers):
        ar: CollectiveKind = "all_reduce"
        if x.kind in SPLIT_KINDS:
            new = _split_block(x, t)
            bias = x.output_shape[-1] if x.spec.bias else 0
            if seq_par:
                split = LayerSplit(
                    "heads" if x.kind == "attention" else "width",
                    fwd_before=(Comm("all_gather", x.input_elems, "input"),),
                    fwd_after=(Comm("reduce_scatter", x.output_elems, "output"),),
                    bwd_before=(Comm("all_gather", x.output_elems, "output gradient"),),
                    bwd_after=_grad(grads[i], "reduce_scatter", x.input_elems),
                    held_elems=x.output_elems // t,
                    replicated_params=bias,
                    split_tensor=True,
                )
            else:
                split = LayerSplit(
                    "heads" if x.kind == "attention" else "width",
                    fwd_after=(Comm(ar, x.output_elems, "output"),),
                    bwd_after=_grad(grads[i], ar, x.input_elems),
                    held_elems=x.output_elems,
                    split_tensor=True,
                )
        elif x.kind in VOCAB_KINDS:
            new, split = _split_vocab(x, t, seq_par, grads[i])
        elif seq_par:
            shape = (x.input_shape[0] // t, *x.input_shape[1:])
            builder = L.BUILDERS.get(x.kind)
            c = L.add(shape) if x.spec is None or builder is None else builder(x.spec, shape)
            new = _recost(x, c, x.spec, shape)
            split = LayerSplit("sequence", held_elems=new.output_elems, replicated_params=x.params)
        else:
            new = x
            split = LayerSplit("replicated", held_elems=x.output_elems)
        out.append(new)
        splits.append(split)
    return replace(model, layers=tuple(out)), tuple(splits)


def _grad(needed: bool, kind: CollectiveKind, elems: int) -> tuple[Comm, ...]:
    return (Comm(kind, elems, "input gradient"),) if needed else ()


def _split_block(x: Layer, t: int) -> Layer:
    """Attention (heads / T) or FFN (width / T) as one chip of the group holds it."""
    s = x.spec
    if x.kind == "attention":
        kv = s.kv_heads or s.heads
        d = s.head_dim or s.hidden // s.heads
        new = s.model_copy(update={"heads": s.heads // t, "kv_heads": kv // t, "head_dim": d})
        return _recost(x, L.attention(new, x.input_shape), new)
    new = s.model_copy(update={"intermediate": s.intermediate // t})
    return _recost(x, L.ffn(new, x.input_shape), new)


def _loss(tokens: int) -> tuple[Comm, ...]:
    """Vocabulary-parallel cross-entropy (Megatron): the largest logit of each token, then the
    sum of exponentials and the target's logit, each summed over the group (fp32)."""
    return (
        Comm("all_reduce", tokens, "loss max", fp32=True),
        Comm("all_reduce", 2 * tokens, "loss sums", fp32=True),
    )


def _split_vocab(x: Layer, t: int, seq_par: bool, grad: bool) -> tuple[Layer, LayerSplit]:
    """Embedding or head split over the vocabulary (``ceil(vocab / T)`` per chip)."""
    s = x.spec
    vocab = math.ceil(s.vocab / t)
    new_spec = s.model_copy(update={"vocab": vocab})
    builder = L.BUILDERS[x.kind]
    new = _recost(x, builder(new_spec, x.input_shape), new_spec)
    if x.kind == "embedding":
        if seq_par:
            split = LayerSplit(
                "vocab",
                fwd_after=(Comm("reduce_scatter", x.output_elems, "output"),),
                bwd_before=(Comm("all_gather", x.output_elems, "output gradient"),),
                held_elems=x.output_elems // t,
                replicated_params=(s.positions + s.token_types) * s.hidden,
                split_tensor=True,
            )
        else:
            split = LayerSplit(
                "vocab",
                fwd_after=(Comm("all_reduce", x.output_elems, "output"),),
                held_elems=x.output_elems,
                split_tensor=True,
            )
        return new, split
    tokens = s.masked if x.kind == "pretraining_heads" else x.input_shape[0]
    owns = new.params > 0
    if seq_par:
        split = LayerSplit(
            "vocab",
            fwd_before=(Comm("all_gather", x.input_elems, "input"),),
            fwd_after=_loss(tokens),
            bwd_after=_grad(grad, "reduce_scatter", x.input_elems),
            held_elems=new.output_elems,
            split_tensor=owns,
        )
    else:
        # the gradient of the head's input (for pre-training heads: of the MLM decoder's
        # input, the masked rows) is a sum of every chip's vocabulary share
        grad_elems = s.masked * x.input_shape[1] if x.kind == "pretraining_heads" else x.input_elems
        split = LayerSplit(
            "vocab",
            fwd_after=_loss(tokens),
            bwd_after=_grad(grad, "all_reduce", grad_elems),
            held_elems=new.output_elems,
            split_tensor=owns,
        )
    return new, split


def useful_flops(model: Model, micro_batch: int) -> float:
    """Forward + backward FLOPs of one micro-batch of the whole (unsplit) model, counted as a
    stage's cost counts them (no input gradient where none is needed)."""
    total = 0
    for x, grad in zip(model.layers, model.needs_input_grad, strict=True):
        total += x.forward_flops
        if grad and x.backward_input_flops:
            total += x.backward_input_flops
        if x.params and x.backward_weight_flops:
            total += x.backward_weight_flops
    return float(total * micro_batch)


__all__ = ["Comm", "LayerSplit", "check", "split_model", "useful_flops"]
