"""The per-tile compute model against Jia19 Chapter 5 (validation/jia19_compute.yaml).

Calibration points (the GEMM peaks that set ``amp_pipeline_efficiency`` in
topologies/chips/gc2.yaml) must be reproduced within their tolerance, as must the consistency
point (Table 5.2's reprint of the FP16 peak); predictions (GEMM plateau, ResNet-50 per-layer
convolutions) are asserted within the tolerance fixed in the data file before any model figure
was looked at. The tables in docs/validation.md ("Compute calibration") are rendered from the
same evaluation and checked to be current: ``python -m validation.jia19_compute --write``.
"""

from __future__ import annotations

import pytest

from validation import jia19_compute as jc
from validation.classes import check_classed
from validation.report import DOC

IDS = jc.ids()


def test_records_are_well_formed() -> None:
    assert jc.data()["schema_version"] == 1
    assert len(IDS) == len(set(IDS))
    for r in jc.data()["records"]:
        assert r["source"] == "Jia19" and r["unit"] == "TFLOPS" and r["value"] > 0
        assert r["kind"] in ("calibration", "consistency", "prediction")
        assert (r["kind"] == "calibration") == ("calibrates" in r)
        assert 0 < r["tolerance"] <= 0.3
    kinds = [r["kind"] for r in jc.data()["records"]]
    assert {k: kinds.count(k) for k in set(kinds)} == {
        "calibration": 2,
        "consistency": 1,
        "prediction": 16,
    }


@pytest.mark.parametrize(
    "record",
    [
        {"id": "rec-42", "kind": "validation", "tolerance": 0.1},
        {"id": "rec-42", "kind": "prediction", "tolerance": 0.1},
        {"id": "rec-42", "kind": "consistency", "calibrates": "k", "why": "w"},
        {"id": "rec-42", "kind": "calibration", "why": "w"},
    ],
)
def test_a_record_must_fit_its_class(record: dict[str, object]) -> None:
    """An unknown class, a prediction without `why`, `calibrates` off a calibration record and
    a calibration without `calibrates` are errors naming the record."""
    with pytest.raises(ValueError, match="rec-42"):
        check_classed(record, "kind", "jia19_compute.yaml")


@pytest.mark.parametrize("record_id", IDS)
def test_record(record_id: str) -> None:
    o = jc.evaluate(record_id)
    r = o.record
    if r.get("expected_to_miss"):
        assert r["tolerance"] < abs(o.error) <= r["miss_bound"], (record_id, o.error)
    else:
        assert abs(o.error) <= r["tolerance"], (record_id, o.model, r["value"])


def test_mean_error_over_the_convolution_layers() -> None:
    errors = jc.aggregate_errors()
    assert sum(errors) / len(errors) <= jc.data()["aggregate"]["mean_abs_error_max"]


def test_calibration_points_are_the_gemm_peaks_only() -> None:
    """As few calibration points as possible: one per calibrated constant."""
    cal = [r["calibrates"] for r in jc.data()["records"] if r["kind"] == "calibration"]
    assert sorted(c.split(" ")[1] for c in cal) == [
        "amp_pipeline_efficiency.fp16",
        "amp_pipeline_efficiency.fp32",
    ]


def test_docs_tables_are_current() -> None:
    text = DOC.read_text(encoding="utf-8")
    fix = "docs/validation.md is stale: python -m validation.jia19_compute --write"
    assert jc.render_tables() in text, fix
