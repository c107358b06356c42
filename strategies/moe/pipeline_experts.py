"""MoE layers inside pipeline stages: expert parallelism across the replicas of a stage
(``strategy.expert_parallel: true`` of ``type: pipeline``).

Without it, a pipeline holds every expert of a ``moe_ffn`` layer on the chip of its stage (the
layer costed as the layer algebra counts it: the router plus top-k experts per token). With it,
the R chips that hold the same stage in the R replicas share that stage's experts as the
``moe`` strategy's chips do (:class:`~strategies.moe.routing.Placement`): E >= R experts, E/R on
each chip and one all-to-all group; E < R, groups of E chips, each chip one expert's replica.
Per micro-batch and MoE layer, each chip routes its own tokens (T = micro-batch x sequence):

1. the router (hidden -> E and the softmax; plain top-k gating) on every chip;
2. **dispatch**: an all-to-all Collective over the stage's group: every (source, expert) buffer
   is C = ceil(top_k x T x capacity_factor / E) rows (static capacity, the IPU's static shapes,
   so every replica does the same and replica 0's chip stands for the others);
3. each chip's experts compute their rows (C from every chip of the group) — a segment of its
   own, labelled ``experts``;
4. **combine**: the outputs go back the same way.

Backward: ``dispatch_grad`` (the outputs' gradients to the experts), the experts' backward,
``combine_grad`` (the inputs' gradients back, if the layer's input needs one), the router's
backward. Step end: the non-expert gradients are all-reduced over the stage's replicas as
before, an expert's only over the replicas that hold it (E < R); experts held by one chip are
not all-reduced at all. Every group's all-to-all of the stage is simulated (other replicas'
beside replica 0's), so their traffic shares the links; the replicas' compute is replica 0's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pydantic import Field

from simulator.config import workload as spec
from simulator.config.base import PositiveFloat, StrictModel
from simulator.engine.graph import TaskGraph
from simulator.engine.tasks import Collective
from simulator.engine.trace import Trace
from simulator.hardware.model import ChipType
from simulator.metrics import TrainingResult
from simulator.strategy import Plan, PlanContext
from simulator.workloads import layers as L
from simulator.workloads.layers import DTYPE_BYTES
from simulator.workloads.model import Model
from strategies.moe.costs import expert_params, expert_row_elems
from strategies.moe.routing import Placement, capacity
from strategies.tensor.passes import Parts, ReplicaGroups
from strategies.tensor.shard import Comm, LayerSplit
from strategies.tensor.split import SplitPlan
from strategies.training import ZERO, StageCost, TrainingParams, stage_cost

if TYPE_CHECKING:
    from strategies.pipeline import Layout


class ExpertKeys(StrictModel):
    """``strategy.expert_parallel`` and ``strategy.capacity_factor`` of ``type: pipeline``."""

    expert_parallel: bool = Field(
        default=False,
        description="Spread each moe_ffn layer's experts over the replicas of its stage "
        "(all-to-all dispatch and combine between them); false: every chip holds every expert.",
    )
    capacity_factor: PositiveFloat = Field(
        default=1.25,
        description="With expert_parallel: expert capacity C = ceil(top_k x tokens x "
        "capacity_factor / experts) rows per (chip, expert) per micro-batch, static shapes.",
    )


@dataclass(frozen=True)
class MoeLayer:
    """One moe_ffn layer split over a stage's replicas."""

    spec: spec.MoeFfnSpec
    place: Placement
    capacity: int  # C per (source chip, expert) per micro-batch
    rows: int  # rows one chip's experts compute per micro-batch
    pair_rows: int  # rows one chip sends to one other chip of its group per micro-batch
    expert_params: int


def _router(x: L.Layer, s: spec.MoeFfnSpec) -> L.Layer:
    """The router as a layer: hidden -> E (bias as the spec says) and the softmax over E."""
    seq = x.input_shape[0]
    c = L.dense(spec.DenseSpec(out=s.experts, bias=s.router_bias), (seq, s.hidden))
    sm_f, sm_b, _ = L.VECTOR_FLOP["softmax"]
    gates = seq * s.experts
    return replace(
        L.Layer.from_cost(f"{x.name}.router", "dense", x.group, x.input_shape, c),
        forward_flops=c.forward_flops + sm_f * gates,
        backward_input_flops=c.backward_input_flops + sm_b * gates,
    )


def _experts(x: L.Layer, s: spec.MoeFfnSpec, rows: int) -> L.Layer:
    """One chip's experts over their ``rows`` rows, as one FFN over ``rows`` tokens."""
    ffn = spec.FfnSpec(
        hidden=s.hidden,
        intermediate=s.intermediate,
        activation=s.activation,
        bias=s.bias,
        gated=s.gated,
    )
    c = L.ffn(ffn, (rows, s.hidden))
    return L.Layer.from_cost(f"{x.name}.experts", "ffn", x.group, (rows, s.hidden), c)


@dataclass(kw_only=True)
class ExpertSplit(SplitPlan):
    """The pipeline planner's handle on expert parallelism: ``model`` holds one chip's
    experts; MoE layers are costed as router and experts, with all-to-alls between them."""

    moe: dict[int, MoeLayer]
    tensor: int = 1
    mode: str = "all_reduce"

    @property
    def place(self) -> Placement:
        return next(iter(self.moe.values())).place

    def replica_groups(self, d: int) -> list[tuple[int, ...]]:
        """Stage ``d``'s chips in each all-to-all group (replica 0's group first)."""
        lay = self.lay
        assert lay is not None
        return [tuple(lay.chips[r][d] for r in grp) for grp in self.place.groups]

    # ---- costs --------------------------------------------------------------------------
    def parts(self, tp: TrainingParams, ct: ChipType) -> dict[int, Parts]:
        """Router and experts of each MoE layer, costed on one chip."""
        grads = self.full.needs_input_grad
        one = tp.model_copy(update={"micro_batch": 1})
        out: dict[int, Parts] = {}
        for i, m in self.moe.items():
            x = self.full.layers[i]
            router = stage_cost([_router(x, m.spec)], [grads[i]], tp, ct)
            experts = stage_cost([_experts(x, m.spec, m.rows)], [grads[i]], one, ct)
            out[i] = (router, experts)
        return out

    def stage_costs(self, model: Model, tp: TrainingParams, ct: ChipType) -> list[StageCost]:
        """Each virtual stage's cost: its other layers as usual, its MoE layers in parts; the
        update of the parameters one chip holds."""
        parts = self.parts(tp, ct)
        grads = model.needs_input_grad
        out = []
        lay = self.lay
        assert lay is not None
        bases = super().stage_costs(model, tp, ct)
        for ls, base in zip(lay.vstage_layers, bases, strict=True):
            rest = [i for i in ls if i not in parts]
            plain = (
                stage_cost([model.layers[i] for i in rest], [grads[i] for i in rest], tp, ct)
                if rest
                else StageCost(ZERO, ZERO, ZERO, ZERO, 0, 0.0)
            )
            fwd, bwd, rec = plain.forward, plain.backward, plain.recompute
            useful = plain.useful_flops
            for i in ls:
                for p in parts.get(i, ()):
                    fwd, bwd, rec = fwd + p.forward, bwd + p.backward, rec + p.recompute
                    useful += p.useful_flops
            out.append(StageCost(fwd, bwd, rec, base.optimizer, base.params, useful, base.tensors))
        return out

    def pass_options(
        self, ctx: PlanContext, tp: TrainingParams, lay: Layout
    ) -> tuple[dict[int, Parts] | None, ReplicaGroups | None]:
        return self.parts(tp, ctx.system.chips[lay.chips[0][0]].type), self.replica_groups

    # ---- the step end -------------------------------------------------------------------
    def gradient_params(self, d: int, params: int) -> int:
        """Parameters all-reduced over every replica: all but the chip's experts."""
        local = len(self.place.experts_on(0))
        return params - sum(
            local * self.moe[i].expert_params for i in self.stage_layers(d) if i in self.moe
        )

    def before_gradients(
        self,
        g: TaskGraph,
        ctx: PlanContext,
        lay: Layout,
        tp: TrainingParams,
        d: int,
        deps: list[int],
    ) -> list[int]:
        """E < R: each expert's gradients all-reduced over the replicas that hold it."""
        place = self.place
        mine = [i for i in self.stage_layers(d) if i in self.moe]
        if not mine or place.experts >= place.chips:
            return deps
        nbytes = float(sum(self.moe[i].expert_params for i in mine) * DTYPE_BYTES[tp.dtype])
        tasks = [
            g.add(
                Collective(
                    "all_reduce",
                    tuple(lay.chips[r][d] for r in place.replicas_of(e)),
                    nbytes,
                    lay.all_reduce,  # type: ignore[arg-type]
                    dtype=tp.dtype,
                    label=f"ep all_reduce expert {e} stage {d}",
                ),
                deps,
            )
            for e in range(place.experts)
        ]
        return [tasks[0]]

    def result(self, plan: Plan, trace: Trace | None, fields: dict[str, Any]) -> TrainingResult:
        place = self.place
        m = next(iter(self.moe.values()))
        per_step = 0.0
        for node in plan.graph.nodes:
            t = node.task
            ep = isinstance(t, Collective) and t.label.startswith("ep ") and t.kind == "all_to_all"
            if ep and lay_first(self, t.group):  # type: ignore[union-attr]
                per_step += t.bytes  # type: ignore[union-attr]
        return ExpertResult(
            **fields,
            expert_parallel={
                "experts": place.experts,
                "experts_per_chip": place.experts_per_chip,
                "group_size": place.group_size,
                "capacity": m.capacity,
                "rows_per_chip_per_micro_batch": m.rows,
                "all_to_all_bytes_per_step": per_step,
            },
        )


def lay_first(sh: ExpertSplit, group: tuple[int, ...]) -> bool:
    """Whether an all-to-all ``group`` is replica 0's (counted once per step)."""
    lay = sh.lay
    assert lay is not None
    return any(c in lay.chips[0] for c in group)


@dataclass(frozen=True)
class ExpertResult(TrainingResult):
    """TrainingResult of a pipeline with expert-parallel MoE layers: ``expert_parallel`` holds
    the experts per chip, the capacity C, the rows each chip's experts compute per micro-batch
    and the all-to-all buffer bytes of replica 0's chips per step."""

    expert_parallel: dict[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        lines = super().text().split("\n")
        ep = self.expert_parallel
        lines.insert(
            1,
            f"  experts         {ep['experts']} per MoE layer over each stage's replicas: "
            f"{ep['experts_per_chip']} per chip, all-to-all groups of {ep['group_size']}, "
            f"capacity {ep['capacity']} rows; all-to-all buffers of replica 0's chips "
            f"{ep['all_to_all_bytes_per_step'] / 2**20:,.1f} MiB per step",
        )
        return "\n".join(lines)


def split_experts(
    ctx: PlanContext, lay: Layout, model: Model, tp: TrainingParams, cf: float
) -> Layout:
    """``lay`` with its MoE layers' experts spread over each stage's replicas (invalid input,
    exit 2, naming the key, when that cannot be done)."""
    idx = [i for i, x in enumerate(model.layers) if x.kind == "moe_ffn"]
    key = ("strategy", "expert_parallel")
    if not idx:
        raise ctx.error(key, f"expert_parallel: {model.name} has no moe_ffn layer to spread")
    specs = {model.layers[i].spec for i in idx}
    if len(specs) > 1:
        raise ctx.error(key, "expert_parallel needs every moe_ffn layer to be alike")
    r = lay.replicas
    s = model.layers[idx[0]].spec
    if r < 2:
        raise ctx.error(key, "expert_parallel spreads experts over replicas: give replicas >= 2")
    if (s.experts >= r and s.experts % r) or (s.experts < r and r % s.experts):
        raise ctx.error(
            key,
            f"{s.experts} experts do not spread evenly over {r} replicas: choose replicas that "
            f"divide the experts or that they divide",
        )
    if lay.rts:
        raise ctx.error(
            ("strategy", "replicated_tensor_sharding"),
            "replicated tensor sharding with expert_parallel is not planned (the experts are "
            "not replicated, so their optimizer state has nothing to shard over); set "
            "replicated_tensor_sharding: false",
        )
    place = Placement(r, s.experts)
    grads = model.needs_input_grad
    moe: dict[int, MoeLayer] = {}
    layers = list(model.layers)
    splits = [LayerSplit("replicated", held_elems=x.output_elems) for x in model.layers]
    for i in idx:
        x = model.layers[i]
        seq = x.input_shape[0]
        cap = capacity(tp.micro_batch * seq, s.experts, s.top_k, cf)
        local = len(place.experts_on(0))
        rows = local * place.group_size * cap
        m = MoeLayer(s, place, cap, rows, local * cap, expert_params(s))
        moe[i] = m
        per_row = expert_row_elems(s)
        layers[i] = replace(
            x,
            params=_router(x, s).params + local * m.expert_params,
            activation_elems=seq * s.experts + math.ceil(rows * per_row / tp.micro_batch),
        )
        buf = place.group_size * m.pair_rows * s.hidden

        def a2a(what: str, buf: int = buf) -> Comm:
            return Comm("all_to_all", buf, what, scope="replicas", batched=False)

        splits[i] = LayerSplit(
            "experts",
            fwd_mid=(a2a("dispatch"),),
            fwd_after=(a2a("combine"),),
            bwd_before=(a2a("dispatch_grad"),),
            bwd_mid=(a2a("combine_grad"),) if grads[i] else (),
            held_elems=x.output_elems,
        )
    split = ExpertSplit(
        ctx=ctx,
        full=model,
        model=replace(model, layers=tuple(layers)),
        splits=tuple(splits),
        moe=moe,
        tp=tp,
    )
    new = replace(lay, shard=split)
    split.lay = new
    return new


__all__ = ["ExpertKeys", "ExpertResult", "ExpertSplit", "split_experts"]
