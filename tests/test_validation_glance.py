"""docs/validation.md § Predictions at a glance (validation/glance.py): every source's records
by class, and the errors of its predictions, kept current."""

from __future__ import annotations

import pytest
import yaml

from validation import glance
from validation.classes import mean_abs, prediction_summary
from validation.jia19 import ROOT
from validation.report import DOC, replace_block

TALLIES = [source() for source in glance.SOURCES]


def test_prediction_summary_by_hand() -> None:
    line = prediction_summary([0.10, -0.20, 0.05], [True, False, True])
    assert line == (
        "3 predictions checked against a published value, 2 within tolerance; "
        "mean |error| 11.7%, largest 20.0%."
    )
    assert prediction_summary([], []) == "No prediction is checked against a published value."
    assert mean_abs([-0.3, 0.1]) == pytest.approx(0.2)
    with pytest.raises(ValueError):
        prediction_summary([0.1], [])


@pytest.mark.parametrize("tally", TALLIES, ids=[t.data for t in TALLIES])
def test_every_record_is_counted_once(tally: glance.Tally) -> None:
    """The class counts add up to the data file's records, read here without the loaders, and
    every prediction of the file is checked."""
    raw = yaml.safe_load((ROOT / tally.data).read_text(encoding="utf-8"))
    records = raw.get("records", raw.get("points"))
    classes = [r.get("kind", r.get("class")) for r in records]
    assert sum(tally.counts.values()) == len(records)
    assert set(classes) <= {"calibration", "consistency", "prediction", "not_modelled"}
    assert len(tally.errors) == classes.count("prediction") == len(tally.within)


def test_docs_glance_is_current() -> None:
    doc = DOC.read_text(encoding="utf-8")
    fresh = replace_block(doc, glance.markdown(TALLIES), glance.BEGIN, glance.END)
    assert fresh == doc, "docs/validation.md is stale: run `python -m validation.glance --write`"
