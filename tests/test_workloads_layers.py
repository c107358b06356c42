"""Layer algebra against hand counts (per sample; 2 FLOP per multiply-add, no bias adds)."""

from __future__ import annotations

import pytest

from simulator.config import workload as spec
from simulator.workloads import layers as L
from simulator.workloads.expr import ExprError, evaluate, substitute


def test_dense_3_to_4_by_hand() -> None:
    c = L.dense(spec.DenseSpec(out=4), (3,))
    assert c.params == 3 * 4 + 4 == 16
    assert c.forward_flops == 2 * 3 * 4 == 24
    assert c.backward_input_flops == 24  # dX = dY W^T
    assert c.backward_weight_flops == 24 + 4  # dW = X^T dY, plus the bias gradient
    assert c.activation_elems == 4
    assert c.matmuls == (L.MatMul(m=1, n=4, k=3),)
    assert c.unit == "matmul"


def test_dense_on_a_sequence_applies_per_token() -> None:
    c = L.dense(spec.DenseSpec(out=4, bias=False), (5, 3))
    assert c.output_shape == (5, 4)
    assert c.params == 12
    assert c.forward_flops == 2 * 5 * 3 * 4


def test_conv_by_hand() -> None:
    # 3 -> 16 channels, 3x3, pad 1, stride 1 on 32x32: 432 weights, 32*32 outputs per channel.
    c = L.conv2d(spec.Conv2dSpec(kernel=3, out_channels=16, pad=1), (3, 32, 32))
    assert c.output_shape == (16, 32, 32)
    assert c.params == 3 * 3 * 3 * 16 == 432
    assert c.forward_flops == 2 * 432 * 32 * 32
    assert c.matmuls == (L.MatMul(m=1024, n=16, k=27),)
    # stride 2, no pad, 7x7 kernel on 224: (224 - 7) // 2 + 1 = 109
    c = L.conv2d(spec.Conv2dSpec(kernel=7, out_channels=8, stride=2, bias=True), (3, 224, 224))
    assert c.output_shape == (8, 109, 109)
    assert c.params == 7 * 7 * 3 * 8 + 8


def test_norms_and_pooling() -> None:
    assert L.batchnorm(spec.BatchNormSpec(), (16, 8, 8)).params == 32
    assert L.batchnorm(spec.BatchNormSpec(affine=False), (16, 8, 8)).params == 0
    assert L.layernorm(spec.LayerNormSpec(), (10, 768)).params == 1536
    p = L.pool(spec.PoolSpec(op="max", kernel=3, stride=2, pad=1), (64, 112, 112))
    assert p.output_shape == (64, 56, 56)
    assert L.global_pool(spec.GlobalPoolSpec(), (64, 8, 8)).output_shape == (64,)


def test_attention_by_hand() -> None:
    s, h, a = 4, 8, 2
    c = L.attention(spec.AttentionSpec(heads=a, hidden=h), (s, h))
    assert c.params == 4 * (h * h + h)
    matmul = 2 * s * h * 3 * h + 2 * s * h * h + 2 * (2 * s * s * h)  # QKV, out, QK^T and PV
    assert sum(mm.flops for mm in c.matmuls) == matmul
    assert c.forward_flops == matmul + 5 * a * s * s  # + softmax
    assert c.activation_elems == 3 * s * h + a * s * s + 2 * s * h


def test_ffn_and_moe_by_hand() -> None:
    s, h, i = 3, 4, 16
    f = L.ffn(spec.FfnSpec(hidden=h, intermediate=i), (s, h))
    assert f.params == h * i + i + i * h + h
    assert sum(mm.flops for mm in f.matmuls) == 2 * (2 * s * h * i)
    m = L.moe_ffn(spec.MoeFfnSpec(experts=4, top_k=2, hidden=h, intermediate=i), (s, h))
    assert m.params == h * 4 + 4 * f.params  # router without bias + 4 experts
    assert sum(mm.flops for mm in m.matmuls) == 2 * s * h * 4 + 2 * (2 * (2 * s * h * i))


def test_embedding_and_tied_head() -> None:
    e = L.embedding(spec.EmbeddingSpec(vocab=100, hidden=8, positions=16, token_types=2), (10,))
    assert e.params == (100 + 16 + 2) * 8
    assert e.forward_flops == 2 * 10 * 8  # two table sums
    head = L.lm_head(spec.LmHeadSpec(vocab=100), (10, 8))
    assert head.params == 0
    assert head.forward_flops == 2 * 10 * 8 * 100


@pytest.mark.parametrize(
    ("builder", "args", "shape", "key"),
    [
        (L.attention, spec.AttentionSpec(heads=3, hidden=8), (4, 8), "heads"),
        (L.attention, spec.AttentionSpec(heads=2, hidden=8), (4, 6), "hidden"),
        (L.ffn, spec.FfnSpec(hidden=8, intermediate=4), (4, 6), "hidden"),
        (L.embedding, spec.EmbeddingSpec(vocab=9, hidden=4, positions=8), (9,), "positions"),
        (L.conv2d, spec.Conv2dSpec(kernel=5, out_channels=2), (1, 3, 3), "kernel"),
        (L.moe_ffn, spec.MoeFfnSpec(experts=2, top_k=3, hidden=4, intermediate=4), (2, 4), "top_k"),
        (L.conv2d, spec.Conv2dSpec(kernel=3, out_channels=2), (10,), None),
    ],
)
def test_shape_errors_name_the_key(builder, args, shape, key) -> None:
    with pytest.raises(L.ShapeError) as info:
        builder(args, shape)
    assert info.value.key == key


def test_expressions_are_safe_and_exact() -> None:
    env = {"hidden": 1024, "heads": 16}
    assert evaluate("hidden / heads", env) == 64
    assert evaluate("4 * hidden + 1", env) == 4097
    assert evaluate("-(hidden // 3)", env) == -341
    assert substitute("${hidden}", env) == 1024
    assert substitute("block${heads}", env) == "block16"
    assert substitute({"a": ["${heads * 2}"]}, env) == {"a": [32]}
    for bad in ("hidden / 3", "__import__('os')", "hiden", "hidden ** 2", "1 / 0", "a b"):
        with pytest.raises(ExprError):
            evaluate(bad, env)
