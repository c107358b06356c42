"""Strategies: each module plans one way of splitting the work and registers itself.

Importing this package (ipusim does, through its ``ipusim.strategies`` entry point) declares
every strategy type with the module that registers it (``STRATEGY_MODULES``); a module is
imported the first time its type is looked up, so ``ipusim run`` loads only the strategy it
runs. A new strategy module adds its type names here. Submodules are also reachable as
attributes (``strategies.pipeline``), imported on first use.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from simulator.config.scenario import declare_strategy_module

#: strategy type -> the module whose import registers it
STRATEGY_MODULES: dict[str, str] = {
    "comm": "strategies.comm",
    "data": "strategies.data",
    "single": "strategies.data",
    "ensemble": "strategies.ensemble",
    "kernel": "strategies.kernel",
    "local": "strategies.local",
    "moe": "strategies.moe.strategy",
    "pipeline": "strategies.pipeline",
    "random_subspace": "strategies.random_subspace",
}

for _type, _module in STRATEGY_MODULES.items():
    declare_strategy_module(_type, _module)

__all__ = ["comm", "data", "ensemble", "kernel", "local", "moe", "pipeline", "random_subspace"]


def __getattr__(name: str) -> ModuleType:
    if name in __all__:
        return importlib.import_module(f"strategies.{name}")
    raise AttributeError(f"module 'strategies' has no attribute {name!r}")
