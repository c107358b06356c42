"""Mixture of experts: expert parallelism x data parallelism (``type: moe``).

Every chip is a data-parallel replica of the non-expert layers (micro-batch ``b`` of
sequences, T = b x seq_len tokens per micro-batch) and holds a share of each MoE layer's E
experts (:class:`~strategies.moe_routing.Placement`). Per micro-batch, per MoE layer, forward:

1. the router on every chip (a dense hidden -> E product, twice with noisy gating, plus T x E
   Gaussian samples on the RNG units), costed like any layer;
2. **dispatch**: each chip sends every expert's kept tokens (or, with ``static_capacity``, the
   whole C-row buffer) to the chip that holds it — an ``all_to_all`` Collective per group when
   every pair moves the same bytes (static capacity), else a Sync of the group and one Transfer
   per pair (one exchange phase);
3. each chip runs its experts' FFNs on the rows it received — the busiest expert's chip is the
   straggler when capacity is not static;
4. **combine**: the outputs go back the same way; the next layers wait for them.

Backward: the same in reverse (``dispatch_grad`` of the expert-output gradients, the experts'
backward, ``combine_grad`` of the token gradients when the MoE layer's input needs one, the
router's backward). After the M micro-batches: the non-expert gradients are all-reduced over
all chips, each expert's over its replicas (E < N), and every chip updates its weights.

Routing counts come from the NumPy reference router on the scenario seed (``reference``),
from a Zipf popularity over experts (``zipf``, exponent ``skew``) or are even (``uniform``).
Every chip is simulated (chips differ by the tokens their experts receive).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pydantic import Field

from simulator.config import workload as spec
from simulator.config.base import NonNegativeFloat, PositiveFloat, PositiveInt, StrictModel
from simulator.config.limits import LIMITS_DOC, MAX_ROUTING_CELLS
from simulator.engine.collectives import ring_order
from simulator.engine.graph import TaskGraph
from simulator.engine.tasks import ALGORITHMS, Collective, MemLoad, MemStore, Rng, Sync, Transfer
from simulator.hardware.model import ChipType
from simulator.strategy import Plan, PlanContext, register
from simulator.workloads import layers as L
from simulator.workloads.cost import optimizer_cost
from simulator.workloads.memory import MemoryPlan
from simulator.workloads.model import Model
from strategies.moe_routing import Placement, Traffic, capacity, routing_counts, traffic
from strategies.training import (
    PhaseCost,
    StageCost,
    TrainingParams,
    add_phase,
    end_step_on_hosts,
    gradient_bytes,
    scenario_model,
    stage_cost,
    stage_memory,
    training_params,
)

TAGS = ("dispatch", "combine", "dispatch_grad", "combine_grad")


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


# ---- the model's MoE layers ---------------------------------------------------------------
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


def _moe_layers(ctx: PlanContext, model: Model, p: MoeParams) -> tuple[Model, MoeShape]:
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


def _router_layer(ms: MoeShape, noisy: bool) -> L.Layer:
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


def _expert_params(ms: MoeShape) -> int:
    ups = 2 if ms.gated else 1
    return (ups + 1) * ms.hidden * ms.intermediate + (
        (ups * ms.intermediate + ms.hidden) if ms.bias else 0
    )


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


@dataclass
class Built:
    """The graph and what the summary needs."""

    graph: TaskGraph
    costs: Costs
    place: Placement
    capacity: int
    traffic: list[list[Traffic]]  # [MoE layer][micro-batch]
    non_expert_params: int
    expert_params: int  # per expert
    all_to_all_bytes: dict[str, float] = field(default_factory=dict)  # per tag, per step
    useful_flops: float = 0.0


class _Graph:
    """Builds one training step's task graph."""

    def __init__(
        self,
        ctx: PlanContext,
        p: MoeParams,
        costs: Costs,
        place: Placement,
        traffic_: list[list[Traffic]],
        memory: dict[int, MemoryPlan],
    ) -> None:
        self.ctx, self.p, self.c, self.place, self.traffic = ctx, p, costs, place, traffic_
        self.memory = memory
        self.g = TaskGraph()
        self.n = place.chips
        self.last: dict[int, list[int]] = {c: [] for c in range(self.n)}
        self.elem = costs.ms.hidden * L.DTYPE_BYTES[costs.tp.dtype]
        self.bytes: dict[str, float] = dict.fromkeys(TAGS, 0.0)
        self.useful = 0.0
        self._where = ""

    def phase(
        self,
        chip: int,
        cost: PhaseCost,
        label: str,
        deps: Sequence[int] = (),
        kind: Literal["compute", "recompute", "optimizer"] = "compute",
    ) -> None:
        t = add_phase(self.g, chip, cost, self.c.ct, [*self.last[chip], *deps], label, kind)
        self.last[chip] = [t]

    def exchange(self, t: Traffic, tag: str, back: bool) -> None:
        """One all-to-all: every group's chips wait for each other, then the rows move."""
        for group in self.place.groups:
            deps = sorted({d for c in group for d in self.last[c]})
            pairs = {
                (b, a) if back else (a, b): r for (a, b), r in t.pair_rows.items() if a in group
            }
            self.bytes[tag] += sum(pairs.values()) * self.elem
            if not pairs:
                continue
            label = f"{tag} {self._where}"
            sizes = set(pairs.values())
            full = len(pairs) == len(group) * (len(group) - 1)
            if full and len(sizes) == 1:  # equal bytes between every pair
                nbytes = len(group) * sizes.pop() * self.elem
                task = self.g.add(Collective("all_to_all", group, nbytes, label=label), deps)
                for c in group:
                    self.last[c] = [task]
                continue
            sync = self.g.add(Sync(group, label=label), deps)
            arrivals: dict[int, list[int]] = {c: [sync] for c in group}
            for (a, b), rows in pairs.items():
                arrivals[b].append(
                    self.g.add(Transfer(a, b, rows * self.elem, label=label), [sync])
                )
            for c in group:
                self.last[c] = arrivals[c]

    def step(self) -> None:
        c, tp = self.c, self.c.tp
        m_count = tp.grad_accum
        moe = len(self.traffic)
        for m in range(m_count):
            for i in range(moe + 1):  # forward: segment i, then MoE layer i
                self._where = f"mb{m} moe{i}"
                for chip in range(self.n):
                    self.phase(chip, c.segments[i].forward, f"F mb{m} seg{i}")
                    self.useful += c.segments[i].useful_flops
                if i < moe:
                    self._moe_forward(i, m)
            for i in reversed(range(moe + 1)):  # backward
                self._where = f"mb{m} moe{i}"
                if i < moe:
                    self._moe_backward(i, m)
                seg = c.segments[i]
                for chip in range(self.n):
                    if seg.recompute.flops or seg.recompute.compute_s:
                        self.phase(chip, seg.recompute, f"R mb{m} seg{i}", kind="recompute")
                    self.phase(chip, seg.backward, f"B mb{m} seg{i}")
        self._step_end()

    def _moe_forward(self, i: int, m: int) -> None:
        c, t = self.c, self.traffic[i][m]
        for chip in range(self.n):
            deps: list[int] = []
            if self.p.noisy_gating:
                samples = c.tp.micro_batch * c.ms.seq * c.ms.experts
                deps = [
                    self.g.add(
                        Rng(chip, samples, label=f"gate noise {self._where}"), self.last[chip]
                    )
                ]
            self.phase(chip, c.router.forward, f"router F {self._where}", deps)
            self.useful += c.router.useful_flops
        self.exchange(t, "dispatch", back=False)
        for chip in range(self.n):
            for e, rows in zip(self.place.experts_on(chip), t.expert_rows[chip], strict=True):
                if rows:
                    self.phase(
                        chip, c.expert(rows, c.moe_grad[i]).forward, f"expert {e} F {self._where}"
                    )
        self.exchange(t, "combine", back=True)
        self.useful += float(t.kept.sum()) * self._expert_token_flops(i)

    def _moe_backward(self, i: int, m: int) -> None:
        c, t = self.c, self.traffic[i][m]
        self.exchange(t, "dispatch_grad", back=False)
        for chip in range(self.n):
            for e, rows in zip(self.place.experts_on(chip), t.expert_rows[chip], strict=True):
                if rows:
                    self.phase(
                        chip, c.expert(rows, c.moe_grad[i]).backward, f"expert {e} B {self._where}"
                    )
        if c.moe_grad[i]:
            self.exchange(t, "combine_grad", back=True)
        for chip in range(self.n):
            self.phase(chip, c.router.backward, f"router B {self._where}")

    def _expert_token_flops(self, i: int) -> float:
        """Forward + backward FLOPs of one token through one expert (for utilisation)."""
        one = self.c.expert(1, self.c.moe_grad[i])
        return one.useful_flops

    def _step_end(self) -> None:
        """Gradient all-reduces (non-expert over all chips, experts over their replicas),
        then each chip's update."""
        c, tp, place = self.c, self.c.tp, self.place
        non_expert = sum(s.params for s in c.segments) + len(self.traffic) * c.router.params
        expert = _expert_params(c.ms)
        algorithm = self.p.all_reduce
        if self.n > 1 and non_expert:
            group = tuple(ring_order(self.ctx.system, list(range(self.n))))
            deps = sorted({d for ch in range(self.n) for d in self.last[ch]})
            task = self.g.add(
                Collective(
                    "all_reduce",
                    group,
                    gradient_bytes(non_expert, tp),
                    algorithm,
                    dtype=tp.dtype,
                    label="all_reduce shared",
                ),
                deps,
            )
            for ch in range(self.n):
                self.last[ch] = [task]
        if self.n > place.experts:
            for e in range(place.experts):
                group = tuple(ring_order(self.ctx.system, list(place.replicas_of(e))))
                deps = sorted({d for ch in group for d in self.last[ch]})
                nbytes = gradient_bytes(expert * len(self.traffic), tp)
                task = self.g.add(
                    Collective(
                        "all_reduce",
                        group,
                        nbytes,
                        algorithm,
                        dtype=tp.dtype,
                        label=f"all_reduce expert {e}",
                    ),
                    deps,
                )
                for ch in group:
                    self.last[ch] = [task]
        for ch in range(self.n):
            params = non_expert + expert * len(self.traffic) * len(place.experts_on(ch))
            opt = optimizer_cost(params, tp.optimizer, tp.dtype, c.ct)
            ct = c.ct
            cost = PhaseCost(
                opt.compute_cycles / ct.clock_hz,
                opt.exchange_cycles / ct.clock_hz,
                opt.syncs,
                opt.flops,
            ).scaled(tp.compute_scale)
            state = self.memory[ch].streaming_bytes if tp.offload_optimizer_state else 0
            if state:
                self.last[ch] = [
                    self.g.add(MemLoad(ch, state, label="load optimizer state"), self.last[ch])
                ]
            self.phase(ch, cost, "optimizer", kind="optimizer")
            if state:
                self.g.add(MemStore(ch, state, label="store optimizer state"), self.last[ch])
        done = end_step_on_hosts(
            self.g, self.ctx, range(self.n), [d for ch in range(self.n) for d in self.last[ch]]
        )
        if done is not None:
            self.last = {c: [done] for c in range(self.n)}


# ---- planning ----------------------------------------------------------------------------
def _segments(model: Model) -> tuple[list[list[int]], list[int]]:
    """Indices of the non-MoE layers before, between and after the MoE layers; MoE indices."""
    segs: list[list[int]] = [[]]
    moe = []
    for i, x in enumerate(model.layers):
        if x.kind == "moe_ffn":
            moe.append(i)
            segs.append([])
        else:
            segs[-1].append(i)
    return segs, moe


def _check_placement(ctx: PlanContext, experts: int, explicit: bool) -> Placement:
    n = ctx.system.num_chips
    if (experts >= n and experts % n) or (experts < n and n % experts):
        good = sorted({d for d in range(1, n + 1) if n % d == 0} | {n * 2, n * 4})
        raise ctx.error(
            ("strategy", "experts") if explicit else ("model",),
            f"{experts} experts do not spread evenly over the {n} chips of "
            f"{ctx.system.name}: choose a divisor or a multiple of {n} (e.g. "
            f"{', '.join(map(str, good))})",
        )
    return Placement(n, experts)


def _memory(
    model: Model,
    costs: Costs,
    place: Placement,
    traffic_: list[list[Traffic]],
    tp: TrainingParams,
    chip: int,
) -> MemoryPlan:
    """SRAM of one chip: the model's layers in order, each MoE layer holding the router and
    the chip's experts, and storing the gates plus, per row its experts compute (the busiest
    micro-batch), the dispatched input, the FFN's two intermediates and the output."""
    ms = costs.ms
    local = len(place.experts_on(chip))
    per_row = (3 if ms.gated else 2) * ms.intermediate + 2 * ms.hidden
    layers, k = [], 0
    for x in model.layers:
        if x.kind == "moe_ffn":
            rows = max(t.chip_rows(chip) for t in traffic_[k])
            x = replace(
                x,
                params=costs.router.params + local * _expert_params(ms),
                activation_elems=ms.seq * ms.experts + -(-rows * per_row // tp.micro_batch),
            )
            k += 1
        layers.append(x)
    return stage_memory(
        layers, tp, costs.ct, in_flight=1, rts_factor=1, micro_batches=tp.grad_accum
    )


def _check_routing_size(
    ctx: PlanContext,
    p: MoeParams,
    layers: int,
    micro_batches: int,
    chips: int,
    tokens: int,
    ms: Any,
) -> None:
    """The routing arrays — assignments per MoE layer × micro-batch × chip × expert, and each
    chip's tokens scored against every expert (zipf, reference) — bounded before they are made
    (docs/config.md, Limits): 10**9 experts or tokens was a MemoryError, exit 1."""
    cells = layers * micro_batches * chips * ms.experts
    if cells > MAX_ROUTING_CELLS:
        key = ("strategy", "experts") if p.experts is not None else ("model",)
        raise ctx.error(
            key,
            f"routing {layers} MoE layer(s) × {micro_batches:,} micro-batch(es) × {chips} chips "
            f"× {ms.experts:,} experts makes {cells:,} assignment counts, over the limit of "
            f"{MAX_ROUTING_CELLS:,} ({LIMITS_DOC})",
        )
    scores = tokens * max(ms.experts, ms.hidden) if p.routing != "uniform" else 0
    if scores > MAX_ROUTING_CELLS:
        raise ctx.error(
            ("training", "micro_batch"),
            f"{p.routing} routing scores a chip's {tokens:,} tokens per micro-batch against "
            f"{max(ms.experts, ms.hidden):,} experts or hidden units: {scores:,} values, over "
            f"the limit of {MAX_ROUTING_CELLS:,} ({LIMITS_DOC}); use a smaller micro_batch or "
            "routing: uniform",
        )


class Moe:
    name = "moe"
    params = MoeParams

    def plan(self, ctx: PlanContext) -> Plan:
        from strategies.summary import infeasible_plan

        p: MoeParams = ctx.params  # type: ignore[assignment]
        tp = training_params(ctx)
        if tp.offload_weights:
            raise ctx.error(
                ("training", "offload_weights"),
                "the moe strategy does not stream weights from Streaming Memory; set "
                "offload_weights: false (offload_optimizer_state is supported)",
            )
        model, ms = _moe_layers(ctx, scenario_model(ctx), p)
        place = _check_placement(ctx, ms.experts, p.experts is not None)
        n = place.chips
        expected = tp.micro_batch * tp.grad_accum * n * tp.samples_per_input
        if tp.global_batch is not None and abs(tp.global_batch - expected) > 1e-9:
            raise ctx.error(
                ("training", "global_batch"),
                f"global_batch {tp.global_batch} != micro_batch {tp.micro_batch} x grad_accum "
                f"{tp.grad_accum} x {n} chips x samples_per_input {tp.samples_per_input:g} = "
                f"{expected:g}; change one of them so they agree",
            )
        segs, moe_idx = _segments(model)
        ct = ctx.system.chips[0].type
        grads = model.needs_input_grad
        costs = Costs(
            [stage_cost([model.layers[i] for i in s], [grads[i] for i in s], tp, ct) for s in segs],
            stage_cost([_router_layer(ms, p.noisy_gating)], [grads[moe_idx[0]]], tp, ct),
            [grads[i] for i in moe_idx],
            ct,
            tp,
            ms,
        )
        tokens = tp.micro_batch * ms.seq
        _check_routing_size(ctx, p, len(moe_idx), tp.grad_accum, n, tokens, ms)
        cap = capacity(tokens, ms.experts, ms.top_k, p.capacity_factor)
        counts = routing_counts(
            p.routing,
            seed=ctx.scenario.scenario.seed,
            layers=len(moe_idx),
            micro_batches=tp.grad_accum,
            chips=n,
            tokens=tokens,
            experts=ms.experts,
            top_k=ms.top_k,
            skew=p.skew,
            d_model=ms.hidden,
            vocab=p.reference_vocab,
            token_zipf=p.reference_token_zipf,
            noisy=p.noisy_gating,
        )
        traffic_ = [
            [traffic(counts[k, m], place, cap, p.static_capacity) for m in range(tp.grad_accum)]
            for k in range(len(moe_idx))
        ]
        plans = {c: _memory(model, costs, place, traffic_, tp, c) for c in range(n)}
        info: dict[str, Any] = {
            "model": model,
            "training": tp,
            "memory": plans,
            "global_batch": expected,
            "params": p,
            "shape": ms,
            "placement": place,
            "capacity": cap,
            "traffic": traffic_,
            "tokens": tokens,
            "warnings": [],
        }
        bad = [(c, mp) for c, mp in plans.items() if not mp.fits]
        if bad:
            return infeasible_plan(info, bad)
        gb = _Graph(ctx, p, costs, place, traffic_, plans)
        gb.step()
        info["built"] = Built(
            gb.g,
            costs,
            place,
            cap,
            traffic_,
            sum(s.params for s in costs.segments) + len(moe_idx) * costs.router.params,
            _expert_params(ms),
            gb.bytes,
            gb.useful,
        )
        return Plan(gb.g, info)

    def summarise(self, ctx, plan, trace):  # type: ignore[no-untyped-def]
        from strategies.moe_result import summarise

        return summarise(ctx, plan, trace)


register(Moe())

__all__ = ["Moe", "MoeParams"]
