"""Writing output files without ever destroying something a user wrote.

Every file ipusim writes (HTML pages, Chrome traces, CSV/Parquet exports) goes through here.
The rules (docs/config.md, "Output files"):

* :func:`check` runs *before* the work. The target may be nothing yet, a file ipusim itself
  wrote earlier (recognised by its generator marker), or — with ``--force`` — any *regular*
  file. A folder, FIFO, socket or device is refused with or without ``--force`` (replacing
  ``/dev/null`` or blocking on a FIFO is never what was meant), and so is a symbolic link
  (ipusim does not write through links: give the path of the file itself). The folder must
  exist and be writable, which is tried, not guessed: a temporary file is created and removed
  there, so a read-only folder, a read-only file system or a missing permission are exit 2
  before any work. All of this is decided from ``lstat`` and the folder; the target is never
  opened unless it is a regular file.
* :func:`write` replaces the file atomically (a temporary file in the same folder, then a
  rename), so an interrupted run never leaves half a file behind. It checks the target's kind
  again just before the rename. A new file gets the mode ``open`` would give it (0666 less the
  umask: 0644 under umask 022); a replaced file keeps its mode.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from simulator.config.files import node_kind
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


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def refuse_special(path: str | Path, label: str = "") -> os.stat_result | None:
    """``lstat`` of an output target; anything but a regular file (or nothing) is refused."""
    p = Path(path)
    try:
        st = _lstat(p)
    except OSError as exc:  # ENOTDIR (a file in the folder part), ELOOP, ENAMETOOLONG
        raise InputError(f"{label}{path}: {exc.strerror or exc}", file=None) from None
    if st is None:
        return None
    if stat.S_ISLNK(st.st_mode):
        raise InputError(
            f"{label}{path} is a symbolic link (to {os.readlink(p)}); ipusim does not write "
            "through links: give the path of the file itself",
            file=None,
        )
    kind = node_kind(st.st_mode)
    if kind is not None:
        hint = "give a file name" if kind == "a folder" else "give the path of a regular file"
        raise InputError(
            f"{label}{path} is {kind}; only a regular file is ever replaced (--force "
            f"included): {hint}",
            file=None,
        )
    return st


def check_folder(path: str | Path, label: str = "") -> None:
    """The folder of ``path`` exists and a file can be created in it (tried, then removed)."""
    folder = Path(path).parent
    if not folder.is_dir():
        raise InputError(f"{label}{path}: folder {folder} does not exist", file=None)
    try:
        fd, probe = tempfile.mkstemp(prefix=".ipusim-probe-", dir=folder)
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise InputError(
            f"{label}{path}: cannot write in folder {folder} ({why}); choose another folder",
            file=None,
        ) from None
    os.close(fd)
    os.unlink(probe)


def check(
    path: str | Path,
    *,
    force: bool = False,
    option: str | None = None,
    ours: Callable[[Path], bool] = written_by_ipusim,
) -> Path:
    """Refuse (InputError, exit 2) an output target that may not be replaced (module
    docstring): a non-regular file or link always, a regular file ipusim did not write unless
    ``force``; and a folder that does not exist or cannot be written.

    ``ours`` recognises an earlier ipusim output of this kind (default: the marker)."""
    p = Path(path)
    label = f"{option} " if option else ""
    st = refuse_special(p, label)
    check_folder(p, label)
    if st is not None and not force and not ours(p):
        raise InputError(
            f"{label}{path} exists and was not written by ipusim; choose another name, or "
            "pass --force to replace it",
            file=None,
        )
    return p


def creation_mode() -> int:
    """The mode ``open`` gives a new file: 0666 less the process umask."""
    mask = os.umask(0o022)  # reading the umask means setting it; put it back at once
    os.umask(mask)
    return 0o666 & ~mask


def write(path: str | Path, data: bytes) -> int:
    """Replace ``path`` with ``data`` atomically; return the size in bytes."""
    p = Path(path)
    existing = refuse_special(p)  # again: it may have changed since check()
    mode = stat.S_IMODE(existing.st_mode) if existing is not None else creation_mode()
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            os.fchmod(f.fileno(), mode)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(data)
