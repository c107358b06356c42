"""The result of a tensor-parallel plan: a TrainingResult plus where the groups are and what
their activation collectives cost (docs/strategies/tensor_parallel.md, "Result fields")."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from simulator.breakdown import critical_path
from simulator.engine.tasks import Collective
from simulator.engine.trace import Trace
from simulator.metrics import TrainingResult
from simulator.present import plural
from simulator.strategy import Plan
from strategies.tensor.closed_form import layer_wire_bytes, wire_bytes
from strategies.tensor.passes import CommAt

if TYPE_CHECKING:
    from strategies.tensor.layout import Sharded

MIB = 2**20


@dataclass(frozen=True)
class TensorResult(TrainingResult):
    """TrainingResult of a layout with tensor groups (``tensor_parallel`` > 1).

    ``tensor_groups``: the chips of every group, replica-major then stage (rank order);
    ``tensor_placement``: where they landed; ``tensor_collectives``: the activation
    collectives of one step (docs/strategies/tensor_parallel.md).
    """

    tensor_parallel: int = 1
    tensor_collective: str = "all_reduce"
    tensor_placement: str = ""
    tensor_groups: list[list[int]] = field(default_factory=list)
    tensor_collectives: dict[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        """TrainingResult's summary plus the tensor-parallel lines."""
        lines = super().text().split("\n")
        stages = plural(self.stages, "stage")
        lines[0] = lines[0].replace(
            f"x {stages}", f"x {stages} x {self.tensor_parallel}-chip tensor groups", 1
        )
        extra = [
            f"  tensor parallel T={self.tensor_parallel} ({self.tensor_collective}): "
            f"{self.tensor_placement}"
        ]
        tc = self.tensor_collectives
        if tc.get("per_step"):
            s = tc["per_step"]
            extra.append(
                f"  activation comms {s['count']:,} group collectives per step, "
                f"{s['buffer_bytes'] / MIB:,.1f} MiB per chip "
                f"({s['wire_bytes_per_chip'] / MIB:,.1f} MiB on the wire)"
            )
        if tc.get("busiest_stage_s") is not None:
            extra.append(
                f"  per stage       {tc['busiest_stage_s'] * 1e3:,.3f} ms in them on the "
                f"busiest stage (closed form {tc['busiest_stage_closed_form_s'] * 1e3:,.3f} ms), "
                f"{tc['critical_path_s'] * 1e3:,.3f} ms on the critical path"
            )
        return "\n".join([lines[0], *extra, *lines[1:]])


def tensor_result(
    sh: Sharded, plan: Plan, trace: Trace | None, fields: dict[str, Any]
) -> TensorResult:
    """The TensorResult of a planned (and, if feasible, executed) tensor-parallel layout."""
    lay = sh.lay
    assert lay is not None
    groups = [list(grp) for row in (lay.groups or []) for grp in row]
    extra: dict[str, Any] = dict(
        tensor_parallel=sh.tensor,
        tensor_collective=sh.mode,
        tensor_placement=sh.placement.statement,
        tensor_groups=groups,
    )
    if trace is not None and sh.built is not None:
        extra["tensor_collectives"] = _collectives(sh, plan, trace)
    return TensorResult(**fields, **extra)


def _collectives(sh: Sharded, plan: Plan, trace: Trace) -> dict[str, Any]:
    """What one step's group collectives moved and took (replica 0's groups)."""
    lay, built, tp = sh.lay, sh.built, sh.tp
    assert lay is not None and built is not None and tp is not None
    t = sh.tensor
    count = 0
    buffer = wire = 0.0
    per_stage: dict[int, float] = defaultdict(float)
    stage_of = {frozenset(lay.group(0, k)): k for k in range(lay.stages)}
    tp_tasks: list[tuple[int, Collective]] = [
        (node.id, node.task)
        for node in plan.graph.nodes
        if isinstance(node.task, Collective) and node.task.label.startswith("tp ")
    ]
    for tid, task in tp_tasks:
        count += 1
        buffer += task.bytes
        wire += wire_bytes(task.kind, t, task.bytes)
        if not task.label.startswith("tp step"):  # the passes' (the step end's apart)
            seconds = trace.task_end[tid] - trace.task_start[tid]
            per_stage[stage_of[frozenset(task.group)]] += seconds
    closed = [
        tp.grad_accum
        * sum(built.seconds[j] for j in range(len(built.seconds)) if j % lay.stages == d)
        for d in range(lay.stages)
    ]
    busiest = max(range(lay.stages), key=lambda d: per_stage.get(d, 0.0))
    path = set(critical_path(plan.graph, trace))
    on_path = sum(trace.task_end[i] - trace.task_start[i] for i, _ in tp_tasks if i in path)
    out: dict[str, Any] = {
        "per_step": {
            "count": count,
            "buffer_bytes": buffer,
            "wire_bytes_per_chip": wire,
        },
        "per_layer": _per_layer(sh),
        "busiest_stage": busiest,
        "busiest_stage_s": per_stage.get(busiest, 0.0),
        "busiest_stage_closed_form_s": closed[busiest],
        "critical_path_s": on_path,
    }
    return out


def _per_layer(sh: Sharded) -> dict[str, Any]:
    """The collectives of the first attention and FFN layers (per micro-batch and chip), and
    the closed form of a transformer layer."""
    tp = sh.tp
    assert tp is not None
    out: dict[str, Any] = {}
    seen: set[str] = set()
    for x, sp in zip(sh.full.layers, sh.splits, strict=True):
        if x.kind in seen or not (sp.comms("F") or sp.comms("B")):
            continue
        seen.add(x.kind)
        out[x.kind] = {
            "layer": x.name,
            "split": sp.how,
            "forward": [
                {"kind": c.kind, "what": c.what, "bytes": c.nbytes(tp.micro_batch, tp.dtype)}
                for c in sp.comms("F")
            ],
            "backward": [
                {"kind": c.kind, "what": c.what, "bytes": c.nbytes(tp.micro_batch, tp.dtype)}
                for c in sp.comms("B")
            ],
        }
    blocks = [x for x in sh.full.layers if x.kind in ("attention", "ffn")]
    if blocks:
        m = blocks[0].output_elems * tp.micro_batch * {"fp16": 2, "fp32": 4}[tp.dtype]
        out["transformer_layer_closed_form"] = {
            "activation_bytes": m,
            "collectives": "2 forward + 2 backward all-reduces (or reduce-scatter + all-gather)",
            "wire_bytes_per_chip": layer_wire_bytes(sh.tensor, m),
        }
    return out


__all__ = ["CommAt", "TensorResult", "tensor_result"]
