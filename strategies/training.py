"""What every training strategy shares: the ``training`` section, the scenario's model, the
cost of a stage's work on its chip, and the memory plan.

A *stage* is a contiguous (per kind) set of layers placed on one chip. Its work per
micro-batch is costed by the tile cost model (:mod:`simulator.workloads.cost`) and turned into
one compute, one exchange and one sync task per phase (forward, backward, optimizer): the
supersteps of a phase run back to back on one chip, so their sum is the phase's duration.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from pydantic import Field

from simulator.config.base import PositiveFloat, PositiveInt, StrictModel
from simulator.config.limits import MAX_GRAD_ACCUM
from simulator.engine.graph import TaskGraph
from simulator.engine.tasks import Compute, Exchange, HostLoad, HostSync, MemLoad, Sync, Task
from simulator.errors import InputError
from simulator.hardware.model import ChipType
from simulator.strategy import PlanContext
from simulator.workloads.cost import OpCost, chip_memory, op_cost, optimizer_cost
from simulator.workloads.layers import DTYPE_BYTES, Layer
from simulator.workloads.library import load_model
from simulator.workloads.memory import MemoryConfig, MemoryPlan, plan_memory
from simulator.workloads.model import Model, build_model, override_origins
from strategies.sparse import hooks as sparse_hooks  # training.sparsity (issue 17)
from strategies.sparse.params import SparsityParams, check_model, check_strategy


class TrainingParams(StrictModel):
    """The scenario's ``training:`` section (DESIGN.md § Contracts)."""

    micro_batch: PositiveInt = Field(description="Samples (or packs) per micro-batch per replica.")
    grad_accum: PositiveInt = Field(
        default=1,
        le=MAX_GRAD_ACCUM,  # each micro-batch is its own tasks: bounded (docs/config.md, Limits)
        description="Micro-batches accumulated per step (pipelines: micro-batches in flight "
        "per step, M).",
    )
    global_batch: PositiveInt | None = Field(
        default=None,
        description="Samples per step; checked against micro_batch x grad_accum x "
        "replicas x samples_per_input.",
    )
    samples_per_input: PositiveFloat = Field(
        default=1.0,
        description="Samples one micro-batch element counts as (2 for packed BERT: a "
        "512-token pack holds ~2 sequences).",
    )
    dtype: Literal["fp16", "fp32"] = Field(default="fp16", description="Weights and activations.")
    master_weights: Literal["fp16", "fp32"] | None = Field(
        default=None, description="Extra master copy of the weights in this dtype (e.g. fp32)."
    )
    optimizer: Literal["sgd", "momentum", "adam", "lamb", "lars"] = Field(
        default="sgd",
        description="lars: momentum with a per-tensor trust ratio (You et al. 2017); lamb: "
        "Adam with one (You et al. 2019).",
    )
    optimizer_state_dtype: Literal["fp16", "fp32"] = Field(default="fp32")
    recompute: Literal["none", "checkpoint"] = Field(
        default="none",
        description="checkpoint: keep only layer inputs, recompute in the backward pass.",
    )
    offload_optimizer_state: bool = Field(default=False, description="Keep it in Streaming Memory.")
    offload_weights: bool = Field(default=False, description="Keep weights in Streaming Memory.")
    steps: PositiveInt | None = Field(default=None, description="Steps to run (for time-to-train).")
    compute_scale: PositiveFloat = Field(
        default=1.0,
        description="Multiplies the cost model's compute and exchange time of every phase: "
        "a CALIBRATION of what the cost model leaves out (framework and kernel overheads), set "
        "only from a measured point and named as such (validation/calibrate_mlperf.py).",
    )
    sparsity: SparsityParams | None = Field(
        default=None,
        description="Block-sparse weights in the linear layers (docs/strategies/sparsity.md).",
    )


def training_params(ctx: PlanContext) -> TrainingParams:
    """The validated ``training`` section (required for training strategies)."""
    from simulator.config.load import validate

    loaded = ctx.scenario
    data = loaded.document.data.get("training")
    if data is None:
        raise ctx.error(
            ("training",),
            "a training scenario needs a `training:` section with at least micro_batch",
        )
    tp = validate(loaded.document, TrainingParams, at=("training",), data=data)
    if tp.sparsity is not None:  # sparse training (strategies/sparse)
        check_strategy(ctx)
    return tp


def scenario_model(ctx: PlanContext) -> Model:
    """The scenario's model: a library name, a path, ``{name:, params:}``, or inline layers."""
    model = _load_model(ctx)
    training = ctx.scenario.document.data.get("training")
    if isinstance(training, dict) and training.get("sparsity") is not None:
        sp = training_params(ctx).sparsity
        if sp is not None:  # its sparse layers must exist and fit the block (exit 2)
            check_model(ctx, model, sp)
    return model


def _load_model(ctx: PlanContext) -> Model:
    loaded = ctx.scenario
    spec = loaded.scenario.model
    if spec is None:
        raise ctx.error(
            ("model",),
            "a training scenario needs `model:` (a name from models/, "
            "a path, {name: ..., params: {...}} or an inline model)",
        )
    try:
        if isinstance(spec, str):
            return load_model(spec, relative_to=loaded.path)
        if "layers" in spec:
            return build_model(loaded.document, at=("model",))
        extra = sorted(set(spec) - {"name", "params"})
        if extra or "name" not in spec:
            raise ctx.error(
                ("model", extra[0] if extra else "name"),
                "a model reference is {name: NAME, params: {KEY: VALUE}} "
                f"(got keys {sorted(spec)}); an inline model has `layers:`",
            )
        params = spec.get("params") or {}
        if not isinstance(params, dict):
            raise ctx.error(("model", "params"), f"params must be a mapping (got {params!r})")
        where = override_origins(loaded.document, ("model", "params"), params)
        return load_model(
            str(spec["name"]), overrides=params, relative_to=loaded.path, origins=where
        )
    except InputError as exc:
        if exc.location.file is not None:
            raise
        file, line = loaded.document.location(("model",))
        raise exc.at(file=file, line=line, key_path="model") from None


# ---- costs -------------------------------------------------------------------------------
@dataclass(frozen=True)
class PhaseCost:
    """One phase of a stage's work for one micro-batch: seconds by kind, and FLOPs."""

    compute_s: float = 0.0
    exchange_s: float = 0.0
    syncs: int = 0
    flops: float = 0.0

    def __add__(self, other: PhaseCost) -> PhaseCost:
        return PhaseCost(
            self.compute_s + other.compute_s,
            self.exchange_s + other.exchange_s,
            self.syncs + other.syncs,
            self.flops + other.flops,
        )

    def seconds(self, ct: ChipType) -> float:
        return self.compute_s + self.exchange_s + self.syncs * ct.sync_latency_s

    def scaled(self, factor: float) -> PhaseCost:
        """Compute and exchange time times ``factor`` (FLOPs and syncs unchanged)."""
        return PhaseCost(self.compute_s * factor, self.exchange_s * factor, self.syncs, self.flops)


ZERO = PhaseCost()


def _phase(c: OpCost, ct: ChipType) -> PhaseCost:
    """The cost model's cycles as seconds."""
    return PhaseCost(
        c.compute_cycles / ct.clock_hz, c.exchange_cycles / ct.clock_hz, c.syncs, c.flops
    )


def _cost(
    layer: Layer, phase: str, mb: int, dtype: str, ct: ChipType, sp: SparsityParams | None = None
) -> PhaseCost:
    if sp is not None:  # block-sparse weights (strategies/sparse)
        return _phase(sparse_hooks.layer_cost(layer, phase, mb, dtype, ct, sp), ct)  # type: ignore[arg-type]
    return _phase(op_cost(layer, phase, mb, dtype, ct), ct)  # type: ignore[arg-type]


@dataclass(frozen=True)
class StageCost:
    """Per-micro-batch costs of one stage, and the stage's per-step optimizer cost."""

    forward: PhaseCost
    backward: PhaseCost  # input and weight gradients
    recompute: PhaseCost  # forward again inside the backward pass (checkpointing)
    optimizer: PhaseCost
    params: int
    useful_flops: float  # forward + backward FLOPs per micro-batch (no recomputation)
    tensors: int = 0  # layers holding weights (a LAMB/LARS norm pair each)
    update: sparse_hooks.UpdateCost | None = None  # a sparse pattern update (strategies/sparse)


def stage_cost(
    layers: Sequence[Layer], needs_input_grad: Sequence[bool], tp: TrainingParams, ct: ChipType
) -> StageCost:
    """Cost the layers of one stage on chip type ``ct`` for one micro-batch."""
    fwd = bwd = ZERO
    sp = tp.sparsity
    for layer, grad_in in zip(layers, needs_input_grad, strict=True):
        fwd += _cost(layer, "fwd", tp.micro_batch, tp.dtype, ct, sp)
        if grad_in and layer.backward_input_flops:
            bwd += _cost(layer, "bwd_input", tp.micro_batch, tp.dtype, ct, sp)
        if layer.params and layer.backward_weight_flops:
            bwd += _cost(layer, "bwd_weight", tp.micro_batch, tp.dtype, ct, sp)
    params = sum(x.params for x in sparse_hooks.memory_inputs(layers, sp, tp.dtype, ct)[0])
    opt = optimizer_cost(params, tp.optimizer, tp.dtype, ct) if params else None
    opt_cost = ZERO if opt is None else _phase(opt, ct)
    useful = fwd.flops + bwd.flops
    k = tp.compute_scale
    fwd, bwd, opt_cost = fwd.scaled(k), bwd.scaled(k), opt_cost.scaled(k)
    tensors = sum(1 for x in layers if x.params)
    update = sparse_hooks.stage_update(layers, sp, tp.dtype, tp.micro_batch, tp.grad_accum, ct, k)
    return StageCost(
        fwd,
        bwd,
        fwd if tp.recompute == "checkpoint" else ZERO,
        opt_cost,
        params,
        useful,
        tensors,
        update,
    )


def add_phase(
    graph: TaskGraph,
    chip: int,
    cost: PhaseCost,
    ct: ChipType,
    deps: Sequence[int],
    label: str,
    kind: Literal["compute", "recompute", "optimizer"] = "compute",
) -> int:
    """Append a phase as compute -> exchange -> sync tasks on ``chip``; return the last id."""
    last = list(deps)
    if cost.compute_s > 0 or cost.flops > 0:
        last = [
            graph.add(
                Compute(
                    chip,
                    flops=cost.flops,
                    cycles=cost.compute_s * ct.clock_hz,
                    label=label,
                    kind=kind,
                ),
                last,
            )
        ]
    if cost.exchange_s > 0:
        last = [
            graph.add(Exchange(chip, 0.0, cycles=cost.exchange_s * ct.clock_hz, label=label), last)
        ]
    if cost.syncs > 0:
        last = [graph.add(Sync((chip,), count=cost.syncs, label=label), last)]
    if not last:
        last = [graph.add(Sync((chip,), count=0, label=label), deps)]
    return last[0]


def end_step_on_hosts(
    g: TaskGraph, ctx: PlanContext, chips: Sequence[int], deps: Sequence[int]
) -> int | None:
    """The step's end on the hosts (a :class:`HostSync` over ``chips`` after ``deps``): every
    training strategy's step ends with it on a system that has hosts. Returns its id (None
    without hosts)."""
    if ctx.system.hosts is None:
        return None
    return g.add(HostSync(tuple(sorted(set(chips))), label="step end"), sorted(set(deps)))


class InputFeed:
    """Each micro-batch's input, from the hosts to the chip that reads it (the first stage's
    chip of the simulated replica, ``feeders[0]``).

    The host writes micro-batch k into the Streaming Memory of the chip's machine (a
    :class:`HostLoad` over Host-Link and gateway, limited by the hosts' data pipeline), while the
    chip works on micro-batch k - 1 (one buffer ahead); the chip reads it in an exchange phase
    (a :class:`MemLoad` that holds the chip) before its forward pass. Micro-batch 0 was written
    during the previous step, and each step writes the next step's first, so a step carries
    exactly ``M`` host writes. ``mirrors`` (chips of replicas that are not simulated but share
    the feeder's machine) do the same, gating nothing, so their traffic shares the machine's
    Host-Link, gateway and DDR (``write_mirrors``, when given, are the chips whose host writes
    are mirrored, if fewer read than are written for); the ``feeders`` (one per replica) that
    the same host feeds share its data pipeline. Nothing is fed on a system without hosts.
    Micro-batches are numbered on across the steps a graph holds.
    """

    def __init__(
        self,
        ctx: PlanContext,
        feeders: Sequence[int],
        mirrors: Sequence[int],
        nbytes: float,
        samples: float,
        write_mirrors: Sequence[int] | None = None,
    ) -> None:
        system = ctx.system
        self.chip, self.mirrors, self.nbytes, self.samples = feeders[0], mirrors, nbytes, samples
        self.write_mirrors = mirrors if write_mirrors is None else write_mirrors
        host = system.host_node(self.chip) if system.hosts is not None else None
        self.on = host is not None and nbytes > 0
        self.ddr = system.streaming_memory is not None
        self.sharing = sum(1 for c in feeders if system.host_node(c) == host)
        self._writes: dict[int, int] = {}

    def _each(
        self, g: TaskGraph, make: Callable[[int], Task], deps: list[int], mirrors: Sequence[int]
    ) -> int:
        main = g.add(make(self.chip), deps)
        for chip in mirrors:
            g.add(make(chip), deps)
        return main

    def read(self, g: TaskGraph, mb: int, deps: list[int]) -> list[int]:
        """The chip's read of micro-batch ``mb`` (after ``deps``); returns what F waits on."""
        if not self.on:
            return deps
        if self.ddr and mb in self._writes:
            deps = [*deps, self._writes[mb]]
        label = f"read input mb{mb}"
        source: Literal["ddr", "host"] = "ddr" if self.ddr else "host"

        def read(chip: int) -> MemLoad:
            return MemLoad(chip, self.nbytes, source=source, label=label, hold=True, input=True)

        def write(chip: int) -> HostLoad:
            n = mb + 1
            return HostLoad(chip, self.nbytes, self.samples, self.sharing, label=f"input mb{n}")

        done = self._each(g, read, deps, self.mirrors)
        if self.ddr:
            self._writes[mb + 1] = self._each(g, write, [done], self.write_mirrors)
        return [done]

    def pending(self) -> list[int]:
        """The write of the next step's first micro-batch (the step ends after it)."""
        if not self._writes:
            return []
        return [self._writes[max(self._writes)]]


# ---- memory -------------------------------------------------------------------------------
def stage_memory(
    layers: Sequence[Layer],
    tp: TrainingParams,
    ct: ChipType,
    *,
    in_flight: int,
    rts_factor: int,
    micro_batches: int,
) -> MemoryPlan:
    """SRAM plan of one stage's chip."""
    cfg = MemoryConfig(
        micro_batch=tp.micro_batch,
        dtype=tp.dtype,
        master_weight_dtype=tp.master_weights,
        optimizer=tp.optimizer,
        optimizer_state_dtype=tp.optimizer_state_dtype,
        recompute=tp.recompute,
        in_flight=max(1, in_flight),
        offload_optimizer_state=tp.offload_optimizer_state,
        offload_weights=tp.offload_weights,
        rts_factor=max(1, rts_factor),
        micro_batches_per_step=micro_batches,
    )
    if tp.sparsity is not None:  # non-zeros, indices, RigL's dense gradient (strategies/sparse)
        view, extra_w, extra_g = sparse_hooks.memory_inputs(layers, tp.sparsity, tp.dtype, ct)
        cfg = replace(cfg, extra_weight_bytes=extra_w, extra_gradient_bytes=extra_g)
        return plan_memory(view, cfg, chip_memory(ct))
    return plan_memory(layers, cfg, chip_memory(ct))


def boundary_bytes(layer: Layer, tp: TrainingParams) -> float:
    """Bytes of one micro-batch's activations leaving ``layer`` (and of their gradients)."""
    return layer.output_elems * tp.micro_batch * DTYPE_BYTES[tp.dtype]


def gradient_bytes(params: int, tp: TrainingParams) -> float:
    """Bytes of a stage's gradients in the all-reduce (the compute dtype)."""
    return params * DTYPE_BYTES[tp.dtype]


def describe_memory(plan: MemoryPlan) -> dict[str, Any]:
    """Bytes by category, total and capacity — the ``memory`` entry of a chip."""
    return {
        **plan.by_category(),
        "total": plan.total,
        "capacity": plan.capacity,
        "streaming": plan.streaming_bytes,
    }
