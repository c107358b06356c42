"""The inputs a scenario names: canonical JSON of its data and digests of the files it names.

What identifies a run's inputs, for the sweep's point keys (:mod:`simulator.sweep.points`) and
the run cache (:mod:`simulator.runcache`): the resolved scenario data as canonical JSON, and the
SHA-256 of every file the scenario names (its system file, that file's chip file, its model
file, a baseline scenario file), so that editing any of them changes the key.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from simulator.config import paths
from simulator.config.yamlio import load_document
from simulator.errors import InputError


def canonical(value: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, floats as repr."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=True, default=str)


@lru_cache(maxsize=256)
def _digest(path: str, mtime_ns: int, size: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes (cached per process by path, mtime and size)."""
    st = os.stat(path)
    return _digest(str(path.resolve()), st.st_mtime_ns, st.st_size)


def _try(fn: Callable[[], Path]) -> Path | None:
    try:
        return fn()
    except InputError:
        return None


def named_files(data: dict[str, Any], base: Path, baseline: bool) -> dict[str, str]:
    """``kind -> digest`` of the files a point names (absent files are left to the run)."""
    out: dict[str, str] = {}
    topo = data.get("topology")
    system = None
    if isinstance(topo, str):
        system = _try(lambda: paths.resolve(topo, "system", relative_to=base))
        if system is not None:
            out["system"] = file_digest(system)
            chip = chip_name(system)
            if chip is not None:
                found = _try(lambda: paths.resolve(chip, "chip", relative_to=system))
                if found is not None:
                    out["chip"] = file_digest(found)
    elif isinstance(topo, dict) and isinstance(topo.get("chip"), str):
        found = _try(lambda: paths.resolve(topo["chip"], "chip", relative_to=base))
        if found is not None:
            out["chip"] = file_digest(found)
    model = data.get("model")
    name = (
        model if isinstance(model, str) else model.get("name") if isinstance(model, dict) else None
    )
    if isinstance(name, str) and not (isinstance(model, dict) and "layers" in model):
        found = _try(lambda: paths.resolve(name, "model", relative_to=base))
        if found is not None:
            out["model"] = file_digest(found)
    if baseline and isinstance(data.get("baseline"), str):
        found = _try(lambda: paths.resolve(data["baseline"], "scenario", relative_to=base))
        if found is not None:
            out["baseline"] = file_digest(found)
    return out


@lru_cache(maxsize=64)
def _chip_name_cached(path: str, mtime_ns: int) -> str | None:
    chip = load_document(path).data.get("chip")
    return chip if isinstance(chip, str) else None


def chip_name(system: Path) -> str | None:
    """The ``chip:`` a system file names (None if it names none or cannot be read)."""
    try:
        return _chip_name_cached(str(system), os.stat(system).st_mtime_ns)
    except InputError:
        return None
