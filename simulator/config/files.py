"""What kind of thing a path is, decided without reading it, and what kind of file it holds.

Input files are read only when they are regular files no larger than
:data:`~simulator.config.limits.MAX_FILE_BYTES`: a FIFO would block the read forever, a device
such as ``/dev/zero`` never ends, a folder is not a file. Each is refused by :func:`check_input`
from ``stat`` alone. When a regular file turns out to be of the wrong kind — a results store, an
HTML page, a trace, a sweep file where a scenario is expected — the message says what it is and
which command reads it (:func:`sniff`, :data:`READ_BY`), and never quotes its content: a path
mistyped onto another file must not print that file's lines.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from simulator.config.limits import LIMITS_DOC, MAX_FILE_BYTES
from simulator.errors import InputError

#: File kind -> what reads it (for "this is a sweep file, read by `ipusim sweep`").
READ_BY: dict[str, str] = {
    "scenario": "`ipusim run`",
    "sweep": "`ipusim sweep`",
    "plan": "`ipusim plan`",
    "jobs": "`ipusim shared`",
    "system": "`ipusim topology show` and a scenario's `topology:`",
    "chip": "a system file's `chip:`",
    "model": "a scenario's `model:` and `ipusim model show`",
}


def node_kind(mode: int) -> str | None:
    """``'a FIFO (named pipe)'`` etc. for anything that is not a regular file, else None."""
    if stat.S_ISREG(mode):
        return None
    kinds = (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISLNK, "a symbolic link"),
    )
    for test, name in kinds:
        if test(mode):
            return name
    return "not a regular file"  # pragma: no cover - doors, whiteouts and the like


def check_input(path: str | Path) -> os.stat_result:
    """``stat`` of an input file (symbolic links followed), refusing without opening it:
    a missing or unreadable path, anything but a regular file, a file over the size limit."""
    file = str(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError("file not found", file=file) from None
    except PermissionError:
        raise InputError("cannot read the file: permission denied", file=file) from None
    except (OSError, ValueError) as exc:  # ENOTDIR, ELOOP, ENAMETOOLONG, an embedded NUL
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InputError(f"cannot read the file: {detail}", file=file) from None
    kind = node_kind(st.st_mode)
    if kind is not None:
        raise InputError(f"is {kind}, not a file; give the path of a YAML file", file=file)
    if st.st_size > MAX_FILE_BYTES:
        raise InputError(
            f"the file has {st.st_size:,} bytes, over the limit of {MAX_FILE_BYTES:,} "
            f"({LIMITS_DOC}); is it the file you meant?",
            file=file,
        )
    return st


_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"SQLite format 3\x00", "an SQLite database (an ipusim results store is read by "
     "`ipusim results export` and `ipusim results plot`)"),
    (b"PAR1", "a Parquet table (written by `ipusim results export`)"),
    (b"\x89PNG", "a PNG image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a zip archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\x7fELF", "an executable"),
)  # fmt: skip


def sniff(head: bytes) -> str | None:
    """What a file is when its first bytes show it is not YAML text (None: it may be)."""
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    text = head.lstrip()[:4096].lower()
    if text.startswith((b"<!doctype html", b"<html")):
        made = b"content='ipusim'" in text
        return "an HTML page" + (" written by ipusim (open it in a browser)" if made else "")
    if text.startswith(b"{") and b'"traceevents"' in text:
        return "a Chrome trace (written by `ipusim run --trace`; open it in Perfetto)"
    if b"\x00" in head:
        return "a binary file"
    return None


def document_kind(data: object) -> str | None:
    """The kind a parsed file declares (``kind:``) or, without one, plainly is by its keys."""
    if not isinstance(data, dict):
        return None
    kind = data.get("kind")
    if isinstance(kind, str):
        return kind
    if "kind" in data:
        return None
    if "strategy" in data and "topology" in data:
        return "scenario"
    if "candidates" in data and "target" in data:
        return "plan"
    if "base" in data and ("grid" in data or "zip" in data):
        return "sweep"
    return None


#: The command that reads a file of each kind, with ``{file}`` for its path.
COMMAND: dict[str, str] = {
    "scenario": "ipusim run {file}",
    "sweep": "ipusim sweep {file} --out results.db",
    "plan": "ipusim plan {file}",
    "jobs": "ipusim shared {file}",
    "model": "ipusim model show {file}",
    "system": "ipusim topology show {file}",
    "chip": "ipusim topology show {file}",
}


def wrong_kind(found: str, expected: str, file: str | None = None) -> str:
    """``this is a sweep file, read by `ipusim sweep`; a scenario file is expected here``,
    and with ``file`` the command to try (`` (try `ipusim sweep FILE --out results.db`)``)."""
    reader = READ_BY.get(found)
    what = f"a '{found}' file" if reader is None else f"a {found} file, read by {reader}"
    tail = ""
    if file is not None and found in COMMAND:
        tail = f" (try `{COMMAND[found].format(file=file)}`)"
    return f"this is {what}; a {expected} file is expected here{tail}"
