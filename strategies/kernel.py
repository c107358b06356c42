"""Kernel scenarios (``strategy.type: kernel``): one operation on one chip, for users who ask
"how fast is this op on this IPU" (docs/strategies/sparsity.md, "Kernel scenarios").

``op: matmul`` computes ``C[m×n] = A[m×k] · B[k×n]`` in ``dtype``. Dense, it is the tile cost
model of every training layer (:mod:`simulator.workloads.gemm`, the Jia19 calibration); with
``sparsity: {density, block, mode}`` A is block-sparse and the product is costed by
:mod:`simulator.workloads.sparse` (PopSparse-style partition; calibrated on the points of
validation/popsparse.yaml). The plan is one BSP program on one chip — compute, exchange,
syncs — run through the engine like every other plan; the result carries the dense kernel's
time for the same shape, so a sweep over density and block shows where sparse pays.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from simulator.config.base import NonNegativeInt, PositiveInt, StrictModel
from simulator.engine.graph import TaskGraph
from simulator.engine.tasks import Compute, Exchange, Sync
from simulator.engine.trace import Trace
from simulator.metrics import Analytic, EngineStats, KernelResult
from simulator.strategy import Plan, PlanContext, register
from simulator.workloads.gemm import Gemm, gemm_seconds, plan_gemm, tile_model
from simulator.workloads.layers import DTYPE_BYTES
from simulator.workloads.sparse import (
    BLOCKS,
    Sparsity,
    plan_spmm,
    sparse_operand_bytes,
    sparse_seconds,
)
from strategies.sparse.params import BlockPattern

KernelSparsity = BlockPattern  # strategy.sparsity: A (m × k) is block-sparse


class KernelParams(StrictModel):
    """Keys of ``strategy:`` for ``type: kernel``."""

    op: Literal["matmul"] = Field(description="The operation (matmul: C = A·B).")
    m: PositiveInt = Field(description="Rows of A and C.")
    k: PositiveInt = Field(description="Columns of A, rows of B (the contraction).")
    n: PositiveInt = Field(description="Columns of B and C.")
    dtype: Literal["fp16", "fp32"] = Field("fp16", description="Operands and result.")
    sparsity: KernelSparsity | None = Field(None, description="A is block-sparse (absent: dense).")
    chip: NonNegativeInt = Field(0, description="Which chip of the system runs it.")


def _memory(p: KernelParams, sp: Sparsity | None, ct: object) -> dict[str, int]:
    """Operands, indices, code and total SRAM of the kernel, against the chip's capacity."""
    from simulator.hardware.model import ChipType

    assert isinstance(ct, ChipType)
    nb = DTYPE_BYTES[p.dtype]
    if sp is None:
        a, meta = p.m * p.k * nb, 0
    else:
        a, meta = sparse_operand_bytes(p.m, p.k, sp, p.dtype, ct)
    operands = a + (p.k * p.n + p.m * p.n) * nb
    code = ct.tiles * tile_model(ct).code_base_per_tile_bytes
    return {
        "operands": operands,
        "metadata": meta,
        "code": code,
        "total": operands + meta + code,
        "capacity": ct.sram_bytes,
    }


class Kernel:
    """The kernel strategy."""

    name = "kernel"
    params = KernelParams

    def plan(self, ctx: PlanContext) -> Plan:
        p: KernelParams = ctx.params  # type: ignore[assignment]
        system = ctx.system
        if p.chip >= system.num_chips:
            raise ctx.error(
                ("strategy", "chip"),
                f"chip {p.chip} does not exist ({system.name} has chips "
                f"0..{system.num_chips - 1})",
            )
        ct = system.chips[p.chip].type
        if ct.cost is None:
            raise ctx.error(
                ("topology",),
                f"chip type '{ct.name}' has no per-tile cost model (amp_* keys in its chip file)",
            )
        sp = None
        if p.sparsity is not None:
            s = p.sparsity
            if p.m % s.block or p.k % s.block:
                fits = [b for b in BLOCKS if not p.m % b and not p.k % b]
                raise ctx.error(
                    ("strategy", "sparsity", "block"),
                    f"block {s.block} must divide m ({p.m}) and k ({p.k}), the sides of the "
                    f"sparse operand (choose one of {fits})",
                )
            if ct.sparse is None:
                raise ctx.error(
                    ("topology",),
                    f"chip type '{ct.name}' has no block-sparse model: its chip file needs a "
                    "`sparse:` section (see topologies/chips/bow.yaml)",
                )
            sp = s.pattern
        dense = plan_gemm(Gemm(p.m, p.n, p.k), p.dtype, ct)
        info: dict[str, object] = {
            "dense_plan": dense,
            "dense_time_s": gemm_seconds(dense, ct),
            "sparsity": sp,
            "memory": _memory(p, sp, ct),
        }
        if sp is None:
            cycles, xcycles, xbytes, syncs = (
                dense.compute_cycles,
                dense.exchange_cycles,
                dense.exchange_bytes,
                dense.syncs,
            )
            flops, path = float(dense.flops), "amp"
            partition = {"pm": dense.pm, "pn": dense.pn, "pk": dense.pk}
            tiles, estimate = dense.tiles_used, info["dense_time_s"]
        else:
            sparse = plan_spmm(p.m, p.k, p.n, sp, p.dtype, ct)
            cycles, xcycles, xbytes, syncs = (
                sparse.compute_cycles,
                sparse.exchange_cycles,
                sparse.exchange_bytes,
                sparse.syncs,
            )
            flops, path = float(sparse.flops), sparse.path
            partition = {"pm": sparse.pm, "pk": sparse.pk, "pn": sparse.pn}
            tiles, estimate = sparse.tiles_used, sparse_seconds(sparse, ct)
            info["sparse_plan"] = sparse
        info |= {
            "flops": flops,
            "path": path,
            "partition": {**partition, "tiles_used": tiles},
            "exchange_bytes": xbytes,
            "estimate_s": estimate,
        }
        g = TaskGraph()
        label = f"matmul {p.m}x{p.k}x{p.n}"
        last = g.add(
            Compute(
                p.chip,
                flops=flops,
                dtype=p.dtype,
                unit="amp" if path == "amp" else "vector",
                tiles=tiles,
                cycles=cycles,
                label=label,
            )
        )
        if xcycles > 0:
            last = g.add(
                Exchange(p.chip, xbytes, tiles=tiles, cycles=xcycles, label=label), [last]
            )
        g.add(Sync((p.chip,), count=syncs, label=label), [last])
        mem = info["memory"]
        assert isinstance(mem, dict)
        if mem["total"] > mem["capacity"]:
            mib = 2**20
            return Plan(
                TaskGraph(),
                info,
                feasible=False,
                reason=f"does not fit in SRAM: needs {mem['total'] / mib:,.1f} MiB of "
                f"{mem['capacity'] / mib:,.1f} MiB (operands {mem['operands'] / mib:,.1f} MiB); "
                "would help: a smaller n, or a sparser or smaller A",
            )
        return Plan(g, info)

    def summarise(self, ctx: PlanContext, plan: Plan, trace: Trace | None) -> KernelResult:
        p: KernelParams = ctx.params  # type: ignore[assignment]
        info = plan.info
        ct = ctx.system.chips[p.chip].type
        sp: Sparsity | None = info["sparsity"]
        dense_time = float(info["dense_time_s"])
        path = str(info["path"])
        t = trace.makespan if trace is not None and plan.feasible else None
        busy = trace.busy_by_kind(ctx.system.num_chips) if trace is not None else None
        by_kind = (
            {k: float(busy[k][p.chip]) for k in ("compute", "exchange", "sync")}
            if busy is not None
            else {}
        )
        peak = ct.peak_flops(p.dtype) if path == "amp" else ct.peak_vector_flops(p.dtype)
        flops = float(info["flops"])
        estimate = float(info["estimate_s"])
        return KernelResult(
            name=ctx.scenario.name,
            feasible=plan.feasible,
            reason=plan.reason,
            op=p.op,
            system=ctx.system.name,
            chip=p.chip,
            chip_type=ct.name,
            m=p.m,
            k=p.k,
            n=p.n,
            dtype=p.dtype,
            sparsity=None
            if sp is None
            else {"density": sp.density, "block": sp.block, "mode": sp.mode},
            time_s=t,
            flops=flops,
            dense_flops=2.0 * p.m * p.k * p.n,
            tflops=flops / t / 1e12 if t else None,
            efficiency=flops / t / peak if t else None,
            dense_time_s=dense_time,
            speedup_vs_dense=dense_time / t if t and sp is not None else None,
            path=path,
            partition=dict(info["partition"]),  # type: ignore[call-overload]
            time_by_kind_s=by_kind,
            exchange_bytes=float(info["exchange_bytes"]),  # type: ignore[arg-type]
            memory=dict(info["memory"]),  # type: ignore[call-overload]
            analytic=None
            if t is None
            else Analytic(
                estimate,
                estimate,
                t,
                t / estimate - 1 if estimate > 0 else 0.0,
                "compute cycles / clock + exchange cycles / clock + syncs x sync latency",
            ),
            engine=EngineStats.of(trace, len(plan.graph)) if trace is not None else None,
        )


register(Kernel())

__all__ = ["Kernel", "KernelParams", "KernelSparsity"]
