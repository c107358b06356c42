"""JSON Schemas of the file kinds, for editors (completion, hover docs, red squiggles).

Each file kind registers its schema model once, at import::

    register_file_kind("system", SystemFile)

and ``python -m simulator.config.jsonschema docs/schemas`` writes
``docs/schemas/<kind>.schema.json``.
A test checks the committed files match the code. A kind may register a zero-argument function
returning the model instead of the model itself, when the schema depends on other registries
(the scenario schema lists every registered strategy).
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

ModelSource = type[BaseModel] | Callable[[], type[BaseModel]]

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_PACKAGES = (
    "simulator.config",
    "simulator.hardware",
    "simulator.workloads",
    "simulator.sweep",
    "simulator.capacity",
    "strategies",
)
"""Packages whose modules are imported by :func:`discover` so their kinds register."""

_KINDS: dict[str, ModelSource] = {}


def register_file_kind(kind: str, model: ModelSource) -> None:
    """Declare the schema model of one file kind (``chip``, ``system``, ``model``, ...)."""
    existing = _KINDS.get(kind)
    if existing is not None and existing is not model:
        raise ValueError(f"file kind {kind!r} is already registered to {existing!r}")
    _KINDS[kind] = model


def file_kinds() -> dict[str, type[BaseModel]]:
    """Every registered kind with its schema model, sorted by kind."""
    out: dict[str, type[BaseModel]] = {}
    for kind in sorted(_KINDS):
        source = _KINDS[kind]
        is_model = isinstance(source, type) and issubclass(source, BaseModel)
        out[kind] = source if is_model else source()  # type: ignore[call-arg,assignment]
    return out


def discover() -> None:
    """Import the modules of :data:`SCHEMA_PACKAGES` (those that exist) so kinds register."""
    for package_name in SCHEMA_PACKAGES:
        try:
            package = importlib.import_module(package_name)
        except ModuleNotFoundError as exc:
            if exc.name == package_name:
                continue
            raise
        for info in pkgutil.iter_modules(getattr(package, "__path__", []), package_name + "."):
            if not info.name.endswith("__main__"):
                importlib.import_module(info.name)


def schema_of(kind: str, model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one file kind."""
    schema = model.model_json_schema()
    schema.pop("title", None)
    return {"$schema": SCHEMA_DIALECT, "title": f"ipusim {kind} file", **schema}


def render(kind: str, model: type[BaseModel]) -> str:
    """The schema as the exact text committed under docs/schemas/."""
    return json.dumps(schema_of(kind, model), indent=2, ensure_ascii=False) + "\n"


def schema_file_name(kind: str) -> str:
    """``scenario`` -> ``scenario.schema.json``."""
    return f"{kind}.schema.json"


def write_schemas(out_dir: str | Path) -> list[Path]:
    """Write one ``<kind>.schema.json`` per registered kind into ``out_dir``; return the paths."""
    discover()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for kind, model in file_kinds().items():
        path = out / schema_file_name(kind)
        path.write_text(render(kind, model), encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m simulator.config.jsonschema [OUT_DIR]`` (default docs/schemas)."""
    args = sys.argv[1:] if argv is None else argv
    for path in write_schemas(args[0] if args else "docs/schemas"):
        print(path, file=sys.stderr)
    return 0


if __name__ == "__main__":
    # Run the imported module's main, not this __main__ copy: registrations go to the registry
    # of ``simulator.config.jsonschema``, which is a different module object from ``__main__``.
    from simulator.config.jsonschema import main as _main

    raise SystemExit(_main())
