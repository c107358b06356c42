"""Safe YAML reading that keeps line numbers, so every error can say ``file:line``.

Why not ``yaml.safe_load``: it forgets positions, silently keeps the last of two duplicate
keys, reads ``1e6`` as a string (YAML 1.1 resolver) and ``yes`` as true, and expands aliases
without bound. Here the file is only *composed* into a node tree (no constructor ever runs),
then plain Python values are built from the nodes with these rules:

* scalars resolve by the YAML 1.2 core schema: ``null``/``~``/empty, ``true``/``false``
  (``yes``, ``no``, ``on``, ``off`` stay strings), decimal ints, ``0x``/``0o`` ints, floats
  with optional exponent (``1e6``, ``2.5e-9``, ``1E9``), ``.inf``, ``.nan``. Underscores
  (``1_000``) are not numbers in YAML 1.2: such a value stays a string, and the schema then
  reports it as the wrong type.
* only the core tags (``!!str``, ``!!int``, ``!!float``, ``!!bool``, ``!!null``, ``!!map``,
  ``!!seq``) are allowed; any other tag (``!!python/object``, ``!foo``) is an error.
* nodes are counted while the file is composed and again while aliases are followed; past
  :data:`MAX_NODES` nodes (a huge file, or an "alias bomb") or on a recursive alias, loading
  stops with an error, before the rest of the file is read.
* only a regular file of at most :data:`MAX_BYTES` is read (:mod:`simulator.config.files`);
  an error about a file of the wrong kind says what it is, never what it holds.
* mapping keys must be strings or integers and appear once; merge keys (``<<``, a YAML 1.1
  feature) are plain strings and the schema rejects them as unknown keys.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from simulator.config import files, limits
from simulator.errors import InputError

KeyPath = tuple[str | int, ...]

MAX_NODES = limits.MAX_YAML_NODES
"""Most nodes one document may hold or expand to (aliases counted at every use)."""
MAX_DEPTH = limits.MAX_YAML_DEPTH
"""Deepest nesting of mappings and lists accepted."""
MAX_BYTES = limits.MAX_FILE_BYTES
"""Largest file read."""

_TAG = "tag:yaml.org,2002:"
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)
_MAX_INT_CHARS = limits.MAX_INT_BITS // 3  # decimal digits of MAX_INT_BITS bits, about
_CORE_TAGS = {_TAG + t for t in ("str", "int", "float", "bool", "null", "map", "seq")}


def core_tag(text: str) -> str:
    """The YAML 1.2 core-schema tag of a plain (unquoted) scalar."""
    for pattern, tag in ((_NULL, "null"), (_BOOL, "bool"), (_INT, "int"), (_FLOAT, "float")):
        if pattern.fullmatch(text):
            return _TAG + tag
    return _TAG + "str"


def _to_int(text: str) -> int:
    if len(text) > _MAX_INT_CHARS:
        raise ValueError(f"an integer of {len(text):,} characters is too long")
    if text.startswith("0x"):
        return int(text[2:], 16)
    if text.startswith("0o"):
        return int(text[2:], 8)
    return int(text, 10)


def _to_float(text: str) -> float:
    lower = text.lower()
    if lower.endswith(".inf"):
        return -math.inf if lower.startswith("-") else math.inf
    if lower == ".nan":
        return math.nan
    return float(text)


class _TooBig(Exception):
    """Raised while composing: the document holds too many nodes or nests too deep."""

    def __init__(self, message: str, mark: Any) -> None:
        super().__init__(message)
        self.mark = mark


class _Loader(yaml.SafeLoader):
    """SafeLoader used for parsing and composing only, with the YAML 1.2 core resolver.

    It counts the nodes it composes and how deep they nest, and stops at the limits while it
    reads, so a huge file costs no more than :data:`MAX_NODES` nodes of work and memory."""

    _nodes = 0
    _depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self._nodes += 1
        self._depth += 1
        try:
            if self._nodes > MAX_NODES:
                raise _TooBig(
                    f"the document holds more than {MAX_NODES:,} values, over the limit "
                    f"({limits.LIMITS_DOC})",
                    self.peek_event().start_mark,
                )
            if self._depth > MAX_DEPTH + 1:
                raise _TooBig(
                    f"nesting deeper than {MAX_DEPTH} levels", self.peek_event().start_mark
                )
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth -= 1

    def resolve(self, kind: type[Node], value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is ScalarNode and implicit[0]:
            return core_tag(value)
        return super().resolve(kind, value, implicit)  # type: ignore[no-any-return]


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def show_tag(tag: str) -> str:
    """A tag as the user wrote it: ``!!python/object:x`` rather than the expanded URI."""
    return "!!" + tag[len(_TAG) :] if tag.startswith(_TAG) else tag


# --- key paths ---------------------------------------------------------------------------


def render_path(path: Iterable[str | int]) -> str:
    """``('strategy', 'chips', 3)`` -> ``strategy.chips[3]``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def get_path(data: Any, path: KeyPath) -> Any:
    """The sub-tree of ``data`` at ``path`` (KeyError/IndexError/TypeError if absent)."""
    for part in path:
        data = data[part]
    return data


def get_path_or_none(data: Any, path: KeyPath) -> Any:
    try:
        return get_path(data, path)
    except (KeyError, IndexError, TypeError):
        return None


_PART = re.compile(r"\.?([^.\[\]]+)|\[(\d+)\]")


def parse_key_path(text: str, source: str = "--set") -> KeyPath:
    """``strategy.chips[3]`` -> ``('strategy', 'chips', 3)``."""
    parts: list[str | int] = []
    pos = 0
    while pos < len(text):
        match = _PART.match(text, pos)
        if match is None or (pos == 0 and text.startswith(".")):
            raise InputError(f"bad key path '{text}' (write key.path or key.list[0])", file=source)
        parts.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
        pos = match.end()
    if not parts:
        raise InputError("empty key path (write key.path=value)", file=source)
    return tuple(parts)


@dataclass(frozen=True)
class Document:
    """One YAML file's plain data plus where each key sits.

    ``file`` is the name as given (used verbatim in messages). ``lines`` maps a key path to the
    1-based line of that key (mapping entries) or item (list entries). ``origins`` marks
    sub-trees that were replaced after reading (``--set``, baseline overrides): errors below
    them name that source instead of a line of the file.
    """

    data: Any
    file: str
    lines: Mapping[KeyPath, int] = field(default_factory=dict)
    origins: Mapping[KeyPath, tuple[str, int | None]] = field(default_factory=dict)

    def line_of(self, key_path: Iterable[str | int]) -> int | None:
        """Line of the key at ``key_path``, or of its nearest ancestor that has one."""
        path = tuple(key_path)
        while True:
            line = self.lines.get(path)
            if line is not None or not path:
                return line
            path = path[:-1]

    def location(self, key_path: Iterable[str | int]) -> tuple[str, int | None]:
        """``(file, line)`` to report for ``key_path``, honouring overridden sub-trees."""
        path = tuple(key_path)
        for i in range(len(path), -1, -1):
            origin = self.origins.get(path[:i])
            if origin is not None:
                return origin
        return self.file, self.line_of(path)

    def with_data(self, data: Any, origins: Mapping[KeyPath, tuple[str, int | None]]) -> Document:
        """The same document with new data; ``origins`` are added to the existing ones."""
        merged = {**self.origins, **origins}
        return Document(data, self.file, self.lines, MappingProxyType(merged))


class _Builder:
    """Builds plain values from a composed node tree, counting every node it visits."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.count = 0
        self.lines: dict[KeyPath, int] = {}
        self._active: set[int] = set()

    def error(self, message: str, node: Node) -> InputError:
        return InputError(message, file=self.file, line=node.start_mark.line + 1)

    def build(self, node: Node, path: KeyPath) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise self.error(
                f"document expands to more than {MAX_NODES:,} nodes (alias bomb?); "
                "write the values out or use fewer aliases",
                node,
            )
        if len(path) > MAX_DEPTH:
            raise self.error(f"nesting deeper than {MAX_DEPTH} levels", node)
        if node.tag not in _CORE_TAGS:
            raise self.error(
                f"tag '{show_tag(node.tag)}' is not allowed; only plain YAML values "
                "(mappings, lists, strings, numbers, true/false, null) are read",
                node,
            )
        if isinstance(node, ScalarNode):
            return self.scalar(node)
        if id(node) in self._active:
            raise self.error("recursive alias: a mapping or list contains itself", node)
        self._active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                if node.tag != _TAG + "seq":
                    raise self.error(f"'{show_tag(node.tag)}' cannot tag a list", node)
                return list(self.items(node, path))
            if isinstance(node, MappingNode):
                if node.tag != _TAG + "map":
                    raise self.error(f"'{show_tag(node.tag)}' cannot tag a mapping", node)
                return self.mapping(node, path)
        finally:
            self._active.discard(id(node))
        raise self.error(f"unexpected YAML node {type(node).__name__}", node)  # pragma: no cover

    def items(self, node: SequenceNode, path: KeyPath) -> Iterator[Any]:
        for i, item in enumerate(node.value):
            self.lines[(*path, i)] = item.start_mark.line + 1
            yield self.build(item, (*path, i))

    def mapping(self, node: MappingNode, path: KeyPath) -> dict[str | int, Any]:
        out: dict[str | int, Any] = {}
        seen: dict[str | int, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, ScalarNode):
                raise self.error("a key must be a string or an integer, not a collection", key_node)
            self.count += 1
            key = self.scalar(key_node)
            if isinstance(key, bool) or not isinstance(key, str | int):
                shown = (
                    "null" if key is None else repr(key).lower() if isinstance(key, bool) else key
                )
                raise self.error(
                    f"key {shown} must be a string or an integer (quote it: '{key_node.value}')",
                    key_node,
                )
            if key in seen:
                raise self.error(
                    f"duplicate key '{key}' (first on line {seen[key]}, again on line {line}); "
                    "each key may appear once in a mapping",
                    key_node,
                )
            seen[key] = line
            self.lines[(*path, key)] = line
            out[key] = self.build(value_node, (*path, key))
        return out

    def scalar(self, node: ScalarNode) -> Any:
        text, tag = node.value, node.tag[len(_TAG) :]
        if tag == "str":
            return text
        if tag == "null" and _NULL.fullmatch(text):
            return None
        if tag == "bool" and _BOOL.fullmatch(text):
            return text.lower() == "true"
        try:
            if tag == "int" and _INT.fullmatch(text):
                return _to_int(text)
            if tag == "float" and (_FLOAT.fullmatch(text) or _INT.fullmatch(text)):
                return float(_to_int(text)) if _INT.fullmatch(text) else _to_float(text)
        except (ValueError, OverflowError) as exc:  # a 5,000-digit integer; 10**400 as a float
            raise self.error(f"{exc} (at most {_MAX_INT_CHARS:,} digits)", node) from None
        raise self.error(f"'{_clip(text)}' is not a valid !!{tag} value", node)


def _compose(text: str, file: str) -> Node | None:
    try:
        loader = _Loader(text)  # the reader checks the characters here already
    except yaml.reader.ReaderError as exc:
        raise _reader_error(exc, text, file) from None
    try:
        return loader.get_single_node()  # type: ignore[no-any-return]
    except yaml.reader.ReaderError as exc:
        raise _reader_error(exc, text, file) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = exc.problem or exc.context or "syntax error"
        if exc.context and exc.problem:
            started = exc.context_mark.line + 1 if exc.context_mark else None
            since = (
                f" started on line {started}"
                if started and mark and started != mark.line + 1
                else ""
            )
            what = f"{exc.problem} ({exc.context}{since})"
        raise InputError(
            f"invalid YAML: {what}", file=file, line=mark.line + 1 if mark else None
        ) from None
    except yaml.YAMLError as exc:
        raise InputError(f"invalid YAML: {exc}", file=file) from None
    except _TooBig as exc:
        line = exc.mark.line + 1 if exc.mark is not None else None
        raise InputError(str(exc), file=file, line=line) from None
    except RecursionError:
        raise InputError(f"invalid YAML: nesting too deep (limit {MAX_DEPTH})", file=file) from None
    finally:
        loader.dispose()


def _reader_error(exc: yaml.reader.ReaderError, text: str, file: str) -> InputError:
    """A character YAML does not allow (a control character, a lone surrogate), with its line."""
    line = text[: exc.position].count("\n") + 1 if isinstance(exc.position, int) else None
    code = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "?")
    return InputError(
        f"invalid YAML: the character U+{code:04X} is not allowed in YAML text",
        file=file,
        line=line,
    )


def parse_document(text: str, file_label: str) -> Document:
    """Parse YAML text whose top level must be a mapping; ``file_label`` names it in errors."""
    node = _compose(text, file_label)
    if node is None:
        raise InputError("file is empty; expected a mapping of keys", file=file_label)
    builder = _Builder(file_label)
    data = builder.build(node, ())
    if not isinstance(data, dict):
        # the kind of value only: the file may be another program's, whose text is not ours
        # to print (a `topology:` mistyped onto /etc/passwd)
        raise InputError(
            f"top level must be a mapping of keys (key: value lines), got {_kind_of(data)}",
            file=file_label,
            line=node.start_mark.line + 1,
        )
    builder.lines.setdefault((), node.start_mark.line + 1)
    return Document(data, file_label, MappingProxyType(builder.lines))


def _kind_of(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a line of text" if "\n" not in value.strip() else "lines of text"
    if isinstance(value, bool):
        return "a boolean"
    return "a number" if isinstance(value, int | float) else "null"


def parse_value(text: str, label: str) -> Any:
    """One YAML value (a scalar, or a flow list / mapping) read with the same safe rules."""
    node = _compose(text, label)
    return None if node is None else _Builder(label).build(node, ())


def read_text(path: str | Path) -> str:
    """A file's text as UTF-8, with every failure as an :class:`InputError` naming the file.

    Only a regular file within the size limit is opened (:func:`files.check_input`); it is
    opened without blocking and checked again after opening, so a FIFO put in its place
    meanwhile is refused rather than waited on."""
    file = str(path)
    files.check_input(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            kind = files.node_kind(os.fstat(f.fileno()).st_mode)
            if kind is not None:
                raise InputError(f"is {kind}, not a file", file=file)
            raw = f.read(MAX_BYTES + 1)
    except PermissionError:
        raise InputError("cannot read the file: permission denied", file=file) from None
    except OSError as exc:
        raise InputError(f"cannot read the file: {exc.strerror or exc}", file=file) from None
    if len(raw) > MAX_BYTES:
        raise InputError(f"the file is over the limit of {MAX_BYTES:,} bytes", file=file)
    what = files.sniff(raw[:8192])
    if what is not None:
        raise InputError(f"this is {what}, not a YAML file", file=file)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(
            f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "save the file as UTF-8",
            file=file,
            line=line,
        ) from None


def load_document(path: str | Path) -> Document:
    """Read and parse one YAML file (see the module docstring for the rules)."""
    return parse_document(read_text(path), str(path))


def render_value(value: Any, limit: int = 60) -> str:
    """A value as a user would write it in YAML, shortened for messages."""
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = repr(value)
    elif isinstance(value, dict | list):
        text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_LINE_BREAKS = "\x85\u2028\u2029\ufeff"


class _Dumper(yaml.SafeDumper):
    """SafeDumper that quotes every string a YAML 1.2 reader would take for another type."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if any(c in value for c in _LINE_BREAKS):
        style: str | None = '"'  # escaped: single quotes would fold them into spaces
    else:
        style = "'" if core_tag(value) != _TAG + "str" else None
    return dumper.represent_scalar(_TAG + "str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def dump_yaml(data: Any) -> str:
    """YAML text that :func:`parse_document` reads back as ``data`` (block style, key order kept).

    Use this rather than ``yaml.safe_dump``, which writes strings such as ``1e6`` or ``0o7``
    unquoted because YAML 1.1 reads them as strings; a YAML 1.2 reader takes them for numbers.
    """
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True)
