"""Validation of YAML documents against the strict schemas, with errors that name file:line.

Pydantic reports problems as ``loc`` tuples against the data; this module maps them back onto
the :class:`~simulator.config.yamlio.Document` they came from and turns the first one (by line)
into a single :class:`~simulator.errors.InputError` of the form::

    x.yaml:12: strategy.schedule: unknown value 'gpip' (did you mean 'gpipe'?); one of: ...

It also applies ``--set key.path=value`` overrides, remembering which sub-trees they replaced
so that errors inside them name ``--set`` rather than a wrong line of the file.
"""

from __future__ import annotations

import copy
import types
from collections.abc import Iterable, Sequence
from difflib import get_close_matches
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, cast, get_args, get_origin

from pydantic import BaseModel, ValidationError

from simulator.config import files, paths
from simulator.config.yamlio import (
    Document,
    KeyPath,
    get_path,
    get_path_or_none,
    load_document,
    parse_key_path,
    parse_value,
    render_path,
    render_value,
)
from simulator.errors import InputError, did_you_mean

M = TypeVar("M", bound=BaseModel)

__all__ = [
    "apply_overrides",
    "get_path",
    "load_file",
    "override_document",
    "parse_key_path",
    "parse_override",
    "render_path",
    "set_path",
    "translate",
    "validate",
]

_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a finite number",
    "string_type": "a string",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
    "tuple_type": "a list",
    "set_type": "a list",
    "none_required": "null",
}
_BOUNDS = {
    "greater_than": ("gt", "must be > {}"),
    "greater_than_equal": ("ge", "must be >= {}"),
    "less_than": ("lt", "must be < {}"),
    "less_than_equal": ("le", "must be <= {}"),
    "multiple_of": ("multiple_of", "must be a multiple of {}"),
    "too_short": ("min_length", "must have at least {} items"),
    "too_long": ("max_length", "must have at most {} items"),
    "string_too_short": ("min_length", "must have at least {} characters"),
    "string_too_long": ("max_length", "must have at most {} characters"),
    "string_pattern_mismatch": ("pattern", "must match the pattern {}"),
}
_YAML11_BOOLS = {"yes", "no", "on", "off", "y", "n", "Yes", "No", "On", "Off", "YES", "NO"}


# --- walking the schema alongside the data ----------------------------------------------------


def _members(annotation: Any) -> list[Any]:
    """An annotation split into the alternatives it accepts (Annotated and unions unwrapped)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _members(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return [m for arg in get_args(annotation) for m in _members(arg)]
    return [annotation]


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _matches(model: type[BaseModel], data: Any) -> bool:
    """False when ``data`` sets a Literal-typed field (a discriminator) to another value."""
    if not isinstance(data, dict):
        return True
    for name, info in model.model_fields.items():
        if name in data:
            choices = [m for m in _members(info.annotation) if get_origin(m) is Literal]
            if choices and not any(data[name] in get_args(c) for c in choices):
                return False
    return True


def _models(annotations: list[Any], data: Any) -> list[type[BaseModel]]:
    """The models among ``annotations``; of several (a union), those whose tags ``data`` fits."""
    models = [m for a in annotations for m in _members(a) if _is_model(m)]
    if len(models) > 1:
        models = [m for m in models if _matches(m, data)] or models
    return models


def _annotations_at(model: type[BaseModel], path: KeyPath, data: Any) -> list[Any]:
    """The annotations that describe the value at ``path`` (relative to ``model``)."""
    current: list[Any] = [model]
    for part in path:
        following: list[Any] = []
        for m in _models(current, data):
            if isinstance(part, str) and part in m.model_fields:
                following.append(m.model_fields[part].annotation)
        for ann in (m for a in current for m in _members(a)):
            origin = get_origin(ann)
            if origin in (list, tuple, Sequence) and isinstance(part, int):
                following.extend([a for a in get_args(ann) if a is not Ellipsis][:1])
            elif origin is dict:
                following.extend(get_args(ann)[1:2])
        current = following
        data = get_path_or_none(data, (part,))
    return current


def _valid_keys(model: type[BaseModel], path: KeyPath, data: Any) -> list[str]:
    keys: list[str] = []
    for m in _models(_annotations_at(model, path, data), get_path_or_none(data, path)):
        keys.extend(k for k in m.model_fields if k not in keys)
    return keys


def _choices(model: type[BaseModel], path: KeyPath, data: Any) -> list[Any]:
    out: list[Any] = []
    for ann in (m for a in _annotations_at(model, path, data) for m in _members(a)):
        if get_origin(ann) is Literal:
            out.extend(v for v in get_args(ann) if v not in out)
    return out


# --- turning pydantic errors into one InputError ----------------------------------------------


def _data_path(data: Any, loc: tuple[Any, ...], kind: str) -> tuple[KeyPath, str | int | None]:
    """Pydantic's ``loc`` as a path through the data (union tags dropped), plus the missing key."""
    path: list[str | int] = []
    for i, part in enumerate(loc):
        in_dict = isinstance(data, dict) and part in data
        if in_dict or (isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)):
            path.append(part)
            data = data[part]
        elif kind == "missing" and i == len(loc) - 1:
            return tuple(path), part
    return tuple(path), None


def _type_message(errors: list[dict[str, Any]], value: Any, extra: str = "") -> str:
    wanted = " or ".join(dict.fromkeys(_EXPECTED[e["type"]] for e in errors)) + extra
    hint = ""
    if "true or false" in wanted and value in _YAML11_BOOLS:
        hint = " (YAML 1.2 reads only true/false as booleans)"
    elif isinstance(value, str) and "_" in value and value.replace("_", "").isdigit():
        hint = " (write numbers without '_')"
    return f"wrong type (got {render_value(value)}; expected {wanted}){hint}"


def _one_message(err: dict[str, Any], extra: str = "") -> str:
    """A bound, validator or other error; ``extra`` names other accepted forms (a union)."""
    kind = err["type"]
    value: Any = err.get("input")
    got = render_value(value)
    if kind in _BOUNDS:
        key, text = _BOUNDS[kind]
        bound = err.get("ctx", {}).get(key, "?")
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)
        shown = len(value) if kind.startswith(("too_", "string_too")) else got
        return f"out of range (got {shown}; {text.format(bound)}{extra})"
    msg = err["msg"]
    if kind in ("value_error", "assertion_error"):
        prefixes = ("Value error, ", "Assertion failed, ")
        return msg.split(", ", 1)[1] if msg.startswith(prefixes) else msg
    msg = msg.replace("Input should be", "expected")
    return f"{msg[:1].lower()}{msg[1:]} (got {got}{extra})"


def _message(errors: list[dict[str, Any]], model: type[BaseModel], path: KeyPath, data: Any) -> str:
    """The message for all pydantic errors found at one place in the data.

    Several errors at one place come from a union (``Literal["all"] | PositiveInt``): the
    message leads with the member the value was closest to and names the others as well.
    """
    value = errors[0].get("input")
    types = [e for e in errors if e["type"] in _EXPECTED]
    literals = [e for e in errors if e["type"] in ("literal_error", "enum")]
    others = [e for e in errors if e not in types and e not in literals]
    names = [str(c) for c in _choices(model, path, data)] if literals else []
    if literals and not names:
        names = [str(e.get("ctx", {}).get("expected", "?")) for e in literals]
    choices = f"one of: {', '.join(names)}"
    if others:
        return _one_message(others[0], f", or {choices}" if literals else "")
    if not literals:
        return _type_message(types, value)
    if isinstance(value, str) or not types:
        close = did_you_mean(value, names) if isinstance(value, str) else ""
        alternatives = " or ".join(dict.fromkeys(_EXPECTED[e["type"]] for e in types))
        return f"unknown value {render_value(value)}{close}; {choices}" + (
            f", or {alternatives}" if alternatives else ""
        )
    return _type_message(types, value, f", or {choices}")


def _classify(err: dict[str, Any], data: Any) -> tuple[KeyPath, str, str]:
    """``(data path, group, detail)``: group is ``unknown``, ``missing`` or ``value``."""
    kind = err["type"]
    path, missing = _data_path(data, err["loc"], kind)
    if kind == "extra_forbidden":
        return path, "unknown", str(path[-1])
    if missing is not None:
        return path, "missing", str(missing)
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tag_key = str(err.get("ctx", {}).get("discriminator", "type")).strip("'\"")
        if kind == "union_tag_not_found":
            return path, "missing", tag_key
        return (*path, tag_key), "tag", tag_key
    return path, "value", ""


_RANK = {"unknown": 0, "tag": 1, "value": 1, "missing": 2}


def translate(
    exc: ValidationError, doc: Document, model: type[BaseModel], at: KeyPath, data: Any
) -> InputError:
    """One :class:`InputError` for a pydantic ValidationError: the first problem by line.

    Errors at the same place are merged (a union's "expected a string" and "expected a
    mapping" become one message); at the same line an unknown key (often the misspelling of the
    missing one) comes before a missing key.
    """
    groups: dict[tuple[KeyPath, str, str], list[dict[str, Any]]] = {}
    # pydantic's ErrorDetails is a TypedDict, which mypy never treats as a dict[str, Any]
    for err in cast(list[dict[str, Any]], exc.errors(include_url=False)):
        groups.setdefault(_classify(err, data), []).append(err)
    # A union member rejected outright (``t: expected a string``) is noise when another member
    # got further (``t.a: expected an integer``): keep the deeper report.
    deeper = {path[:i] for path, _, _ in groups for i in range(len(path))}
    for key, errors in list(groups.items()):
        outright = ("literal_error", "enum", *_EXPECTED)
        if key[0] in deeper and key[1] == "value" and all(e["type"] in outright for e in errors):
            del groups[key]

    # A misspelt required key is one mistake, not two: report it where it is written, with
    # its did-you-mean, rather than as the missing key at the line of its mapping.
    misspelt: dict[tuple[KeyPath, str], str] = {}
    for path, group, detail in list(groups):
        if group == "missing":
            typos = [d for p, g, d in groups if g == "unknown" and p[:-1] == path]
            matches = get_close_matches(detail, typos, n=1, cutoff=0.6)
            if matches:
                misspelt[(path, matches[0])] = detail
                del groups[(path, group, detail)]

    issues: list[tuple[tuple[bool, int, int], InputError]] = []
    for (path, group, detail), errors in groups.items():
        where = path
        if group == "unknown":
            where = path[:-1]
            valid = _valid_keys(model, where, data)
            listed = f"; valid keys: {', '.join(valid)}" if valid else ""
            required = misspelt.get((where, detail))
            close = f" (did you mean '{required}'?)" if required else did_you_mean(detail, valid)
            message = f"unknown key '{detail}'{close}{listed}"
        elif group == "missing":
            message = f"missing required key '{detail}'"
        elif group == "tag":
            value = get_path_or_none(data, path)
            names = [str(c) for c in _choices(model, path, data)]
            close = did_you_mean(value, names) if isinstance(value, str) else ""
            message = f"unknown value {render_value(value)}{close}; one of: {', '.join(names)}"
        else:
            message = _message(errors, model, path, data)
        file, line = doc.location(at + path)
        error = InputError(message, file=file, line=line, key_path=render_path(at + where) or None)
        issues.append(((line is None, line or 0, _RANK[group]), error))
    issues.sort(key=lambda item: item[0])
    first = issues[0][1]
    if len(issues) > 1:
        loc = first.location
        first = InputError(
            f"{first.detail} (and {len(issues) - 1} more)",
            file=loc.file,
            line=loc.line,
            key_path=loc.key_path,
        )
    return first


def validate(doc: Document, model: type[M], *, at: KeyPath = (), data: Any = None) -> M:
    """``doc.data`` (or ``data``, the sub-tree at key path ``at``) validated as ``model``.

    Raises one :class:`InputError` naming file, line, key path, the bad value and what is valid.
    """
    if data is None:
        try:
            data = get_path(doc.data, at)
        except (KeyError, IndexError, TypeError):
            file, line = doc.location(at[:-1])
            raise InputError(
                f"missing required key '{at[-1]}'",
                file=file,
                line=line,
                key_path=render_path(at[:-1]) or None,
            ) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise translate(exc, doc, model, at, data) from None


def load_file(
    path_or_name: str | Path,
    model: type[M],
    *,
    kind: str | None = None,
    relative_to: str | Path | None = None,
) -> M:
    """Read one file (a path, or a built-in name of ``kind``) and validate it as ``model``."""
    path = paths.resolve(path_or_name, kind, relative_to) if kind else Path(path_or_name)
    return validate(load_document(path), model)


# --- overrides ---------------------------------------------------------------------------------


def set_path(
    data: dict[str, Any], path: KeyPath, value: Any, source: str = "--set"
) -> dict[str, Any]:
    """A deep copy of ``data`` with ``value`` at ``path``; missing mappings are created."""
    out = copy.deepcopy(data)
    node: Any = out
    for i, part in enumerate(path):
        last = i == len(path) - 1
        if isinstance(node, list):
            if isinstance(part, str) and part.isdigit():
                part = int(part)
            if not isinstance(part, int) or not 0 <= part < len(node):
                raise InputError(
                    f"no item {part!r} in the list of {len(node)} items",
                    file=source,
                    key_path=render_path(path[:i]),
                )
        elif isinstance(node, dict):
            if isinstance(part, str) and part.isdigit() and part not in node and int(part) in node:
                part = int(part)
            if not last and part not in node:
                node[part] = {}
        else:
            raise InputError(
                f"cannot set {render_path(path)}: {render_path(path[:i])} is "
                f"{render_value(node)}, not a mapping",
                file=source,
                key_path=render_path(path),
            )
        if last:
            node[part] = value
        else:
            node = node[part]
    return out


def parse_override(text: str, source: str = "--set") -> tuple[KeyPath, Any]:
    """``key.path=value`` -> ``(path, value)``; the value is read as a YAML 1.2 value."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise InputError(f"expected key.path=value, got '{text}'", file=source)
    return parse_key_path(key.strip(), source), parse_value(raw.strip(), source)


def apply_overrides(
    data: dict[str, Any], overrides: Iterable[str], source: str = "--set"
) -> dict[str, Any]:
    """``data`` with each ``key.path=value`` applied in order; ``data`` itself is untouched."""
    for text in overrides:
        path, value = parse_override(text, source)
        data = set_path(data, path, value, source)
    return data


def override_document(doc: Document, overrides: Iterable[str], source: str = "--set") -> Document:
    """``doc`` with overrides applied; errors inside overridden keys will name ``source``."""
    data, origins = doc.data, {}
    for text in overrides:
        path, value = parse_override(text, source)
        # the whole sub-tree the override creates is its own: `strategy.chips[5]=1` on a
        # strategy without `chips` makes `chips`, whose errors are then blamed on --set too
        created = next(
            (path[:i] for i in range(1, len(path)) if get_path_or_none(data, path[:i]) is None),
            path,
        )
        data = set_path(data, path, value, source)
        origins[created] = (source, None)
    return doc.with_data(data, origins)


def check_kind(doc: Document, expected: str, at: KeyPath = (), *, required: bool = False) -> None:
    """Refuse a file of another kind (``kind: sweep`` where a plan is expected) with one
    file:line message, before its keys are checked against the wrong schema.

    The message says what the file is and which command reads it; a file with no ``kind:``
    that plainly is another kind by its keys (a scenario given where a system is expected) is
    refused the same way. ``required``: the expected kind must be declared (system, chip and
    model files), so a file without ``kind:`` and with no key resembling it is refused as not
    of that kind, without listing its keys — it may be any YAML file of any program.
    """
    data = get_path_or_none(doc.data, at)
    found = files.document_kind(data)
    if found is not None and found != expected:
        declared = isinstance(data, dict) and "kind" in data
        file, line = doc.location((*at, "kind") if declared else at)
        raise InputError(
            files.wrong_kind(found, expected),
            file=file,
            line=line,
            key_path="kind" if declared else None,
        )
    if required and isinstance(data, dict) and "kind" not in data:
        if did_you_mean("kind", [str(k) for k in data]) or "schema_version" in data:
            return  # a misspelt or forgotten kind: validation names it (with did-you-mean)
        file, line = doc.location(at)
        raise InputError(
            f"not a {expected} file: it has no `kind: {expected}` (nor `schema_version: 1`); "
            f"{expected} files are read by {files.READ_BY.get(expected, 'ipusim')}",
            file=file,
            line=line,
        )
