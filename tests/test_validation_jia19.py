"""Published validation: the Jia19 Mk1 microbenchmarks (validation/jia19.yaml).

Each record is one published number, classed calibration, consistency or prediction
(validation/classes.py) or not modelled. Compared records run their scenario and must agree
within the record's tolerance; a known miss (``expected_to_miss``) must stay a miss (error above
the tolerance, so a fix is noticed) and within its guard bound (so a regression is noticed).
Not-modelled records assert that their reason still holds. A consistency record must rest on
calibrated values only (slow: moving the unsolved assumptions barely moves it). The tables in
docs/validation.md come from the same data and must be current.
"""

from __future__ import annotations

import typing
from typing import Any

import pytest
from pydantic import ValidationError

from strategies.comm import CommParams
from validation import jia19_sensitivity, report
from validation.jia19 import (
    ROOT,
    Record,
    evaluate,
    load_predictions,
    load_records,
    relative_error,
)

RECORDS = load_records()

# The comm patterns when the not_modelled reasons were last checked: none reads local memory
# and none names a destination tile or a tile position (`pairs` draws a random permutation,
# `host_write` streams from the host to tiles 0..T-1). A new pattern may make one expressible.
PATTERNS_WHEN_WRITTEN = {
    "p2p",
    "pairs",
    "random",
    "broadcast",
    "gather",
    "scatter",
    "reduce",
    "all_reduce",
    "reduce_scatter",
    "all_gather",
    "all_to_all",
    "host_write",
}


def test_every_section_is_covered() -> None:
    """The data hold the §4.1-§4.5 numbers in the expected classes (guards against lost or
    re-classed records: a change here must be argued in the record's `why`)."""
    kinds = {k: sum(r.kind == k for r in RECORDS) for k in ("calibration", "consistency")}
    kinds["prediction"] = sum(r.kind == "prediction" for r in RECORDS)
    assert kinds == {"calibration": 22, "consistency": 58, "prediction": 0}
    refs = {r.ref for r in RECORDS}
    for ref in ("Table 4.1", "Fig. 4.4", "Table 4.4", "Table 4.6", "Fig. 4.6", "Table 4.7"):
        assert ref in refs
    # §4.3a small messages: Table 4.2 (4 points), Table 4.3 (11 on-chip, 3 mono, 3 random),
    # Table 4.5 (4 points)
    small = [r for r in RECORDS if r.ref in ("Table 4.2", "Table 4.3", "Table 4.5")]
    assert len(small) == 25
    assert all(r.kind != "not_modelled" for r in small)
    host = [r for r in RECORDS if r.ref in ("Table 4.19", "Table 4.20")]
    assert len(host) == 17
    assert all(r.kind != "not_modelled" for r in host)
    assert sum(r.ref.startswith(("Table 1.1", "Table 3.1", "Fig. 3.1", "Sec. 3")) for r in RECORDS)


@pytest.mark.parametrize("record", RECORDS, ids=[r.id for r in RECORDS])
def test_record(record: Record) -> None:
    """One published number against the model (or, if not modelled, that it still is not)."""
    if record.kind == "not_modelled":
        patterns = set(typing.get_args(CommParams.model_fields["pattern"].annotation))
        assert patterns == PATTERNS_WHEN_WRITTEN, (
            f"comm patterns changed ({sorted(patterns ^ PATTERNS_WHEN_WRITTEN)}): check whether "
            f"{record.id} can now be expressed as a scenario"
        )
        return
    check = evaluate(record)
    tol = record.tolerance
    where = f"{record.id}: published {record.value} {record.unit}, predicted {check.predicted:.4g}"
    if record.expected_to_miss:
        assert check.status != "unexpected pass", (
            f"{where}: error {check.error:+.1%} is now within ±{tol:.0%}; the known miss is "
            f"fixed — drop expected_to_miss in validation/jia19.yaml and update the docs"
        )
    assert check.status in ("pass", "expected miss"), (
        f"{where}: error {check.error:+.1%} exceeds "
        f"±{(record.miss_bound if record.expected_to_miss else tol):.0%}"
    )


BASE: dict[str, Any] = {
    "id": "rec-9",
    "source": "Jia19",
    "ref": "Table 4.1",
    "quantity": "q",
    "value": 1.0,
    "unit": "us",
    "conditions": "c",
    "scenario": "scenarios/microbench/jia19-latency-a-on-chip.yaml",
    "compare": "time_s",
    "tolerance": 0.1,
}


@pytest.mark.parametrize(
    "keys",
    [
        {"kind": "validation", "why": "w"},  # the old class name
        {"kind": "consistency"},  # no why
        {"kind": "prediction"},  # no why
        {"kind": "consistency", "why": "w", "calibrates": "k"},  # calibrates off a calibration
        {"kind": "calibration"},  # nothing calibrated
        {"kind": "calibration", "calibrates": "k", "why": "w"},  # why on a calibration
    ],
)
def test_a_record_must_fit_its_class(keys: dict[str, str]) -> None:
    """Each class carries its own explanation: calibration `calibrates`, consistency and
    prediction `why`; anything else is an error naming the record."""
    with pytest.raises(ValidationError, match=r"rec-9|kind"):
        Record.model_validate(BASE | keys)
    Record.model_validate(BASE | {"kind": "prediction", "why": "contention"})


def test_range_error() -> None:
    """A published range counts as exact inside it and is measured from the nearer end."""
    assert relative_error(5.9, [5.84, 6.03]) == 0.0
    assert relative_error(5.84 * 0.9, [5.84, 6.03]) == pytest.approx(-0.1)
    assert relative_error(6.03 * 1.2, [5.84, 6.03]) == pytest.approx(0.2)
    assert relative_error(11.0, 10.0) == pytest.approx(0.1)


def test_docs_tables_are_current() -> None:
    """docs/validation.md holds exactly what ``python -m validation.report --write`` writes."""
    doc = report.DOC.read_text(encoding="utf-8")
    assert report.replace_block(doc, report.markdown(RECORDS)) == doc, (
        "docs/validation.md is stale: run `python -m validation.report --write`"
    )


# ---- predictions for the withheld cases (validation/jia19_predictions.yaml) -------------------

PREDICTIONS = load_predictions()


def test_predictions_cover_the_withheld_families() -> None:
    """One prediction or more for each withheld family the reference names (ipu-hardware §4.3a),
    each a shipped scenario; no prediction carries a published value."""
    refs = " ".join(p.ref for p in PREDICTIONS)
    for family in ("Table 4.3", "Table 4.6", "broadcast", "gather", "scatter", "all-to-all"):
        assert family in refs
    assert "reduction" in refs
    for p in PREDICTIONS:
        assert (ROOT / p.scenario).is_file(), p.scenario
        assert "value" not in type(p).model_fields


@pytest.mark.slow
def test_docs_predictions_are_current() -> None:
    """docs/validation.md holds the predictions ``python -m validation.report --write`` writes."""
    doc = report.DOC.read_text(encoding="utf-8")
    block = report.predictions_markdown(PREDICTIONS)
    assert report.replace_block(doc, block, report.BEGIN_PRED, report.END_PRED) == doc, (
        "docs/validation.md is stale: run `python -m validation.report --write`"
    )


@pytest.mark.slow
def test_consistency_records_rest_on_calibrated_values_only() -> None:
    """Moving each unsolved assumption over its range (the message constants re-solved) moves no
    consistency record's figure by more than the bound: otherwise it is a prediction."""
    bound = jia19_sensitivity.CONSISTENCY_BOUND
    for rid, moved in jia19_sensitivity.moves(RECORDS).items():
        if next(r for r in RECORDS if r.id == rid).kind == "consistency":
            worst = max(moved, key=lambda k: abs(moved[k]))
            assert abs(moved[worst]) <= bound, f"{rid} moves {moved[worst]:+.2%} with {worst}"
