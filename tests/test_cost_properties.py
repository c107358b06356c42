"""Properties of the per-tile cost model that must hold for any shape (hypothesis):

* more work is never faster (a larger product, more groups, a larger micro-batch);
* more tiles available is never slower (the planner may always leave tiles idle);
* a plan never uses more tiles than it may, and its FLOPs are the product's.

Shapes are kept small and the chip is the shipped GC2 cut to a few tiles, so the planner's
search stays fast; the properties do not depend on the size.
"""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.config import workload as spec
from simulator.hardware.build import load_chip_type
from simulator.workloads import layers as L
from simulator.workloads.cost import PHASES, op_cost
from simulator.workloads.gemm import Gemm, gemm_seconds, plan_gemm

GC2 = load_chip_type("gc2")
SMALL = dataclasses.replace(GC2, tiles=64)

dims = st.integers(min_value=1, max_value=300)
grow = st.integers(min_value=0, max_value=200)
tile_counts = st.integers(min_value=1, max_value=64)
dtypes = st.sampled_from(["fp16", "fp32"])


def seconds(g: Gemm, dtype: str, tiles: int | None = None) -> float:
    return gemm_seconds(plan_gemm(g, dtype, SMALL, tiles), SMALL)


@settings(max_examples=60, deadline=None)
@given(dims, dims, dims, grow, grow, grow, dtypes)
def test_a_larger_product_is_never_faster(
    m: int, n: int, k: int, dm: int, dn: int, dk: int, dtype: str
) -> None:
    small = seconds(Gemm(m, n, k), dtype)
    assert seconds(Gemm(m + dm, n + dn, k + dk), dtype) >= small * (1 - 1e-12)


@settings(max_examples=40, deadline=None)
@given(dims, dims, st.integers(1, 8), st.integers(1, 8), st.integers(1, 4), dtypes)
def test_more_kernel_positions_or_channels_are_never_faster(
    m: int, n: int, channels: int, positions: int, extra: int, dtype: str
) -> None:
    base = Gemm(m, n, positions * channels, k_channels=channels)
    wider = Gemm(m, n, positions * (channels + extra), k_channels=channels + extra)
    longer = Gemm(m, n, (positions + extra) * channels, k_channels=channels)
    assert seconds(wider, dtype) >= seconds(base, dtype) * (1 - 1e-12)
    assert seconds(longer, dtype) >= seconds(base, dtype) * (1 - 1e-12)


@settings(max_examples=40, deadline=None)
@given(dims, dims, dims, st.integers(1, 100), st.integers(0, 100), dtypes)
def test_more_groups_are_never_faster(
    m: int, n: int, k: int, groups: int, more: int, dtype: str
) -> None:
    assert seconds(Gemm(m, n, k, groups + more), dtype) >= seconds(Gemm(m, n, k, groups), dtype)


@settings(max_examples=60, deadline=None)
@given(dims, dims, dims, st.integers(1, 50), tile_counts, tile_counts, dtypes)
def test_more_tiles_are_never_slower(
    m: int, n: int, k: int, groups: int, t: int, more: int, dtype: str
) -> None:
    g = Gemm(m, n, k, groups)
    few = plan_gemm(g, dtype, SMALL, t)
    many = plan_gemm(g, dtype, SMALL, min(64, t + more))
    assert gemm_seconds(many, SMALL) <= gemm_seconds(few, SMALL) * (1 + 1e-12)
    assert few.tiles_used <= t
    assert few.flops == g.flops == 2 * m * n * k * groups


@settings(max_examples=25, deadline=None)
@given(
    st.integers(1, 256),
    st.integers(1, 256),
    st.integers(1, 16),
    st.integers(0, 16),
    st.sampled_from(PHASES),
)
def test_a_larger_micro_batch_is_never_faster(
    k: int, n: int, batch: int, more: int, phase: str
) -> None:
    x = L.dense(spec.DenseSpec(out=n), (k,))
    layer = L.Layer(
        name="d",
        kind="dense",
        group="",
        input_shape=(k,),
        output_shape=x.output_shape,
        params=x.params,
        forward_flops=x.forward_flops,
        backward_input_flops=x.backward_input_flops,
        backward_weight_flops=x.backward_weight_flops,
        activation_elems=x.activation_elems,
        unit=x.unit,
        matmuls=x.matmuls,
    )
    a = op_cost(layer, phase, batch, "fp16", SMALL)  # type: ignore[arg-type]
    b = op_cost(layer, phase, batch + more, "fp16", SMALL)  # type: ignore[arg-type]
    assert b.seconds(SMALL) >= a.seconds(SMALL) * (1 - 1e-12)
    assert b.flops >= a.flops
    assert 0 < a.efficiency <= 1
