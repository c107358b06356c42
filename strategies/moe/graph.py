"""One training step of the moe strategy as a task graph (the algorithm: :mod:`.strategy`).

:class:`StepGraph` lays out, per micro-batch, every chip's non-MoE segments, the router (with
the gate noise on the RNG units), the dispatch and combine exchanges of each MoE layer's groups
(one ``all_to_all`` Collective when every pair moves the same bytes, else a Sync and one
Transfer per pair), the experts' FFNs on the rows each chip received, and the backward in
reverse; then the gradient all-reduces and each chip's update. :class:`Built` is what the
result (:mod:`.result`) reads back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from simulator.engine.collectives import ring_order
from simulator.engine.graph import TaskGraph
from simulator.engine.tasks import Collective, MemLoad, MemStore, Rng, Sync, Transfer
from simulator.strategy import PlanContext
from simulator.workloads import layers as L
from simulator.workloads.cost import optimizer_cost
from simulator.workloads.memory import MemoryPlan
from strategies.moe.costs import Costs, expert_params
from strategies.moe.params import MoeParams
from strategies.moe.routing import Placement, Traffic
from strategies.training import PhaseCost, add_phase, end_step_on_hosts, gradient_bytes

#: the four exchanges of each MoE layer (labels and keys of ``all_to_all_bytes``)
TAGS = ("dispatch", "combine", "dispatch_grad", "combine_grad")


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


class StepGraph:
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
        expert = expert_params(c.ms)
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


__all__ = ["TAGS", "Built", "StepGraph"]
