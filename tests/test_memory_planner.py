"""Memory planner: a hand-computed plan, infeasibility advice, and invariants (hypothesis).

The chip figures here are round test fixtures, not hardware facts.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.config import workload as spec
from simulator.workloads import layers as L
from simulator.workloads.library import load_model
from simulator.workloads.memory import (
    ChipMemory,
    MemoryConfig,
    plan_memory,
    stored_elems,
)

CHIP = ChipMemory(
    capacity_bytes=10**6,
    tiles=10,
    code_base_per_tile_bytes=100,
    vertex_state_per_layer_per_tile_bytes=10,
    exchange_buffer_fraction=0.5,
)


def as_layer(name: str, cost: L.Cost, shape: tuple[int, ...]) -> L.Layer:
    return L.Layer(
        name,
        name,
        "",
        shape,
        cost.output_shape,
        cost.params,
        cost.forward_flops,
        cost.backward_input_flops,
        cost.backward_weight_flops,
        cost.activation_elems,
        cost.unit,
        cost.matmuls,
    )


def tiny_mlp() -> list[L.Layer]:
    """dense 3->4, relu, dense 4->2: 16 + 10 = 26 parameters."""
    return [
        as_layer("d1", L.dense(spec.DenseSpec(out=4), (3,)), (3,)),
        as_layer("r", L.elementwise("relu", (4,)), (4,)),
        as_layer("d2", L.dense(spec.DenseSpec(out=2), (4,)), (4,)),
    ]


def test_hand_plan() -> None:
    cfg = MemoryConfig(
        micro_batch=2, dtype="fp16", master_weight_dtype="fp32", optimizer="adam", in_flight=3
    )
    p = plan_memory(tiny_mlp(), cfg, CHIP)
    assert p.code == 10 * (100 + 10 * 3)
    assert p.weights == 26 * 2
    assert p.gradients == 26 * 2
    assert p.optimizer_state == 26 * (2 * 4 + 4)  # m, v in fp32 + fp32 master copy
    full = 3 + 4 + 4 + 2  # input + outputs
    assert p.activations == full * 2 * 2
    assert p.stash == 2 * full * 2 * 2
    assert p.exchange_buffers == 2 * (3 + 2) * 2 * 2 + (4 + 4) * 2 * 2 // 2
    assert p.fits and p.shortfall_bytes == 0 and p.suggestions == ()


def test_checkpointing_by_hand() -> None:
    cfg = MemoryConfig(micro_batch=1, recompute="checkpoint", in_flight=2)
    p = plan_memory(tiny_mlp(), cfg, CHIP)
    checkpoints = 3 + 4 + 4  # model input, outputs of d1 and r
    working = 2  # d2's output is recomputed; the others' outputs are checkpoints already
    assert p.activations == (checkpoints + working) * 2
    assert p.stash == checkpoints * 2
    assert p.recompute_flops == sum(x.forward_flops for x in tiny_mlp())


def test_output_read_only_by_a_relu_is_not_kept() -> None:
    """conv -> batchnorm -> relu -> conv: the conv's output is the norm's input (kept), the
    norm's output only feeds the ReLU, whose gradient uses its own output (not kept)."""
    shape = (2, 4, 4)
    conv = L.conv2d(spec.Conv2dSpec(kernel=1, out_channels=2), shape)
    bn = L.batchnorm(spec.BatchNormSpec(), shape)
    relu = L.elementwise("relu", shape)
    conv2 = L.conv2d(spec.Conv2dSpec(kernel=1, out_channels=2), shape)
    layers = [
        replace(as_layer("c1", conv, shape), kind="conv2d"),
        replace(as_layer("bn", bn, shape), kind="batchnorm"),
        replace(as_layer("r", relu, shape), kind="relu"),
        replace(as_layer("c2", conv2, shape), kind="conv2d"),
    ]
    assert stored_elems(layers) == [32, 0, 32, 32]
    p = plan_memory(layers, MemoryConfig(micro_batch=1), CHIP)
    assert p.activations == (32 + 32 + 0 + 32 + 32) * 2  # input, conv, (bn), relu, conv2
    # a ReLU that is not preceded by such a layer changes nothing (tiny_mlp's kinds are names)
    assert stored_elems(tiny_mlp()) == [x.activation_elems for x in tiny_mlp()]


def test_offload_and_sharding_by_hand() -> None:
    layers = tiny_mlp()
    cfg = MemoryConfig(
        micro_batch=1,
        optimizer="momentum",
        rts_factor=4,
        offload_optimizer_state=True,
        offload_weights=True,
    )
    p = plan_memory(layers, cfg, CHIP)
    assert p.weights == 16 * 2  # only the largest layer's weights are resident
    state = -(-26 * 4 // 4)  # one fp32 slot per parameter, a quarter per replica
    assert p.optimizer_state == -(-16 * 4 // 4)
    assert p.streaming_bytes == 26 * 2 + state
    assert p.streaming_traffic_bytes == 2 * 26 * 2 + 26 * 2 + 2 * state


def test_infeasible_plan_says_by_how_much_and_what_helps() -> None:
    layers = [x for x in load_model("bert-large").layers if x.group.startswith("encoder.")][:60]
    chip = replace(CHIP, capacity_bytes=900 * 2**20, tiles=1472)
    p = plan_memory(
        layers,
        MemoryConfig(micro_batch=4, optimizer="lamb", master_weight_dtype="fp32", in_flight=4),
        chip,
    )
    assert not p.fits
    assert p.shortfall_bytes == p.total - chip.capacity_bytes > 0
    text = "\n".join(p.suggestions)
    for hint in (
        "micro-batch",
        "recomputation",
        "offload optimizer state",
        "pipeline stages",
        "replicated tensor sharding",
    ):
        assert hint in text


def test_bad_config_is_rejected() -> None:
    with pytest.raises(ValueError):
        MemoryConfig(micro_batch=0)
    with pytest.raises(ValueError):
        MemoryConfig(micro_batch=1, optimizer="adagrad")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        plan_memory([], MemoryConfig(micro_batch=1), CHIP)


# --- invariants -------------------------------------------------------------------------------

MODELS = {name: load_model(name).layers for name in ("resnet8", "mlp", "gpt2")}

configs = st.builds(
    MemoryConfig,
    micro_batch=st.integers(1, 16),
    dtype=st.sampled_from(["fp16", "fp32"]),
    master_weight_dtype=st.sampled_from([None, "fp32"]),
    optimizer=st.sampled_from(["sgd", "momentum", "adam", "lamb"]),
    in_flight=st.integers(1, 8),
    rts_factor=st.integers(1, 64),
    offload_optimizer_state=st.booleans(),
    offload_weights=st.booleans(),
)


@st.composite
def chip_layers(draw):
    layers = MODELS[draw(st.sampled_from(sorted(MODELS)))]
    start = draw(st.integers(0, len(layers) - 1))
    stop = draw(st.integers(start + 1, len(layers)))
    return layers[start:stop]


@settings(max_examples=150, deadline=None)
@given(layers=chip_layers(), cfg=configs)
def test_recomputation_never_uses_more_memory(layers, cfg) -> None:
    plain = plan_memory(layers, replace(cfg, recompute="none"), CHIP, advise=False)
    ckpt = plan_memory(layers, replace(cfg, recompute="checkpoint"), CHIP, advise=False)
    assert ckpt.activations <= plain.activations
    assert ckpt.stash <= plain.stash
    assert ckpt.total <= plain.total


@settings(max_examples=150, deadline=None)
@given(layers=chip_layers(), cfg=configs)
def test_offload_never_uses_more_sram(layers, cfg) -> None:
    base = replace(cfg, offload_optimizer_state=False, offload_weights=False)
    plain = plan_memory(layers, base, CHIP, advise=False)
    for flags in (
        {"offload_optimizer_state": True},
        {"offload_weights": True},
        {"offload_optimizer_state": True, "offload_weights": True},
    ):
        off = plan_memory(layers, replace(base, **flags), CHIP, advise=False)
        assert off.total <= plain.total
        assert off.streaming_bytes >= plain.streaming_bytes == 0


@settings(max_examples=150, deadline=None)
@given(layers=chip_layers(), cfg=configs, more=st.integers(1, 8))
def test_more_sharding_never_more_optimizer_memory(layers, cfg, more) -> None:
    a = plan_memory(layers, cfg, CHIP, advise=False)
    b = plan_memory(layers, replace(cfg, rts_factor=cfg.rts_factor * more), CHIP, advise=False)
    assert b.optimizer_state <= a.optimizer_state
    assert b.total <= a.total


@settings(max_examples=100, deadline=None)
@given(layers=chip_layers(), cfg=configs)
def test_memory_grows_with_micro_batch_and_depth(layers, cfg) -> None:
    a = plan_memory(layers, cfg, CHIP, advise=False)
    assert (
        plan_memory(layers, replace(cfg, micro_batch=cfg.micro_batch + 1), CHIP, advise=False).total
        >= a.total
    )
    assert (
        plan_memory(layers, replace(cfg, in_flight=cfg.in_flight + 1), CHIP, advise=False).stash
        >= a.stash
    )
    assert a.fits == (a.shortfall_bytes == 0)
