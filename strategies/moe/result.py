"""The moe strategy's result: a TrainingResult plus routing figures (docs/strategies/moe.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simulator.analytic import TransferSpec, exchange_estimate, path_model, steps_estimate
from simulator.analytic import transfer_flows as flows_of
from simulator.engine.collectives import ring_order
from simulator.engine.collectives import schedule as collective_steps
from simulator.engine.tasks import Compute
from simulator.engine.trace import Trace
from simulator.metrics import EngineStats, TrainingAnalytic, TrainingResult
from simulator.strategy import Plan, PlanContext
from simulator.workloads.layers import DTYPE_BYTES
from strategies.moe.routing import Traffic
from strategies.summary import chip_breakdown, memory_seconds, result_fields
from strategies.training import describe_memory, gradient_bytes


@dataclass(frozen=True)
class MoeResult(TrainingResult):
    """TrainingResult (``replicas`` = chips: the non-expert layers are data-parallel) plus:

    * ``experts``, ``top_k``, ``capacity_factor``, ``static_capacity``, ``routing``;
      ``experts_per_chip`` (E/N, at least 1) and ``chips_per_expert`` (N/E, at least 1).
    * ``tokens_per_chip``: T = micro_batch x seq_len, a chip's tokens per micro-batch.
    * ``expert_capacity``: C = ceil(top_k x T x capacity_factor / E) per (source chip,
      expert) per micro-batch.
    * ``routed_assignments_per_step`` / ``dropped_assignments_per_step``: (token, expert)
      assignments over every MoE layer, micro-batch and chip, and those over capacity.
    * ``dropped_token_fraction``: dropped / routed; ``dropped_fraction_per_layer`` the same per
      MoE layer.
    * ``expert_load``: max over MoE layers and micro-batches of (busiest expert's routed
      assignments / the mean over experts), before capacity; ``expert_load_per_layer``.
    * ``expert_rows_imbalance``: max over chips / mean of the rows a chip's experts compute
      per step (1.0 with static capacity: the padding is computed).
    * ``all_to_all_bytes_per_step``: off-chip bytes of every dispatch, combine and their
      backward counterparts; ``all_to_all_bytes_by_tag`` split by exchange.
    """

    experts: int = 0
    top_k: int = 0
    capacity_factor: float = 0.0
    static_capacity: bool = True
    routing: str = ""
    experts_per_chip: int = 1
    chips_per_expert: int = 1
    tokens_per_chip: int = 0
    expert_capacity: int = 0
    routed_assignments_per_step: int = 0
    dropped_assignments_per_step: int = 0
    dropped_token_fraction: float = 0.0
    dropped_fraction_per_layer: list[float] = field(default_factory=list)
    expert_load: float = 1.0
    expert_load_per_layer: list[float] = field(default_factory=list)
    expert_rows_imbalance: float = 1.0
    all_to_all_bytes_per_step: float = 0.0
    all_to_all_bytes_by_tag: dict[str, float] = field(default_factory=dict)

    def text(self) -> str:
        """The training summary plus the routing figures."""
        lines = [
            super().text(),
            f"  experts         {self.experts} (top-{self.top_k}), capacity factor "
            f"{self.capacity_factor:g} -> C = {self.expert_capacity} per (chip, expert), "
            f"{'static' if self.static_capacity else 'dynamic'} shapes, routing {self.routing}",
            f"  dropped         {self.dropped_token_fraction:.2%} of "
            f"{self.routed_assignments_per_step:,} assignments; expert load "
            f"{self.expert_load:.2f}x mean",
            f"  all-to-all      {self.all_to_all_bytes_per_step / 2**20:,.1f} MiB per step",
        ]
        return "\n".join(lines)


def _layer_load(per_mb: list[Traffic], experts: int) -> float:
    out = 1.0
    for t in per_mb:
        per = t.assigned.sum(axis=0)
        mean = per.sum() / experts
        out = max(out, float(per.max() / mean) if mean else 1.0)
    return out


def routing_fields(plan: Plan) -> dict[str, Any]:
    """The MoE fields of the result (known before simulating)."""
    info = plan.info
    p, ms, place, tr = info["params"], info["shape"], info["placement"], info["traffic"]
    routed = sum(int(t.assigned.sum()) for per in tr for t in per)
    dropped = sum(int(t.dropped.sum()) for per in tr for t in per)
    rows = np.zeros(place.chips)
    for per in tr:
        for t in per:
            rows += [t.chip_rows(c) for c in range(place.chips)]
    built = info.get("built")
    by_tag = dict(built.all_to_all_bytes) if built is not None else {}
    return dict(
        experts=ms.experts,
        top_k=ms.top_k,
        capacity_factor=p.capacity_factor,
        static_capacity=p.static_capacity,
        routing=p.routing if p.routing != "zipf" else f"zipf(skew={p.skew:g})",
        experts_per_chip=place.experts_per_chip,
        chips_per_expert=max(1, place.chips // place.experts),
        tokens_per_chip=info["tokens"],
        expert_capacity=info["capacity"],
        routed_assignments_per_step=routed,
        dropped_assignments_per_step=dropped,
        dropped_token_fraction=dropped / routed if routed else 0.0,
        dropped_fraction_per_layer=[
            sum(int(t.dropped.sum()) for t in per) / max(1, sum(int(t.assigned.sum()) for t in per))
            for per in tr
        ],
        expert_load=max((_layer_load(per, ms.experts) for per in tr), default=1.0),
        expert_load_per_layer=[_layer_load(per, ms.experts) for per in tr],
        expert_rows_imbalance=float(rows.max() / rows.mean()) if rows.mean() else 1.0,
        all_to_all_bytes_per_step=sum(by_tag.values()),
        all_to_all_bytes_by_tag=by_tag,
    )


def summarise(ctx: PlanContext, plan: Plan, trace: Trace | None) -> MoeResult:
    """The result of a moe plan (and its trace when feasible)."""
    info = plan.info
    tp, model = info["training"], info["model"]
    n = ctx.system.num_chips
    common: dict[str, Any] = dict(
        **result_fields(
            ctx,
            "moe",
            model.name,
            tp,
            chips=n,
            stages=1,
            replicas=n,
            schedule=None,
            global_batch=info["global_batch"],
            memory={str(c): describe_memory(mp) for c, mp in sorted(info["memory"].items())},
            warnings=list(info["warnings"]),
        ),
        **routing_fields(plan),
    )
    if not plan.feasible or trace is None:
        return MoeResult(
            feasible=False,
            reason=plan.reason,
            step_time_s=None,
            throughput_samples_per_s=None,
            **common,
        )
    built = info["built"]
    step = trace.makespan
    breakdown, mean = chip_breakdown(ctx, trace, {c: c for c in range(n)}, step)
    peak = sum(ctx.system.chips[c].type.peak_flops(tp.dtype) for c in range(n))
    return MoeResult(
        feasible=True,
        reason=None,
        step_time_s=step,
        throughput_samples_per_s=info["global_batch"] / step if step > 0 else None,
        flop_utilisation=built.useful_flops / (step * peak) if step > 0 else None,
        breakdown=breakdown,
        breakdown_mean=mean,
        analytic=analytic(ctx, plan, step),
        engine=EngineStats.of(trace, len(plan.graph)),
        **common,
    )


def analytic(ctx: PlanContext, plan: Plan, simulated: float) -> TrainingAnalytic:
    """BSP closed form: every all-to-all waits for the slowest chip, so per micro-batch the
    step is the sum of each phase's slowest chip plus each exchange's closed form."""
    info = plan.info
    built, tp, p = info["built"], info["training"], info["params"]
    c, place, system = built.costs, built.place, ctx.system
    ct = c.ct
    elem = c.ms.hidden * DTYPE_BYTES[tp.dtype]
    paths = path_model(system)
    seg = sum(
        s.forward.seconds(ct) + s.recompute.seconds(ct) + s.backward.seconds(ct) for s in c.segments
    )
    router = c.router.forward.seconds(ct) + c.router.backward.seconds(ct)
    experts = exchange = 0.0
    for k, per in enumerate(built.traffic):
        for t in per:
            fwd = bwd = 0.0
            for chip in range(place.chips):
                costs = [c.expert(r, c.moe_grad[k]) for r in t.expert_rows[chip] if r]
                fwd = max(fwd, sum(x.forward.seconds(ct) for x in costs))
                bwd = max(bwd, sum(x.backward.seconds(ct) for x in costs))
            experts += fwd + bwd + router
            specs = [TransferSpec(a, b, r * elem) for (a, b), r in t.pair_rows.items()]
            back = [TransferSpec(b, a, r * elem) for (a, b), r in t.pair_rows.items()]
            one = exchange_estimate(paths, flows_of(paths, specs)).estimate_s
            two = exchange_estimate(paths, flows_of(paths, back)).estimate_s
            exchange += 2 * one + (2 if c.moe_grad[k] else 1) * two
            if not p.static_capacity:
                exchange += (4 if c.moe_grad[k] else 3) * ct.sync_latency_s
    pipe = tp.grad_accum * seg + experts + exchange
    rate = ct.tiles * ct.clock_hz * ct.vector_flop_per_cycle[tp.dtype]

    def ring(group: tuple[int, ...], params: int) -> float:
        if len(group) < 2 or not params:
            return 0.0
        steps = collective_steps(
            system,
            "all_reduce",
            ring_order(system, list(group)),
            gradient_bytes(params, tp),
            p.all_reduce,
            elem_bytes=DTYPE_BYTES[tp.dtype],
        )
        return steps_estimate(system, steps, None, rate).estimate_s

    coll = ring(tuple(range(place.chips)), built.non_expert_params)
    if place.chips > place.experts:  # the experts' all-reduces run side by side
        coll += max(
            ring(place.replicas_of(e), built.expert_params * len(built.traffic))
            for e in range(place.experts)
        )
    opt = 0.0
    for t in plan.graph.nodes:
        task = t.task
        if isinstance(task, Compute) and task.kind == "optimizer" and task.chip == 0:
            opt += (task.cycles or 0.0) / ct.clock_hz
    mem = memory_seconds(ctx, plan)
    est = pipe + coll + opt + mem
    return TrainingAnalytic(
        est,
        simulated,
        simulated / est - 1 if est > 0 else 0.0,
        "M x (non-MoE layers fwd + bwd) + per MoE layer and micro-batch: router + slowest "
        "chip's experts (fwd, bwd) + each all-to-all's closed form; + gradient all-reduces "
        "(closed form; the experts' side by side) + the update + the busiest machine's "
        "Streaming Memory traffic / its bandwidth",
        {
            "layers_s": tp.grad_accum * seg,
            "experts_s": experts,
            "all_to_all_s": exchange,
            "collective_s": coll,
            "optimizer_s": opt,
        },
    )
