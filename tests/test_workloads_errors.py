"""Bad model files: one clear InputError naming the file, the line and the key path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from simulator.errors import InputError
from simulator.workloads.library import load_model

HEADER = """\
schema_version: 1
kind: model
name: t
params: {hidden: 8, heads: 2}
input: [4, "${hidden}"]
layers:
"""


def write(tmp_path: Path, layers: str, header: str = HEADER) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(header + textwrap.indent(textwrap.dedent(layers), "  "))
    return path


def error_of(path: Path, **kw) -> InputError:
    with pytest.raises(InputError) as info:
        load_model(path, **kw)
    return info.value


def test_unknown_layer_type(tmp_path: Path) -> None:
    path = write(tmp_path, "- dense: {out: 8}\n- atention: {heads: 2, hidden: 8}\n")
    err = error_of(path)
    assert err.location.file == str(path)
    assert err.location.line == 8
    assert err.location.key_path == "layers[1]"
    assert "unknown layer type 'atention'" in str(err) and "did you mean 'attention'" in str(err)


def test_mismatched_dimensions(tmp_path: Path) -> None:
    path = write(tmp_path, "- dense: {out: 6}\n- attention:\n    heads: 2\n    hidden: 8\n")
    err = error_of(path)
    assert (err.location.line, err.location.key_path) == (10, "layers[1].attention.hidden")
    assert "does not match the input's 6 features" in str(err)


def test_residual_shapes_must_compose(tmp_path: Path) -> None:
    path = write(tmp_path, "- residual:\n    body:\n      - dense: {out: 4}\n")
    err = error_of(path)
    assert err.location.key_path == "layers[0].residual.body"
    assert "does not match shortcut output" in str(err)


@pytest.mark.parametrize("bad", ["0", "-3"])
def test_zero_or_negative_sizes(tmp_path: Path, bad: str) -> None:
    err = error_of(write(tmp_path, f"- dense:\n    out: {bad}\n"))
    assert (err.location.line, err.location.key_path) == (8, "layers[0].dense.out")
    assert "> 0" in str(err)


def test_zero_size_through_a_parameter(tmp_path: Path) -> None:
    path = write(tmp_path, "- dense: {out: 8}\n")
    err = error_of(path, overrides={"hidden": 0})
    assert err.location.key_path == "input[1]"


def test_unknown_key_and_unknown_parameter(tmp_path: Path) -> None:
    err = error_of(write(tmp_path, "- dense: {out: 8, bais: true}\n"))
    assert err.location.key_path == "layers[0].dense"  # unknown keys name their parent
    assert "unknown key 'bais'" in str(err)
    assert "did you mean 'bias'" in str(err)
    err = error_of(write(tmp_path, "- dense: {out: '${hiden}'}\n"))
    assert err.location.key_path == "layers[0].dense.out"
    assert "unknown parameter 'hiden'" in str(err)
    err = error_of(write(tmp_path, "- dense: {out: 8}\n"), overrides={"seq": 3})
    assert err.location.key_path == "params.seq"


def test_inexact_division_is_an_error(tmp_path: Path) -> None:
    err = error_of(write(tmp_path, "- dense: {out: '${hidden / 3}'}\n"))
    assert "not a whole number" in str(err)


def test_top_k_above_experts(tmp_path: Path) -> None:
    path = write(tmp_path, "- moe_ffn: {experts: 2, top_k: 3, hidden: 8, intermediate: 4}\n")
    assert error_of(path).location.key_path == "layers[0].moe_ffn.top_k"


def test_errors_inside_blocks_name_the_use_site(tmp_path: Path) -> None:
    header = HEADER.replace(
        "layers:\n",
        "blocks:\n  proj:\n    params: {width: 4}\n    layers:\n"
        "      - attention: {heads: 3, hidden: '${width}'}\nlayers:\n",
    )
    err = error_of(write(tmp_path, "- dense: {out: 4}\n- proj: {width: 4}\n", header))
    assert err.location.key_path == "blocks.proj.layers[0].attention.heads"
    assert "used at" in str(err) and f"{tmp_path / 'bad.yaml'}:" in str(err)
    err = error_of(write(tmp_path, "- proj: {widht: 4}\n", header))
    assert err.location.key_path == "layers[0].proj.widht"


def test_block_names_cannot_shadow_layer_types(tmp_path: Path) -> None:
    header = HEADER.replace("layers:\n", "blocks:\n  dense:\n    layers: [relu]\nlayers:\n")
    assert error_of(write(tmp_path, "- relu\n", header)).location.key_path == "blocks.dense"


def test_malformed_entry_and_header(tmp_path: Path) -> None:
    err = error_of(write(tmp_path, "- {dense: {out: 2}, relu: {}}\n"))
    assert err.location.key_path == "layers[0]"
    err = error_of(write(tmp_path, "- relu\n", HEADER.replace("kind: model", "kind: modle")))
    assert err.location.key_path == "kind" and err.location.line == 2
