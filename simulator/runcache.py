"""Reusing what does not change between runs of one scenario (issue 16).

A sweep runs hundreds of variants of one scenario, ``--sensitivity`` runs each assumption at
both ends of its range, variability runs N seeded samples: most of what a run builds is the
same from one run to the next. A :class:`RunCache` keeps, keyed by the inputs that determine
them,

* **systems** — a built :class:`~simulator.hardware.system.System` (with the routes it has
  found, and the collective algorithm choices made on it), keyed by the ``topology`` and
  ``hosts`` data and the content of the system and chip files they name;
* **plans** — a strategy's :class:`~simulator.strategy.Plan` (task graph, memory plan, cost
  model results), keyed by the whole resolved scenario data (except ``baseline``, which does
  not shape this scenario's own plan, and any keys named ``execution_only``), the
  content of every file it names, and the System it was made on;
* **results** (only with ``results=True``) — a finished run's result (without its trace: an
  outcome from the cache has ``trace=None``), keyed as a plan and by the run options. Runs
  are deterministic, so a repeated run gives what the cache holds; but a caller that changes a
  run without changing its scenario data (a seeded sample drawn outside it) must not ask for
  results.

Keys are canonical JSON of the scenario data and SHA-256 digests of the files it names
(:mod:`simulator.config.inputs`): editing a topology, chip or model file between runs makes a
new key. A System or Plan is never changed by a run (the executor reads them; each run gets a
fresh flow network and trace), so sharing them is safe.

    cache = RunCache()
    for overrides in variants:
        outcome = run_loaded(load_scenario(path, overrides), cache=cache)
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from simulator.config.inputs import canonical, named_files
from simulator.config.scenario import LoadedScenario

if TYPE_CHECKING:
    from simulator.hardware.system import System
    from simulator.run import Outcome
    from simulator.strategy import Plan

T = TypeVar("T")


def inputs_key(loaded: LoadedScenario, ignore: Iterable[str] = ()) -> str:
    """Canonical text of what determines a scenario's plan: its data (name defaulted, without
    ``baseline`` and the ``ignore`` keys) and the digests of the files it names."""
    skip = {"baseline", *ignore}
    data = {k: v for k, v in loaded.document.data.items() if k not in skip}
    data["name"] = loaded.name
    return canonical({"scenario": data, "files": named_files(data, loaded.path, False)})


def system_key(loaded: LoadedScenario) -> str:
    """Canonical text of what determines a scenario's System: ``topology``, ``hosts`` and the
    digests of the system and chip files named."""
    doc = loaded.document.data
    data = {k: doc.get(k) for k in ("topology", "hosts")}
    files = named_files(data, loaded.path, False)
    return canonical({"system": data, "files": files})


class RunCache:
    """Systems, plans and (optionally) results of earlier runs, least recently used dropped
    beyond ``size`` of each kind. ``hits`` and ``misses`` count lookups by kind."""

    def __init__(
        self, size: int = 16, *, results: bool = False, execution_only: Iterable[str] = ()
    ) -> None:
        self.size = size
        self.results = results
        #: scenario keys that change how a plan runs but not the plan (left out of plan keys)
        self.execution_only = tuple(execution_only)
        self._systems: OrderedDict[str, System] = OrderedDict()
        self._plans: OrderedDict[str, tuple[System, Plan]] = OrderedDict()
        self._outcomes: OrderedDict[tuple[str, bool, bool], tuple[System, Outcome]] = OrderedDict()
        self.hits: Counter[str] = Counter()
        self.misses: Counter[str] = Counter()

    def _get(self, table: OrderedDict[Any, T], key: Any, kind: str) -> T | None:
        hit = table.get(key)
        if hit is None:
            self.misses[kind] += 1
            return None
        table.move_to_end(key)
        self.hits[kind] += 1
        return hit

    def _put(self, table: OrderedDict[Any, T], key: Any, value: T) -> None:
        table[key] = value
        while len(table) > self.size:
            table.popitem(last=False)

    def system(self, loaded: LoadedScenario, build: Callable[[LoadedScenario], System]) -> System:
        """The scenario's System: a cached one built from the same inputs, or ``build(loaded)``."""
        key = system_key(loaded)
        hit = self._get(self._systems, key, "system")
        if hit is None:
            hit = build(loaded)
            self._put(self._systems, key, hit)
        return hit

    def plan(self, loaded: LoadedScenario, system: System, make: Callable[[], Plan]) -> Plan:
        """The scenario's plan on ``system``: a cached one from the same inputs on the same
        System object, or ``make()``."""
        key = inputs_key(loaded, self.execution_only)
        hit = self._get(self._plans, key, "plan")
        if hit is not None and hit[0] is system:
            return hit[1]
        plan = make()
        self._put(self._plans, key, (system, plan))
        return plan

    def outcome(
        self, loaded: LoadedScenario, system: System | None, fast: bool, baseline: bool
    ) -> Outcome | None:
        """A finished run of the same inputs and options (only when ``results`` is on)."""
        if not self.results:
            return None
        key = (inputs_key(loaded, ()) + _baseline_inputs(loaded, baseline), fast, baseline)
        hit = self._get(self._outcomes, key, "result")
        if hit is None or (system is not None and hit[0] is not system):
            return None
        return hit[1]

    def keep(self, loaded: LoadedScenario, fast: bool, baseline: bool, outcome: Outcome) -> None:
        """Remember ``outcome`` (only when ``results`` is on)."""
        if self.results:
            key = (inputs_key(loaded, ()) + _baseline_inputs(loaded, baseline), fast, baseline)
            self._put(self._outcomes, key, (outcome.system, replace(outcome, trace=None)))


def _baseline_inputs(loaded: LoadedScenario, baseline: bool) -> str:
    """What a run with its baseline depends on beyond the scenario itself: the ``baseline``
    value and the file it names."""
    if not baseline or loaded.scenario.baseline is None:
        return ""
    value = loaded.document.data.get("baseline")
    files = named_files({"baseline": value}, loaded.path, True)
    return canonical({"baseline": value, "files": files})
