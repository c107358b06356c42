"""Results: frozen, JSON-ready, with every field defined in docs/metrics.md.

Results hold no wall-clock times, dates or absolute paths, so the same scenario and seed give
byte-identical JSON. Floats are rounded to 12 significant digits when serialised, which keeps
the text stable across platforms without losing meaningful precision.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from simulator.present import baseline_lines, closed_form_line, line, plural, variability_line

#: Field metadata of result fields that are left out of the JSON while they are None (fields
#: added by an optional input, so results without it stay byte-identical).
OMIT_IF_NONE = "omit_if_none"
_OPTIONAL = {OMIT_IF_NONE: True}


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return None
        return float(f"{value:.12g}")
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def to_document(result: Any) -> dict[str, Any]:
    """A result dataclass as JSON-ready data (floats rounded, NaN and infinity as None);
    fields marked :data:`OMIT_IF_NONE` are left out while None."""
    doc: dict[str, Any] = _clean(asdict(result))
    for f in fields(result):
        if f.metadata.get(OMIT_IF_NONE) and doc.get(f.name) is None:
            doc.pop(f.name, None)
    return doc


def to_json(result: Any) -> str:
    """One JSON document for a result dataclass (deterministic key order and float text)."""
    return json.dumps(to_document(result), indent=2, sort_keys=False) + "\n"


@dataclass(frozen=True)
class Analytic:
    """The closed-form estimate beside a simulated figure."""

    estimate_s: float  # congestion-unaware closed form of the same plan
    lower_bound_s: float  # max(latency bound, busiest resource's bytes / capacity)
    simulated_s: float
    difference: float  # simulated / estimate - 1
    formula: str


@dataclass(frozen=True)
class EngineStats:
    """Deterministic counts of what the engine did (no timings)."""

    tasks: int
    events: int
    flows: int
    flow_recomputations: int
    simulated_steps: int
    cached_steps: int

    @classmethod
    def of(cls, trace: Any, tasks: int) -> EngineStats:
        """The counts of one execution's Trace (``tasks``: nodes in its graph)."""
        return cls(
            tasks,
            trace.events_processed,
            trace.flows_started,
            trace.flow_recomputations,
            trace.simulated_steps,
            trace.cached_steps,
        )


@dataclass(frozen=True)
class CommResult:
    """Result of a communication scenario (``strategy.type: comm``)."""

    name: str
    feasible: bool
    reason: str | None
    pattern: str
    system: str
    chips: int
    tiles_per_chip: int
    transfers: int
    messages: int
    algorithm: str | None
    bytes_per_tile: float
    bytes_per_chip: float
    payload_bytes: float
    time_s: float
    bandwidth_GBps: float
    algbw_GBps: float | None
    analytic: Analytic
    link_utilisation: dict[str, float] = field(default_factory=dict)
    engine: EngineStats | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 0 if self.feasible else 3

    def text(self) -> str:
        """A short human summary."""
        head = (
            f"{self.name}: {self.pattern} on {self.system} "
            f"({self.chips} chips x {self.tiles_per_chip} tiles, {self.transfers} transfers, "
            f"{self.messages} messages"
            + (f", {self.algorithm}" if self.algorithm else "")
            + ")"
        )
        if not self.feasible:
            return "\n".join([head, f"  INFEASIBLE: {self.reason}"])
        lines = [
            head,
            f"  time            {self.time_s * 1e6:,.3f} us",
            f"  bandwidth       {self.bandwidth_GBps:,.2f} GB/s "
            f"(payload {self.payload_bytes:,.0f} B)",
        ]
        if self.algbw_GBps is not None:
            lines.append(f"  algbw           {self.algbw_GBps:,.2f} GB/s")
        a = self.analytic
        lines.append(closed_form_line(a.estimate_s, a.difference, unit="us"))
        lines.append(line("", f"formula: {a.formula}"))
        if self.link_utilisation:
            busiest = max(self.link_utilisation.items(), key=lambda kv: kv[1])
            lines.append(f"  busiest link    {busiest[0]} at {busiest[1]:.1%} of the time")
        lines.extend(f"  warning: {w}" for w in self.warnings)
        return "\n".join(lines)


@dataclass(frozen=True)
class BaselineRef:
    """What a speedup is measured against."""

    name: str
    chips: int
    step_time_s: float | None
    throughput_samples_per_s: float | None
    system: str | None = None
    global_batch: float | None = None


@dataclass(frozen=True)
class TrainingAnalytic:
    """Closed-form step time of the same plan beside the simulated one."""

    estimate_s: float
    simulated_s: float
    difference: float  # simulated / estimate - 1
    formula: str
    terms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class SparsityInfo:
    """``sparsity`` of a training result with ``training.sparsity`` (docs/metrics.md)."""

    density: float
    block: int
    mode: str
    regrow: str | None
    update_every_steps: int | None
    drop_fraction: float | None
    sparse_layers: int
    dense_weights: int  # of the sparse layers' weight products
    nonzero_weights: int
    metadata_bytes: int  # indices (and dynamic buckets' spare room) of the whole model
    flops_per_sample: dict[str, float]  # training FLOPs per sample: dense, nonzero
    update_step: dict[str, float] = field(default_factory=dict)  # work of one update, per replica


@dataclass(frozen=True)
class TrainingResult:
    """Result of a training scenario (single, data, pipeline, ...); fields in docs/metrics.md."""

    name: str
    feasible: bool
    reason: str | None
    strategy: str
    system: str
    model: str
    chips: int
    stages: int
    replicas: int
    schedule: str | None
    global_batch: float
    micro_batch: int
    grad_accum: int
    dtype: str
    step_time_s: float | None
    throughput_samples_per_s: float | None
    speedup: float | None = None
    scaling_efficiency: float | None = None
    baseline: BaselineRef | None = None
    bubble_fraction: float | None = None
    flop_utilisation: float | None = None
    breakdown: dict[str, dict[str, float]] = field(default_factory=dict)
    breakdown_mean: dict[str, float] = field(default_factory=dict)
    memory: dict[str, dict[str, int]] = field(default_factory=dict)
    analytic: TrainingAnalytic | None = None
    engine: EngineStats | None = None
    warnings: list[str] = field(default_factory=list)
    step_breakdown: dict[str, float] | None = None
    sparsity: SparsityInfo | None = None  # training.sparsity (strategies/sparse)
    # with variability (docs/variability.md): the distribution over samples (and members)
    step_time_mean_s: float | None = field(default=None, metadata=_OPTIONAL)
    step_time_p50_s: float | None = field(default=None, metadata=_OPTIONAL)
    step_time_p99_s: float | None = field(default=None, metadata=_OPTIONAL)
    step_time_samples_s: list[float] | None = field(default=None, metadata=_OPTIONAL)
    variability: dict[str, Any] | None = field(default=None, metadata=_OPTIONAL)

    @property
    def exit_code(self) -> int:
        return 0 if self.feasible else 3

    def text(self) -> str:
        """A human summary."""
        head = (
            f"{self.name}: {self.model} on {self.system} ({plural(self.chips, 'chip')}: "
            f"{plural(self.replicas, 'replica')} x {plural(self.stages, 'stage')}"
            + (f", {self.schedule}" if self.schedule and self.stages > 1 else "")
            + ")"
        )
        lines = [head]
        if not self.feasible:
            lines.append(f"  INFEASIBLE: {self.reason}")
        else:
            lines += [
                f"  batch           {self.global_batch:,.0f} samples/step = micro-batch "
                f"{self.micro_batch} x {self.grad_accum} x {self.replicas} replicas",
                f"  step time       {self.step_time_s * 1e3:,.3f} ms",  # type: ignore[operator]
                f"  throughput      {self.throughput_samples_per_s:,.1f} samples/s",
            ]
            if self.step_time_mean_s is not None and self.variability is not None:
                lines.append(variability_line(self))
            lines += baseline_lines(self)
            if self.flop_utilisation is not None:
                lines.append(f"  FLOP utilisation {self.flop_utilisation:.1%} of peak")
            if self.bubble_fraction is not None and self.stages > 1:
                lines.append(f"  pipeline bubble {self.bubble_fraction:.1%}")
            if self.breakdown_mean:
                parts = ", ".join(
                    f"{k} {v * 1e3:,.2f}" for k, v in self.breakdown_mean.items() if v > 0
                )
                lines.append(f"  mean per chip   {parts} (ms)")
            if self.step_breakdown:
                parts = ", ".join(
                    f"{k} {v * 1e3:,.2f}" for k, v in self.step_breakdown.items() if v > 0
                )
                lines.append(f"  critical path   {parts} (ms)")
            if self.analytic is not None:
                lines.append(closed_form_line(self.analytic.estimate_s, self.analytic.difference))
        if self.memory:
            worst = max(self.memory.items(), key=lambda kv: kv[1]["total"] / kv[1]["capacity"])
            m = worst[1]
            lines.append(
                f"  memory          fullest chip {worst[0]}: {m['total'] / 2**20:,.1f} "
                f"of {m['capacity'] / 2**20:,.1f} MiB "
                f"({m['total'] / m['capacity']:.0%})"
            )
        if self.sparsity is not None:
            sp = self.sparsity
            f = sp.flops_per_sample
            lines.append(
                f"  sparsity        {sp.mode} {sp.block}x{sp.block} blocks at density "
                f"{sp.density:g} in {sp.sparse_layers} layers: {sp.nonzero_weights:,} of "
                f"{sp.dense_weights:,} weights, {f['nonzero'] / f['dense']:.1%} of the dense "
                "FLOPs per sample"
                + (
                    f"; pattern update ({sp.regrow} regrow) every {sp.update_every_steps} steps"
                    if sp.update_every_steps
                    else ""
                )
            )
        lines.extend(f"  warning: {w}" for w in self.warnings)
        return "\n".join(lines)


#: What a run returns: a training result (or a strategy's subclass of it) or a comm result.
Result = TrainingResult | CommResult


def with_baseline(result: TrainingResult, base: TrainingResult) -> TrainingResult:
    """``result`` with its speedup over ``base`` (throughput ratio, DESIGN.md § Contracts)."""
    from dataclasses import replace

    ref = BaselineRef(
        base.name,
        base.chips,
        base.step_time_s,
        base.throughput_samples_per_s,
        system=base.system,
        global_batch=base.global_batch,
    )
    speedup = efficiency = None
    if result.throughput_samples_per_s and base.throughput_samples_per_s:
        speedup = result.throughput_samples_per_s / base.throughput_samples_per_s
        efficiency = speedup / (result.chips / base.chips)
    warnings = list(result.warnings)
    if not base.feasible:
        warnings.append(f"baseline {base.name} is infeasible: {base.reason}")
    return replace(
        result, baseline=ref, speedup=speedup, scaling_efficiency=efficiency, warnings=warnings
    )


@dataclass(frozen=True)
class KernelResult:
    """Result of a kernel scenario (``strategy.type: kernel``): one op on one chip.

    Fields in docs/metrics.md ("Kernel scenarios"). ``flops`` counts non-zero work only
    (2 per multiply-add whose sparse operand is non-zero); ``dense_flops`` the full product.
    """

    name: str
    feasible: bool
    reason: str | None
    op: str
    system: str
    chip: int
    chip_type: str
    m: int
    k: int
    n: int
    dtype: str
    sparsity: dict[str, Any] | None
    time_s: float | None
    flops: float
    dense_flops: float
    tflops: float | None
    efficiency: float | None  # tflops / chip peak of the path's unit in dtype
    dense_time_s: float
    speedup_vs_dense: float | None
    path: str
    partition: dict[str, int] = field(default_factory=dict)
    time_by_kind_s: dict[str, float] = field(default_factory=dict)
    exchange_bytes: float = 0.0
    memory: dict[str, int] = field(default_factory=dict)
    analytic: Analytic | None = None
    engine: EngineStats | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 0 if self.feasible else 3

    def text(self) -> str:
        """A short human summary."""
        sp = self.sparsity
        what = (
            f"{sp['mode']} block-sparse (density {sp['density']:g}, {sp['block']}x{sp['block']} "
            "blocks)"
            if sp
            else "dense"
        )
        lines = [
            f"{self.name}: {self.op} [{self.m}x{self.k}].[{self.k}x{self.n}] {self.dtype}, "
            f"{what}, on chip {self.chip} ({self.chip_type}) of {self.system}"
        ]
        if not self.feasible or self.time_s is None:
            lines.append(f"  INFEASIBLE: {self.reason}")
        else:
            parts = ", ".join(f"{k} {v * 1e6:,.3f}" for k, v in self.time_by_kind_s.items())
            lines += [
                f"  time            {self.time_s * 1e6:,.3f} us ({parts} us)",
                f"  non-zero FLOPs  {self.flops:,.0f} ({self.tflops:,.2f} TFLOP/s, "
                f"{(self.efficiency or 0):.1%} of the {self.path} peak)",
            ]
            if sp:
                lines.append(
                    f"  dense kernel    {self.dense_time_s * 1e6:,.3f} us; speedup "
                    f"{self.speedup_vs_dense:.3f}x"
                )
            p = self.partition
            lines.append(
                "  partition       "
                + " x ".join(f"{k} {v}" for k, v in p.items() if k != "tiles_used")
                + f" on {p.get('tiles_used', 0)} tiles ({self.path})"
            )
        m = self.memory
        if m:
            lines.append(
                f"  memory          {m['total'] / 2**20:,.1f} of {m['capacity'] / 2**20:,.1f} MiB"
                f" (operands {m['operands'] / 2**20:,.1f}, indices {m['metadata'] / 2**20:,.2f})"
            )
        lines.extend(f"  warning: {w}" for w in self.warnings)
        return "\n".join(lines)
