"""The three classes of a published number: the check of a classed record, and the one-line
summary of prediction errors.

Every record under validation/ that is compared with a measurement is one of (issue 11):

* **calibration** — the measurement set a value in a topology or scenario file (the record names
  it); matching it shows only that the value was carried in correctly;
* **consistency** — the model's figure repeats a calibrated value, or is a multiple or sum of
  calibrated values (the record says which); it checks that the model carries its calibration
  across cases (links independent per direction, uplinks independent, ...), not that it predicts;
* **prediction** — the figure comes from a mechanism the calibrated values do not fix
  (contention, routing, interacting costs, a parameter solved on no point; the record says which).

Only predictions measure how well ipusim predicts; docs/validation.md reports their errors apart
(:func:`prediction_summary`, and § "Predictions at a glance" from :mod:`validation.glance`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

CLASSES = ("calibration", "consistency", "prediction")


def check_classed(record: Mapping[str, Any], key: str, source: str) -> None:
    """A ValueError naming ``source`` and the record unless its class (under ``key``) is one of
    :data:`CLASSES`, a calibration record names what it calibrates (``calibrates``) and only it
    does, and every other record says why (``why``)."""
    rid = record.get("id", "?")
    kind = record.get(key)
    if kind not in CLASSES:
        raise ValueError(f"{source}: {rid}: {key} must be one of {', '.join(CLASSES)}")
    if (kind == "calibration") != bool(record.get("calibrates")):
        raise ValueError(f"{source}: {rid}: a calibration record names what it calibrates")
    if (kind != "calibration") != bool(record.get("why")):
        raise ValueError(f"{source}: {rid}: a consistency or prediction record says why")


def load_classed(path: Path, key: str) -> dict[str, Any]:
    """A data file whose ``records`` are classed under ``key``, every record checked
    (:func:`check_classed`)."""
    data = dict(yaml.safe_load(path.read_text(encoding="utf-8")))
    for record in data["records"]:
        check_classed(record, key, path.name)
    return data


def mean_abs(errors: Sequence[float]) -> float:
    """Mean of |error| (0 for none)."""
    return sum(abs(e) for e in errors) / len(errors) if errors else 0.0


def prediction_summary(errors: Sequence[float], within: Sequence[bool]) -> str:
    """One sentence: how many predictions met their tolerance, their mean and largest |error|.

    ``errors`` are model / published - 1 of the predictions checked against a published value;
    ``within`` says for each whether it met its own tolerance.
    """
    if len(errors) != len(within):
        raise ValueError("one tolerance verdict per prediction error")
    if not errors:
        return "No prediction is checked against a published value."
    largest = max(abs(e) for e in errors)
    return (
        f"{len(errors)} prediction{'s' if len(errors) > 1 else ''} checked against a published "
        f"value, {sum(within)} within tolerance; mean |error| {mean_abs(errors):.1%}, "
        f"largest {largest:.1%}."
    )
