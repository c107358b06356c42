"""Writing output files without ever destroying something a user wrote.

Every file ipusim writes (HTML pages, Chrome traces, CSV/Parquet exports) goes through here:

* :func:`check` runs *before* the work: the target may be a new file, or a file ipusim itself
  wrote earlier (recognised by its generator marker), or anything at all with ``--force``;
  otherwise it is invalid input (exit 2) and nothing is computed or written.
* :func:`write` replaces the file atomically (a temporary file in the same folder, then a
  rename), so an interrupted run never leaves half a file behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from simulator.errors import InputError

HTML_MARKER = b"<meta name='generator' content='ipusim'>"
JSON_MARKER = b'"generator":"ipusim"'
#: How far into an existing file the marker is looked for.
HEAD_BYTES = 4096


def marker_for(path: str | Path) -> bytes | None:
    """The marker an ipusim file of this name carries near its start (None: no marker)."""
    suffix = Path(path).suffix.lower()
    if suffix in (".html", ".htm"):
        return HTML_MARKER
    if suffix == ".json":
        return JSON_MARKER
    return None


def written_by_ipusim(path: Path) -> bool:
    """Whether an existing file carries ipusim's marker near its start."""
    marker = marker_for(path)
    if marker is None:
        return False
    with path.open("rb") as f:
        return marker in f.read(HEAD_BYTES)


def check(
    path: str | Path,
    *,
    force: bool = False,
    option: str | None = None,
    ours: Callable[[Path], bool] = written_by_ipusim,
) -> Path:
    """Refuse (InputError, exit 2) to replace a file ipusim did not write, unless ``force``.

    ``ours`` recognises an earlier ipusim output of this kind (default: the marker)."""
    p = Path(path)
    label = f"{option} " if option else ""
    if p.is_dir():
        raise InputError(f"{label}{path} is a folder; give a file name", file=None)
    if not p.parent.is_dir():
        raise InputError(f"{label}{path}: folder {p.parent} does not exist", file=None)
    if p.exists() and not force and not ours(p):
        raise InputError(
            f"{label}{path} exists and was not written by ipusim; choose another name, or "
            "pass --force to replace it",
            file=None,
        )
    return p


def write(path: str | Path, data: bytes) -> int:
    """Replace ``path`` with ``data`` atomically; return the size in bytes."""
    p = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(data)
