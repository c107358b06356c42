"""The Jia19 Mk1 microbenchmarks as data, and the model's prediction for each.

``validation/jia19.yaml`` holds every published number (value, unit, conditions, source) with
the scenario that reproduces it, its class (calibration, consistency or prediction:
validation/classes.py; or not modelled) and how it is judged. :func:`load_records` reads it
strictly; :func:`evaluate` runs a record's scenario and compares. The test
(tests/test_validation_jia19.py) asserts each record; :mod:`validation.report` prints the
tables of docs/validation.md from the same data.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, model_validator

import strategies  # noqa: F401 - registers the comm strategy
from simulator.config.base import PositiveFloat, SchemaVersion, StrictModel
from simulator.config.load import validate
from simulator.config.yamlio import load_document
from simulator.metrics import CommResult
from simulator.run import run_scenario

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "validation" / "jia19.yaml"
PREDICTIONS = ROOT / "validation" / "jia19_predictions.yaml"

Kind = Literal["calibration", "consistency", "prediction", "not_modelled"]
Field_ = Literal["time_s", "bandwidth_GBps"]

# Size of one published unit in the compared field's unit (time_s: seconds; bandwidth: GB/s).
UNIT_SIZE: dict[str, dict[str, float]] = {
    "time_s": {"s": 1.0, "us": 1e-6, "ns": 1e-9},
    "bandwidth_GBps": {"GBps": 1.0, "percent": 1.0},
}


class Minus(StrictModel):
    """A second run of the same scenario whose figure is subtracted (e.g. per-hop latency)."""

    set: list[str] = Field(description="--set overrides of the subtracted run.")


class Record(StrictModel):
    """One published number and how the model is judged against it."""

    id: str
    source: Literal["Jia19"]
    ref: str = Field(description="Table or figure of the paper.")
    quantity: str
    value: float | list[float] = Field(
        description="A number, or [low, high] for a range (compared: error 0 inside it)."
    )
    unit: str
    conditions: str
    kind: Kind = Field(
        description="calibration (set a YAML value), consistency (the model's figure repeats or "
        "combines calibrated values), prediction (a mechanism they do not fix), not_modelled."
    )
    calibrates: str | None = Field(None, description="The YAML value this number set.")
    why: str | None = Field(
        None,
        description="Consistency: the calibrated values the figure repeats, multiplies or sums; "
        "prediction: the mechanism that makes it one.",
    )
    scenario: str | None = Field(None, description="Scenario path from the repository root.")
    set: list[str] = Field(default_factory=list, description="--set overrides.")
    minus: Minus | None = None
    compare: Field_ | None = None
    scale: PositiveFloat = Field(1.0, description="Prediction = compared field x scale.")
    tolerance: PositiveFloat | None = Field(None, description="Relative; |error| must not exceed.")
    expected_to_miss: bool = False
    miss_bound: PositiveFloat | None = Field(
        None, description="For a known miss: the error must stay within this (regression guard)."
    )
    reason: str | None = Field(None, description="Why not modelled, or why the model misses.")
    note: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.kind == "not_modelled":
            if self.reason is None:
                raise ValueError(f"{self.id}: a not_modelled record needs a reason")
            if self.scenario is not None or self.compare is not None or self.why is not None:
                raise ValueError(
                    f"{self.id}: a not_modelled record has no scenario, compare or why"
                )
            return self
        if self.scenario is None or self.compare is None or self.tolerance is None:
            raise ValueError(f"{self.id}: needs scenario, compare and tolerance")
        if isinstance(self.value, list) and not (
            len(self.value) == 2 and 0 < self.value[0] < self.value[1]
        ):
            raise ValueError(f"{self.id}: a compared range is [low, high] with 0 < low < high")
        if self.unit not in UNIT_SIZE[self.compare]:
            raise ValueError(
                f"{self.id}: unit {self.unit!r} does not fit {self.compare} "
                f"(choose one of {sorted(UNIT_SIZE[self.compare])})"
            )
        if (self.kind == "calibration") != (self.calibrates is not None):
            raise ValueError(
                f"{self.id}: a calibration record names what it calibrates, and only it does"
            )
        if (self.kind in ("consistency", "prediction")) != (self.why is not None):
            raise ValueError(
                f"{self.id}: a consistency or prediction record says why (`why`), and only it does"
            )
        if self.expected_to_miss:
            if self.reason is None or self.miss_bound is None:
                raise ValueError(f"{self.id}: an expected miss needs a reason and a miss_bound")
            if self.miss_bound <= self.tolerance:
                raise ValueError(f"{self.id}: miss_bound must exceed tolerance")
        elif self.miss_bound is not None:
            raise ValueError(f"{self.id}: miss_bound only goes with expected_to_miss")
        return self


class Jia19File(StrictModel):
    """The whole file."""

    schema_version: SchemaVersion
    records: list[Record]

    @model_validator(mode="after")
    def _unique(self) -> Self:
        _check_unique([r.id for r in self.records], "record")
        return self


def _check_unique(ids: list[str], what: str) -> None:
    """A ValueError naming the ids that appear more than once."""
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ValueError(f"{what} ids repeat: {dup}")


def load_records(path: Path = DATA) -> list[Record]:
    """All records of ``path``, validated (unknown keys and inconsistencies are errors)."""
    return validate(load_document(path), Jia19File).records


@functools.cache
def simulate(scenario: str, overrides: tuple[str, ...], field: str) -> float:
    """The compared field of one run (cached: several records share a run)."""
    outcome = run_scenario(ROOT / scenario, overrides)
    return float(getattr(outcome.result, field))


@dataclass(frozen=True)
class Check:
    """A record with its prediction: ``error`` = predicted / published - 1 (for a published
    range [low, high]: 0 inside it, else relative to the nearer end)."""

    record: Record
    predicted: float
    error: float

    @property
    def within_tolerance(self) -> bool:
        """Whether |error| meets the record's tolerance."""
        assert self.record.tolerance is not None
        return abs(self.error) <= self.record.tolerance

    @property
    def status(self) -> str:
        """``pass``, ``fail``, ``expected miss`` or ``unexpected pass`` (a known miss that hit)."""
        if not self.record.expected_to_miss:
            return "pass" if self.within_tolerance else "fail"
        if self.within_tolerance:
            return "unexpected pass"
        assert self.record.miss_bound is not None
        return "expected miss" if abs(self.error) <= self.record.miss_bound else "fail"


def predict(record: Record) -> float:
    """The model's figure for ``record``, in the record's unit."""
    assert record.scenario is not None and record.compare is not None, record.id
    value = simulate(record.scenario, tuple(record.set), record.compare)
    if record.minus is not None:
        value -= simulate(record.scenario, tuple(record.minus.set), record.compare)
    return value * record.scale / UNIT_SIZE[record.compare][record.unit]


def relative_error(predicted: float, published: float | list[float]) -> float:
    """``predicted / published - 1``; for a range, 0 inside it, else against the nearer end."""
    if isinstance(published, list):
        low, high = published
        if predicted < low:
            return predicted / low - 1.0
        return predicted / high - 1.0 if predicted > high else 0.0
    return predicted / published - 1.0


def evaluate(record: Record) -> Check:
    """Run ``record``'s scenario and compare with the published value."""
    predicted = predict(record)
    return Check(record, predicted, relative_error(predicted, record.value))


# ---- predictions for the withheld measurements ------------------------------------------------


class Prediction(StrictModel):
    """A withheld Jia19 case: the scenario that predicts it (there is no published value here)."""

    id: str
    ref: str = Field(description="The table family the reference names for the case.")
    quantity: str
    scenario: str = Field(description="Scenario path from the repository root.")
    set: list[str] = Field(default_factory=list, description="--set overrides.")
    note: str | None = None


class PredictionsFile(StrictModel):
    """The whole predictions file."""

    schema_version: SchemaVersion
    predictions: list[Prediction]

    @model_validator(mode="after")
    def _unique(self) -> Self:
        _check_unique([p.id for p in self.predictions], "prediction")
        return self


def load_predictions(path: Path = PREDICTIONS) -> list[Prediction]:
    """All predictions of ``path``, validated."""
    return validate(load_document(path), PredictionsFile).predictions


@dataclass(frozen=True)
class Predicted:
    """A prediction's figures: time, payload bandwidth, messages sent."""

    prediction: Prediction
    time_s: float
    bandwidth_GBps: float
    messages: int


def predict_case(p: Prediction) -> Predicted:
    """Run a prediction's scenario."""
    result = run_scenario(ROOT / p.scenario, tuple(p.set)).result
    assert isinstance(result, CommResult), f"{p.scenario} is not a comm scenario"
    return Predicted(p, result.time_s, result.bandwidth_GBps, result.messages)
