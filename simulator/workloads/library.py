"""The model library: built-in ``models/*.yaml`` by name, or any model file by path."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

from simulator.config import paths
from simulator.config.yamlio import load_document
from simulator.workloads.expr import Number
from simulator.workloads.model import Model, Origins, build_model


def model_names() -> list[str]:
    """Names of the built-in models (file stems under ``models/``), sorted."""
    return paths.builtin_names("model")


def load_model(
    name_or_path: str | Path,
    *,
    overrides: Mapping[str, Number] | None = None,
    relative_to: str | Path | None = None,
    origins: Origins | None = None,
) -> Model:
    """Read, validate and expand one model file; ``overrides`` replace its ``params``.

    ``name_or_path`` is a built-in name (``bert-large``) or a path, looked up beside
    ``relative_to`` (e.g. the scenario naming it) first. Bad input raises InputError with
    file, line and key path; ``origins`` (:func:`~simulator.workloads.model.override_origins`)
    says where the overrides were written, so errors about them name that place.
    """
    path = paths.resolve(name_or_path, "model", relative_to).resolve()
    frozen = tuple(sorted((overrides or {}).items()))
    where = tuple(sorted((origins or {}).items()))
    return _load(str(path), path.stat().st_mtime_ns, frozen, where)


@lru_cache(maxsize=64)
def _load(
    path: str,
    _mtime_ns: int,
    overrides: tuple[tuple[str, Number], ...],
    origins: tuple[tuple[str, tuple[str, int | None, str]], ...] = (),
) -> Model:
    """One expansion per (file, modification time, overrides): a Model is immutable, so a
    sweep or a baseline run reuses it instead of reading and expanding the file again."""
    return build_model(
        load_document(path), overrides=dict(overrides) or None, origins=dict(origins) or None
    )
