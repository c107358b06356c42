"""Fuzzing the two readers of untrusted text: the YAML loader and the expression evaluators.

Whatever the text, each must either return a value or raise the one error type its callers
turn into exit 2 (:class:`InputError` for YAML, ``ExprError`` for expressions) — never another
exception (a traceback, exit 1), and never a value past the size limits. The examples are
generated three ways: arbitrary text, a soup of the syntax's own tokens (which reaches far more
of the parser than random characters), and well-formed trees (which reach the evaluator).

The default run tries a few hundred examples per test; ``-m slow`` runs the same properties
on FULL (20,000) examples in one slow test per reader.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.config import limits
from simulator.config.yamlio import parse_document, parse_value
from simulator.errors import InputError
from simulator.sweep import expr as sweep_expr
from simulator.workloads import expr as model_expr

QUICK = 150
FULL = 20_000
SETTINGS = {"deadline": None, "suppress_health_check": list(HealthCheck), "database": None}

# ---- YAML ------------------------------------------------------------------------------------

_YAML_TOKENS = [
    "- ", ": ", "\n", "\n  ", "\n    ", "  ", "[", "]", "{", "}", ", ", "&a ", "*a", "&b ",
    "*b", "!!str ", "!!int ", "!!map ", "!!seq ", "!!python/object:os.system ", "!foo ",
    "!!binary ", "'", '"', "# c", "|\n  ", ">\n  ", "---\n", "...\n", "? ", "key", "x",
    "1e6", "0x1F", "0o17", "1_000", "~", "null", "true", "yes", ".inf", ".nan", "-.inf",
    "<<", "%YAML 1.2\n", "%TAG ! tag:x,2000:\n", "\t", "@", "`", "\\", "\ufeff", "\x85",
    "\u2028", "9" * 40, "-", "1.5", "schema_version", "kind", "=", "%", "&", "*", "!",
]  # fmt: skip


def _yaml_soup() -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(_YAML_TOKENS), max_size=40).map("".join)


def _load(text: str) -> None:
    for parse in (lambda t: parse_document(t, "fuzz.yaml"), lambda t: parse_value(t, "--set")):
        try:
            parse(text)
        except InputError as exc:
            assert str(exc)  # a message, with the file label
            assert "Traceback" not in str(exc)


@settings(max_examples=QUICK, **SETTINGS)  # type: ignore[arg-type]
@given(st.text(max_size=200) | _yaml_soup())
def test_yaml_loader_raises_only_input_errors(text: str) -> None:
    _load(text)


@pytest.mark.slow
@settings(max_examples=FULL, **SETTINGS)  # type: ignore[arg-type]
@given(st.text(max_size=400) | _yaml_soup())
def test_yaml_loader_full(text: str) -> None:
    _load(text)


# ---- expressions -----------------------------------------------------------------------------

_EXPR_TOKENS = [
    "1", "2", "0", "10", "4096", "1e308", "0.5", "-", "+", "*", "**", "/", "//", "%", "(",
    ")", "[", "]", ",", " < ", " == ", " != ", " and ", " or ", " not ", " in ", " if ",
    " else ", "'x'", "'%d'", "chips", "a.b", "a.l[0]", "a", "min(", "max(", "abs(", "int(",
    "round(", "len(", "ceil(", "floor(", "log2(", "sqrt(", "lambda: ", "__class__", ".",
    "<<", "|", "~", "@", "1j", "...", "x", "${", "}", "True", "None", " is ", ":", "=",
    "\x00", "9" * 30,
]  # fmt: skip

_LEAVES = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=False).map(repr),
    st.sampled_from(["chips", "a.b", "a.l", "a.l[0]", "a.s", "x", "'ab'", "[1, 2]", "True"]),
)
_BINOPS = ["+", "-", "*", "/", "//", "%", "**", "<", "==", "and", "or", "in"]
_CALLS = ["min", "max", "abs", "int", "round", "len", "ceil", "floor", "log2", "sqrt"]


def _tree(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(children, st.sampled_from(_BINOPS), children).map(lambda t: f"({' '.join(t)})"),
        st.tuples(st.sampled_from(["-", "not "]), children).map(lambda t: f"({t[0]}{t[1]})"),
        st.tuples(st.sampled_from(_CALLS), st.lists(children, min_size=1, max_size=2)).map(
            lambda t: f"{t[0]}({', '.join(t[1])})"
        ),
        st.lists(children, max_size=3).map(lambda xs: f"[{', '.join(xs)}]"),
        st.tuples(children, children, children).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
    )


_WELL_FORMED = st.recursive(_LEAVES, _tree, max_leaves=12)
_SOUP = st.lists(st.sampled_from(_EXPR_TOKENS), max_size=30).map("".join)

_POINT: dict[str, Any] = {"a": {"b": 6, "l": [1, 2, 3], "s": "text"}, "x": 10**12}


def _sweep_eval(text: str) -> None:
    lookup = sweep_expr.mapping_lookup(_POINT, {"chips": lambda: 16})
    try:
        value = sweep_expr.evaluate(sweep_expr.parse(text), lookup)
    except sweep_expr.ExprError as exc:
        assert str(exc)
        return
    limits.check_value(value)  # a value that came back is within the limits


def _model_eval(text: str) -> None:
    try:
        value = model_expr.evaluate(text, {"x": 10**12, "hidden": 1024, "f": 0.5})
    except model_expr.ExprError as exc:
        assert str(exc)
        return
    assert isinstance(value, int | float) and not isinstance(value, bool)
    assert not isinstance(value, float) or math.isfinite(value)
    limits.check_value(value)


@settings(max_examples=QUICK, **SETTINGS)  # type: ignore[arg-type]
@given(_WELL_FORMED | _SOUP)
def test_expressions_raise_only_expr_errors(text: str) -> None:
    _sweep_eval(text)
    _model_eval(text)


@pytest.mark.slow
@settings(max_examples=FULL, **SETTINGS)  # type: ignore[arg-type]
@given(_WELL_FORMED | _SOUP)
def test_expressions_full(text: str) -> None:
    _sweep_eval(text)
    _model_eval(text)


# ---- what the fuzzing found (kept as plain regression cases) --------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "a: \x1f",  # a control character: PyYAML's reader raised ReaderError in the constructor
        "a: " + "9" * 5000,  # int() refuses more than 4,300 digits with a ValueError
        "a: 0x" + "f" * 5000,
        "a: !!float " + "9" * 400,  # OverflowError converting to float
    ],
)
def test_yaml_found_by_fuzzing(text: str) -> None:
    with pytest.raises(InputError):
        parse_document(text, "fuzz.yaml")


@pytest.mark.parametrize("text", ["9" * 400 + "/0.5", "11e308", "-1e309", "1e308*10"])
def test_model_expressions_found_by_fuzzing(text: str) -> None:
    with pytest.raises(model_expr.ExprError):
        model_expr.evaluate(text, {})
