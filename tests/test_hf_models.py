"""Hugging Face config.json models (issue 14, item 4): parameter counts equal the reference
implementations', and each is re-derived here by a hand formula from the config's sizes.

The configs in tests/data/hf/ are written from the public config.json values of each
checkpoint (vit-base-patch16-224's 1,000 id2label names are replaced by num_labels: 1000).
Reference counts: ``sum(p.numel() for p in model.parameters())`` of the transformers class
named (tied weights once): GPT2LMHeadModel gpt2 124,439,808; BertModel bert-base-uncased
109,482,240, BertForMaskedLM 109,514,298, BertForPreTraining 110,106,428; LlamaForCausalLM
Llama-2-7b 6,738,415,616; MistralForCausalLM Mistral-7B-v0.1 7,241,732,096;
MixtralForCausalLM Mixtral-8x7B-v0.1 46,702,792,704; ViTForImageClassification
vit-base-patch16-224 86,567,656, ViTModel 86,389,248.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulator.cli import main
from simulator.errors import InputError
from simulator.workloads.library import load_model

HF = Path(__file__).resolve().parent / "data" / "hf"


def config(name: str) -> Path:
    return HF / name / "config.json"


def variant(tmp_path: Path, name: str, **changes: object) -> Path:
    """A copy of a fixture config with some keys changed (None removes a key)."""
    data = json.loads(config(name).read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    out = tmp_path / name / "config.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2))
    return out


# ---- hand formulas (independent of the layer algebra) -------------------------------------------


def gpt2_params(v: int, p: int, h: int, n: int) -> int:
    block = 2 * 2 * h + (h * 3 * h + 3 * h) + (h * h + h) + (h * 4 * h + 4 * h) + (4 * h * h + h)
    return v * h + p * h + n * block + 2 * h  # embeddings, blocks, final layer norm (head tied)


def bert_encoder(v: int, p: int, t: int, h: int, i: int, n: int) -> int:
    layer = 4 * (h * h + h) + 2 * h + (h * i + i) + (i * h + h) + 2 * h
    return (v + p + t) * h + 2 * h + n * layer


def llama_params(v: int, h: int, i: int, n: int, heads: int, kv: int, experts: int = 0) -> int:
    d = h // heads
    attention = h * heads * d + 2 * h * kv * d + heads * d * h
    mlp = 3 * h * i if not experts else experts * 3 * h * i + h * experts
    return v * h + n * (attention + mlp + 2 * h) + h + v * h  # untied head


def vit_params(image: int, patch: int, c: int, h: int, i: int, n: int) -> int:
    tokens = (image // patch) ** 2 + 1
    layer = 2 * 2 * h + 4 * (h * h + h) + (h * i + i) + (i * h + h)
    return c * patch * patch * h + h + h + tokens * h + n * layer + 2 * h


@pytest.mark.parametrize(
    ("name", "arch", "expected", "formula"),
    [
        ("gpt2", None, 124_439_808, gpt2_params(50257, 1024, 768, 12)),
        ("gpt2", "GPT2Model", 124_439_808, gpt2_params(50257, 1024, 768, 12)),
        ("bert-base-uncased", "BertModel", 109_482_240, bert_encoder(30522, 512, 2, 768, 3072, 12)
         + 768 * 768 + 768),
        ("bert-base-uncased", None, 109_514_298, bert_encoder(30522, 512, 2, 768, 3072, 12)
         + 768 * 768 + 768 + 2 * 768 + 30522),
        ("bert-base-uncased", "BertForPreTraining", 110_106_428,
         bert_encoder(30522, 512, 2, 768, 3072, 12) + 768 * 768 + 768 + 2 * 768 + 30522
         + 768 * 768 + 768 + 2 * 768 + 2),
        ("llama-2-7b", None, 6_738_415_616, llama_params(32000, 4096, 11008, 32, 32, 32)),
        ("mistral-7b", None, 7_241_732_096, llama_params(32000, 4096, 14336, 32, 32, 8)),
        ("mixtral-8x7b", None, 46_702_792_704, llama_params(32000, 4096, 14336, 32, 32, 8, 8)),
        ("vit-base-patch16-224", None, 86_567_656, vit_params(224, 16, 3, 768, 3072, 12)
         + 768 * 1000 + 1000),
        ("vit-base-patch16-224", "ViTModel", 86_389_248, vit_params(224, 16, 3, 768, 3072, 12)
         + 768 * 768 + 768),
    ],
)  # fmt: skip
def test_parameters_equal_the_reference_implementation(
    tmp_path: Path, name: str, arch: str | None, expected: int, formula: int
) -> None:
    path = config(name) if arch is None else variant(tmp_path, name, architectures=[arch])
    model = load_model(path)
    assert formula == expected  # the hand formula reproduces the published count
    assert model.params == expected


def test_gpt2_config_is_the_builtin_gpt2_layer_by_layer() -> None:
    hf, builtin = load_model(config("gpt2")), load_model("gpt2")
    assert [x.params for x in hf.layers] == [x.params for x in builtin.layers]
    assert [x.forward_flops for x in hf.layers] == [x.forward_flops for x in builtin.layers]
    assert hf.training_flops == builtin.training_flops
    assert hf.activation_elems == builtin.activation_elems


def test_bert_model_config_is_the_builtin_bert_base() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = variant(Path(d), "bert-base-uncased", architectures=["BertModel"])
        hf = load_model(path)
    builtin = load_model("bert-base")
    assert hf.params == builtin.params
    assert hf.forward_flops == builtin.forward_flops


def test_grouped_query_attention_and_swiglu_flops() -> None:
    """Mistral's attention: Q and O are hidden x hidden, K and V hidden x (8 x 128); the
    SwiGLU FFN has three matrices. Forward matmul FLOPs per token of one layer, by hand."""
    m = load_model(config("mistral-7b"), overrides={"seq_len": 128})
    s, h, kv, i = 128, 4096, 8 * 128, 14336
    att = next(x for x in m.layers if x.kind == "attention")
    scores_and_context = 2 * 2 * s * s * 128 * 32
    assert att.forward_matmul_flops == 2 * s * h * (h + 2 * kv) + 2 * s * h * h + (
        scores_and_context
    )
    ffn = next(x for x in m.layers if x.kind == "ffn")
    assert ffn.forward_matmul_flops == 2 * s * 3 * h * i
    moe = load_model(config("mixtral-8x7b"), overrides={"seq_len": 128})
    expert = next(x for x in moe.layers if x.kind == "moe_ffn")
    # router plus top-2 of 8 SwiGLU experts per token
    assert expert.forward_matmul_flops == 2 * s * h * 8 + 2 * (2 * s * 3 * h * i)


def test_params_override_like_a_builtin_model() -> None:
    short = load_model(config("llama-2-7b"), overrides={"seq_len": 512, "layers": 2})
    assert short.input_shape == (512,)
    assert short.params == llama_params(32000, 4096, 11008, 2, 32, 32)


def test_checkpoint_folder_holds_the_config() -> None:
    assert load_model(HF / "gpt2").params == 124_439_808


@pytest.mark.parametrize(
    ("changes", "fragment", "key"),
    [
        ({"model_type": "t5"}, "model_type 't5' is not modelled", "model_type"),
        ({"n_embd": 770}, "n_embd 770 is not divisible by n_head 12", "n_embd"),
        ({"activation_function": "mish"}, "activation 'mish' is not", "activation_function"),
        ({"n_layer": "12"}, "expected an integer", "n_layer"),
        ({"vocab_size": None}, "missing key 'vocab_size'", None),
    ],
)  # fmt: skip
def test_bad_config_names_the_key_and_line(
    tmp_path: Path, changes: dict[str, object], fragment: str, key: str | None
) -> None:
    path = variant(tmp_path, "gpt2", **changes)
    with pytest.raises(InputError) as info:
        load_model(path)
    err = info.value
    assert fragment in err.detail
    assert err.location.file == str(path)
    assert err.location.key_path == key
    if key is not None:
        line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if f'"{key}"' in t)
        assert err.location.line == line


def test_unknown_architecture_costs_the_family_default(tmp_path: Path) -> None:
    path = variant(tmp_path, "bert-base-uncased", architectures=["BertForTokenClassification"])
    model = load_model(path)
    assert model.params == 109_482_240  # BertModel with its pooler
    code = main(["model", "show", str(path)])
    assert code == 0


def test_model_show_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["model", "show", str(config("llama-2-7b")), "--json", "--param", "seq_len=64"]) == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["parameters"] == 6_738_415_616
    assert doc["input_shape"] == [64]
    assert doc["parameter_bytes"] == 2 * 6_738_415_616
    assert sum(x["params"] for x in doc["layers"]) == doc["parameters"]
    assert doc["training_flops"] > doc["forward_flops"] > 0
    assert doc["activation_bytes"] > 0


def test_model_show_text_folds_repeated_copies(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "show", "gpt2"]) == 0
    out = capsys.readouterr().out
    assert "124,439,808" in out
    assert "decoder.#.ffn.ffn" in out and "x12" in out
    assert "per sample stored for the backward pass" in out


def test_model_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["bert-base"]["parameters"] == 109_482_240
    assert rows["resnet50"]["parameters"] == 25_557_032


def test_model_show_bad_param(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "show", "gpt2", "--param", "seq_len"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
    assert main(["model", "show", "gpt2", "--param", "sequence=4"]) == 2
    assert "model has no parameter 'sequence'" in capsys.readouterr().err
