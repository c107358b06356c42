"""ipusim: a discrete-event simulator of parallel training on Graphcore IPU systems.

Data flow: YAML files -> :mod:`simulator.config` (strict schemas) -> :mod:`simulator.hardware`
(a :class:`~simulator.hardware.system.System`) -> a strategy's plan (a task graph) ->
:mod:`simulator.engine` (SimPy execution, a Trace) -> :mod:`simulator.metrics` (a frozen Result).

The Python API (docs/api.md) is imported lazily (PEP 562), so ``import simulator`` stays cheap::

    from simulator import run_scenario
    outcome = run_scenario("quickstart")          # a path, a built-in name or a mapping
    outcome.result.step_time_s

Strategies register themselves on first use (entry points, :mod:`simulator.plugins`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "run_scenario": "simulator.run",
    "Outcome": "simulator.run",
    "RunCache": "simulator.runcache",
    "CommResult": "simulator.metrics",
    "TrainingResult": "simulator.metrics",
    "InputError": "simulator.errors",
    "load_model": "simulator.workloads.library",
    "load_system": "simulator.hardware.build",
    "load_results": "simulator.sweep.export",
}

__all__ = [
    "CommResult",
    "InputError",
    "Outcome",
    "RunCache",
    "TrainingResult",
    "__version__",
    "load_model",
    "load_results",
    "load_system",
    "run_scenario",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'simulator' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


if TYPE_CHECKING:
    from simulator.errors import InputError
    from simulator.hardware.build import load_system
    from simulator.metrics import CommResult, TrainingResult
    from simulator.run import Outcome, run_scenario
    from simulator.runcache import RunCache
    from simulator.sweep.export import load_results
    from simulator.workloads.library import load_model
