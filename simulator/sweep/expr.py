"""Safe arithmetic over a sweep point, for ``derive:`` values and ``where:`` constraints.

An expression is Python syntax restricted to numbers, strings, ``True``/``False``/``None``,
arithmetic (``+ - * / // % **``), comparisons (chains too), ``and``/``or``/``not``,
``x if c else y``, list/tuple literals and a few functions (:data:`FUNCTIONS`). A name is a
key path of the point (``strategy.stages``, ``training.micro_batch``,
``strategy.attention_ffn_per_stage[0]``) or one of the point's facts (``chips``: IPUs of
the point's topology). Nothing else — no attribute of a Python object, no import, no call of
anything outside the table — is reachable: ``compile`` only parses, the tree is walked here.

Work is bounded (:mod:`simulator.config.limits`): the text's length and the tree's depth are
checked before evaluating, and every product, power and repetition is sized *before* it is
computed (an integer's bits, a string's characters, a list's items), so ``10 ** 10 ** 10`` or
``'x' * 10 ** 9`` is an error at once rather than a hang or a MemoryError. A wrong type
(``2 ** [1]``) is an :class:`ExprError` like any other, never a Python exception.
"""

from __future__ import annotations

import ast
import math
import operator
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from simulator.config import limits
from simulator.errors import InputError


def _round(x: Any, ndigits: Any = None) -> Any:
    """``round``, with the digits bounded (``round(5, -10**9)`` would compute 10**10**9)."""
    if isinstance(ndigits, int) and abs(ndigits) > limits.MAX_INT_BITS:
        raise ValueError(f"round: ndigits {ndigits} is out of range (±{limits.MAX_INT_BITS})")
    return round(x) if ndigits is None else round(x, ndigits)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "min": min,
    "max": max,
    "abs": abs,
    "int": int,
    "round": _round,
    "len": len,
    "ceil": math.ceil,
    "floor": math.floor,
    "log2": math.log2,
    "sqrt": math.sqrt,
}
_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
_UNARY = (ast.UAdd, ast.USub, ast.Not)
_CONSTANTS = (int, float, str, bool, type(None))


class ExprError(Exception):
    """A bad expression or a failure while evaluating it (the caller adds file and line)."""


Lookup = Callable[[tuple[str | int, ...]], Any]


def parse(text: str) -> ast.Expression:
    """The syntax tree of ``text``; raises :class:`ExprError` for syntax or forbidden forms."""
    try:
        limits.check_expression_text(text)
        with warnings.catch_warnings():  # "invalid decimal literal" is ours to report
            warnings.simplefilter("ignore")
            tree = ast.parse(text, mode="eval")
        limits.check_expression_depth(tree)
    except SyntaxError as exc:
        raise ExprError(f"invalid expression {_short(text)}: {exc.msg}") from None
    except limits.TooLarge as exc:
        raise ExprError(str(exc)) from None
    except (ValueError, RecursionError, MemoryError) as exc:  # a NUL byte; a parser overflow
        raise ExprError(f"invalid expression {_short(text)}: {exc}") from None
    for node in ast.walk(tree):
        allowed = (
            ast.Expression, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.IfExp,
            ast.Call, ast.Name, ast.Attribute, ast.Subscript, ast.Constant, ast.List,
            ast.Tuple, ast.Load, ast.boolop,
        )  # fmt: skip
        operator_ok = (
            (isinstance(node, ast.operator) and type(node) in _BINARY)
            or (isinstance(node, ast.cmpop) and type(node) in _COMPARE)
            or isinstance(node, _UNARY)
        )
        if not (isinstance(node, allowed) or operator_ok):
            raise ExprError(f"{type(node).__name__} is not allowed in expression {_short(text)}")
        if isinstance(node, ast.Constant) and not isinstance(node.value, _CONSTANTS):
            raise ExprError(
                f"the constant {node.value!r} is not allowed in expression {_short(text)} "
                "(numbers, strings, True, False and None are)"
            )
        if isinstance(node, ast.Attribute | ast.Subscript) and key_path_of(node) is None:
            raise ExprError(
                f"only key paths (a.b, a.list[0]) may use '.' or '[]' in expression {_short(text)}"
            )
        if isinstance(node, ast.Call) and (
            not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS or node.keywords
        ):
            raise ExprError(
                f"only these functions may be called in {_short(text)}: "
                f"{', '.join(sorted(FUNCTIONS))}"
            )
    return tree


def _short(text: str, limit: int = 80) -> str:
    """The expression quoted for a message, shortened when long."""
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def key_path_of(node: ast.AST) -> tuple[str | int, ...] | None:
    """``strategy.stages`` / ``a.b[0]`` as a key path; None if ``node`` is not one."""
    if isinstance(node, ast.Name):
        return (node.id,)
    if isinstance(node, ast.Attribute):
        head = key_path_of(node.value)
        return None if head is None else (*head, node.attr)
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        head = key_path_of(node.value)
        index = node.slice.value
        if head is not None and isinstance(index, int | str) and not isinstance(index, bool):
            return (*head, index)
    return None


def names(tree: ast.Expression) -> set[tuple[str | int, ...]]:
    """Every key path an expression reads (outermost paths only)."""
    found: set[tuple[str | int, ...]] = set()

    def visit(node: ast.AST) -> None:
        path = key_path_of(node)
        if path is not None and not (isinstance(node, ast.Name) and node.id in FUNCTIONS):
            found.add(path)
            return
        for child in ast.iter_child_nodes(node):
            if not (isinstance(node, ast.Call) and child is node.func):
                visit(child)

    visit(tree)
    return found


def evaluate(tree: ast.Expression, lookup: Lookup) -> Any:
    """The value of ``tree``; ``lookup(key_path)`` supplies names (KeyError if absent)."""
    return _Eval(lookup).visit(tree.body)


class _Eval:
    def __init__(self, lookup: Lookup) -> None:
        self.lookup = lookup

    def visit(self, node: ast.AST) -> Any:
        path = key_path_of(node)
        if path is not None:
            try:
                return self.lookup(path)
            except KeyError:
                shown = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in path)
                raise ExprError(f"unknown name '{shown.replace('.[', '[')}'") from None
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.List | ast.Tuple):
            return self._checked([self.visit(e) for e in node.elts])
        if isinstance(node, ast.UnaryOp):
            value = self.visit(node.operand)
            if isinstance(node.op, ast.Not):
                return not value
            fn = operator.neg if isinstance(node.op, ast.USub) else operator.pos
            return self._arith(fn, value)
        if isinstance(node, ast.BinOp):
            left, right = self.visit(node.left), self.visit(node.right)
            try:
                if isinstance(node.op, ast.Mult | ast.Pow):
                    limits.check_product(left, right, power=isinstance(node.op, ast.Pow))
            except limits.TooLarge as exc:
                raise ExprError(str(exc)) from None
            if isinstance(node.op, ast.Mod) and isinstance(left, str):
                raise ExprError("'%' formats text in Python; it is not supported here")
            return self._arith(_BINARY[type(node.op)], left, right)
        if isinstance(node, ast.BoolOp):
            is_and = isinstance(node.op, ast.And)
            value = is_and
            for e in node.values:
                value = self.visit(e)
                if bool(value) != is_and:
                    return value
            return value
        if isinstance(node, ast.Compare):
            left = self.visit(node.left)
            for op, comp in zip(node.ops, node.comparators, strict=True):
                right = self.visit(comp)
                if not self._arith(_COMPARE[type(op)], left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.IfExp):
            return self.visit(node.body) if self.visit(node.test) else self.visit(node.orelse)
        if isinstance(node, ast.Call):
            assert isinstance(node.func, ast.Name)
            args = [self.visit(a) for a in node.args]
            return self._arith(FUNCTIONS[node.func.id], *args)
        raise ExprError(f"cannot evaluate {type(node).__name__}")  # pragma: no cover

    @staticmethod
    def _checked(value: Any) -> Any:
        try:
            limits.check_value(value)
        except limits.TooLarge as exc:
            raise ExprError(str(exc)) from None
        return value

    @classmethod
    def _arith(cls, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)``; a wrong type or value is an :class:`ExprError`, and so is a result
        over the size limits (a function such as ``int`` of a long string)."""
        try:
            result = fn(*args)
        except (TypeError, ValueError, ZeroDivisionError, OverflowError, MemoryError) as exc:
            raise ExprError(str(exc) or type(exc).__name__) from None
        return cls._checked(result)


def mapping_lookup(data: Mapping[str, Any], facts: Mapping[str, Callable[[], Any]]) -> Lookup:
    """A lookup reading key paths of ``data``; a one-part name in ``facts`` is computed."""

    def lookup(path: tuple[str | int, ...]) -> Any:
        if len(path) >= 1 and path[0] in facts and path[0] not in data:
            value = facts[str(path[0])]()
            for part in path[1:]:
                value = value[part]
            return value
        node: Any = data
        for part in path:
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                raise KeyError(path) from None
        return node

    return lookup


def check(text: str) -> ast.Expression:
    """:func:`parse` with the error as an :class:`InputError` (no location)."""
    try:
        return parse(text)
    except ExprError as exc:
        raise InputError(str(exc)) from None
