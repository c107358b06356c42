"""The config layer: every YAML file goes through here.

* :mod:`~simulator.config.yamlio` — safe YAML 1.2 reading that keeps line numbers.
* :mod:`~simulator.config.load` — validation against strict schemas; pydantic errors become one
  ``file:line: key.path: message`` :class:`~simulator.errors.InputError`; ``--set`` overrides.
* :mod:`~simulator.config.paths` — built-in names (``pod16``) vs paths.
* :mod:`~simulator.config.scenario` — the scenario file and the strategy-schema registry.
* :mod:`~simulator.config.jsonschema` — JSON Schemas of every file kind for editors.

The names below are imported lazily (PEP 562), so ``python -m simulator.config.jsonschema``
runs without the package having imported that module first. See docs/config.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "StrictModel": "base",
    "register_file_kind": "jsonschema",
    "write_schemas": "jsonschema",
    "apply_overrides": "load",
    "load_file": "load",
    "override_document": "load",
    "parse_key_path": "load",
    "render_path": "load",
    "validate": "load",
    "builtin_names": "paths",
    "data_root": "paths",
    "resolve": "paths",
    "LoadedScenario": "scenario",
    "ScenarioFile": "scenario",
    "load_baseline": "scenario",
    "load_scenario": "scenario",
    "register_strategy_schema": "scenario",
    "strategy_schema": "scenario",
    "strategy_types": "scenario",
    "Document": "yamlio",
    "dump_yaml": "yamlio",
    "load_document": "yamlio",
    "parse_document": "yamlio",
}

__all__ = [
    "Document",
    "LoadedScenario",
    "ScenarioFile",
    "StrictModel",
    "apply_overrides",
    "builtin_names",
    "data_root",
    "dump_yaml",
    "load_baseline",
    "load_document",
    "load_file",
    "load_scenario",
    "override_document",
    "parse_document",
    "parse_key_path",
    "register_file_kind",
    "register_strategy_schema",
    "render_path",
    "resolve",
    "strategy_schema",
    "strategy_types",
    "validate",
    "write_schemas",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'simulator.config' has no attribute {name!r}")
    return getattr(importlib.import_module(f"simulator.config.{module}"), name)


if TYPE_CHECKING:
    from simulator.config.base import StrictModel
    from simulator.config.jsonschema import register_file_kind, write_schemas
    from simulator.config.load import (
        apply_overrides,
        load_file,
        override_document,
        parse_key_path,
        render_path,
        validate,
    )
    from simulator.config.paths import builtin_names, data_root, resolve
    from simulator.config.scenario import (
        LoadedScenario,
        ScenarioFile,
        load_baseline,
        load_scenario,
        register_strategy_schema,
        strategy_schema,
        strategy_types,
    )
    from simulator.config.yamlio import Document, dump_yaml, load_document, parse_document
