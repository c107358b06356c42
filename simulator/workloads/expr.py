"""``${...}`` references in model files: a tiny, safe arithmetic language (no ``eval``).

A string that is exactly ``"${expr}"`` becomes the number ``expr`` evaluates to; a string
with ``${expr}`` inside other text (``"stage${i}"``) has each reference replaced by its value.
``expr`` may use numbers, parameter names, ``+ - * / // %``, unary minus and parentheses.
``/`` must divide exactly when both sides are integers (``${hidden / heads}`` with 1024 and 16
gives 64; with 1000 and 16 it is an error), so a size never silently becomes a fraction.
The text's length and nesting and every product's size are bounded
(:mod:`simulator.config.limits`); a reference that passes them is an :class:`ExprError`.
"""

from __future__ import annotations

import ast
import math
import operator
import re
import warnings
from collections.abc import Callable, Mapping
from typing import Any, cast

from simulator.config import limits
from simulator.errors import did_you_mean, one_of

Number = int | float

_REF = re.compile(r"\$\{([^}]*)\}")

_BINOPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}


_SYMBOL = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.FloorDiv: "//", ast.Mod: "%"}


class ExprError(ValueError):
    """A reference that cannot be evaluated; the caller adds file, line and key."""


def _div(a: Number, b: Number) -> Number:
    if b == 0:
        raise ExprError("division by zero")
    if isinstance(a, int) and isinstance(b, int):
        if a % b:
            raise ExprError(f"{a} / {b} is not a whole number (use // to round down)")
        return a // b
    try:
        return a / b
    except OverflowError as exc:  # a huge integer over a float
        raise ExprError(f"{exc} (in a division)") from None


def _eval(node: ast.AST, env: Mapping[str, Number]) -> Number:
    if isinstance(node, ast.Expression):
        return _eval(node.body, env)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return cast(Number, node.value)  # type() excludes bool, so mypy cannot narrow it
    if isinstance(node, ast.Name):
        if node.id not in env:
            raise ExprError(
                f"unknown parameter '{node.id}'{did_you_mean(node.id, env)}; "
                + (one_of(env) if env else "no parameters are declared")
            )
        return env[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _eval(node.operand, env)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left, env), _eval(node.right, env)
        if isinstance(node.op, ast.Div):
            return _div(left, right)
        op = _BINOPS.get(type(node.op))
        if op is not None:
            if isinstance(node.op, ast.FloorDiv | ast.Mod) and right == 0:
                raise ExprError("division by zero")
            try:
                limits.check_product(left, right)
                result = op(left, right)
                limits.check_value(result)
                if isinstance(result, float) and not math.isfinite(result):
                    raise ExprError(f"{left!r} {_SYMBOL[type(node.op)]} {right!r} is not finite")
            except limits.TooLarge as exc:
                raise ExprError(str(exc)) from None
            except (OverflowError, ValueError) as exc:  # inf - inf is nan, not an error
                raise ExprError(str(exc)) from None
            return cast(Number, result)
    raise ExprError(f"unsupported expression element '{ast.dump(node)[:40]}'")


def evaluate(text: str, env: Mapping[str, Number]) -> Number:
    """Value of one expression (the text inside ``${...}``)."""
    shown = text if len(text) <= 60 else text[:57] + "..."
    try:
        limits.check_expression_text(text)
        with warnings.catch_warnings():  # "invalid decimal literal" is ours to report
            warnings.simplefilter("ignore")
            tree = ast.parse(text.strip(), mode="eval")
        limits.check_expression_depth(tree)
    except SyntaxError as exc:
        raise ExprError(f"cannot parse '${{{shown}}}': {exc.msg}") from None
    except limits.TooLarge as exc:
        raise ExprError(str(exc)) from None
    except (ValueError, RecursionError, MemoryError) as exc:  # a NUL byte; a parser overflow
        raise ExprError(f"cannot parse '${{{shown}}}': {exc}") from None
    value = _eval(tree, env)
    if isinstance(value, float) and not math.isfinite(value):
        raise ExprError(f"'${{{shown}}}' is {value}, not a finite number")
    return value


def substitute(value: Any, env: Mapping[str, Number]) -> Any:
    """``value`` with every ``${...}`` in strings replaced, recursing into lists and mappings.

    Nested specs are substituted too; a ``repeat`` body is substituted per copy by the walker
    (with ``i`` bound), so this is called on one spec's own keys, not on whole containers.
    """
    if isinstance(value, str):
        whole = _REF.fullmatch(value.strip())
        if whole:
            return evaluate(whole.group(1), env)
        if "${" in value:
            return _REF.sub(lambda m: str(evaluate(m.group(1), env)), value)
        return value
    if isinstance(value, list):
        return [substitute(v, env) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, env) for k, v in value.items()}
    return value
