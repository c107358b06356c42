"""The documented size limits of ipusim's inputs (docs/config.md, "Limits").

Every size that multiplies work — chips, machines, tiles, IPU-Link bundles, layers after
expansion, ``repeat`` copies, sweep combinations, the size of an expression's values — is
checked against one of these constants *before* anything of that size is enumerated or
allocated, so hostile or mistyped input ends with exit 2 within a second, in bounded memory,
naming the key and the limit. Each limit is far above every shipped file (the largest shipped
system, Bow Pod1024, has 1,024 chips; the largest shipped model about 700 layers) and low
enough that the work it allows stays within a few seconds and a few hundred MB before the
simulation proper starts.

Reading files (16 MiB was too much for a pure-Python YAML scanner) and expressions have their
own limits here too; :mod:`simulator.config.yamlio` and the two expression evaluators import
them, so this file is the one place to read or change them.
"""

from __future__ import annotations

import ast
import math

# ---- files ---------------------------------------------------------------------------------
MAX_FILE_BYTES = 1024 * 1024
"""Largest input file read (1 MiB; the largest shipped YAML file is about 32 KB)."""
MAX_YAML_NODES = 50_000
"""Most YAML nodes one document may hold or expand to (aliases counted at every use; the
largest shipped file has 1,704). Composing them takes about a second in pure-Python PyYAML."""
MAX_YAML_DEPTH = 64
"""Deepest nesting of mappings and lists in a YAML document."""

# ---- hardware ------------------------------------------------------------------------------
MAX_CHIPS = 16_384
"""Most IPUs in one system (pods × machines_per_pod × chips_per_machine); 16 × Bow Pod1024."""
MAX_TILES = 16_384
"""Most tiles per chip (a GC200 has 1,472)."""
MAX_LINK_BUNDLES = 65_536
"""Most IPU-Link bundles (chip pairs joined by links) a system's fabric may generate."""
MAX_TILE_TRANSFERS = 131_072
"""Most tile-to-tile transfers one tile-level communication scenario may make (chips ×
``tiles_per_chip``; an IPU-POD64's 94,208 tiles fit: about a minute and 400 MB)."""

# ---- models --------------------------------------------------------------------------------
MAX_LAYERS = 100_000
"""Most layers a model may expand to (after ``repeat``, ``residual`` and blocks)."""
MAX_REPEAT = MAX_LAYERS
"""Largest ``repeat: {times: N}``."""

# ---- training ------------------------------------------------------------------------------
MAX_GRAD_ACCUM = 16_384
"""Most micro-batches per step (``training.grad_accum``): each is its own set of tasks."""

MAX_ROUTING_CELLS = 2**24
"""Most values a mixture-of-experts routing array may hold (MoE layers × micro-batches × chips
× experts; or a chip's tokens per micro-batch × experts or hidden units, when routed tokens are
scored): 128 MB of 64-bit values."""

# ---- sweeps --------------------------------------------------------------------------------
MAX_SWEEP_COMBINATIONS = 100_000
"""Most combinations a sweep or plan may have (counted from its axes, before ``where:``)."""

# ---- expressions (model ``${...}``, sweep ``derive`` / ``where``) ---------------------------
MAX_EXPR_CHARS = 2_000
"""Longest expression text."""
MAX_EXPR_DEPTH = 100
"""Deepest nesting of an expression's syntax tree (operators, calls, brackets)."""
MAX_INT_BITS = 8_192
"""Largest integer an expression may compute (about 2,466 decimal digits)."""
MAX_VALUE_ITEMS = 100_000
"""Most characters in a string, or items (counted through nested lists) in a list, that an
expression may compute."""

LIMITS_DOC = "docs/config.md#limits"
"""Where the limits are documented (named in messages)."""


def over(what: str, value: int, limit: int) -> str:
    """The message for a size over its limit: ``what`` is e.g. ``'the system has'``."""
    return f"{what} {value:,}, over the limit of {limit:,} ({LIMITS_DOC})"


# ---- checks shared by the two expression evaluators ------------------------------------------


class TooLarge(ValueError):
    """A size over its limit; the caller turns it into its own error with a location."""


def check_expression_text(text: str) -> None:
    """Refuse an expression longer than :data:`MAX_EXPR_CHARS` (before it is parsed)."""
    if len(text) > MAX_EXPR_CHARS:
        raise TooLarge(
            f"the expression has {len(text):,} characters, over the limit of "
            f"{MAX_EXPR_CHARS:,} ({LIMITS_DOC})"
        )


def check_expression_depth(tree: ast.AST) -> None:
    """Refuse a syntax tree nested deeper than :data:`MAX_EXPR_DEPTH` (measured without
    recursion, so the check itself cannot overflow the stack)."""
    deepest, stack = 0, [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, ast.expr_context | ast.operator | ast.unaryop | ast.cmpop):
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_EXPR_DEPTH:
            raise TooLarge(
                f"the expression nests deeper than {MAX_EXPR_DEPTH} operations, the limit "
                f"({LIMITS_DOC}); split it, or write the value out"
            )
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


def value_size(value: object, budget: int = MAX_VALUE_ITEMS) -> int:
    """Characters of a string, or items of a list counted through nested lists (a number is
    1); stops counting once past ``budget``."""
    if isinstance(value, str):
        return len(value)
    if not isinstance(value, list | tuple):
        return 1
    total, stack = 0, [value]
    while stack and total <= budget:
        items = stack.pop()
        total += len(items)
        stack.extend(x for x in items if isinstance(x, list | tuple))
        total += sum(len(x) for x in items if isinstance(x, str))
    return total


def check_value(value: object) -> None:
    """Refuse an integer of more than :data:`MAX_INT_BITS` bits, or a string or list of more
    than :data:`MAX_VALUE_ITEMS` characters or items."""
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise TooLarge(
            f"an integer of {value.bit_length():,} bits, over the limit of "
            f"{MAX_INT_BITS:,} ({LIMITS_DOC})"
        )
    if isinstance(value, str | list | tuple) and value_size(value) > MAX_VALUE_ITEMS:
        what = "characters" if isinstance(value, str) else "items"
        raise TooLarge(
            f"a value of more than {MAX_VALUE_ITEMS:,} {what}, over the limit ({LIMITS_DOC})"
        )


def check_product(left: object, right: object, power: bool = False) -> None:
    """Refuse ``left * right`` (or ``left ** right``) *before* computing it when the result
    would be over the limits: integers by their bit lengths, repeated strings and lists by
    their sizes."""
    if power:
        if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
            bits = math.ceil(right * math.log2(abs(left)))
            if bits > MAX_INT_BITS:
                raise TooLarge(
                    f"{left} ** {right} would have about {bits:,} bits, over the limit of "
                    f"{MAX_INT_BITS:,} ({LIMITS_DOC})"
                )
        return
    if isinstance(left, int) and isinstance(right, int):
        bits = left.bit_length() + right.bit_length()
        if bits > MAX_INT_BITS:
            raise TooLarge(
                f"a product of about {bits:,} bits, over the limit of {MAX_INT_BITS:,} "
                f"({LIMITS_DOC})"
            )
        return
    seq, count = (left, right) if isinstance(right, int | float) else (right, left)
    if isinstance(seq, str | list | tuple) and isinstance(count, int) and count > 0:
        size = value_size(seq) * count
        if size > MAX_VALUE_ITEMS:
            what = "characters" if isinstance(seq, str) else "items"
            raise TooLarge(
                f"{count:,} copies of {value_size(seq):,} {what} make {size:,}, over the "
                f"limit of {MAX_VALUE_ITEMS:,} ({LIMITS_DOC})"
            )
