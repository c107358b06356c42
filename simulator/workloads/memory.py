"""Memory planner: what one chip's SRAM holds for the layers placed on it, as pure functions.

:func:`plan_memory` takes the layers on a chip, the training settings (:class:`MemoryConfig`)
and the chip's memory description (:class:`ChipMemory`, filled from the chip YAML) and returns
a :class:`MemoryPlan` with bytes by category, whether it fits, by how much it does not, and
what would help. Categories:

* ``code`` — program code and vertex state. ASSUMPTION (no public per-tile figure found):
  ``tiles x (code_base_per_tile_bytes + vertex_state_per_layer_per_tile_bytes x layers)``,
  i.e. a fixed runtime/codelet footprint on every tile plus vertex state that grows with the
  number of layers (each layer's compute sets have vertices on most tiles). Both constants are
  chip keys, not Python numbers.
* ``weights`` — parameters in the compute dtype. Offloaded weights leave SRAM except a buffer
  for the largest layer's weights, which are streamed in when used. Plus
  ``extra_weight_bytes`` (a sparse layer's indices, which stay on chip).
* ``gradients`` — one gradient (accumulator) per parameter in ``gradient_dtype``, plus
  ``extra_gradient_bytes`` (the dense gradient a RigL update step computes).
* ``optimizer_state`` — :data:`OPTIMIZER_STATE_SLOTS` values per parameter in
  ``optimizer_state_dtype``, plus a master copy of the weights when ``master_weight_dtype``
  differs from the compute dtype; divided by the replicated-tensor-sharding factor. Offloaded
  state leaves SRAM except a buffer for the largest layer's share, streamed in for the update.
* ``activations`` — what the micro-batch in its backward pass holds: every layer's stored
  tensors (:attr:`Layer.activation_elems`, less outputs that only a ReLU reads: see
  :func:`stored_elems`) plus the chip's input without recomputation; with
  checkpointing only each segment's input (a residual block, an attention or FFN part, or a
  lone layer) plus one segment's recomputed internals at a time.
* ``stash`` — the other ``in_flight - 1`` micro-batches' stored tensors (full or checkpoints)
  waiting for their backward pass: the pipeline stash, whose depth the caller gives.
* ``exchange_buffers`` — receive/send buffers for the chip's input and output (activations
  forward, gradients backward, double-buffered: ``2 x (input + output) x micro_batch``) plus
  ``exchange_buffer_fraction`` (chip key, ASSUMPTION) of the largest single layer's working set
  for the temporary copies that on-chip exchange rearrangements need.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from simulator.workloads.layers import DTYPE_BYTES, Layer

Optimizer = Literal["sgd", "momentum", "adam", "lamb", "lars"]
Recompute = Literal["none", "checkpoint"]

#: Optimizer state values kept per parameter: SGD none; momentum one velocity; Adam and LAMB
#: the first and second moments (LAMB's per-layer trust ratios are negligible).
OPTIMIZER_STATE_SLOTS: dict[str, int] = {"sgd": 0, "momentum": 1, "adam": 2, "lamb": 2, "lars": 1}

CATEGORIES = (
    "code",
    "weights",
    "gradients",
    "optimizer_state",
    "activations",
    "stash",
    "exchange_buffers",
)

MIB = 1024**2


@dataclass(frozen=True, slots=True)
class ChipMemory:
    """One chip's memory as the planner needs it; every figure comes from the chip YAML."""

    capacity_bytes: int  # SRAM of the chip (tiles x sram_per_tile_bytes)
    tiles: int
    code_base_per_tile_bytes: int  # chip key code_base_per_tile_bytes (ASSUMPTION)
    vertex_state_per_layer_per_tile_bytes: int  # chip key of the same name (ASSUMPTION)
    exchange_buffer_fraction: float  # chip key of the same name (ASSUMPTION)


@dataclass(frozen=True, slots=True)
class MemoryConfig:
    """Training settings that decide what a chip stores."""

    micro_batch: int
    dtype: str = "fp16"  # weights and activations
    master_weight_dtype: str | None = None  # e.g. "fp32" beside fp16 weights; None: no copy
    gradient_dtype: str | None = None  # None: same as dtype
    optimizer: Optimizer = "sgd"
    optimizer_state_dtype: str = "fp32"
    recompute: Recompute = "none"
    in_flight: int = 1  # micro-batches whose activations are held at once (pipeline depth)
    offload_optimizer_state: bool = False
    offload_weights: bool = False
    rts_factor: int = 1  # replicated tensor sharding: replicas sharing the optimizer state
    micro_batches_per_step: int = 1  # for the Streaming Memory traffic per step
    extra_weight_bytes: int = 0  # held with the weights (a sparse layer's indices)
    extra_gradient_bytes: int = 0  # held with the gradients (a transient dense gradient)

    def __post_init__(self) -> None:
        for name in ("micro_batch", "in_flight", "rts_factor", "micro_batches_per_step"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("extra_weight_bytes", "extra_gradient_bytes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("dtype", "master_weight_dtype", "gradient_dtype", "optimizer_state_dtype"):
            value = getattr(self, name)
            if value is not None and value not in DTYPE_BYTES:
                raise ValueError(f"{name} {value!r} is not one of {sorted(DTYPE_BYTES)}")
        if self.optimizer not in OPTIMIZER_STATE_SLOTS:
            raise ValueError(f"optimizer {self.optimizer!r} not in {sorted(OPTIMIZER_STATE_SLOTS)}")
        if self.recompute not in ("none", "checkpoint"):
            raise ValueError(f"recompute {self.recompute!r} is not 'none' or 'checkpoint'")


@dataclass(frozen=True, slots=True)
class MemoryPlan:
    """Bytes per category on one chip, the capacity, and what would help if it does not fit."""

    code: int
    weights: int
    gradients: int
    optimizer_state: int
    activations: int
    stash: int
    exchange_buffers: int
    capacity: int
    streaming_bytes: int = 0  # held in Streaming Memory (offloaded state and weights)
    streaming_traffic_bytes: int = 0  # moved between SRAM and Streaming Memory per step
    recompute_flops: int = 0  # extra forward FLOPs per micro-batch spent on recomputation
    suggestions: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        """SRAM bytes used."""
        return sum(self.by_category().values())

    @property
    def fits(self) -> bool:
        """Does the plan fit in the chip's SRAM?"""
        return self.total <= self.capacity

    @property
    def shortfall_bytes(self) -> int:
        """Bytes over capacity (0 when it fits)."""
        return max(0, self.total - self.capacity)

    def by_category(self) -> dict[str, int]:
        """Bytes by category, in :data:`CATEGORIES` order."""
        return {name: getattr(self, name) for name in CATEGORIES}


def _segments(layers: Sequence[Layer]) -> list[list[Layer]]:
    """Consecutive layers of one named group (a residual block, an attention or FFN part);
    an ungrouped layer is a segment of its own."""
    out: list[list[Layer]] = []
    for x in layers:
        if out and x.group and out[-1][-1].group == x.group:
            out[-1].append(x)
        else:
            out.append([x])
    return out


#: Layers whose gradient is computed from their *output* alone (TensorFlow's ``_ReluGrad`` takes
#: ``op.outputs[0]``; PyTorch's in-place ReLU backward uses the result): the tensor that feeds
#: them need not be kept for their backward pass.
OUTPUT_GRADIENT_KINDS = frozenset({"relu"})

#: Layers whose own backward pass does not read their output (a convolution, a dense layer, a
#: batch or layer norm need their input and weights or saved statistics; an add needs nothing):
#: when such a layer's only stored tensor is its output and that output feeds a layer of
#: :data:`OUTPUT_GRADIENT_KINDS`, nothing needs the output after the forward pass.
OUTPUT_UNREAD_KINDS = frozenset({"conv2d", "dense", "batchnorm", "layernorm", "add"})


def stored_elems(layers: Sequence[Layer]) -> list[int]:
    """Elements each layer keeps for the backward pass, per sample.

    :attr:`Layer.activation_elems`, except that an output nothing reads backwards is not kept:
    a convolution, norm or add whose output goes straight into a ReLU (the ReLU keeps its own
    output, from which both its gradient and the next layer's weight gradient are computed).
    This is the rule of the frameworks the MLPerf submissions ran (TensorFlow's gradient
    registry: ``_ReluGrad`` uses the ReLU's output, ``FusedBatchNormGrad`` the norm's input and
    saved statistics, ``Conv2DBackpropFilter`` the convolution's input).
    """
    out = []
    for i, x in enumerate(layers):
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        unread = (
            nxt is not None
            and nxt.kind in OUTPUT_GRADIENT_KINDS
            and x.kind in OUTPUT_UNREAD_KINDS
            and x.activation_elems == x.output_elems
        )
        out.append(0 if unread else x.activation_elems)
    return out


def _per_sample_activations(layers: Sequence[Layer], recompute: Recompute) -> tuple[int, int]:
    """(elements held by the micro-batch in backward, elements stashed per waiting micro-batch).

    Checkpointing keeps the input of every segment (a residual block, an encoder's attention or
    FFN part, or a lone layer) and recomputes one segment at a time in the backward pass, as
    Graphcore's recomputation checkpoints do: held = checkpoints + the largest segment's stored
    tensors. Neither figure may exceed the no-recomputation one, so recomputation never uses
    more memory.
    """
    first_input = layers[0].input_elems
    stored = dict(zip((x.name for x in layers), stored_elems(layers), strict=True))
    full = first_input + sum(stored.values())
    if recompute == "none":
        return full, full
    segments = _segments(layers)
    checkpoints = sum(seg[0].input_elems for seg in segments)
    working = max(sum(stored[x.name] for x in seg) for seg in segments)
    return min(full, checkpoints + working), min(full, checkpoints)


def _state_bytes_per_param(cfg: MemoryConfig) -> int:
    state = OPTIMIZER_STATE_SLOTS[cfg.optimizer] * DTYPE_BYTES[cfg.optimizer_state_dtype]
    if cfg.master_weight_dtype is not None and cfg.master_weight_dtype != cfg.dtype:
        state += DTYPE_BYTES[cfg.master_weight_dtype]
    return state


def plan_memory(
    layers: Sequence[Layer], config: MemoryConfig, chip: ChipMemory, *, advise: bool = True
) -> MemoryPlan:
    """SRAM use of ``layers`` on one chip under ``config``; ``advise`` adds suggestions."""
    if not layers:
        raise ValueError("plan_memory needs at least one layer")
    cfg = config
    act_b = DTYPE_BYTES[cfg.dtype]
    params = sum(x.params for x in layers)
    largest = max(x.params for x in layers)

    weights = params * act_b
    traffic = 0
    streaming = 0
    if cfg.offload_weights:
        streaming += weights
        passes = 3 if cfg.recompute == "checkpoint" else 2  # forward, backward (+ recompute)
        traffic += passes * weights * cfg.micro_batches_per_step + weights  # + write back
        weights = largest * act_b

    weights += cfg.extra_weight_bytes
    gradients = params * DTYPE_BYTES[cfg.gradient_dtype or cfg.dtype] + cfg.extra_gradient_bytes

    per_param = _state_bytes_per_param(cfg)
    state = math.ceil(params * per_param / cfg.rts_factor)
    if cfg.offload_optimizer_state and state:
        streaming += state
        traffic += 2 * state  # read and write back once per step
        state = min(state, math.ceil(largest * per_param / cfg.rts_factor))

    held, stashed = _per_sample_activations(layers, cfg.recompute)
    activations = held * cfg.micro_batch * act_b
    stash = (cfg.in_flight - 1) * stashed * cfg.micro_batch * act_b

    # a tied head placed with the embedding (BERT's MLM decoder) sends nothing on: the stage's
    # output is the layer before it
    sends = layers[-2] if len(layers) > 1 and layers[-1].kind == "pretraining_heads" else layers[-1]
    boundary = 2 * (layers[0].input_elems + sends.output_elems) * cfg.micro_batch * act_b
    widest = max(x.input_elems + x.activation_elems for x in layers) * cfg.micro_batch * act_b
    exchange = boundary + math.ceil(chip.exchange_buffer_fraction * widest)

    working_layers = sum(1 for x in layers if x.forward_flops or x.params)
    code = chip.tiles * (
        chip.code_base_per_tile_bytes + chip.vertex_state_per_layer_per_tile_bytes * working_layers
    )

    plan = MemoryPlan(
        code=code,
        weights=weights,
        gradients=gradients,
        optimizer_state=state,
        activations=activations,
        stash=stash,
        exchange_buffers=exchange,
        capacity=chip.capacity_bytes,
        streaming_bytes=streaming,
        streaming_traffic_bytes=traffic,
        recompute_flops=(
            sum(x.forward_flops for x in layers) * cfg.micro_batch
            if cfg.recompute == "checkpoint"
            else 0
        ),
    )
    if advise and not plan.fits:
        plan = replace(plan, suggestions=suggest(layers, cfg, chip, plan))
    return plan


def _mib(n: int) -> str:
    return f"{n / MIB:,.1f} MiB"


def _try(
    layers: Sequence[Layer], cfg: MemoryConfig, chip: ChipMemory, base: MemoryPlan, what: str
) -> str:
    plan = plan_memory(layers, cfg, chip, advise=False)
    saved = base.total - plan.total
    verdict = "fits" if plan.fits else f"still {_mib(plan.shortfall_bytes)} over"
    return f"{what}: saves {_mib(saved)} ({verdict})"


def suggest(
    layers: Sequence[Layer], cfg: MemoryConfig, chip: ChipMemory, plan: MemoryPlan
) -> tuple[str, ...]:
    """What would make an infeasible plan fit, each with the bytes it saves (the shortfall
    itself is the caller's to report)."""
    out: list[str] = []
    per_sample = (plan.activations + plan.stash + plan.exchange_buffers) / cfg.micro_batch
    fixed = plan.total - per_sample * cfg.micro_batch
    room = plan.capacity - fixed
    if cfg.micro_batch > 1:
        best = int(room // per_sample) if per_sample else 0
        if best >= 1:
            out.append(f"smaller micro-batch: {best} or less fits (now {cfg.micro_batch})")
        else:
            out.append("smaller micro-batch: not enough alone, even 1 does not fit")
    if cfg.recompute == "none":
        out.append(
            _try(
                layers,
                replace(cfg, recompute="checkpoint"),
                chip,
                plan,
                "recomputation (checkpoint every layer)",
            )
        )
    if not cfg.offload_optimizer_state and plan.optimizer_state:
        out.append(
            _try(
                layers,
                replace(cfg, offload_optimizer_state=True),
                chip,
                plan,
                "offload optimizer state to Streaming Memory",
            )
        )
    if not cfg.offload_weights:
        out.append(
            _try(
                layers,
                replace(cfg, offload_weights=True),
                chip,
                plan,
                "offload weights to Streaming Memory",
            )
        )
    if plan.optimizer_state and not cfg.offload_optimizer_state:
        out.append(
            _try(
                layers,
                replace(cfg, rts_factor=cfg.rts_factor * 2),
                chip,
                plan,
                f"replicated tensor sharding over {cfg.rts_factor * 2} replicas",
            )
        )
    if len(layers) > 1:
        half = layers[: (len(layers) + 1) // 2]
        out.append(
            _try(
                half,
                cfg,
                chip,
                plan,
                f"more pipeline stages (this chip holds {len(layers)} layers; half of them)",
            )
        )
    return tuple(out)


__all__ = [
    "CATEGORIES",
    "OPTIMIZER_STATE_SLOTS",
    "ChipMemory",
    "MemoryConfig",
    "MemoryPlan",
    "plan_memory",
    "suggest",
]
