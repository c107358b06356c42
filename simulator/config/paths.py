"""Where built-in files live, and how a name or path given by the user becomes a file.

Built-in files ship as package data (setup.py maps the source tree's topologies/, models/ and
scenarios/ into ``simulator.builtin``) and are found with importlib.resources, so an editable
install, ``pip install .`` and a wheel behave the same from any folder. ``$IPUSIM_DATA``, when
set, replaces them: a folder holding ``topologies/``, ``models/`` and ``scenarios/``.

Kinds: ``topologies/chips/`` (chip), ``topologies/`` (system), ``models/`` (model) and
``scenarios/`` (scenario; names may include a sub-folder, ``mlperf/resnet50-v1.0-pod16``). A
value such as ``pod16`` names ``topologies/pod16.yaml``; a value that exists as a file, ends in
``.yaml``/``.yml`` or contains a slash is a path instead (for scenarios, a path that does not
exist is then tried as a built-in name with a sub-folder).
"""

from __future__ import annotations

import os
from difflib import get_close_matches
from importlib import resources
from pathlib import Path

from simulator.config import files
from simulator.errors import InputError, did_you_mean

ENV_VAR = "IPUSIM_DATA"
#: Top-level data folder -> the package that carries it in an installation.
PACKAGES: dict[str, str] = {
    "topologies": "simulator.builtin.topologies",
    "models": "simulator.builtin.models",
    "scenarios": "simulator.builtin.scenarios",
}
#: File kind -> (top-level data folder, sub-folder or "").
FOLDERS: dict[str, tuple[str, str]] = {
    "chip": ("topologies", "chips"),
    "system": ("topologies", ""),
    "model": ("models", ""),
    "scenario": ("scenarios", ""),
}
_SUFFIXES = (".yaml", ".yml")


def data_root() -> Path | None:
    """The ``$IPUSIM_DATA`` folder when that override is set, else None (package data)."""
    override = os.environ.get(ENV_VAR)
    return Path(override).expanduser() if override else None


def data_folder(top: str) -> Path:
    """The folder holding one of the data trees (``topologies``, ``models``, ``scenarios``)."""
    if top not in PACKAGES:
        raise ValueError(f"unknown data folder {top!r}; one of {sorted(PACKAGES)}")
    root = data_root()
    if root is not None:
        return root / top
    found = resources.files(PACKAGES[top])
    if not isinstance(found, Path):  # e.g. a zipped installation: files are not on disk
        raise InputError(
            f"the built-in {top} are not on the file system ({found}); install ipusim from a "
            f"wheel or source tree, or set {ENV_VAR} to a folder holding {top}/"
        )
    return found


def folder(kind: str) -> Path:
    """The folder of built-in files of ``kind``."""
    if kind not in FOLDERS:
        raise ValueError(f"unknown file kind {kind!r}; one of {sorted(FOLDERS)}")
    top, sub = FOLDERS[kind]
    base = data_folder(top)
    return base / sub if sub else base


def where() -> str:
    """Where built-in files are read from, for messages."""
    root = data_root()
    return f"{ENV_VAR}={root}" if root is not None else "the installed package data"


def builtin_files(kind: str) -> dict[str, Path]:
    """Name -> file of every built-in file of ``kind``, sorted by name.

    Scenario names include their sub-folder (``mlperf/resnet50-v1.0-pod16``); the other kinds
    are the ``.yaml`` files directly in their folder.
    """
    base = folder(kind)
    if not base.is_dir():
        return {}
    files = base.rglob("*.yaml") if kind == "scenario" else base.glob("*.yaml")
    found = {p.relative_to(base).with_suffix("").as_posix(): p for p in files if p.is_file()}
    return dict(sorted(found.items()))


def builtin_names(kind: str) -> list[str]:
    """Names of the built-in files of ``kind``, sorted (see :func:`builtin_files`)."""
    return list(builtin_files(kind))


def require_builtin_names(kind: str) -> list[str]:
    """:func:`builtin_names`, but finding none is an :class:`InputError`: an empty list of
    built-ins means a broken installation or a wrong ``$IPUSIM_DATA``, never an answer."""
    names = builtin_names(kind)
    if names:
        return names
    hint = (
        f"check {ENV_VAR} (unset it to use the built-in files)"
        if data_root() is not None
        else "the installation is incomplete; reinstall ipusim"
    )
    raise InputError(f"no built-in {kind} files found in {folder(kind)} ({where()}); {hint}")


def looks_like_path(text: str) -> bool:
    return text.endswith(_SUFFIXES) or "/" in text or os.sep in text or Path(text).is_absolute()


def _builtin(kind: str, text: str) -> Path | None:
    """The built-in file named ``text`` (with or without ``.yaml``), if there is one."""
    base = folder(kind)
    rel = Path(text)
    if rel.is_absolute() or ".." in rel.parts or (kind != "scenario" and len(rel.parts) > 1):
        return None
    for candidate in (base / text, base / f"{text}.yaml"):
        if candidate.suffix in _SUFFIXES and candidate.is_file():
            return candidate
    return None


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
    path_like = looks_like_path(text)
    if path_like:
        for candidate in candidates:
            if candidate.exists():  # a folder, a FIFO, a device: say so, without opening it
                try:
                    files.check_input(candidate)
                except InputError as exc:  # no file named: the caller adds where it was named
                    raise InputError(f"{kind} file '{text}' {exc.detail}") from None
    if not path_like or kind == "scenario":
        builtin = _builtin(kind, text)
        if builtin is not None:
            return builtin
    if path_like:
        looked = ", ".join(str(c) for c in candidates)
        also = " or a built-in scenario of that name" if kind == "scenario" else ""
        raise InputError(f"{kind} file '{text}' not found (looked for {looked}{also})")
    names = require_builtin_names(kind)
    if kind == "scenario":
        available = "`ipusim examples` lists them"
        # a scenario in a sub-folder is also suggested by its last part
        by_stem = {n.rsplit("/", 1)[-1]: n for n in reversed(names)}
        match = get_close_matches(text, names, n=1, cutoff=0.6) or [
            by_stem[m] for m in get_close_matches(text, list(by_stem), n=1, cutoff=0.6)
        ]
        hint = f" (did you mean '{match[0]}'?)" if match else ""
    else:
        available = f"built-in {kind}s: {', '.join(names)}"
        hint = did_you_mean(text, names)
    also = " or a Hugging Face config.json" if kind == "model" else ""
    raise InputError(
        f"unknown {kind} '{text}'{hint}; {available} (or give a path to a .yaml file{also})"
    )
