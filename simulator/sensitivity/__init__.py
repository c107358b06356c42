"""How sure a prediction is: its band within the assumption ranges, and what moves it most.

``ipusim run FILE --sensitivity`` (docs/metrics.md, "sensitivity"): every assumption of the
scenario's chip, system and scenario files (:mod:`simulator.config.assumptions`) that the run
uses is moved to the low and to the high end of its range, one at a time, the others at their
values; the band is the envelope of those runs and the assumptions are ranked by how far they
move the time. Modules: :mod:`.footprint` (what a run uses; what a changed System touches),
:mod:`.variants` (the inputs with one assumption at one end), :mod:`.runner` (the runs, shared
where nothing changes), :mod:`.result` (the band, JSON and text).
"""

from simulator.sensitivity.result import Effect, Sensitivity
from simulator.sensitivity.runner import analyse, base_run

__all__ = ["Effect", "Sensitivity", "analyse", "base_run"]
