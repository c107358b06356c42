"""The config layer: every YAML file goes through here.

* :mod:`~simulator.config.yamlio` — safe YAML 1.2 reading that keeps line numbers.
* :mod:`~simulator.config.load` — validation against strict schemas; pydantic errors become one
  ``file:line: key.path: message`` :class:`~simulator.errors.InputError`; ``--set`` overrides.
* :mod:`~simulator.config.paths` — built-in names (``pod16``) vs paths.
* :mod:`~simulator.config.scenario` — the scenario file and the strategy-schema registry.
* :mod:`~simulator.config.jsonschema` — JSON Schemas of every file kind for editors.

See docs/config.md for the rules every file follows.
"""

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
from simulator.config.yamlio import Document, load_document, parse_document

__all__ = [
    "Document",
    "LoadedScenario",
    "ScenarioFile",
    "StrictModel",
    "apply_overrides",
    "builtin_names",
    "data_root",
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
