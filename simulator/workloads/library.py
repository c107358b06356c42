"""The model library: built-in ``models/*.yaml`` by name, any model file by path, or a Hugging
Face ``config.json`` (:mod:`simulator.workloads.hf`)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

from simulator.config import paths
from simulator.config.yamlio import load_document
from simulator.errors import InputError
from simulator.workloads.expr import Number
from simulator.workloads.hf import hf_document, is_hf_config
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
    path = model_file(name_or_path, relative_to)
    frozen = tuple(sorted((overrides or {}).items()))
    where = tuple(sorted((origins or {}).items()))
    return _load(str(path), str(path.resolve()), path.stat().st_mtime_ns, frozen, where)


def model_file(name_or_path: str | Path, relative_to: str | Path | None = None) -> Path:
    """The file of a model: a built-in name, a model file, a Hugging Face ``config.json``, or
    a folder holding one (a checkpoint folder)."""
    for base in ([Path(relative_to).parent] if relative_to is not None else []) + [Path()]:
        folder = base / Path(name_or_path).expanduser()
        if folder.is_dir():
            if (folder / "config.json").is_file():
                return folder / "config.json"
            raise InputError(f"model folder '{name_or_path}' holds no config.json")
    return paths.resolve(name_or_path, "model", relative_to)


@lru_cache(maxsize=64)
def _load(
    path: str,
    _resolved: str,
    _mtime_ns: int,
    overrides: tuple[tuple[str, Number], ...],
    origins: tuple[tuple[str, tuple[str, int | None, str]], ...] = (),
) -> Model:
    """One expansion per (file, modification time, overrides): a Model is immutable, so a
    sweep or a baseline run reuses it instead of reading and expanding the file again.
    ``path`` is kept as given so that messages and results never show an absolute path the
    user did not write."""
    doc = hf_document(path) if is_hf_config(Path(path)) else load_document(path)
    return build_model(doc, overrides=dict(overrides) or None, origins=dict(origins) or None)
