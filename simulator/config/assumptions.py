"""Assumptions and calibrations as data: the ``assumptions:`` and ``calibrated:`` blocks.

Every value in a chip, system or scenario file that is not a sourced fact is named, given a
low–high range and a reason, in one block at the end of the file (the value itself stays where
it is, with its source comment)::

    assumptions:
      sync.machine_hop_ns:                      # a key path of this file
        name: SYNC-LINK-HOP                     # the ASSUMPTION's name (docs/topologies.md)
        range: [15, 150]                        # low, high; in the key's unit; holds the value
        reason: early Graphcore model's 15 ns per hop as the floor; ...
    calibrated:
      training.compute_scale:
        points: [bert-large-v2.0-bow-pod16]     # what the value was solved on
        note: secant solve on full simulations (validation/mlperf.py)

A range with low = high *pins* the value: it is documented but never varied. ``ipusim run
--sensitivity`` varies each assumption a run uses to its low and to its high end, one at a
time (:mod:`simulator.sensitivity`). A calibrated value is not varied (it was solved on the
points it names); an entry may sit in both blocks (a Mk1 calibration carried to Mk2 as an
assumption).

:func:`check_blocks` relates the blocks to the rest of the file — every key path must name a
number (or true/false) the file sets, low must not exceed high, and both ends must be valid
values of that key (the file is validated with each end in place) — and reports a violation as
an :class:`~simulator.errors.InputError` naming file, line and key. A value outside its range
is allowed (a copy of a file may try another value); ``topology show`` marks it, and a test
keeps the shipped files' values inside their ranges.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, Field, ValidationError

from simulator.config.base import StrictModel
from simulator.config.yamlio import Document, KeyPath, get_path, parse_key_path, render_value
from simulator.errors import InputError, did_you_mean
from simulator.units import unit_of

NAME_PATTERN = r"^[A-Z0-9][A-Z0-9-]*$"
Scalar = Annotated[bool | int | float, Field(allow_inf_nan=False)]


class Assumption(StrictModel):
    """One assumed value: its name, range and the reason for both."""

    name: str = Field(
        pattern=NAME_PATTERN,
        description="The assumption's name, upper case with hyphens (e.g. SYNC-LINK-HOP).",
    )
    range: Annotated[list[Scalar], Field(min_length=2, max_length=2)] = Field(
        description="[low, high] in the key's unit; low = high pins the value (never varied)."
    )
    reason: str = Field(min_length=1, description="Why the value and its range are what they are.")


class Calibration(StrictModel):
    """A value solved on named measured points."""

    points: Annotated[list[str], Field(min_length=1)] = Field(
        description="The measured points the value was solved on (ids or table references)."
    )
    note: str = Field("", description="How it was solved (free text).")


Assumptions = dict[str, Assumption]
Calibrations = dict[str, Calibration]

ASSUMPTIONS_DESCRIPTION = (
    "Key path -> {name, range: [low, high], reason} for every value of this file that is not a "
    "sourced fact (docs/config.md, 'Assumptions and calibrations')."
)
CALIBRATED_DESCRIPTION = (
    "Key path -> {points: [...], note} for every value solved on measured points."
)


@dataclass(frozen=True)
class AssumptionRecord:
    """One assumption of a loaded file, ready to show or vary.

    ``key`` is the key path in its file; ``source`` says which file: ``system``, ``chip`` or
    ``scenario``. ``name`` is what results show: the key path, prefixed with ``chip.`` for a
    chip file's keys (``chip.sync_latency_ns``), as a system file names its chip with ``chip:``.
    ``value`` is the file's value (None for a null value that stands for a default).
    """

    source: str
    key: str
    label: str  # the ASSUMPTION name (SYNC-LINK-HOP)
    low: bool | int | float
    high: bool | int | float
    value: bool | int | float | None
    reason: str
    unit: str | None
    calibrated: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"chip.{self.key}" if self.source == "chip" else self.key

    @property
    def pinned(self) -> bool:
        """Low = high: documented, never varied."""
        return self.low == self.high and type(self.low) is type(self.high)

    @property
    def in_range(self) -> bool:
        """Whether the value lies in its range (a copied file may set another value to try
        it: allowed, and shown; the shipped files are checked by a test)."""
        if self.value is None or isinstance(self.value, bool):
            return True
        return bool(self.low <= self.value <= self.high)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "assumption": self.label,
            "value": self.value,
            "low": self.low,
            "high": self.high,
            "unit": self.unit,
            "pinned": self.pinned,
            "in_range": self.in_range,
            "reason": self.reason,
            **({"calibrated_on": list(self.calibrated)} if self.calibrated else {}),
        }


@dataclass(frozen=True)
class CalibrationRecord:
    """One calibrated value of a loaded file."""

    source: str
    key: str
    value: Any
    points: tuple[str, ...]
    note: str

    @property
    def name(self) -> str:
        return f"chip.{self.key}" if self.source == "chip" else self.key

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "points": list(self.points),
                "note": self.note}  # fmt: skip


_NUMBER = (bool, int, float)


def _unit(key: str) -> str | None:
    last = key.rsplit(".", 1)[-1]
    return unit_of(last)


def _keys_of(data: Any, prefix: str = "") -> list[str]:
    """Every key path of numbers and booleans in ``data`` (for did-you-mean)."""
    out: list[str] = []
    if isinstance(data, Mapping):
        for k, v in data.items():
            if k in ("assumptions", "calibrated"):
                continue
            path = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, Mapping):
                out.extend(_keys_of(v, path))
            elif isinstance(v, _NUMBER) or v is None:
                out.append(path)
    return out


def _locate(doc: Document, at: KeyPath, *keys: str | int) -> tuple[str, int | None, str]:
    path = (*at, *keys)
    file, line = doc.location(path)
    return file, line, ".".join(str(k) for k in path)


def _error(doc: Document, at: KeyPath, keys: tuple[str | int, ...], message: str) -> InputError:
    file, line, key_path = _locate(doc, at, *keys)
    return InputError(message, file=file, line=line, key_path=key_path)


def _target(doc: Document, at: KeyPath, data: Mapping[str, Any], block: str, key: str) -> Any:
    """The value a block entry names; an unknown or non-scalar key path is an InputError."""
    here = (block, key)
    try:
        path = parse_key_path(key, doc.file)
    except InputError as exc:
        raise _error(doc, at, here, f"'{key}' is not a key path: {exc.detail}") from None
    try:
        value = get_path(data, path)
    except (KeyError, IndexError, TypeError):
        known = _keys_of(data)
        raise _error(
            doc,
            at,
            here,
            f"'{key}' is not a key of this file{did_you_mean(key, known)}; an assumption names "
            "a number (or true/false) the file sets, by its key path (e.g. sync.machine_hop_ns)",
        ) from None
    if value is not None and not isinstance(value, _NUMBER):
        raise _error(
            doc, at, here,
            f"'{key}' is {render_value(value)}, not a number or true/false: name the numbers "
            "inside it (e.g. '{key}.fp16')".replace("{key}", key),
        )  # fmt: skip
    return value


def _same_kind(a: Any, b: Any) -> bool:
    return isinstance(a, bool) == isinstance(b, bool)


def check_blocks(
    doc: Document,
    model: type[BaseModel],
    *,
    at: KeyPath = (),
    data: Mapping[str, Any] | None = None,
) -> None:
    """Check a file's ``assumptions:`` and ``calibrated:`` blocks against the file itself.

    ``model`` is the file's schema (already validated); ``data`` its data (default
    ``doc.data`` at ``at``). Raises :class:`InputError` at the line of the offending entry.
    """
    if data is None:
        data = get_path(doc.data, at)
    if not isinstance(data, Mapping):
        return
    for key in data.get("calibrated") or {}:
        _target(doc, at, data, "calibrated", str(key))
    for key, entry in (data.get("assumptions") or {}).items():
        key = str(key)
        value = _target(doc, at, data, "assumptions", key)
        low, high = entry["range"]
        where = ("assumptions", key, "range")
        if not _same_kind(low, high):
            raise _error(doc, at, where, f"range {render_value([low, high])} mixes true/false "
                         "with numbers")  # fmt: skip
        if value is not None and not _same_kind(value, low):
            raise _error(
                doc, at, where,
                f"range {render_value([low, high])} does not fit {key} = "
                f"{render_value(value)} (true/false ranges for true/false values only)",
            )  # fmt: skip
        if not isinstance(low, bool) and low > high:
            raise _error(doc, at, where, f"range [{low:g}, {high:g}]: low is above high")
        path = parse_key_path(key, doc.file)
        for end, which in ((low, "low"), (high, "high")):
            trial = _replaced(data, path, end)
            try:
                model.model_validate(trial)
            except ValidationError as exc:
                first = exc.errors(include_url=False)[0]
                raise _error(
                    doc, at, where,
                    f"the {which} end {render_value(end)} is not a valid value of {key}: "
                    f"{first['msg']}",
                ) from None  # fmt: skip


def _replaced(data: Any, path: KeyPath, value: Any) -> Any:
    """``data`` with ``value`` at ``path``, a path :func:`_target` found: only the mappings and
    lists along it are copied, the rest is shared (validation only reads it; a deep copy of
    the whole file for each end of each assumption was most of a small run's loading time)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    out = list(data) if isinstance(data, list) else dict(data)
    out[head] = _replaced(data[head], rest, value)  # type: ignore[index]
    return out


def records(
    source: str,
    data: Mapping[str, Any],
    assumptions: Mapping[str, Assumption],
    calibrated: Mapping[str, Calibration],
) -> tuple[tuple[AssumptionRecord, ...], tuple[CalibrationRecord, ...]]:
    """The blocks of one validated file as records, in file order."""
    out_a = []
    for key, a in assumptions.items():
        value = get_path(data, parse_key_path(key, source))
        cal = calibrated.get(key)
        low, high = a.range
        out_a.append(
            AssumptionRecord(
                source, key, a.name, low, high, value, a.reason, _unit(key),
                tuple(cal.points) if cal else (),
            )
        )  # fmt: skip
    out_c = [
        CalibrationRecord(
            source, key, get_path(data, parse_key_path(key, source)), tuple(c.points), c.note
        )
        for key, c in calibrated.items()
    ]
    return tuple(out_a), tuple(out_c)


_SHOWN_UNITS = {"GBps": "GB/s", "Gbps": "Gbit/s", "us": "µs", "hz": "Hz", "bytes": "B"}


def format_value(value: Any, unit: str | None = None) -> str:
    """A value for tables: true/false, integers with separators, floats to 4 digits; ``unit``
    a key suffix (``GBps`` is shown as GB/s)."""
    if value is None:
        return "default"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = f"{value:,}" if isinstance(value, int) else f"{value:,.4g}"
    return f"{text} {_SHOWN_UNITS.get(unit, unit)}" if unit else text
