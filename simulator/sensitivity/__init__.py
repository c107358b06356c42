"""How sure a prediction is: its band within the assumption ranges, and what moves it most.

``ipusim run FILE --sensitivity`` (docs/metrics.md, "sensitivity"): every assumption of the
scenario's chip, system and scenario files (:mod:`simulator.config.assumptions`) that the run
uses is moved to the low and to the high end of its range, one at a time, the others at their
values; the band is the envelope of those runs and the assumptions are ranked by how far they
move the time. Modules: :mod:`.footprint` (what a run uses; what a changed System touches),
:mod:`.variants` (the inputs with one assumption at one end), :mod:`.runner` (the runs, shared
where nothing changes), :mod:`.result` (the band, JSON and text), :mod:`.cli` (the ``run``
options).

The names below are imported on first use, so that ``ipusim --help`` (which adds the options
of :mod:`.cli`) does not import the runner and the run it needs (start-up time, issue 16).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simulator.sensitivity.result import Effect, Sensitivity
    from simulator.sensitivity.runner import analyse, base_run

__all__ = ["Effect", "Sensitivity", "analyse", "base_run"]

_HOMES = {"Effect": "result", "Sensitivity": "result", "analyse": "runner", "base_run": "runner"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f"simulator.sensitivity.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'simulator.sensitivity' has no attribute {name!r}")
