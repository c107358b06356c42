"""Ensemble members that are pipelines (``strategy.stages`` > 1) or tensor-parallel pipelines
(``strategy.tensor_parallel`` > 1): N independent members, each a pipeline x data layout of K
stages x T-chip tensor groups x R replicas over its own G = K x T x R chips.

Member 0 is planned by the pipeline planner (:func:`strategies.pipeline.plan_layout`, its
passes, boundary transfers, tensor-group collectives, gradient collectives between its replicas
and its step end); the other members are its twins on their own chips — independent members
share no link (each member's chips are a block of consecutive chips, its routes stay inside
it), so simulating them would add nothing that contends with member 0. The step's samples are
every member's. Codistillation (teachers' forward passes, the prediction exchange) is planned
for one-stage members only and is refused here, naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from simulator.engine.trace import Trace
from simulator.metrics import TrainingResult
from simulator.strategy import Plan, PlanContext
from strategies.pipeline import (
    Layout,
    PipelineParams,
    plan_layout,
    replica_chips,
    split_check,
    stage_layers,
)
from strategies.training import scenario_model, training_params

if TYPE_CHECKING:
    from strategies.ensemble import EnsembleParams

from strategies.ensemble import EnsembleResult


def plan_pipelined(ctx: PlanContext, p: EnsembleParams, groups: list[list[int]]) -> Plan:
    """Member 0's pipeline plan, with the ensemble's facts for the summary."""
    if p.codistillation != "none":
        raise ctx.error(
            ("strategy", "codistillation"),
            f"codistillation {p.codistillation} is planned for members of one stage without "
            "tensor groups (stages: 1, tensor_parallel: 1): a teacher's forward pass through a "
            "pipelined member and the prediction exchange between last stages are not; use "
            "codistillation: none with pipelined or tensor-parallel members",
        )
    t, k = p.tensor_parallel, p.stages
    model = split_check(ctx, t, p.tensor_collective) or scenario_model(ctx)
    g = len(groups[0])
    if g % (k * t):
        raise ctx.error(
            ("strategy", "stages"),
            f"a member's {g} chips do not divide into {k} stage(s) x {t} tensor-parallel "
            f"chip(s) (K x T = {k * t} must divide the {g} chips; see member_chips)",
        )
    replicas = g // (k * t)
    pp = PipelineParams(
        stages=k, replicas=replicas, schedule=p.schedule, layers_per_stage=p.layers_per_stage
    )
    lay = Layout(
        k,
        replicas,
        1,
        p.schedule,
        stage_layers(ctx, model, pp),
        replica_chips(ctx, k, replicas, first=groups[0][0]) if t == 1 else [],
        p.all_reduce,
        p.replicated_tensor_sharding,
        tensor_key=True,
    )
    if t > 1:
        from strategies.tensor import split_layout

        lay = split_layout(ctx, lay, model, t, p.tensor_collective, chips=groups[0])
    idle = ctx.system.num_chips - p.members * g
    if idle:
        lay.warnings.append(f"ensemble: {idle} of {ctx.system.num_chips} chips are idle")
    plan = plan_layout(ctx, lay, model, copies=p.members)
    tp = training_params(ctx)
    plan.info.update(
        params=p,
        groups=groups,
        member_batch=tp.micro_batch * tp.grad_accum * replicas * tp.samples_per_input,
        pipelined=True,
    )
    return plan


@dataclass(frozen=True)
class PipelinedEnsembleResult(EnsembleResult):
    """EnsembleResult of members that are pipelines (docs/strategies/ensemble.md): ``stages``
    is each member's K, ``replicas`` every member's replicas together (N x R), and the member's
    own layout below (its tensor groups as :class:`~strategies.tensor.result.TensorResult`
    states them)."""

    member_stages: int = 1
    member_replicas: int = 1
    member_tensor_parallel: int = 1
    member_tensor: dict[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        lines = super().text().split("\n")
        extra = (
            f"  each member     {self.member_stages} stage(s) x {self.member_replicas} "
            f"replica(s)"
            + (
                f" x {self.member_tensor_parallel}-chip tensor groups: "
                f"{self.member_tensor.get('tensor_placement', '')}"
                if self.member_tensor_parallel > 1
                else ""
            )
        )
        lines.insert(2, extra)
        return "\n".join(lines)


def summarise_pipelined(ctx: PlanContext, plan: Plan, trace: Trace | None) -> TrainingResult:
    """Member 0's pipeline result, widened to every member's chips."""
    from strategies.summary import summarise

    info = plan.info
    p: EnsembleParams = info["params"]
    groups: list[list[int]] = info["groups"]
    lay: Layout = info["layout"]
    one = summarise(ctx, plan, trace, "ensemble")
    base = {f.name: getattr(one, f.name) for f in fields(TrainingResult)}

    def widen(per_chip: dict[str, Any]) -> dict[str, Any]:
        """Member 0's chips' entries, copied to the same position in every member."""
        out = {}
        for grp in groups:
            for pos, chip in enumerate(grp):
                if str(groups[0][pos]) in per_chip:
                    out[str(chip)] = per_chip[str(groups[0][pos])]
        return dict(sorted(out.items(), key=lambda kv: int(kv[0])))

    base.update(
        chips=len(groups) * len(groups[0]),
        replicas=len(groups) * lay.replicas,
        memory=widen(one.memory),
        breakdown=widen(one.breakdown),
    )
    step = one.step_time_s
    tensor = {
        k: getattr(one, k)
        for k in ("tensor_placement", "tensor_groups", "tensor_collectives")
        if hasattr(one, k)
    }
    return PipelinedEnsembleResult(
        **base,
        members=p.members,
        member_chips=len(groups[0]),
        codistillation=p.codistillation,
        member_global_batch=info["member_batch"],
        member_throughput_samples_per_s=info["member_batch"] / step if step else None,
        step_without_exchange_s=step,
        member_stages=lay.stages,
        member_replicas=lay.replicas,
        member_tensor_parallel=lay.tensor,
        member_tensor=tensor,
    )


__all__ = ["PipelinedEnsembleResult", "plan_pipelined", "summarise_pipelined"]
