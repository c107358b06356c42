"""Per-tile cost model by hand: a product that fits one tile, a vector op, the optimizer, the
memory planner's chip view, and FLOP bookkeeping against the layer algebra.

The chip here is a fixture with round numbers (not hardware facts) so every figure can be
worked out on paper; the shipped chips are used only where the test says so.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

import pytest

from simulator.config import workload as spec
from simulator.hardware.build import load_chip_type
from simulator.hardware.model import ChipType, TileCostModel
from simulator.workloads import layers as L
from simulator.workloads.cost import (
    OPTIMIZER_FLOP,
    PHASES,
    chip_memory,
    layer_gemms,
    layer_seconds,
    op_cost,
    optimizer_cost,
)
from simulator.workloads.gemm import Gemm, plan_gemm, splits
from simulator.workloads.library import load_model, model_names
from simulator.workloads.memory import ChipMemory

COST = TileCostModel(
    amp_pipeline_efficiency=MappingProxyType({"fp16": 0.5, "fp32": 0.5}),
    amp_input_channels_per_group=MappingProxyType({"fp16": 16, "fp32": 8}),
    amp_output_channels_per_group=MappingProxyType({"fp16": 8, "fp32": 4}),
    amp_coeff_load_bytes_per_cycle=16,
    vertex_overhead_cycles=100,
    code_base_per_tile_bytes=1000,
    vertex_state_per_layer_per_tile_bytes=10,
    exchange_buffer_fraction=0.5,
)

CHIP = ChipType(
    name="roundchip",
    tiles=4,
    sram_per_tile_bytes=100_000,
    clock_hz=1e9,
    threads_per_tile=6,
    amp_flop_per_cycle=MappingProxyType({"fp16": 64.0, "fp32": 16.0}),
    vector_flop_per_cycle=MappingProxyType({"fp16": 8.0, "fp32": 4.0}),
    local_read_bytes_per_cycle=16,
    local_write_bytes_per_cycle=8,
    exchange_bytes_per_cycle=4,
    exchange_efficiency=1.0,
    offchip_tile_efficiency=1.0,
    exchange_latency_s=0.0,
    sync_latency_s=10e-9,
    external_sync_latency_s=0.0,
    link_egress_latency_s=0.0,
    prng_bits_per_cycle=64,
    prng_efficiency=1.0,
    gaussian_uniform_draws=2.0,
    ipu_links=0,
    power_W=1.0,
    cost=COST,
)
ONE_TILE = dataclasses.replace(CHIP, tiles=1)


def layer(kind: str, cost: L.Cost, in_shape: tuple[int, ...]) -> L.Layer:
    """A Layer from a builder's Cost (what the model walker does)."""
    return L.Layer(
        name=kind,
        kind=kind,
        group="",
        input_shape=in_shape,
        output_shape=cost.output_shape,
        params=cost.params,
        forward_flops=cost.forward_flops,
        backward_input_flops=cost.backward_input_flops,
        backward_weight_flops=cost.backward_weight_flops,
        activation_elems=cost.activation_elems,
        unit=cost.unit,
        matmuls=cost.matmuls,
    )


def dense(k: int, n: int) -> L.Layer:
    return layer("dense", L.dense(spec.DenseSpec(out=n, bias=False), (k,)), (k,))


def test_matmul_that_fits_one_tile_by_hand() -> None:
    # dense 16 -> 8, batch 4: one 4x16 @ 16x8 product; one AMP pass (16 inputs, 8 outputs).
    # load 16·8 weights × 2 B / 16 B/cycle = 16; rows 4 × (16·8 MAC / 32 MAC/cycle / η 0.5) = 32;
    # compute set 100 -> 148 cycles. Exchange A 4·16·2 + B 16·8·2 = 384 B at 4 B/cycle = 96.
    c = op_cost(dense(16, 8), "fwd", 4, "fp16", ONE_TILE)
    assert c.compute_cycles == 148
    assert c.exchange_bytes == 384
    assert c.exchange_cycles == 96
    assert (c.syncs, c.tiles_used, c.flops) == (1, 1, 2 * 4 * 8 * 16)
    assert c.seconds(ONE_TILE) == pytest.approx((148 + 96) * 1e-9 + 10e-9)
    assert c.efficiency == pytest.approx(1024 / (254e-9 * 64e9))
    assert layer_seconds(dense(16, 8), "fwd", 4, "fp16", ONE_TILE) == c.seconds(ONE_TILE)


def test_partial_passes_cost_a_full_pass() -> None:
    # 3 inputs still take a 16-wide pass: the same cycles as 16 (conv1's 3 channels).
    full = plan_gemm(Gemm(4, 8, 16), "fp16", ONE_TILE)
    short = plan_gemm(Gemm(4, 8, 3), "fp16", ONE_TILE)
    assert short.compute_cycles == full.compute_cycles
    # a 7x7 kernel over 3 channels: 49 padded passes, not ceil(147 / 16) = 10
    conv = plan_gemm(Gemm(4, 8, 147, k_channels=3), "fp16", ONE_TILE)
    assert conv.compute_cycles == 49 * (16 + 4 * 8) + 100


def test_exchange_cycles_are_bytes_over_tiles_for_one_product() -> None:
    ct = load_chip_type("gc2")
    for g in (Gemm(512, 512, 512), Gemm(3136, 64, 576, k_channels=64, a_unique=1 / 9)):
        p = plan_gemm(g, "fp16", ct)
        rate = ct.exchange_bytes_per_cycle * ct.exchange_efficiency
        assert p.exchange_cycles == pytest.approx(p.exchange_bytes / (p.tiles_used * rate))
        assert p.pm * p.pn * p.pk == p.tiles_used <= ct.tiles


def test_vector_op_by_hand() -> None:
    # relu over 1,000 elements, batch 2, 4 tiles: 500 elements a tile. FLOPs 500 / 8 = 62.5,
    # reads 1,000 B / 16 = 62.5, writes 1,000 B / 8 = 125 cycles -> 125 + 100 = 225.
    relu = layer("relu", L.activation("relu")(None, (1000,)), (1000,))
    c = op_cost(relu, "fwd", 2, "fp16", CHIP)
    assert (c.compute_cycles, c.exchange_bytes, c.syncs, c.tiles_used) == (225, 0, 1, 4)
    assert c.flops == 2000
    assert c.efficiency == pytest.approx(2000 / ((225e-9 + 10e-9) * 4 * 1e9 * 8))
    # the backward pass reads two tensors: 2,000 B / 16 = 125 -> still 225
    assert op_cost(relu, "bwd_input", 2, "fp16", CHIP).compute_cycles == 225
    assert op_cost(relu, "bwd_weight", 2, "fp16", CHIP).tiles_used == 0  # no work


def test_optimizer_by_hand() -> None:
    # adam on 400 params, fp32, 4 tiles: 100 a tile; FLOPs 12·100 / 4 = 300 cycles; reads
    # (w, g, m, v) 1,600 B / 16 = 100; writes (w, m, v) 1,200 B / 8 = 150 -> 300 + 100.
    c = optimizer_cost(400, "adam", "fp32", CHIP)
    assert (c.compute_cycles, c.syncs, c.tiles_used, c.flops) == (400, 1, 4, 4800)
    assert optimizer_cost(400, "lamb", "fp32", CHIP).syncs == 2
    assert optimizer_cost(0, "sgd", "fp32", CHIP).seconds(CHIP) == 0
    assert OPTIMIZER_FLOP == {"sgd": 2, "momentum": 4, "adam": 12, "lamb": 18, "lars": 10}
    with pytest.raises(ValueError, match="optimizer"):
        optimizer_cost(1, "adagrad", "fp32", CHIP)


def test_chip_memory_from_the_chip_file() -> None:
    assert chip_memory(CHIP) == ChipMemory(400_000, 4, 1000, 10, 0.5)
    gc200 = load_chip_type("gc200")
    mem = chip_memory(gc200)
    assert mem.capacity_bytes == 1472 * 638976 and mem.tiles == 1472


def test_chip_without_a_cost_model_is_a_clear_error() -> None:
    bare = dataclasses.replace(CHIP, cost=None)
    with pytest.raises(ValueError, match="no per-tile cost model"):
        op_cost(dense(16, 8), "fwd", 1, "fp16", bare)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="phase"):
        op_cost(dense(4, 4), "backward", 1, "fp16", CHIP)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dtype"):
        op_cost(dense(4, 4), "fwd", 1, "bf16", CHIP)
    with pytest.raises(ValueError, match="micro_batch"):
        op_cost(dense(4, 4), "fwd", 0, "fp16", CHIP)


def test_splits_are_the_fewest_parts_per_block_size() -> None:
    assert splits(10, 100).tolist() == [1, 2, 3, 4, 5, 10]
    assert splits(10, 4).tolist() == [1, 2, 3, 4]
    assert splits(1, 8).tolist() == [1]


@pytest.mark.parametrize("name", model_names())
def test_products_and_vector_work_add_up_to_the_layer_flops(name: str) -> None:
    """Every phase's products never exceed its FLOPs; op_cost counts exactly the phase FLOPs."""
    model = load_model(name)
    for x in model.layers:
        for phase in PHASES:
            amp = sum(g.flops for g in layer_gemms(x, phase, 3))  # type: ignore[arg-type]
            total = {
                "fwd": x.forward_flops,
                "bwd_input": x.backward_input_flops,
                "bwd_weight": x.backward_weight_flops,
            }[phase] * 3
            assert amp <= total, (x.name, phase)
            if phase == "fwd":
                assert amp == 3 * x.forward_matmul_flops


def test_convolution_products_by_phase() -> None:
    conv = layer(
        "conv2d",
        L.conv2d(spec.Conv2dSpec(kernel=3, pad=1, out_channels=32), (16, 8, 8)),
        (16, 8, 8),
    )
    (fwd,) = layer_gemms(conv, "fwd", 2)
    assert (fwd.m, fwd.n, fwd.k, fwd.k_channels) == (128, 32, 144, 16)
    assert fwd.a_unique == pytest.approx(2 * 16 * 64 / (128 * 144))  # input / im2col = 1/9
    (bi,) = layer_gemms(conv, "bwd_input", 2)
    assert (bi.m, bi.n, bi.k, bi.k_channels) == (128, 16, 9 * 32, 32)
    (bw,) = layer_gemms(conv, "bwd_weight", 2)
    assert (bw.m, bw.n, bw.k) == (144, 32, 128)
    assert fwd.flops == bi.flops == bw.flops


def test_attention_scores_are_per_sample_products() -> None:
    att = layer(
        "attention",
        L.attention(spec.AttentionSpec(hidden=64, heads=4), (10, 64)),
        (10, 64),
    )
    fwd = layer_gemms(att, "fwd", 2)
    assert [g.groups for g in fwd] == [1, 8, 8, 1]  # qkv, scores, context, projection
    assert len(layer_gemms(att, "bwd_input", 2)) == 6  # both operand gradients of the core
    assert len(layer_gemms(att, "bwd_weight", 2)) == 2
    core = sum(mm.flops for mm in att.matmuls[1:3])
    # input gradients: the projections transposed once, the core products twice
    assert sum(g.flops for g in layer_gemms(att, "bwd_input", 2)) == 2 * (
        att.forward_matmul_flops + core
    )
