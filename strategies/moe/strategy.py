"""Mixture of experts: expert parallelism x data parallelism (``type: moe``).

Every chip is a data-parallel replica of the non-expert layers (micro-batch ``b`` of
sequences, T = b x seq_len tokens per micro-batch) and holds a share of each MoE layer's E
experts (:class:`~strategies.moe.routing.Placement`). Per micro-batch, per MoE layer, forward:

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

This module plans: it checks the scenario, applies the routing and the memory of each chip,
and asks :mod:`.graph` for the step; the costs are :mod:`.costs`', the result :mod:`.result`'s.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from simulator.config.limits import LIMITS_DOC, MAX_ROUTING_CELLS
from simulator.strategy import Plan, PlanContext, register
from simulator.workloads.memory import MemoryPlan
from simulator.workloads.model import Model
from strategies.moe.costs import (
    Costs,
    expert_params,
    expert_row_elems,
    moe_layers,
    router_layer,
)
from strategies.moe.graph import Built, StepGraph
from strategies.moe.params import MoeParams
from strategies.moe.routing import Placement, Traffic, capacity, routing_counts, traffic
from strategies.training import (
    TrainingParams,
    scenario_model,
    stage_cost,
    stage_memory,
    training_params,
)


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
    per_row = expert_row_elems(ms)
    layers, k = [], 0
    for x in model.layers:
        if x.kind == "moe_ffn":
            rows = max(t.chip_rows(chip) for t in traffic_[k])
            x = replace(
                x,
                params=costs.router.params + local * expert_params(ms),
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
        model, ms = moe_layers(ctx, scenario_model(ctx), p)
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
            stage_cost([router_layer(ms, p.noisy_gating)], [grads[moe_idx[0]]], tp, ct),
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
        gb = StepGraph(ctx, p, costs, place, traffic_, plans)
        gb.step()
        info["built"] = Built(
            gb.g,
            costs,
            place,
            cap,
            traffic_,
            sum(s.params for s in costs.segments) + len(moe_idx) * costs.router.params,
            expert_params(ms),
            gb.bytes,
            gb.useful,
        )
        return Plan(gb.g, info)

    def summarise(self, ctx, plan, trace):  # type: ignore[no-untyped-def]
        from strategies.moe.result import summarise

        return summarise(ctx, plan, trace)


register(Moe())

__all__ = ["Moe", "MoeParams"]
