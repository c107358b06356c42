"""Safe YAML 1.2 reading with positions (simulator.config.yamlio): values, lines, hostile input."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.config.yamlio import (
    MAX_NODES,
    core_tag,
    dump_yaml,
    load_document,
    parse_document,
    parse_value,
)
from simulator.errors import InputError


def parse(text: str) -> dict:
    return parse_document(text, "f.yaml").data


def error_of(text: str) -> InputError:
    with pytest.raises(InputError) as info:
        parse_document(text, "f.yaml")
    return info.value


# --- scalars by the YAML 1.2 core schema ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1e6", 1e6),
        ("2.5e-9", 2.5e-9),
        ("1E9", 1e9),
        ("-1.5", -1.5),
        (".5", 0.5),
        ("1.", 1.0),
        ("+3e+2", 300.0),
        ("64", 64),
        ("-3", -3),
        ("0x10", 16),
        ("0o17", 15),
        ("true", True),
        ("False", False),
        ("null", None),
        ("~", None),
        ("", None),
        ("yes", "yes"),
        ("no", "no"),
        ("on", "on"),
        ("off", "off"),
        ("1_000", "1_000"),
        ("2024-01-01", "2024-01-01"),
        ("'1e6'", "1e6"),
        ('"true"', "true"),
        ("!!str 5", "5"),
        ("!!float 3", 3.0),
        ("!!int 0x1f", 31),
    ],
)
def test_scalars_resolve_by_yaml_1_2_core_schema(text: str, expected: object) -> None:
    value = parse(f"v: {text}\n")["v"]
    assert value == expected
    assert type(value) is type(expected)


def test_1e6_is_a_float() -> None:
    assert isinstance(parse("x: 1e6\n")["x"], float)


def test_yes_stays_a_string() -> None:
    assert parse("x: yes\n")["x"] == "yes"


def test_special_floats() -> None:
    data = parse("a: .inf\nb: -.Inf\nc: .nan\n")
    assert data["a"] == math.inf and data["b"] == -math.inf and math.isnan(data["c"])


def test_explicit_tag_with_bad_value_names_line() -> None:
    err = error_of("a: 1\nb: !!int x\n")
    assert err.location.line == 2 and "!!int" in str(err)


# --- positions --------------------------------------------------------------------------------


def test_line_of_keys_items_and_ancestors() -> None:
    doc = parse_document(
        "schema_version: 1\n"  # 1
        "strategy:\n"  # 2
        "  type: pipeline\n"  # 3
        "  chips:\n"  # 4
        "    - 0\n"  # 5
        "    - 1\n"  # 6
        "  nested: {a: 1,\n"  # 7
        "     b: 2}\n",  # 8
        "s.yaml",
    )
    assert doc.file == "s.yaml"
    assert doc.line_of(("strategy",)) == 2
    assert doc.line_of(("strategy", "type")) == 3
    assert doc.line_of(("strategy", "chips", 1)) == 6
    assert doc.line_of(("strategy", "nested", "b")) == 8
    assert doc.line_of(("strategy", "missing", "deeper")) == 2  # nearest ancestor
    assert doc.line_of(()) == 1


def test_location_of_overridden_subtree_names_the_source() -> None:
    doc = parse_document("a:\n  b: 1\n", "f.yaml")
    doc2 = doc.with_data({"a": {"b": 2}}, {("a", "b"): ("--set", None)})
    assert doc2.location(("a", "b")) == ("--set", None)
    assert doc2.location(("a",)) == ("f.yaml", 1)


# --- structural errors ------------------------------------------------------------------------


def test_syntax_error_reports_line() -> None:
    err = error_of("a: 1\nb: [1, 2\nc: 3\n")
    assert err.location.file == "f.yaml"
    assert err.location.line == 3
    assert "invalid YAML" in str(err)


def test_bad_indentation_reports_line() -> None:
    err = error_of("a: 1\nb:\n  c: 1\n d: 2\n")
    assert err.location.line == 4


@pytest.mark.parametrize("text", ["", "# only a comment\n", "\n\n"])
def test_empty_file(text: str) -> None:
    err = error_of(text)
    assert "empty" in str(err) and err.location.file == "f.yaml"


@pytest.mark.parametrize(
    ("text", "what"),
    [("- 1\n- 2\n", "a list"), ("42\n", "a number"), ("root:x:0:0:/bin/sh\n", "a line of text")],
)
def test_top_level_must_be_a_mapping(text: str, what: str) -> None:
    err = error_of(text)
    assert "top level must be a mapping" in str(err) and what in str(err)
    assert err.location.line == 1
    assert "root" not in str(err)  # the kind of value, never another file's text


def test_duplicate_key_names_both_lines() -> None:
    err = error_of("a: 1\nb:\n  c: 1\n  d: 2\n  c: 3\n")
    assert err.location.line == 5
    assert "duplicate key 'c'" in str(err)
    assert "line 3" in str(err) and "line 5" in str(err)


def test_duplicate_key_in_flow_mapping() -> None:
    err = error_of("x: {a: 1, a: 2}\n")
    assert err.location.line == 1 and "duplicate key 'a'" in str(err)


def test_two_documents_rejected() -> None:
    err = error_of("a: 1\n---\nb: 2\n")
    assert err.location.line == 2 and "single document" in str(err)


@pytest.mark.parametrize(
    ("text", "line"),
    [("a: 1\n1.5: x\n", 2), ("a: 1\ntrue: x\n", 2), ("a: 1\n~: x\n", 2), ("a: 1\n? [1]\n: x\n", 2)],
)
def test_keys_must_be_strings_or_ints(text: str, line: int) -> None:
    err = error_of(text)
    assert err.location.line == line and "key" in str(err)


def test_int_keys_allowed() -> None:
    assert parse("chips:\n  0: a\n  1: b\n") == {"chips": {0: "a", 1: "b"}}


def test_merge_key_is_an_ordinary_key() -> None:
    assert parse("base: &b {x: 1}\nother:\n  <<: *b\n")["other"] == {"<<": {"x": 1}}


def test_deep_nesting_rejected() -> None:
    err = error_of("a: " + "[" * 100 + "]" * 100 + "\n")
    assert "nesting" in str(err)


# --- hostile input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tag"),
    [
        ("a: !!python/object/apply:os.system ['echo hi']\n", "!!python/object/apply:os.system"),
        ("a: !!python/name:os.system\n", "!!python/name:os.system"),
        ("a: !!python/object:builtins.dict {}\n", "!!python/object:builtins.dict"),
        ("a: !foo 3\n", "!foo"),
        ("a: !!binary aGk=\n", "!!binary"),
        ("a: !!set {x}\n", "!!set"),
        ("a: !!timestamp 2024-01-01\n", "!!timestamp"),
        ("a: !!str [1]\n", "!!str"),
    ],
)
def test_non_core_tags_rejected(text: str, tag: str) -> None:
    err = error_of(text)
    assert f"'{tag}'" in str(err) and err.location.line == 1


def test_python_tag_in_nested_value_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    text = f"a:\n  b:\n    - !!python/object/apply:os.system ['touch {marker}']\n"
    err = error_of(text)
    assert err.location.line == 3
    assert not marker.exists()


def test_alias_bomb_rejected_quickly() -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        prev, name = chr(96 + i), chr(97 + i)
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    # 9**10 nodes if expanded: the limit stops the parse long before (a missing limit shows
    # as a hang or an out-of-memory kill, not a slow pass; speed is measured in benchmarks)
    err = error_of("\n".join(lines) + "\n")
    assert f"{MAX_NODES:,}" in str(err) and "alias" in str(err)


def test_modest_aliases_work() -> None:
    data = parse("base: &b {x: 1, y: [1, 2]}\nc1: *b\nc2: *b\n")
    assert data["c1"] == data["c2"] == {"x": 1, "y": [1, 2]}
    data["c1"]["x"] = 5  # the copies are independent values
    assert data["c2"]["x"] == 1


def test_recursive_alias_rejected() -> None:
    err = error_of("a: 1\nb: &x [1, *x]\n")
    assert "recursive alias" in str(err) and err.location.line == 2


# --- files ------------------------------------------------------------------------------------


def test_load_document_from_file(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("a: 1e6\n", encoding="utf-8")
    doc = load_document(path)
    assert doc.data == {"a": 1e6} and doc.file == str(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found") as info:
        load_document(tmp_path / "nope.yaml")
    assert info.value.location.file == str(tmp_path / "nope.yaml")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="directory") as info:
        load_document(tmp_path)
    assert info.value.location.file == str(tmp_path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.yaml"
    path.write_text("a: 1\n")
    path.chmod(0)
    try:
        with pytest.raises(InputError, match="permission denied") as info:
            load_document(path)
        assert info.value.location.file == str(path)
    finally:
        path.chmod(0o600)


def test_non_utf8_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"a: 1\nname: caf\xe9\n")
    with pytest.raises(InputError, match="not UTF-8") as info:
        load_document(path)
    assert info.value.location.file == str(path) and info.value.location.line == 2


def test_utf8_bom_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes("\ufeffa: 1\n".encode())
    assert load_document(path).data == {"a": 1}


def test_parse_value_reads_flow_collections() -> None:
    assert parse_value("[0, 1e3, yes]", "--set") == [0, 1000.0, "yes"]
    assert parse_value("{a: 1}", "--set") == {"a": 1}
    with pytest.raises(InputError, match="!!python"):
        parse_value("!!python/name:os.system", "--set")


# --- round trips ------------------------------------------------------------------------------

_PLAIN_TEXT = st.text(max_size=12).filter(lambda s: core_tag(s).endswith(":str"))
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
)


def _documents(text: st.SearchStrategy[str]) -> st.SearchStrategy[dict]:
    values = st.recursive(
        _SCALARS | text,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4)
        ),
        max_leaves=20,
    )
    return st.dictionaries(text, values, min_size=1, max_size=5)


@settings(max_examples=150, deadline=None)
@given(_documents(_PLAIN_TEXT))
def test_safe_dump_round_trip(data: dict) -> None:
    """Whatever yaml.safe_dump writes reads back equal, floats included (1.0e-05 style)."""
    assert parse(yaml.safe_dump(data)) == data


@settings(max_examples=150, deadline=None)
@given(_documents(st.text(max_size=12)))
def test_dump_yaml_round_trip_any_strings(data: dict) -> None:
    """dump_yaml quotes strings that YAML 1.2 would read as numbers ('1e6', '0o7')."""
    assert parse(dump_yaml(data)) == data


def test_safe_dump_pitfall_is_real() -> None:
    """Why dump_yaml exists: yaml.safe_dump leaves '1e6' unquoted."""
    assert parse(yaml.safe_dump({"a": "1e6"})) == {"a": 1e6}
    assert parse(dump_yaml({"a": "1e6"})) == {"a": "1e6"}


def test_permission_error_is_input_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same path as test_unreadable_file, forced, for runs as root."""
    path = tmp_path / "secret.yaml"
    path.write_text("a: 1\n")

    def deny(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(InputError, match="permission denied") as info:
        load_document(path)
    assert info.value.location.file == str(path)
