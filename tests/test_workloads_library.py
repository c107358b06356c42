"""Library models: parameter counts pinned exactly, each checked by an independent hand formula.

Sources of the pinned counts:
* mlp (defaults) — Gressmann et al. 2020, arXiv 2011.04720, Table 1 "FC-MNIST D = 101,770".
* resnet8 — the same paper, Fig. 1: "a D = 78,330 parameter ResNet-8" (variant in docs/models.md).
* resnet50 — torchvision ``resnet50`` (v1.5): 25,557,032 parameters; its model card lists
  4.09 GFLOPS, which torchvision counts as multiply-adds: ~8.2 GFLOP forward per 224² image.
* bert-base / bert-large — Hugging Face ``BertModel`` (embeddings + encoder + pooler, no
  pre-training heads), uncased vocabulary 30,522: 109,482,240 and 335,141,888.
* gpt2 family — Hugging Face ``GPT2LMHeadModel`` (tied head): 124,439,808 / 354,823,168 /
  774,030,080 / 1,557,611,200.
"""

from __future__ import annotations

import pytest

from simulator.workloads.library import load_model, model_names


def bert_params(vocab: int, pos: int, h: int, inter: int, layers: int) -> int:
    """Embeddings (+LN) + layers x (4 attention dense + LN + 2 FFN dense + LN) + pooler."""
    emb = (vocab + pos + 2) * h + 2 * h
    layer = 4 * (h * h + h) + 2 * h + (h * inter + inter) + (inter * h + h) + 2 * h
    return emb + layers * layer + (h * h + h)


def gpt2_params(layers: int, h: int, vocab: int = 50257, pos: int = 1024) -> int:
    """wte + wpe + layers x (ln1 + c_attn + c_proj + ln2 + c_fc + c_proj) + ln_f; head tied."""
    layer = (
        2 * h + (h * 3 * h + 3 * h) + (h * h + h) + 2 * h + (h * 4 * h + 4 * h) + (4 * h * h + h)
    )
    return (vocab + pos) * h + layers * layer + 2 * h


def cifar_resnet8_params() -> int:
    """3x3 convs without bias, BN (scale, shift) after each, 1x1 projection + BN on every block."""
    widths, conv, bn, proj = [16, 32, 64], 3 * 3 * 3 * 16, 2 * 16, 0
    cin = 16
    for w in widths:
        conv += 9 * cin * w + 9 * w * w
        bn += 2 * (2 * w) + 2 * w  # two BNs in the body, one on the shortcut
        proj += cin * w
        cin = w
    return conv + bn + proj + (64 * 10 + 10)


PINNED = {
    "mlp": (101_770, 784 * 128 + 128 + 128 * 10 + 10),
    "resnet8": (78_330, cifar_resnet8_params()),
    "resnet50": (25_557_032, None),
    "bert-base": (109_482_240, bert_params(30522, 512, 768, 3072, 12)),
    "bert-large": (335_141_888, bert_params(30522, 512, 1024, 4096, 24)),
    "gpt2": (124_439_808, gpt2_params(12, 768)),
    "gpt2-medium": (354_823_168, gpt2_params(24, 1024)),
    "gpt2-large": (774_030_080, gpt2_params(36, 1280)),
    "gpt2-xl": (1_557_611_200, gpt2_params(48, 1600)),
    "gpt3-6.7b": (6_658_404_352, gpt2_params(32, 4096, pos=2048)),
    "gpt": (124_439_808, gpt2_params(12, 768)),
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_pinned_parameter_counts(name: str) -> None:
    published, by_hand = PINNED[name]
    if by_hand is not None:
        assert by_hand == published
    assert load_model(name).params == published


def test_resnet50_by_hand_and_macs() -> None:
    """Bottleneck stages [3, 4, 6, 3] by hand; forward ~4.09 G multiply-adds (torchvision)."""
    total, cin = 7 * 7 * 3 * 64 + 2 * 64, 64
    for width, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for b in range(blocks):
            total += (
                cin * width + width * width * 9 + width * 4 * width + 2 * (2 * width + 4 * width)
            )
            if b == 0:
                total += cin * 4 * width + 2 * 4 * width
            cin = 4 * width
    total += 2048 * 1000 + 1000
    assert total == 25_557_032
    m = load_model("resnet50")
    macs = sum(x.forward_matmul_flops for x in m.layers) / 2
    assert macs == pytest.approx(4.09e9, rel=0.01)
    assert m.forward_flops == pytest.approx(8.2e9, rel=0.02)  # + element-wise work
    assert m.layers[-1].output_shape == (1000,)


def test_bert_flops_match_the_closed_form() -> None:
    """Matmul FLOPs = L (24 S H^2 + 4 S^2 H) + pooler 2 H^2 (Kaplan-style count)."""
    for seq in (128, 512):
        m = load_model("bert-large", overrides={"seq_len": seq})
        h, layers = 1024, 24
        expected = (
            layers
            * (
                2 * seq * h * 3 * h
                + 2 * seq * h * h
                + 2 * 2 * seq * seq * h
                + 2 * 2 * seq * h * 4 * h
            )
            + 2 * h * h
        )
        assert sum(x.forward_matmul_flops for x in m.layers) == expected
        assert m.params == 335_141_888  # sequence length changes FLOPs, not parameters


def test_gpt2_flops_include_the_tied_head() -> None:
    m = load_model("gpt2")
    s, h, v = 1024, 768, 50257
    per_layer = 24 * s * h * h + 4 * s * s * h
    assert sum(x.forward_matmul_flops for x in m.layers) == 12 * per_layer + 2 * s * h * v


def test_moe_transformer_count_by_hand() -> None:
    h, inter, e, v, pos, pairs = 768, 3072, 8, 50257, 1024, 6
    attn = 2 * h + 4 * (h * h + h)
    ffn = 2 * h + 2 * h * inter + inter + h
    moe = 2 * h + h * e + e * (2 * h * inter + inter + h)
    expected = (v + pos) * h + pairs * (2 * attn + ffn + moe) + 2 * h
    m = load_model("moe-transformer")
    assert m.params == expected == 322_818_816
    m4 = load_model("moe-transformer", overrides={"experts": 16, "top_k": 1})
    assert m4.params == expected + pairs * (8 * h + 8 * (2 * h * inter + inter + h))


def test_parameterised_sizes() -> None:
    assert load_model("mlp", overrides={"depth": 3, "hidden": 10}).params == (
        784 * 10 + 10 + 2 * (10 * 10 + 10) + 10 * 10 + 10
    )
    assert load_model("gpt", overrides={"layers": 24, "hidden": 1024, "heads": 16}).params == (
        gpt2_params(24, 1024)
    )


def test_every_library_model_loads_with_consistent_totals() -> None:
    names = model_names()
    assert set(PINNED) | {"moe-transformer"} <= set(names)
    for name in names:
        m = load_model(name)
        assert m.params > 0 and m.forward_flops > 0
        assert len({x.name for x in m.layers}) == len(m.layers)  # names are unique
        assert m.layers[0].input_shape == m.input_shape
        assert m.backward_weight_flops > 0
        assert m.training_flops < 3.1 * m.forward_flops


def test_bert_groups_split_attention_and_ffn() -> None:
    groups = load_model("bert-large").groups()
    assert "encoder.0.attention" in groups and "encoder.23.ffn" in groups
