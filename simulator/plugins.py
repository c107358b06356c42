"""Strategies register themselves on first use, through entry points.

``simulator`` never imports ``strategies`` (DESIGN.md, layers). Instead every installed
distribution may declare modules under the entry-point group ``ipusim.strategies``; ipusim's
own ``pyproject.toml`` declares ``builtin = "strategies"``. The first time anything looks a
strategy up (a scenario is validated, a plan is made, the JSON Schemas are written), those
modules are imported once and register themselves with :func:`simulator.strategy.register`,
or declare each strategy type with the module that registers it
(:func:`simulator.config.scenario.declare_strategy_module`), imported when that type is first
looked up (ipusim's own ``strategies`` package does, so a run imports only its strategy).
So ``from simulator import run_scenario`` works in a fresh interpreter, and a third party adds a
strategy by publishing a package with such an entry point.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

GROUP = "ipusim.strategies"

_state = {"loaded": False}


def strategy_entry_points() -> list[EntryPoint]:
    """The installed ``ipusim.strategies`` entry points, by name."""
    return sorted(entry_points(group=GROUP), key=lambda ep: ep.name)


def load_strategies() -> None:
    """Import every strategy module declared under :data:`GROUP` (once per process).

    A module that fails to import is a bug in that package: the error names the entry point.
    """
    if _state["loaded"]:
        return
    _state["loaded"] = True  # first, so that registration during the imports cannot recurse
    for ep in strategy_entry_points():
        try:
            ep.load()
        except Exception as exc:
            raise RuntimeError(
                f"strategy entry point {ep.name} = {ep.value} ({GROUP}) failed to import: "
                f"{type(exc).__name__}: {exc}"
            ) from exc


def loaded() -> bool:
    """Whether :func:`load_strategies` has run in this process."""
    return _state["loaded"]
