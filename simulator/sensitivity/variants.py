"""The assumptions a scenario rests on, and the inputs with one of them at one end.

A scenario's assumptions are those of its system file and chip file (the ``assumptions:``
blocks, :mod:`simulator.config.assumptions`) and of the scenario file itself. A system or chip
value is replaced in the file's data and the System rebuilt from the same files
(:func:`simulator.hardware.build.build_source`), so a scenario's ``hosts:`` overrides still
apply on top — an assumption the scenario overrides (a calibrated ``hosts.step_overhead_us``)
builds the same System and is found untouched. A scenario value is applied like
``--set key=value``; the System is then shared unless the key is under ``topology`` or
``hosts``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from simulator.config.assumptions import AssumptionRecord, records
from simulator.config.load import parse_key_path, render_value, set_path
from simulator.config.scenario import LoadedScenario, with_overrides
from simulator.errors import InputError
from simulator.hardware.build import SystemSource, build_source
from simulator.hardware.system import System


@dataclass(frozen=True)
class Variant:
    """One assumption at one end of its range."""

    record: AssumptionRecord
    end: str  # low | high
    value: bool | int | float

    @property
    def label(self) -> str:
        return f"{self.record.name} = {render_value(self.value)}"


def assumptions_of(loaded: LoadedScenario, system: System) -> list[AssumptionRecord]:
    """Every assumption the scenario's inputs declare: chip, system, then scenario file."""
    sc = loaded.scenario
    own, _ = records("scenario", loaded.document.data, sc.assumptions, sc.calibrated)
    return [*system.info.assumptions, *own]


def variants(record: AssumptionRecord) -> list[Variant]:
    """The low and high ends of ``record`` (none for a pinned one)."""
    if record.pinned:
        return []
    return [Variant(record, "low", record.low), Variant(record, "high", record.high)]


def _range_error(loaded: LoadedScenario, src: SystemSource, v: Variant, exc: InputError) -> Any:
    """A variant that cannot be built: an error at the range of its assumption."""
    r = v.record
    if r.source == "system":
        doc, at = src.where.doc, src.where.at
    elif r.source == "chip":
        doc, at = src.chip_doc, ()
    else:
        doc, at = loaded.document, ()
    path = (*at, "assumptions", r.key, "range")
    file, line = doc.location(path)
    return InputError(
        f"the {v.end} end {render_value(v.value)} of {r.key} ({r.label}) gives invalid input: "
        f"{exc.detail}",
        file=file,
        line=line,
        key_path=".".join(str(p) for p in path),
    )


def build_variant(
    loaded: LoadedScenario, src: SystemSource, system: System, v: Variant
) -> tuple[LoadedScenario, System]:
    """The scenario and System with ``v`` applied (the base ones where it changes nothing)."""
    r = v.record
    key = parse_key_path(r.key, "assumptions")
    try:
        if r.source == "system":
            return loaded, build_source(src, system_data=set_path(dict(src.data), key, v.value))
        if r.source == "chip":
            data = set_path(dict(src.chip_doc.data), key, v.value)
            return loaded, build_source(src, chip_data=data)
        variant = with_overrides(loaded, [f"{r.key}={_yaml(v.value)}"])
        if key[0] in ("topology", "hosts"):
            from simulator.run import build_system

            return variant, build_system(variant)
        return variant, system
    except InputError as exc:
        raise _range_error(loaded, src, v, exc) from None


def _yaml(value: bool | int | float) -> str:
    """A value as ``--set`` reads it back (YAML 1.2): true/false, integers, full floats."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)
