"""docs/validation.md's MLPerf bands (issue 13) are a fresh report: every prediction run with
its sensitivity analysis (minutes, so marked slow)."""

from __future__ import annotations

import pytest

from validation.mlperf import DOC
from validation.mlperf_bands import BEGIN, END, report


@pytest.mark.slow
def test_docs_validation_bands_are_a_fresh_report() -> None:
    text = DOC.read_text()
    block = text.split(BEGIN, 1)[1].split(END, 1)[0]
    assert block == "\n" + report(), (
        "docs/validation.md's bands are stale: python -m validation.mlperf_bands --write"
    )
