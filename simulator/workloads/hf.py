"""Hugging Face ``config.json`` files as models of the layer algebra (no ``transformers``).

A model may be given as the ``config.json`` of a Hugging Face checkpoint (or the folder holding
it). The file is read as data — YAML 1.2 reads JSON, so keys keep their line numbers for
errors — and translated into a model document of the ordinary format (``params``, ``input``,
``layers``), which :func:`simulator.workloads.model.build_model` expands like any model file.
Its ``params`` use the library's names (``seq_len``, ``layers``, ``hidden``, ...), so a
scenario overrides them the same way: ``model: {name: path/config.json, params: {seq_len:
2048}}``.

``model_type`` picks the family: ``bert``, ``gpt2``, ``llama``, ``mistral``, ``mixtral``
(mixture of experts) and ``vit``. The first of ``architectures`` picks the head, as the
reference implementation would build it:

==========  ==========================================================  =====================
family      architectures (default first)                               head
==========  ==========================================================  =====================
bert        BertModel, BertForMaskedLM, BertForPreTraining              pooler; MLM; MLM + NSP
gpt2        GPT2LMHeadModel, GPT2Model                                  LM head (tied); none
llama ...   LlamaForCausalLM, LlamaModel (Mistral..., Mixtral...)       LM head; none
vit         ViTModel, ViTForImageClassification                         pooler; classifier
==========  ==========================================================  =====================

Another architecture of a known family gets that family's default head, and the model's
description says so. Parameter counts equal the reference implementations' (GPT2LMHeadModel
gpt2: 124,439,808; BertModel bert-base-uncased: 109,482,240; LlamaForCausalLM Llama-2-7b:
6,738,415,616; tests/test_hf_models.py). Not modelled: Mistral's sliding-window attention
(attention spans the whole sequence), dropout, and the embedding scaling and padding of some
checkpoints; bfloat16 weights are costed as fp16 (same bytes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulator.config.yamlio import Document, load_document
from simulator.errors import InputError, did_you_mean, one_of

FAMILIES: dict[str, str] = {
    "bert": "bert",
    "gpt2": "gpt2",
    "llama": "llama",
    "mistral": "llama",
    "mixtral": "llama",
    "vit": "vit",
}

_ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_new": "gelu",
    "gelu_fast": "gelu",
    "gelu_pytorch_tanh": "gelu",
    "quick_gelu": "gelu",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
}


def is_hf_config(path: Path) -> bool:
    """A ``.json`` file is read as a Hugging Face config (model files are YAML)."""
    return path.suffix.lower() == ".json"


@dataclass
class _Config:
    """A config's data with the file context for errors."""

    doc: Document
    path: Path

    def error(self, key: str | None, message: str) -> InputError:
        file, line = self.doc.location((key,) if key else ())
        return InputError(message, file=file, line=line, key_path=key)

    def get(self, key: str, default: Any = None, *, kind: type = int) -> Any:
        data = self.doc.data
        if key not in data or data[key] is None:
            if default is None:
                raise self.error(None, f"missing key '{key}' (needed for this model_type)")
            return default
        value = data[key]
        if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
            want = {int: "an integer", bool: "true or false"}.get(kind, "a value")
            raise self.error(key, f"expected {want}, got {value!r}")
        if kind is int and isinstance(value, int) and value <= 0:
            raise self.error(key, f"must be a positive integer, got {value}")
        return value

    def first(self, *keys: str, default: Any = None) -> Any:
        """The first of ``keys`` present (configs name the same size differently)."""
        for key in keys:
            if self.doc.data.get(key) is not None:
                return self.get(key)
        if default is not None:
            return default
        raise self.error(None, f"missing key '{keys[0]}' (needed for this model_type)")

    def activation(self, *keys: str, default: str) -> str:
        for key in keys:
            value = self.doc.data.get(key)
            if value is None:
                continue
            if value not in _ACTIVATIONS:
                raise self.error(
                    key,
                    f"activation {value!r} is not modelled{did_you_mean(str(value), _ACTIVATIONS)};"
                    f" {one_of(_ACTIVATIONS)}",
                )
            return _ACTIVATIONS[value]
        return default

    def divides(self, small: str, big: str, a: int, b: int) -> None:
        if b % a:
            raise self.error(big, f"{big} {b} is not divisible by {small} {a}")


def _name(cfg: _Config) -> str:
    given = cfg.doc.data.get("_name_or_path")
    if isinstance(given, str) and given.strip():
        return given.strip().rstrip("/").rsplit("/", 1)[-1]
    return cfg.path.parent.name if cfg.path.stem == "config" else cfg.path.stem


def _architecture(cfg: _Config, family: str, known: set[str], default: str) -> tuple[str, str]:
    """(the architecture modelled, a note when the config asked for another one)."""
    archs = cfg.doc.data.get("architectures")
    if archs is None:
        return default, ""
    if not isinstance(archs, list) or not archs or not isinstance(archs[0], str):
        raise cfg.error("architectures", f"expected a list of class names, got {archs!r}")
    if archs[0] in known:
        return archs[0], ""
    return default, f"; {archs[0]} is not modelled, its {family} backbone is costed as {default}"


# ---- families -----------------------------------------------------------------------------------


def _bert(cfg: _Config) -> tuple[dict[str, Any], list[Any], str]:
    arch, note = _architecture(
        cfg,
        "bert",
        {"BertModel", "BertForMaskedLM", "BertForPreTraining"},
        "BertModel",
    )
    hidden, heads = cfg.get("hidden_size"), cfg.get("num_attention_heads")
    cfg.divides("num_attention_heads", "hidden_size", heads, hidden)
    params = {
        "seq_len": cfg.get("max_position_embeddings"),
        "vocab": cfg.get("vocab_size"),
        "positions": cfg.get("max_position_embeddings"),
        "token_types": cfg.get("type_vocab_size", 2),
        "hidden": hidden,
        "heads": heads,
        "intermediate": cfg.get("intermediate_size"),
        "layers": cfg.get("num_hidden_layers"),
    }
    act = cfg.activation("hidden_act", default="gelu")
    layers: list[Any] = [
        {
            "embedding": {
                "vocab": "${vocab}",
                "hidden": "${hidden}",
                "positions": "${positions}",
                "token_types": "${token_types}",
            }
        },
        "layernorm",
        _repeat(
            "encoder",
            [
                {
                    "residual": {
                        "name": "attention",
                        "body": [{"attention": {"heads": "${heads}", "hidden": "${hidden}"}}],
                        "post": ["layernorm"],
                    }
                },
                {
                    "residual": {
                        "name": "ffn",
                        "body": [{"ffn": _ffn(act)}],
                        "post": ["layernorm"],
                    }
                },
            ],
        ),
    ]
    mlm = [{"dense": {"out": "${hidden}"}}, act, "layernorm", {"lm_head": _lm(True, bias=True)}]
    if arch == "BertModel":
        layers.append("pooler")
    elif arch == "BertForMaskedLM":
        layers += mlm
    else:  # BertForPreTraining: next-sentence head beside the masked-LM head
        layers += [{"side_head": {"classes": 2}}, *mlm]
    return params, layers, arch + note


def _gpt2(cfg: _Config) -> tuple[dict[str, Any], list[Any], str]:
    arch, note = _architecture(cfg, "gpt2", {"GPT2LMHeadModel", "GPT2Model"}, "GPT2LMHeadModel")
    hidden, heads = cfg.first("n_embd", "hidden_size"), cfg.first("n_head", "num_attention_heads")
    cfg.divides("n_head", "n_embd", heads, hidden)
    positions = cfg.first("n_positions", "max_position_embeddings")
    params = {
        "seq_len": positions,
        "vocab": cfg.get("vocab_size"),
        "positions": positions,
        "hidden": hidden,
        "heads": heads,
        "intermediate": cfg.first("n_inner", default=4 * hidden),
        "layers": cfg.first("n_layer", "num_hidden_layers"),
    }
    act = cfg.activation("activation_function", default="gelu")
    layers: list[Any] = [
        {"embedding": {"vocab": "${vocab}", "hidden": "${hidden}", "positions": "${positions}"}},
        _pre_ln_stack("decoder", {"causal": True}, act),
        "layernorm",
    ]
    if arch == "GPT2LMHeadModel":
        layers.append({"lm_head": _lm(bool(cfg.get("tie_word_embeddings", True, kind=bool)))})
    return params, layers, arch + note


def _llama(cfg: _Config) -> tuple[dict[str, Any], list[Any], str]:
    kind = cfg.doc.data["model_type"]
    prefix = {"llama": "Llama", "mistral": "Mistral", "mixtral": "Mixtral"}[kind]
    arch, note = _architecture(
        cfg, kind, {f"{prefix}ForCausalLM", f"{prefix}Model"}, f"{prefix}ForCausalLM"
    )
    hidden, heads = cfg.get("hidden_size"), cfg.get("num_attention_heads")
    kv = cfg.get("num_key_value_heads", heads)
    cfg.divides("num_key_value_heads", "num_attention_heads", kv, heads)
    head_dim = cfg.get("head_dim", 0) or None
    if head_dim is None:
        cfg.divides("num_attention_heads", "hidden_size", heads, hidden)
    positions = cfg.get("max_position_embeddings")
    params: dict[str, Any] = {
        "seq_len": positions,
        "vocab": cfg.get("vocab_size"),
        "hidden": hidden,
        "heads": heads,
        "kv_heads": kv,
        "head_dim": head_dim or hidden // heads,
        "intermediate": cfg.get("intermediate_size"),
        "layers": cfg.get("num_hidden_layers"),
    }
    act = cfg.activation("hidden_act", default="silu")
    bias = bool(cfg.get("attention_bias", False, kind=bool))
    mlp_bias = bool(cfg.get("mlp_bias", False, kind=bool))
    attention = {
        "attention": {
            "heads": "${heads}",
            "hidden": "${hidden}",
            "kv_heads": "${kv_heads}",
            "head_dim": "${head_dim}",
            "bias": bias,
            "causal": True,
            "rotary": True,
        }
    }
    if kind == "mixtral":
        params["experts"] = cfg.get("num_local_experts")
        params["top_k"] = cfg.get("num_experts_per_tok")
        ffn: dict[str, Any] = {
            "moe_ffn": {
                "experts": "${experts}",
                "top_k": "${top_k}",
                "hidden": "${hidden}",
                "intermediate": "${intermediate}",
                "activation": act,
                "bias": False,
                "gated": True,
            }
        }
    else:
        ffn = {"ffn": {**_ffn(act), "bias": mlp_bias, "gated": True}}
    layers: list[Any] = [
        {"embedding": {"vocab": "${vocab}", "hidden": "${hidden}"}},
        _repeat(
            "decoder",
            [_pre_norm("attention", "rmsnorm", attention), _pre_norm("ffn", "rmsnorm", ffn)],
        ),
        "rmsnorm",
    ]
    if arch.endswith("ForCausalLM"):
        layers.append({"lm_head": _lm(bool(cfg.get("tie_word_embeddings", False, kind=bool)))})
    return params, layers, arch + note


def _vit(cfg: _Config) -> tuple[dict[str, Any], list[Any], str]:
    arch, note = _architecture(cfg, "vit", {"ViTModel", "ViTForImageClassification"}, "ViTModel")
    hidden, heads = cfg.get("hidden_size"), cfg.get("num_attention_heads")
    cfg.divides("num_attention_heads", "hidden_size", heads, hidden)
    image, patch = cfg.get("image_size"), cfg.get("patch_size")
    cfg.divides("patch_size", "image_size", patch, image)
    params: dict[str, Any] = {
        "image": image,
        "patch": patch,
        "channels": cfg.get("num_channels", 3),
        "hidden": hidden,
        "heads": heads,
        "intermediate": cfg.get("intermediate_size"),
        "layers": cfg.get("num_hidden_layers"),
    }
    act = cfg.activation("hidden_act", default="gelu")
    qkv_bias = bool(cfg.get("qkv_bias", True, kind=bool))
    layers: list[Any] = [
        {
            "conv2d": {
                "kernel": "${patch}",
                "stride": "${patch}",
                "out_channels": "${hidden}",
                "bias": True,
            }
        },
        "image_tokens",
        _pre_ln_stack("encoder", {"bias": qkv_bias}, act),
        "layernorm",
    ]
    if arch == "ViTModel":
        layers.append("pooler")
    else:
        labels = cfg.doc.data.get("id2label")
        default = len(labels) if isinstance(labels, dict) and labels else 2
        params["classes"] = cfg.get("num_labels", default)
        layers += ["first_token", {"dense": {"out": "${classes}"}}]
    return params, layers, arch + note


_BUILDERS: dict[str, Callable[[_Config], tuple[dict[str, Any], list[Any], str]]] = {
    "bert": _bert,
    "gpt2": _gpt2,
    "llama": _llama,
    "vit": _vit,
}


def _ffn(act: str) -> dict[str, Any]:
    return {"hidden": "${hidden}", "intermediate": "${intermediate}", "activation": act}


def _lm(tied: bool, *, bias: bool = False) -> dict[str, Any]:
    return {"vocab": "${vocab}", "tied": tied, "bias": bias}


def _pre_norm(name: str, norm: str, layer: dict[str, Any]) -> dict[str, Any]:
    return {"residual": {"name": name, "body": [norm, layer]}}


def _pre_ln_stack(name: str, attention: dict[str, Any], act: str) -> dict[str, Any]:
    """``layers`` pre-layer-norm transformer blocks (GPT-2, ViT): layer norm, attention (with
    ``attention``'s extra keys), add; layer norm, FFN, add."""
    att = {"attention": {"heads": "${heads}", "hidden": "${hidden}", **attention}}
    return _repeat(
        name,
        [
            _pre_norm("attention", "layernorm", att),
            _pre_norm("ffn", "layernorm", {"ffn": _ffn(act)}),
        ],
    )


def _repeat(name: str, body: list[Any]) -> dict[str, Any]:
    return {"repeat": {"name": name, "times": "${layers}", "body": body}}


# ---- entry point --------------------------------------------------------------------------------


def hf_document(path: str | Path) -> Document:
    """The model document (the format of models/*.yaml) for a Hugging Face ``config.json``."""
    path = Path(path)
    doc = load_document(path)
    cfg = _Config(doc, path)
    model_type = doc.data.get("model_type")
    if model_type is None:
        raise cfg.error(
            None,
            "a .json model must be a Hugging Face config.json with 'model_type' "
            f"({one_of(FAMILIES)})",
        )
    if model_type not in FAMILIES:
        raise cfg.error(
            "model_type",
            f"model_type '{model_type}' is not modelled{did_you_mean(str(model_type), FAMILIES)}; "
            f"{one_of(FAMILIES)}",
        )
    params, layers, arch = _BUILDERS[FAMILIES[model_type]](cfg)
    input_shape: list[Any] = (
        ["${channels}", "${image}", "${image}"] if FAMILIES[model_type] == "vit" else ["${seq_len}"]
    )
    name = _name(cfg)
    data = {
        "schema_version": 1,
        "kind": "model",
        "name": name,
        "description": f"Hugging Face {model_type} config: {arch}",
        "source": f"{path.name} ({model_type}, {arch.split(';')[0]})",
        "params": params,
        "input": input_shape,
        "dtype": "fp16",
        "layers": layers,
    }
    # errors inside the generated layers name the config file (no line: nobody wrote them)
    return Document(data, str(path))
