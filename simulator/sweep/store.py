"""The results store: one SQLite file of finished points, keyed by point hash (WAL mode while a
sweep writes; back in rollback-journal mode, with no side files, when the last writer closes).

Tables (``schema_version`` 1, recorded in ``meta``):

* ``meta(key, value)`` — ``format = ipusim-results``, ``schema_version = 1``.
* ``points`` — one row per finished point: ``key`` (the hash, :mod:`simulator.sweep.points`),
  ``status`` (ok / infeasible / error), ``reason`` (infeasible reason or error message),
  ``scenario`` (canonical JSON of the resolved scenario data), ``result`` (result JSON),
  ``chips``, ``power_W``, ``ipusim_version``. Triggers refuse every UPDATE and DELETE:
  finished points are never overwritten or deleted.
* ``sweeps(sweep, statistics)`` — each sweep's time-to-train model (JSON, may be null).
* ``members(sweep, key, idx, point_values)`` — which points a sweep has (its axis values and
  position), written before the points run; a re-run or edited sweep refreshes them.

Each finished point is its own transaction (``INSERT OR IGNORE``), so a run killed with SIGKILL
loses at most the points in flight, and two sweeps writing one store serialise on SQLite's
lock (``busy_timeout``) without corrupting it. Opening an existing file checks that it is a
store of this format before anything is written; a foreign or corrupted file is an
:class:`~simulator.errors.InputError` (exit 2) and is left untouched.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from simulator import __version__
from simulator.config.files import node_kind
from simulator.errors import InputError
from simulator.outputs import check_folder
from simulator.sweep.points import Point
from simulator.sweep.worker import PointRecord

FORMAT = "ipusim-results"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 60_000
_MAGIC = b"SQLite format 3\x00"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS points (
        key TEXT PRIMARY KEY,
        status TEXT NOT NULL CHECK (status IN ('ok', 'infeasible', 'error')),
        reason TEXT,
        scenario TEXT NOT NULL,
        result TEXT,
        chips INTEGER,
        power_W REAL,
        ipusim_version TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS members (
        sweep TEXT NOT NULL,
        key TEXT NOT NULL,
        idx INTEGER NOT NULL,
        point_values TEXT NOT NULL,
        PRIMARY KEY (sweep, key)
    )""",
    """CREATE TABLE IF NOT EXISTS sweeps (
        sweep TEXT PRIMARY KEY,
        statistics TEXT
    )""",
    "CREATE TRIGGER IF NOT EXISTS points_never_updated BEFORE UPDATE ON points "
    "BEGIN SELECT RAISE(ABORT, 'finished points are never overwritten'); END",
    "CREATE TRIGGER IF NOT EXISTS points_never_deleted BEFORE DELETE ON points "
    "BEGIN SELECT RAISE(ABORT, 'finished points are never deleted'); END",
)


def _not_a_store(path: Path, why: str) -> InputError:
    return InputError(
        f"not an ipusim results store ({why}); give a new file name or a store written by "
        "`ipusim sweep`",
        file=path,
    )


def check_target(path: Path) -> None:
    """Before any work: ``path`` is nothing yet or a store of this format, and its folder can
    be written (SQLite adds ``-wal`` and ``-shm`` files beside it). A FIFO, device or folder
    is refused without being opened. A symbolic link is followed (a store is appended to,
    never replaced)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise InputError(f"cannot use this path: {exc.strerror or exc}", file=path) from None
    kind = node_kind(st.st_mode) if st is not None else None
    if kind is not None:
        raise _not_a_store(path, f"it is {kind}")
    check_folder(path, "results store ")
    if st is not None:
        check_store(path)


def check_store(path: Path) -> bool:
    """True for a store of this format, False for an empty file or database (a store being
    created); raise :class:`InputError` for anything else. Opens the file read-only: nothing
    in it is changed.
    """
    if not path.is_file():
        raise _not_a_store(path, "not a regular file")
    with path.open("rb") as f:
        head = f.read(len(_MAGIC))
    if head == b"":
        return False
    if head != _MAGIC:
        raise _not_a_store(path, "not an SQLite database")
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            con.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
                return False
            meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
            check = con.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        raise _not_a_store(path, f"unreadable: {exc}") from None
    if meta.get("format") != FORMAT:
        raise _not_a_store(path, "an SQLite database of another program")
    if meta.get("schema_version") != str(SCHEMA_VERSION):
        raise _not_a_store(
            path, f"schema_version {meta.get('schema_version')}, this ipusim reads {SCHEMA_VERSION}"
        )
    if check != "ok":
        raise _not_a_store(path, f"corrupted: {check}")
    return True


class Store:
    """An open results store (see the module docstring)."""

    def __init__(self, path: Path, con: sqlite3.Connection, readonly: bool = False) -> None:
        self.path = path
        self.con = con
        self.readonly = readonly

    @classmethod
    def open(cls, path: str | Path, *, create: bool = True, readonly: bool = False) -> Store:
        """Open (or, with ``create``, make) the store at ``path``; validated before writing."""
        path = Path(path)
        exists = path.exists() and check_store(path)
        if not exists and (not create or readonly):
            what = "is empty" if path.exists() else "not found"
            raise InputError(f"results store {what}", file=path)
        if not path.parent.is_dir():
            raise InputError(f"folder {path.parent} does not exist", file=path)
        try:
            if readonly:
                con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
            else:
                con = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
            con.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if not readonly:
                _switch_to_wal(con)
                con.execute("PRAGMA synchronous = NORMAL")
                if not exists:
                    with _transaction(con):
                        for statement in _SCHEMA:
                            con.execute(statement)
                        con.executemany(
                            "INSERT OR IGNORE INTO meta VALUES (?, ?)",
                            [("format", FORMAT), ("schema_version", str(SCHEMA_VERSION))],
                        )
        except sqlite3.OperationalError as exc:
            raise InputError(f"cannot open the results store: {exc}", file=path) from None
        return cls(path, con, readonly)

    def close(self) -> None:
        """Close the connection; a writer leaves the file in rollback-journal mode when it is
        the last one open, so no ``-wal`` / ``-shm`` side files outlive the command (a
        read-only opening of a WAL-mode file would create them and could not remove them)."""
        try:
            if not self.readonly:
                self.con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                # needs no other connection: with a concurrent sweep this fails harmlessly and
                # the last writer to close does it
                self.con.execute("PRAGMA busy_timeout = 0")
                self.con.execute("PRAGMA journal_mode = DELETE")
        except sqlite3.OperationalError:
            pass
        finally:
            self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def keys(self) -> set[str]:
        """Hashes of every finished point."""
        return {k for (k,) in self.con.execute("SELECT key FROM points")}

    def add_members(
        self, sweep: str, points: Iterable[Point], statistics: str | None = None
    ) -> None:
        """Record that ``sweep`` has ``points`` and its statistics model (one transaction)."""
        rows = [(sweep, p.key, p.index, json.dumps(p.values, default=str)) for p in points]
        with _transaction(self.con):
            self.con.execute(
                "INSERT OR REPLACE INTO sweeps (sweep, statistics) VALUES (?, ?)",
                (sweep, statistics),
            )
            self.con.executemany(
                "INSERT OR REPLACE INTO members (sweep, key, idx, point_values) "
                "VALUES (?, ?, ?, ?)",
                rows,
            )

    def put(self, record: PointRecord, scenario: str) -> bool:
        """Write one finished point (its own transaction); False if it was already there."""
        with _transaction(self.con):
            cur = self.con.execute(
                "INSERT OR IGNORE INTO points "
                "(key, status, reason, scenario, result, chips, power_W, ipusim_version) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.key,
                    record.status,
                    record.reason,
                    scenario,
                    record.result,
                    record.chips,
                    record.power_W,
                    __version__,
                ),
            )
        return cur.rowcount == 1

    def sweeps(self) -> dict[str, str | None]:
        """Sweep name -> its statistics JSON (or None), for every sweep in the store."""
        return dict(self.con.execute("SELECT sweep, statistics FROM sweeps ORDER BY sweep"))

    def rows(self, sweep: str | None = None) -> list[dict[str, Any]]:
        """Finished points (with their sweep membership), in sweep then point order."""
        query = (
            "SELECT m.sweep, m.idx, m.point_values, p.key, p.status, p.reason, p.scenario, "
            "p.result, p.chips, p.power_W, p.ipusim_version FROM members m "
            "JOIN points p ON p.key = m.key"
        )
        args: tuple[Any, ...] = ()
        if sweep is not None:
            query += " WHERE m.sweep = ?"
            args = (sweep,)
        query += " ORDER BY m.sweep, m.idx"
        names = ("sweep", "index", "values", "key", "status", "reason", "scenario", "result",
                 "chips", "power_W", "ipusim_version")  # fmt: skip
        return [dict(zip(names, r, strict=True)) for r in self.con.execute(query, args)]


def _switch_to_wal(con: sqlite3.Connection) -> None:
    """``PRAGMA journal_mode = WAL``, retried while another process holds the file.

    Changing the journal mode upgrades a shared lock to an exclusive one, and SQLite answers
    SQLITE_BUSY at once, without calling the busy handler, when that upgrade could deadlock
    (another connection is committing, or the last writer is switching the file back to
    rollback-journal mode in :meth:`Store.close`). Two sweeps opening one store saw this as
    "database is locked" one time in a few dozen openings; the lock is held for milliseconds,
    so waiting and asking again, up to the busy timeout, is the cure.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    delay = 0.002
    while True:
        try:
            con.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            busy = "locked" in str(exc) or "busy" in str(exc)
            if not busy or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(2 * delay, 0.05)


class _transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error) on an autocommit connection."""

    def __init__(self, con: sqlite3.Connection) -> None:
        self.con = con

    def __enter__(self) -> None:
        self.con.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_rest: object) -> None:
        self.con.execute("COMMIT" if exc_type is None else "ROLLBACK")
