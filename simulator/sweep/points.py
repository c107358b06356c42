"""Expanding a sweep into points, and the hash that names each resolved point.

A point is the base scenario with ``key.path=value`` overrides applied by the same machinery
as ``ipusim run --set`` (:func:`simulator.config.scenario.load_scenario`), so validation and
error messages are the same. Its key is the SHA-256 of canonical JSON of:

* the resolved scenario data (the base file's data with every override applied; ``name``
  defaulted to the base file's stem; ``baseline`` dropped unless the sweep keeps it),
* the content (SHA-256) of every file the point names: the system file, its chip file, the
  model file (a baseline scenario file when baselines are kept),
* the ipusim version and the run options.

So editing an axis, the base scenario, or a topology/model/chip file the point uses makes a
new point; reordering axes, renaming the sweep or adding points does not. A change of the
simulator's code without a version change does not invalidate stored points (use a new store).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from simulator import __version__
from simulator.config.inputs import canonical, named_files
from simulator.config.load import set_path
from simulator.config.yamlio import KeyPath, get_path, load_document, render_path
from simulator.errors import InputError
from simulator.sweep import expr
from simulator.sweep.spec import Sweep


@dataclass(frozen=True)
class Point:
    """One resolved point of a sweep."""

    index: int
    values: dict[str, Any]  # rendered key path -> value: the axes, then the derived keys
    overrides: tuple[str, ...]  # key.path=value texts, applied in order to the base
    data: dict[str, Any]  # the resolved scenario data
    key: str  # SHA-256 hex of the resolved point (module docstring)


@dataclass(frozen=True)
class Expansion:
    """The points kept, and how many combinations ``where:`` skipped."""

    points: list[Point]
    skipped: int
    combinations: int


def render_value(value: Any) -> str:
    """A value as YAML flow text that :func:`~simulator.config.yamlio.parse_value` reads back."""
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
    if isinstance(value, list):
        return "[" + ", ".join(render_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = (f"{json.dumps(str(k))}: {render_value(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    return json.dumps(value)


def point_key(
    data: dict[str, Any], files: dict[str, str], baseline: bool, band: bool = False
) -> str:
    """The hash naming a resolved point (module docstring); a point run with its sensitivity
    band (``ipusim sweep --band``) is another point."""
    run: dict[str, Any] = {"baseline": baseline, "fast_collectives": True}
    if band:
        run["sensitivity"] = True
    payload = {"ipusim": __version__, "scenario": data, "files": files, "run": run}
    return hashlib.sha256(canonical(payload).encode()).hexdigest()


@lru_cache(maxsize=256)
def _chips_of(topology: str, base: str) -> int:
    from simulator.hardware.build import load_system

    return load_system(topology, relative_to=base).num_chips


def chips_of(topology: Any, base: Path) -> int:
    """IPUs of a topology value (a name, a path, or an inline mapping)."""
    if isinstance(topology, str):
        return _chips_of(topology, str(base))
    from simulator.hardware.build import load_system

    return load_system(topology).num_chips


Setting = tuple[KeyPath, str, int | None, Any]  # key path, where in the file, line, value


def _combinations(sweep: Sweep) -> Iterator[list[Setting]]:
    grid = [[(a.path, a.where, a.line, v) for v in a.values] for a in sweep.grid]
    zips = [
        [
            [(a.path, a.where, a.line, a.values[i]) for a in group]
            for i in range(len(group[0].values))
        ]
        for group in sweep.zips
    ]
    for combo in itertools.product(*grid, *zips):
        flat: list[Setting] = []
        for item in combo:
            if isinstance(item, list):
                flat.extend(item)
            else:
                flat.append(item)
        yield flat


def base_data(sweep: Sweep) -> dict[str, Any]:
    """The base scenario's data as the points start from it (validated first)."""
    from simulator.config.scenario import load_scenario

    load_scenario(sweep.base)  # the base itself must be valid: exit 2 otherwise
    data = dict(load_document(sweep.base).data)
    data.setdefault("name", sweep.base.stem)
    if not sweep.baseline:
        data.pop("baseline", None)
    return data


def expand(sweep: Sweep, band: bool = False) -> Expansion:
    """Every point of ``sweep`` in order, with ``where:`` applied and keys hashed (``band``:
    the keys of the points run with their sensitivity band)."""
    start = base_data(sweep)
    drop_baseline = not sweep.baseline and "baseline" in load_document(sweep.base).data
    points: list[Point] = []
    skipped = total = 0
    for combo in _combinations(sweep):
        total += 1
        data = start
        values: dict[str, Any] = {}
        overrides: list[str] = ["baseline=null"] if drop_baseline else []
        for path, where, line, value in combo:
            data = _set(sweep, data, path, value, where, line)
            values[render_path(path)] = value
            overrides.append(f"{render_path(path)}={render_value(value)}")
        lookup = _lookup(data, sweep.base)
        for d in sweep.derive:
            value = _evaluate(sweep, d, lookup, values)
            data = _set(sweep, data, d.path, value, d.where, d.line)
            lookup = _lookup(data, sweep.base)
            values[render_path(d.path)] = value
            overrides.append(f"{render_path(d.path)}={render_value(value)}")
        if not all(_evaluate(sweep, w, lookup, values) for w in sweep.where):
            skipped += 1
            continue
        files = named_files(data, sweep.base, sweep.baseline)
        key = point_key(data, files, sweep.baseline, band)
        points.append(Point(len(points), values, tuple(overrides), data, key))
    return Expansion(points, skipped, total)


def _set(
    sweep: Sweep, data: dict[str, Any], path: KeyPath, value: Any, where: str, line: int | None
) -> dict[str, Any]:
    try:
        return set_path(data, path, value)
    except InputError as exc:
        raise InputError(exc.detail, file=sweep.file, line=line, key_path=where) from None


def _lookup(data: dict[str, Any], base: Path) -> expr.Lookup:
    return expr.mapping_lookup(data, {"chips": lambda: chips_of(data.get("topology"), base)})


def _evaluate(sweep: Sweep, d: Any, lookup: expr.Lookup, values: dict[str, Any]) -> Any:
    try:
        return expr.evaluate(d.tree, lookup)
    except expr.ExprError as exc:
        shown = ", ".join(f"{k}={v!r}" for k, v in values.items())
        raise InputError(
            f"{d.text!r}: {exc} (at the point {shown or 'of the base scenario'})",
            file=sweep.file,
            line=d.line,
            key_path=d.where,
        ) from None


def check_keys(sweep: Sweep, expansion: Expansion) -> None:
    """Every swept or derived key path must exist in the scenario (exit 2 naming the axis).

    A key already in the base scenario exists. Any other is tried on the base alone (set to
    the value of the first point) by loading and planning it: an "unknown key" or "cannot
    set" error about that key means it does not exist.
    """
    if not expansion.points:
        return
    data = load_document(sweep.base).data
    first = expansion.points[0]
    entries = [(a.path, a.where, a.line) for a in sweep.axes]
    entries += [(d.path, d.where, d.line) for d in sweep.derive]
    for path, where, line in entries:
        try:
            get_path(data, path)
            continue
        except (KeyError, IndexError, TypeError):
            pass
        text = f"{render_path(path)}={render_value(first.values[render_path(path)])}"
        problem = _plan_error(sweep.base, (text,), path)
        if problem is not None:
            raise InputError(
                f"the scenario {sweep.base.name} has no key {render_path(path)}: {problem}",
                file=sweep.file,
                line=line,
                key_path=where,
            )


def _plan_error(base: Path, overrides: tuple[str, ...], path: KeyPath) -> str | None:
    from simulator.config.scenario import load_scenario
    from simulator.run import build_system
    from simulator.strategy import PlanContext, lookup

    try:
        loaded = load_scenario(base, overrides)
        system = build_system(loaded)
        ctx = PlanContext(loaded, system, loaded.strategy)
        lookup(loaded.scenario.strategy.type).plan(ctx)
    except InputError as exc:
        parent = render_path(path[:-1]) or None
        unknown = exc.detail.startswith(f"unknown key '{path[-1]}'")
        if (unknown and exc.location.key_path in (parent, None)) or "cannot set" in exc.detail:
            return exc.detail
    return None
