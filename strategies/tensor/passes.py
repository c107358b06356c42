"""A stage's forward, recompute and backward passes with tensor parallelism: segments of
compute joined by the tensor group's collectives.

Without tensor parallelism a pass is one compute -> exchange -> sync phase
(:func:`strategies.training.add_phase`). With it, the pass stops at every collective the split
needs (:mod:`strategies.tensor.shard`): the layers up to it are one phase on the group's first
chip, then a :class:`~simulator.engine.tasks.Collective` over the group's chips (ring order
along IPU-Links) runs on the real links, holding every chip of the group, and the next segment
waits for it. Backward passes walk the layers in reverse. A recompute pass (checkpointing)
repeats the forward collectives except the loss terms (kept from the forward pass).

The chips of a group do the same work on equal shards, so the first chip's compute is simulated
and the others are its twins (their breakdown is its, as replicas' are replica 0's); every chip
of the group takes part in each collective, sends its own boundary transfer, reads its own
input and streams its own shard. Only replica 0's groups are simulated: other replicas' groups
use their own chips and the links between them (the same machine), as their pipelines do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from simulator.engine.collectives import ring_order
from simulator.engine.graph import TaskGraph
from simulator.engine.tasks import Collective
from simulator.strategy import PlanContext
from simulator.workloads.model import Model
from strategies.tensor.closed_form import collective_seconds
from strategies.tensor.shard import Comm, LayerSplit
from strategies.training import ZERO, PhaseCost, StageCost, TrainingParams, add_phase, stage_cost

if TYPE_CHECKING:
    from strategies.pipeline import Layout

Phase = Literal["F", "R", "B"]
KIND: dict[str, Literal["compute", "recompute"]] = {
    "F": "compute",
    "R": "recompute",
    "B": "compute",
}


@dataclass(frozen=True)
class CommAt:
    """A collective after (or before, or inside) layer ``layer``."""

    comm: Comm
    layer: str


@dataclass(frozen=True)
class Segment:
    """Compute between two collectives; ``tag`` is added to its label (`` experts``)."""

    cost: PhaseCost
    tag: str = ""


Item = Segment | CommAt
#: A layer's cost in the parts a mid-layer collective separates, in forward order (a MoE
#: layer: router, then experts); most layers are one part.
Parts = tuple[StageCost, ...]
ReplicaGroups = Callable[[int], list[tuple[int, ...]]]


class TensorPasses:
    """The passes of every virtual stage, as segments and collectives.

    ``parts``: layers whose cost is given in parts (default: each layer costed whole);
    ``replica_groups(d)``: the groups of stage ``d``'s chips across replicas for collectives of
    scope ``replicas``, the group holding replica 0's chip first.
    """

    def __init__(
        self,
        ctx: PlanContext,
        model: Model,
        splits: tuple[LayerSplit, ...],
        tp: TrainingParams,
        lay: Layout,
        parts: dict[int, Parts] | None = None,
        replica_groups: ReplicaGroups | None = None,
    ) -> None:
        self.ctx, self.tp, self.lay = ctx, tp, lay
        self.system = ctx.system
        self.ct = self.system.chips[lay.chips[0][0]].type
        self.replica_groups = replica_groups
        grads = model.needs_input_grad
        cache: dict[tuple[Any, bool], StageCost] = {}
        given = parts or {}

        def cost(i: int) -> Parts:
            if i in given:
                return given[i]
            key = (model.layers[i], grads[i])
            if key not in cache:
                cache[key] = stage_cost([model.layers[i]], [grads[i]], tp, self.ct)
            return (cache[key],)

        self.programs: dict[tuple[int, str], list[Item]] = {}
        self.groups: list[tuple[int, ...]] = []
        self.seconds: list[float] = []
        for j, ls in enumerate(lay.vstage_layers):
            group = tuple(ring_order(self.system, lay.group(0, j % lay.stages)))
            self.groups.append(group)
            total = 0.0
            recomputes = any(
                p.recompute.flops or p.recompute.compute_s for i in ls for p in cost(i)
            )
            for phase in ("F", "R", "B"):
                items = _program(ls, phase, model, splits, cost)
                self.programs[(j, phase)] = items
                if phase == "R" and not recomputes:
                    continue
                for it in items:
                    if isinstance(it, CommAt):
                        c = it.comm
                        total += collective_seconds(
                            self.system,
                            c.kind,
                            self._groups(j, c)[0],
                            c.nbytes(tp.micro_batch, tp.dtype),
                            c.dtype(tp.dtype),
                        )
            self.seconds.append(total)

    def _groups(self, j: int, c: Comm) -> list[tuple[int, ...]]:
        if c.scope == "replicas":
            assert self.replica_groups is not None
            return self.replica_groups(j % self.lay.stages)
        return [self.groups[j]]

    def run(self, g: TaskGraph, j: int, phase: Phase, deps: list[int], label: str) -> int:
        """Add virtual stage ``j``'s ``phase`` pass after ``deps``; return its last task.

        A collective of scope ``replicas`` runs in every group of the stage's chips (the other
        replicas' groups beside replica 0's, gating nothing: their traffic shares the links)."""
        chip = self.lay.chip_of_vstage(0, j)
        tp = self.tp
        last = list(deps)
        done: int | None = None
        for it in self.programs[(j, phase)]:
            if isinstance(it, CommAt):
                c = it.comm
                tasks = [
                    g.add(
                        Collective(
                            c.kind,
                            group,
                            c.nbytes(tp.micro_batch, tp.dtype),
                            "auto",
                            dtype=c.dtype(tp.dtype),
                            label=f"{'tp' if c.scope == 'tensor' else 'ep'} {label} "
                            f"{it.layer}: {c.what}",
                        ),
                        last,
                    )
                    for group in self._groups(j, c)
                ]
                done = tasks[0]
            else:
                done = add_phase(
                    g, chip, it.cost, self.ct, last, label + it.tag, kind=KIND[phase]
                )
            last = [done]
        if done is None:
            done = add_phase(g, chip, ZERO, self.ct, deps, label, kind=KIND[phase])
        return done


def _program(
    layers: list[int],
    phase: str,
    model: Model,
    splits: tuple[LayerSplit, ...],
    cost: Callable[[int], Parts],
) -> list[Item]:
    """Segments and collectives of one pass over ``layers`` (reverse order for ``B``)."""
    items: list[Item] = []
    acc = ZERO

    def flush(tag: str = "") -> None:
        nonlocal acc
        if acc.compute_s or acc.exchange_s or acc.syncs or acc.flops:
            items.append(Segment(acc, tag))
        acc = ZERO

    def comms(cs: tuple[Comm, ...], name: str) -> None:
        for c in cs:
            flush()
            items.append(CommAt(c, name))

    def phase_cost(sc: StageCost) -> PhaseCost:
        return sc.forward if phase == "F" else sc.recompute if phase == "R" else sc.backward

    forward = phase in ("F", "R")
    for i in layers if forward else reversed(layers):
        sp, name = splits[i], model.layers[i].name
        parts = cost(i) if forward else tuple(reversed(cost(i)))
        before = sp.fwd_before if forward else sp.bwd_before
        after = sp.fwd_after if forward else sp.bwd_after
        if phase == "R":  # the loss terms are kept from the forward pass
            after = tuple(c for c in after if not c.what.startswith("loss"))
        comms(before, name)
        if len(parts) == 1:
            acc = acc + phase_cost(parts[0])
        else:  # a MoE layer: router (forward first), its collectives, experts (own segment)
            expert_first = not forward
            for k, part in enumerate(parts):
                experts = (k == 0) == expert_first
                if experts:
                    flush()
                acc = acc + phase_cost(part)
                if experts:
                    flush(" experts")
                if k == 0:
                    comms(sp.fwd_mid if forward else sp.bwd_mid, name)
        comms(after, name)
    flush()
    return items


__all__ = ["CommAt", "Parts", "Segment", "TensorPasses"]
