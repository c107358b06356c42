"""Where built-in files live, and how a name or path given by the user becomes a file.

Built-in files sit under :func:`data_root` (the repository root, or ``$IPUSIM_DATA``):
``topologies/chips/`` (chip), ``topologies/`` (system), ``models/`` (model) and ``scenarios/``
(scenario). A value such as ``pod16`` names ``topologies/pod16.yaml``; a value that exists as a
file, ends in ``.yaml``/``.yml`` or contains a slash is a path instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import simulator
from simulator.config import files
from simulator.errors import InputError, did_you_mean

ENV_VAR = "IPUSIM_DATA"
FOLDERS: dict[str, str] = {
    "chip": "topologies/chips",
    "system": "topologies",
    "model": "models",
    "scenario": "scenarios",
}
_SUFFIXES = (".yaml", ".yml")


def data_root() -> Path:
    """The folder holding topologies/, models/ and scenarios/ (``$IPUSIM_DATA`` if set)."""
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override)
    return Path(simulator.__file__).resolve().parents[1]


def _folder(kind: str) -> Path:
    if kind not in FOLDERS:
        raise ValueError(f"unknown file kind {kind!r}; one of {sorted(FOLDERS)}")
    return data_root() / FOLDERS[kind]


def builtin_names(kind: str) -> list[str]:
    """Names of the built-in files of ``kind`` (file stems), sorted."""
    folder = _folder(kind)
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.iterdir() if p.suffix == ".yaml" and p.is_file())


def _looks_like_path(text: str) -> bool:
    return text.endswith(_SUFFIXES) or "/" in text or os.sep in text or Path(text).is_absolute()


def resolve(name_or_path: str | Path, kind: str, relative_to: str | Path | None = None) -> Path:
    """The file meant by ``name_or_path``: a path if it is one, else a built-in name of ``kind``.

    A relative path is looked up beside ``relative_to`` (a file, e.g. the scenario naming it)
    first, then from the current directory. Unknown names and missing paths raise
    :class:`InputError` listing what exists.
    """
    text = str(name_or_path)
    if not text.strip():
        raise InputError(f"empty {kind} name")
    given = Path(text).expanduser()
    candidates = [given] if given.is_absolute() else []
    if not given.is_absolute():
        if relative_to is not None:
            candidates.append(Path(relative_to).parent / given)
        candidates.append(given)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    if _looks_like_path(text):
        for candidate in candidates:
            if candidate.exists():  # a folder, a FIFO, a device: say so, without opening it
                try:
                    files.check_input(candidate)
                except InputError as exc:  # no file named: the caller adds where it was named
                    raise InputError(f"{kind} file '{text}' {exc.detail}") from None
        looked = ", ".join(str(c) for c in candidates)
        raise InputError(f"{kind} file '{text}' not found (looked for {looked})")
    builtin = _folder(kind) / f"{text}.yaml"
    if builtin.is_file():
        return builtin
    names = builtin_names(kind)
    available = ", ".join(names) if names else f"none in {_folder(kind)}"
    raise InputError(
        f"unknown {kind} '{text}'{did_you_mean(text, names)}; built-in {kind}s: {available} "
        "(or give a path to a .yaml file)"
    )
