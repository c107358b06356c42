"""The model's MoE layers as the moe strategy sees them, and what one micro-batch costs.

:func:`moe_layers` applies ``strategy.experts`` / ``top_k`` to the model's ``moe_ffn`` layers
and returns the shape they share (:class:`MoeShape`); :func:`router_layer` is the router as a
layer; :class:`Costs` holds the per-micro-batch phase costs of the non-MoE segments, the router
and (memoised by row count) one expert's FFN, which the step graph (:mod:`.graph`) and the
memory plan (:mod:`.strategy`) read.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Protocol

from simulator.config import workload as spec
from simulator.hardware.model import ChipType
from simulator.strategy import PlanContext
from simulator.workloads import layers as L
from simulator.workloads.model import Model
from strategies.moe.params import MoeParams
from strategies.training import StageCost, TrainingParams, stage_cost


@dataclass(frozen=True)
class MoeShape:
    """What every MoE layer of the model shares."""

    experts: int
    top_k: int
    hidden: int
    intermediate: int
    activation: spec.Activation
    bias: bool
    router_bias: bool
    seq: int  # tokens per sample
    gated: bool = False  # gated-linear-unit experts (Mixtral): three matrices instead of two


def moe_layers(ctx: PlanContext, model: Model, p: MoeParams) -> tuple[Model, MoeShape]:
    """The model with ``strategy.experts`` / ``top_k`` applied, and the shared MoE shape."""
    idx = [i for i, x in enumerate(model.layers) if x.kind == "moe_ffn"]
    if not idx:
        raise ctx.error(("model",), f"model {model.name} has no moe_ffn layer for type: moe")
    specs = [model.layers[i].spec for i in idx]
    first = specs[0]
    if any(s != first for s in specs[1:]):
        raise ctx.error(("model",), "the moe strategy needs every moe_ffn layer to be alike")
    experts = p.experts or first.experts
    top_k = p.top_k or first.top_k
    if top_k > experts:
        key = "top_k" if p.top_k else "experts"
        raise ctx.error(
            ("strategy", key),
            f"top_k {top_k} exceeds the {experts} experts; choose top_k from 1 to {experts}",
        )
    new = first.model_copy(update={"experts": experts, "top_k": top_k})
    layers = list(model.layers)
    for i in idx:
        old = layers[i]
        c = L.moe_ffn(new, old.input_shape)
        layers[i] = replace(
            old,
            params=c.params,
            forward_flops=c.forward_flops,
            backward_input_flops=c.backward_input_flops,
            backward_weight_flops=c.backward_weight_flops,
            activation_elems=c.activation_elems,
            matmuls=c.matmuls,
            spec=new,
        )
    shape = MoeShape(
        experts,
        top_k,
        new.hidden,
        new.intermediate,
        new.activation,
        new.bias,
        new.router_bias,
        model.layers[idx[0]].input_shape[0],
        new.gated,
    )
    return replace(model, layers=tuple(layers)), shape


def router_layer(ms: MoeShape, noisy: bool) -> L.Layer:
    """The router as a layer: hidden -> E (-> 2E with the noise product) plus the softmax."""
    out = ms.experts * (2 if noisy else 1)
    c = L.dense(spec.DenseSpec(out=out, bias=ms.router_bias), (ms.seq, ms.hidden))
    sm_f, sm_b, _ = L.VECTOR_FLOP["softmax"]
    gates = ms.seq * ms.experts
    return L.Layer(
        "router",
        "dense",
        "",
        (ms.seq, ms.hidden),
        c.output_shape,
        c.params,
        c.forward_flops + sm_f * gates,
        c.backward_input_flops + sm_b * gates,
        c.backward_weight_flops,
        c.activation_elems,
        c.unit,
        c.matmuls,
    )


class ExpertShape(Protocol):
    """What sizes an expert's FFN: a :class:`MoeShape` or a model's ``MoeFfnSpec``."""

    @property
    def hidden(self) -> int: ...
    @property
    def intermediate(self) -> int: ...
    @property
    def bias(self) -> bool: ...
    @property
    def gated(self) -> bool: ...


def expert_params(ms: ExpertShape) -> int:
    """Parameters of one expert's FFN (weights, and biases if the experts have them)."""
    ups = 2 if ms.gated else 1
    return (ups + 1) * ms.hidden * ms.intermediate + (
        (ups * ms.intermediate + ms.hidden) if ms.bias else 0
    )


def expert_row_elems(ms: ExpertShape) -> int:
    """Activation elements an expert stores per row it computes: the dispatched input, the
    FFN's intermediates (two, three when gated) and the output."""
    return (3 if ms.gated else 2) * ms.intermediate + 2 * ms.hidden


@dataclass
class Costs:
    """Per-micro-batch phase costs (the same on every chip, experts aside)."""

    segments: list[StageCost]  # non-MoE layers before MoE layer 0, between, after the last
    router: StageCost
    moe_grad: list[bool]  # per MoE layer: does its input need a gradient
    ct: ChipType
    tp: TrainingParams
    ms: MoeShape

    _experts: dict[tuple[int, bool], StageCost] = field(default_factory=dict)

    def expert(self, rows: int, input_grad: bool) -> StageCost:
        """One expert's FFN over ``rows`` tokens (forward, backward); memoised, as row counts
        repeat across chips, layers and micro-batches."""
        key = (rows, input_grad)
        if key not in self._experts:
            self._experts[key] = self._expert(rows, input_grad)
        return self._experts[key]

    def _expert(self, rows: int, input_grad: bool) -> StageCost:
        ms = self.ms
        c = L.ffn(
            spec.FfnSpec(
                hidden=ms.hidden,
                intermediate=ms.intermediate,
                activation=ms.activation,
                bias=ms.bias,
                gated=ms.gated,
            ),
            (rows, ms.hidden),
        )
        layer = L.Layer(
            "expert",
            "ffn",
            "",
            (rows, ms.hidden),
            c.output_shape,
            c.params,
            c.forward_flops,
            c.backward_input_flops,
            c.backward_weight_flops,
            c.activation_elems,
            c.unit,
            c.matmuls,
        )
        tp1 = self.tp.model_copy(update={"micro_batch": 1, "recompute": "none"})
        return stage_cost([layer], [input_grad], tp1, self.ct)


__all__ = [
    "Costs",
    "ExpertShape",
    "MoeShape",
    "expert_params",
    "expert_row_elems",
    "moe_layers",
    "router_layer",
]
