"""``ipusim model list`` and ``ipusim model show NAME_OR_PATH [--json]`` (docs/models.md).

``show`` reads a built-in model, a model file or a Hugging Face ``config.json`` (or the folder
holding one) and prints its parameters, FLOPs per sample (forward, and forward + backward for
training), the activation bytes one sample stores for the backward pass, and the layer table.
In text, the copies of a repeated block whose figures are identical are one row with a count;
``--json`` lists every layer. ``--param KEY=VALUE`` overrides a model parameter as a scenario's
``model: {name: ..., params: {...}}`` does.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from simulator.errors import InputError
from simulator.present import binary_bytes as _bytes
from simulator.present import si_prefix, table

EXIT_OK = 0
_COPY = re.compile(r"\.(\d+)(?=\.|$)")


def add_model_commands(sub: Any) -> None:
    """Register ``model list`` and ``model show`` on the top-level subparsers."""
    model = sub.add_parser(
        "model",
        help="inspect models: parameters, FLOPs, activations, layers",
        description="Inspect the built-in models, model files and Hugging Face config.json "
        "files (bert, gpt2, llama, mistral, mixtral, vit).",
    )
    msub = model.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    lst = msub.add_parser("list", help="the built-in models with parameters and FLOPs")
    lst.add_argument("--json", action="store_true", help="print one JSON document")
    lst.set_defaults(func=cmd_model_list)
    show = msub.add_parser(
        "show",
        help="parameters, FLOPs per sample, activation bytes and the layer table of a model",
        description="Describe one model: a built-in name (gpt2), a model file, or a Hugging "
        "Face config.json (or the folder holding it).",
        epilog="Example: ipusim model show gpt2 --param seq_len=512",
    )
    show.add_argument("model", help="built-in name, model file, or Hugging Face config.json")
    show.add_argument("--json", action="store_true", help="print one JSON document")
    show.add_argument(
        "--param",
        action="append",
        metavar="KEY=VALUE",
        help="override a model parameter (e.g. seq_len=512); repeatable",
    )
    show.add_argument(
        "--dtype",
        choices=("fp16", "fp32"),
        help="bytes per value for the activation and weight bytes (default: the model's dtype)",
    )
    show.set_defaults(func=cmd_model_show)


def _overrides(texts: list[str] | None) -> dict[str, int | float]:
    from simulator.config.yamlio import parse_value

    out: dict[str, int | float] = {}
    for text in texts or []:
        key, sep, raw = text.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--param: expected KEY=VALUE, got {text!r}")
        value = parse_value(raw, "--param")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InputError(f"--param: {key.strip()}: expected a number, got {raw!r}")
        out[key.strip()] = value
    return out


def describe_model(model: Any, dtype: str | None = None) -> dict[str, Any]:
    """The ``model show --json`` document of a :class:`~simulator.workloads.model.Model`."""
    from simulator.workloads.layers import DTYPE_BYTES

    dt = dtype or model.dtype
    size = DTYPE_BYTES[dt]
    return {
        "name": model.name,
        "dtype": dt,
        "input_shape": list(model.input_shape),
        "params_used": dict(model.params_used),
        "parameters": model.params,
        "parameter_bytes": model.params * size,
        "forward_flops": model.forward_flops,
        "forward_matmul_flops": sum(x.forward_matmul_flops for x in model.layers),
        "backward_flops": model.backward_input_flops + model.backward_weight_flops,
        "training_flops": model.training_flops,
        "activation_bytes": model.activation_elems * size,
        "layers": [
            {
                "name": x.name,
                "kind": x.kind,
                "group": x.group,
                "input_shape": list(x.input_shape),
                "output_shape": list(x.output_shape),
                "params": x.params,
                "forward_flops": x.forward_flops,
                "backward_input_flops": x.backward_input_flops,
                "backward_weight_flops": x.backward_weight_flops,
                "activation_elems": x.activation_elems,
            }
            for x in model.layers
        ],
    }


def _flops(x: float) -> str:
    return si_prefix(x, "FLOP")


def _rows(desc: dict[str, Any]) -> list[tuple[str, str, str, int, int, int, int]]:
    """Layer rows with identical copies of repeated blocks folded: (name, kind, output shape,
    count, params, forward FLOPs, activation elements), the figures per copy."""
    rows: dict[tuple[Any, ...], list[Any]] = {}
    for x in desc["layers"]:
        name = _COPY.sub(".#", x["name"], count=1)
        key = (
            name,
            x["kind"],
            tuple(x["output_shape"]),
            x["params"],
            x["forward_flops"],
            x["activation_elems"],
        )
        if key in rows:
            rows[key][3] += 1
        else:
            shape = "x".join(str(d) for d in x["output_shape"])
            rows[key] = [name, x["kind"], shape, 1, x["params"], x["forward_flops"], key[5]]
    return [tuple(r) for r in rows.values()]  # type: ignore[misc]


def format_model(desc: dict[str, Any], description: str = "") -> str:
    """Text of ``model show``."""
    dt, size = desc["dtype"], desc["parameter_bytes"] / max(desc["parameters"], 1)
    shape = " x ".join(str(d) for d in desc["input_shape"])
    params = ", ".join(f"{k}={v:g}" for k, v in desc["params_used"].items())
    lines = [
        f"model       {desc['name']}" + (f": {description}" if description else ""),
        f"input       {desc['input_shape'][0]:,} tokens per sample"
        if len(desc["input_shape"]) == 1
        else f"input       {shape} per sample",
        f"parameters  {desc['parameters']:,} ({_bytes(desc['parameter_bytes'])} in {dt})",
        f"forward     {_flops(desc['forward_flops'])} per sample "
        f"({_flops(desc['forward_matmul_flops'])} in matrix products)",
        f"training    {_flops(desc['training_flops'])} per sample (forward + backward)",
        f"activations {_bytes(desc['activation_bytes'])} per sample stored for the backward pass "
        f"({dt}, no recomputation)",
    ]
    if params:
        lines.append(f"params      {params}")
    lines += ["", "layers (per sample; # = every copy of a repeated block, figures per copy)"]
    rows = [["name", "kind", "output", "copies", "params", "forward", f"act. {dt}"]]
    for name, kind, out, count, p, f, act in _rows(desc):
        rows.append([name, kind, out, f"x{count}", f"{p:,}", _flops(f), _bytes(act * size)])
    lines += ["  " + r for r in table(rows, {3, 4, 5, 6})]
    return "\n".join(lines) + "\n"


def _description(name_or_path: str) -> str:
    from simulator.workloads.hf import hf_document, is_hf_config
    from simulator.workloads.library import model_file

    path = model_file(name_or_path)
    if is_hf_config(path):
        return str(hf_document(path).data.get("description", ""))
    from simulator.config.yamlio import load_document

    data = load_document(path).data
    return str(data.get("description", "")) if isinstance(data, dict) else ""


def cmd_model_show(args: argparse.Namespace) -> int:
    """``ipusim model show``."""
    from simulator.workloads.library import load_model

    model = load_model(args.model, overrides=_overrides(args.param) or None)
    desc = describe_model(model, args.dtype)
    if args.json:
        sys.stdout.write(json.dumps(desc, indent=2) + "\n")
    else:
        sys.stdout.write(format_model(desc, _description(args.model)))
    return EXIT_OK


def cmd_model_list(args: argparse.Namespace) -> int:
    """``ipusim model list``: every built-in model with its headline figures."""
    from simulator.config.paths import require_builtin_names
    from simulator.workloads.library import load_model

    rows: list[dict[str, Any]] = []
    for name in require_builtin_names("model"):
        m = load_model(name)
        rows.append(
            {
                "name": name,
                "parameters": m.params,
                "forward_flops": m.forward_flops,
                "training_flops": m.training_flops,
                "input_shape": list(m.input_shape),
                "description": _description(name),
            }
        )
    if args.json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return EXIT_OK
    text = [["model", "parameters", "forward/sample", "input", "description"]]
    for r in rows:
        shape = "x".join(str(d) for d in r["input_shape"])
        text.append(
            [r["name"], f"{r['parameters']:,}", _flops(r["forward_flops"]), shape, r["description"]]
        )
    print("\n".join(table(text, {1, 2})))
    print("\nA model may also be a file: ipusim model show path/to/config.json (Hugging Face).")
    return EXIT_OK
