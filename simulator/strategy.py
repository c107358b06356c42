"""The strategy interface and its registry.

A strategy turns a validated scenario into a :class:`Plan` (a task graph plus what the
results need) and a finished trace into a Result. ``simulator`` never imports a concrete
strategy: modules in the ``strategies`` package call :func:`register` at import, and they are
imported on the first lookup through their ``ipusim.strategies`` entry points
(:mod:`simulator.plugins`). Only the top (the CLI and :mod:`simulator.run`) looks them up.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel

from simulator.config.base import StrictModel
from simulator.config.scenario import (
    LoadedScenario,
    register_strategy_schema,
    strategy_schema,
    strategy_types,
)
from simulator.engine.graph import TaskGraph
from simulator.engine.replicas import Replication
from simulator.engine.trace import Trace
from simulator.errors import InputError
from simulator.hardware.system import System
from simulator.plugins import load_strategies


@dataclass
class PlanContext:
    """Everything a strategy may read while planning: the scenario, the system, the seed."""

    scenario: LoadedScenario
    system: System
    params: BaseModel

    @property
    def rng(self) -> np.random.Generator:
        """A fresh generator from the scenario seed (one per call: plans stay reproducible)."""
        return np.random.default_rng(self.scenario.scenario.seed)

    def error(self, key_path: Iterable[str | int], message: str) -> InputError:
        """An InputError located at ``key_path`` of the scenario file (or its --set origin)."""
        path = tuple(key_path)
        file, line = self.scenario.document.location(path)
        rendered = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in path)
        return InputError(message, file=file, line=line, key_path=rendered.replace(".[", "["))


@dataclass
class Plan:
    """A task graph and the facts about it that results need (payload, estimates, memory).

    ``replication``: which chips repeat the simulated ones (replicas, members) when the graph
    simulates one copy of them (:class:`~simulator.engine.replicas.Replication`); None when
    every chip the graph uses is simulated. Variability needs it to make syncs wait for late
    copies (docs/variability.md).
    """

    graph: TaskGraph
    info: dict[str, Any] = field(default_factory=dict)
    feasible: bool = True
    reason: str | None = None
    replication: Replication | None = None


class Strategy(Protocol):
    """What every strategy module provides."""

    name: str

    @property
    def params(self) -> type[StrictModel]:
        """The schema of ``strategy:`` keys (read-only, so a subclass of StrictModel fits)."""
        ...

    def plan(self, ctx: PlanContext) -> Plan: ...

    def summarise(self, ctx: PlanContext, plan: Plan, trace: Trace | None) -> Any: ...


_REGISTRY: dict[str, Strategy] = {}


def register(strategy: Strategy) -> Strategy:
    """Make ``strategy`` available under ``strategy.name`` (and its schema to the config)."""
    _REGISTRY[strategy.name] = strategy
    register_strategy_schema(strategy.name, strategy.params)
    return strategy


def lookup(name: str) -> Strategy:
    """The strategy registered under ``name`` (validated already by the scenario loader); a
    declared strategy's module is imported here."""
    load_strategies()
    if name not in _REGISTRY and name in strategy_types():
        strategy_schema(name)  # imports the module that declared it
    try:
        return _REGISTRY[name]
    except KeyError:
        names = ", ".join(registered())
        raise InputError(f"unknown strategy type '{name}'; one of: {names}") from None


def registered() -> list[str]:
    """Names of the registered and declared strategies (the entry points are loaded first)."""
    load_strategies()
    return sorted(set(_REGISTRY) | set(strategy_types()))
