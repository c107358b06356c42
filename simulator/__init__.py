"""ipusim: a discrete-event simulator of parallel training on Graphcore IPU systems.

Data flow: YAML files -> :mod:`simulator.config` (strict schemas) -> :mod:`simulator.hardware`
(a :class:`~simulator.hardware.system.System`) -> a strategy's plan (a task graph) ->
:mod:`simulator.engine` (SimPy execution, a Trace) -> :mod:`simulator.metrics` (a frozen Result).
"""

__version__ = "0.1.0"
