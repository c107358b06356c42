"""Sweep files: a base scenario plus axes over key paths (docs/sweeps.md).

::

    schema_version: 1
    kind: sweep
    name: bert-bow-pods
    base: ../mlperf/bert-large-v2.0-bow-pod16.yaml   # relative to this file, or a built-in name
    grid:                              # cartesian product of these axes
      topology: [bow-pod16, bow-pod64]
      training.micro_batch: [1, 2, 3]
    zip:                               # each group: lists of one length, advanced together
      - {strategy.stages: [4, 8], strategy.attention_ffn_per_stage: [null, null]}
    derive:                            # key paths computed per point, in order
      strategy.replicas: chips // strategy.stages
    where:                             # keep a point only when every expression is true
      - strategy.stages * strategy.replicas == chips
    statistics: {samples_to_target: 2.8e6}   # optional: time-to-train beside step time

Points are ``grid x zip group 1 x zip group 2 ...`` in file order (the last axis varies
fastest). Keys of the file are validated like every file (unknown keys, types, empty axes:
file:line errors); whether each axis names a real scenario key is checked against the base
scenario in :mod:`simulator.sweep.points`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from simulator.capacity.ttt import Statistics
from simulator.config import limits, paths
from simulator.config.base import SchemaVersion, StrictModel
from simulator.config.jsonschema import register_file_kind
from simulator.config.load import check_kind, validate
from simulator.config.yamlio import (
    Document,
    KeyPath,
    load_document,
    parse_key_path,
    render_path,
)
from simulator.errors import InputError
from simulator.sweep import expr

AxisValues = Annotated[list[Any], Field(min_length=1)]


class SweepBody(StrictModel):
    """What makes the points: shared by sweep files and the ``candidates`` of plan files."""

    base: str = Field(
        description="The base scenario: a path relative to this file, or a built-in name."
    )
    grid: dict[str, AxisValues] = Field(
        default_factory=dict, description="Key path -> values; every combination is a point."
    )
    zip: list[Annotated[dict[str, AxisValues], Field(min_length=1)]] = Field(
        default_factory=list,
        description="Groups of key path -> values of one length, advanced together.",
    )
    derive: dict[str, str] = Field(
        default_factory=dict,
        description="Key path -> expression over the point (e.g. chips // strategy.stages).",
    )
    where: list[str] = Field(
        default_factory=list, description="Expressions; a point is kept when all are true."
    )
    baseline: bool = Field(
        False,
        description="Also run each point's baseline (for speedup); false drops `baseline:`.",
    )


class SweepFile(SweepBody):
    """A sweep file (``kind: sweep``)."""

    schema_version: SchemaVersion = Field(description="Format version of this file; always 1.")
    kind: Literal["sweep"] = Field("sweep", description="File kind.")
    name: str | None = Field(None, description="Name of the sweep; defaults to the file stem.")
    description: str = Field("", description="Free text.")
    statistics: Statistics | None = Field(
        None, description="Samples to the target, for time-to-train beside step time."
    )


@dataclass(frozen=True)
class Axis:
    """One key path swept, with its values and where it was written."""

    path: KeyPath
    values: tuple[Any, ...]
    line: int | None
    where: str  # e.g. grid.topology, zip[0].strategy.stages


@dataclass(frozen=True)
class Derived:
    """A key path computed from an expression."""

    path: KeyPath
    text: str
    tree: Any
    line: int | None
    where: str


@dataclass(frozen=True)
class Sweep:
    """A validated sweep: the base scenario file, axes, derived keys and constraints."""

    name: str
    file: str
    base: Path
    grid: tuple[Axis, ...]
    zips: tuple[tuple[Axis, ...], ...]
    derive: tuple[Derived, ...]
    where: tuple[Derived, ...]
    baseline: bool
    statistics: Statistics | None
    document: Document

    @property
    def axes(self) -> tuple[Axis, ...]:
        """Every axis, grid first, then the zip groups in order."""
        return self.grid + tuple(a for group in self.zips for a in group)


def _key(doc: Document, at: KeyPath, text: str) -> KeyPath:
    file, line = doc.location((*at, text))
    where = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in (*at, text))
    try:
        return parse_key_path(text, file)
    except InputError as exc:
        raise InputError(
            exc.detail, file=file, line=line, key_path=where.replace(".[", "[")
        ) from None


def _label(at: KeyPath, key: str) -> str:
    out = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in (*at, key))
    return out.replace(".[", "[")


def from_document(
    doc: Document,
    body: SweepBody,
    at: KeyPath,
    *,
    name: str,
    statistics: Statistics | None,
    relative_to: Path,
) -> Sweep:
    """The :class:`Sweep` of a validated ``body`` found at key path ``at`` of ``doc``."""
    file, line = doc.location((*at, "base"))
    try:
        base = paths.resolve(body.base, "scenario", relative_to=relative_to)
    except InputError as exc:
        raise exc.at(file=file, line=line, key_path=_label(at, "base")) from None

    def axis(group: KeyPath, key: str, values: list[Any]) -> Axis:
        path = _key(doc, group, key)
        return Axis(path, tuple(values), doc.location((*group, key))[1], _label(group, key))

    grid = tuple(axis((*at, "grid"), k, v) for k, v in body.grid.items())
    zips = []
    for i, group in enumerate(body.zip):
        members = tuple(axis((*at, "zip", i), k, v) for k, v in group.items())
        lengths = {len(a.values) for a in members}
        if len(lengths) > 1:
            f, ln = doc.location((*at, "zip", i))
            shown = ", ".join(f"{a.where.split('.', 1)[1]}: {len(a.values)}" for a in members)
            raise InputError(
                f"the lists of a zip group must have one length (got {shown})",
                file=f,
                line=ln,
                key_path=f"{_label(at, 'zip')}[{i}]",
            )
        zips.append(members)
    _check_combinations(doc, grid, zips)
    seen: dict[KeyPath, str] = {}
    for a in (*grid, *(m for g in zips for m in g)):
        if a.path in seen:
            raise InputError(
                f"key {render_path(a.path)} is swept twice ({seen[a.path]} and {a.where})",
                file=doc.file,
                line=a.line,
                key_path=a.where,
            )
        seen[a.path] = a.where

    def expression(group: str, key: str | int, text: str) -> Derived:
        f, ln = doc.location((*at, group, key))
        where = _label((*at, group), key) if isinstance(key, str) else f"{group}[{key}]"
        try:
            tree = expr.check(text)
        except InputError as exc:
            raise InputError(exc.detail, file=f, line=ln, key_path=where) from None
        path = _key(doc, (*at, group), key) if isinstance(key, str) else ()
        if path in seen:
            raise InputError(
                f"{where} is also swept by {seen[path]}; a key is either swept or derived",
                file=f,
                line=ln,
                key_path=where,
            )
        return Derived(path, text, tree, ln, where)

    derive = tuple(expression("derive", k, v) for k, v in body.derive.items())
    where = tuple(expression("where", i, t) for i, t in enumerate(body.where))
    return Sweep(
        name, doc.file, base, grid, tuple(zips), derive, where, body.baseline, statistics, doc
    )


def _check_combinations(
    doc: Document, grid: tuple[Axis, ...], zips: list[tuple[Axis, ...]]
) -> None:
    """The number of points, counted from the axes (never by making them), within the limit."""
    factors = [*grid, *(group[0] for group in zips)]
    total = math.prod(len(a.values) for a in factors)
    if total <= limits.MAX_SWEEP_COMBINATIONS:
        return
    widest = max(factors, key=lambda a: len(a.values))
    shown = " × ".join(f"{a.where} {len(a.values):,}" for a in factors[:6])
    shown += " × ..." if len(factors) > 6 else ""
    raise InputError(
        f"the axes make {total:,} combinations ({shown}), over the limit of "
        f"{limits.MAX_SWEEP_COMBINATIONS:,} ({limits.LIMITS_DOC}); split the sweep, or use "
        "zip: for keys that change together",
        file=doc.file,
        line=widest.line,
        key_path=widest.where,
    )


def load_sweep(path: str | Path) -> Sweep:
    """Read and validate a sweep file (errors name file:line and key path; exit 2)."""
    file = Path(path)
    if not file.is_file():  # a built-in one by name: sweeps/NAME under scenarios/
        file = paths.resolve(path, "scenario")
    doc = load_document(file)
    check_kind(doc, "sweep")
    spec = validate(doc, SweepFile)
    return from_document(
        doc, spec, (), name=spec.name or file.stem, statistics=spec.statistics, relative_to=file
    )


register_file_kind("sweep", SweepFile)
