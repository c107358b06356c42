"""Output paths that must never be harmed: a FIFO, a socket, a folder, a symbolic link or a
device at the target is refused with exit 2 before any work, --force included; so is a folder
that cannot be written (tried with a real read-only folder); new files get the mode the
umask gives. Complements tests/test_outputs.py (a user's regular file is never replaced).
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from simulator import outputs
from simulator.cli import main
from simulator.errors import InputError
from tests.helpers import TINY_DATA_SCENARIO
from tests.hostile_cases import deadline

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = str(ROOT / "scenarios" / "microbench" / "all-reduce-64MiB-pod16.yaml")


def _commands(target: Path, tmp: Path) -> list[list[str]]:
    """Every option that writes a file, aimed at ``target``."""
    store = tmp / "store.sqlite"
    if not store.exists():
        from simulator.sweep.store import Store

        Store.open(store, create=True).close()
    return [
        ["run", SCENARIO, "--timeline", str(target)],
        ["run", SCENARIO, "--report", str(target)],
        ["run", SCENARIO, "--trace", str(target)],
        ["topology", "show", "pod4", "--html", str(target)],
        ["results", "export", str(store), "--out", str(target), "--format", "csv"],
        ["results", "plot", str(store), "--html", str(target)],
    ]


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refusals come before any simulation."""
    import simulator.run

    def fail(*args: object, **kwargs: object) -> None:
        pytest.fail("simulated although the output is refused")

    monkeypatch.setattr(simulator.run, "run_scenario", fail)


def _special(kind: str, path: Path) -> Iterator[None] | None:
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        sock.close()
    elif kind == "symlink":
        (path.parent / "real.html").write_text("a user's file\n")
        path.symlink_to(path.parent / "real.html")
    return None


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
@pytest.mark.parametrize("kind", ["fifo", "socket", "folder", "symlink"])
def test_special_targets_are_refused_before_work(
    kind: str, force: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_work: None
) -> None:
    target = tmp_path / "out.html"
    _special(kind, target)
    before = os.lstat(target)
    for args in _commands(target, tmp_path):
        with deadline(20):
            code = main([*args, *(["--force"] if force else [])])
        err = capsys.readouterr().err
        assert code == 2, (args, err)
        assert "only a regular file is ever replaced" in err or "symbolic link" in err, err
        after = os.lstat(target)
        assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)
    if kind == "symlink":
        assert (tmp_path / "real.html").read_text() == "a user's file\n"


@pytest.mark.parametrize("device", ["/dev/null", "/dev/full", "/dev/zero"])
def test_a_device_is_never_replaced_even_with_force(device: str) -> None:
    """Only the check runs here (no write is attempted at a real device)."""
    if not Path(device).exists():
        pytest.skip(f"{device} does not exist here")
    with pytest.raises(InputError, match="character device; only a regular file"):
        outputs.check(device, force=True, option="--trace")


def test_sweep_store_that_is_a_fifo_is_refused(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(TINY_DATA_SCENARIO)
    sweep = tmp_path / "s.yaml"
    sweep.write_text("schema_version: 1\nbase: base.yaml\ngrid: {seed: [1, 2]}\n")
    fifo = tmp_path / "store.sqlite"
    os.mkfifo(fifo)
    with deadline(20):
        assert main(["sweep", str(sweep), "--out", str(fifo), "--no-progress"]) == 2
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_missing_folder_and_file_as_folder_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_work: None
) -> None:
    (tmp_path / "plain").write_text("x")
    for target, words in (
        (tmp_path / "nope" / "t.html", "does not exist"),
        (tmp_path / "plain" / "t.html", "Not a directory"),
    ):
        assert main(["run", SCENARIO, "--timeline", str(target)]) == 2
        assert words in capsys.readouterr().err


# ---- a folder that cannot be written ------------------------------------------------------

_FS_IOC_GETFLAGS, _FS_IOC_SETFLAGS, _FS_IMMUTABLE_FL = 0x80086601, 0x40086602, 0x10


def _set_immutable(path: Path, on: bool) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        buf = bytearray(8)
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, buf)
        flags = int.from_bytes(buf[:4], "little")
        flags = flags | _FS_IMMUTABLE_FL if on else flags & ~_FS_IMMUTABLE_FL
        fcntl.ioctl(fd, _FS_IOC_SETFLAGS, flags.to_bytes(4, "little") + bytes(4))
    finally:
        os.close(fd)


@contextmanager
def _read_only(folder: Path) -> Iterator[str]:
    """A folder nobody can write in, by whatever mechanism this run can use.

    A normal user: mode 0555. Root ignores modes (a chmod'ed folder is still writable for
    root, so testing with it would prove nothing): there the folder is made immutable
    (chattr +i, which binds root too) when the file system and capabilities allow it, and the
    test is skipped otherwise."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield "mode 0555"
        finally:
            folder.chmod(0o755)
        return
    try:
        _set_immutable(folder, True)
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.ENOTTY, errno.EOPNOTSUPP, errno.EINVAL):
            pytest.skip(
                "running as root, where mode 0555 does not stop writes, and this file system "
                f"or process cannot set the immutable flag ({exc.strerror})"
            )
        raise
    try:
        probe = folder / "probe"
        try:
            probe.write_text("x")
        except OSError:
            pass
        else:  # pragma: no cover - the flag did not take
            probe.unlink()
            pytest.skip("the immutable flag did not stop a write here")
        yield "immutable flag (root)"
    finally:
        _set_immutable(folder, False)


def test_read_only_folder_is_refused_before_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_work: None
) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    with _read_only(folder):
        for args in _commands(folder / "out.html", tmp_path):
            assert main(args) == 2, args
            err = capsys.readouterr().err
            assert "cannot write in folder" in err, err
        assert list(folder.iterdir()) == []  # not even the probe is left


def test_read_only_folder_for_a_sweep_store_is_refused_before_expansion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import simulator.sweep.driver as driver

    (tmp_path / "base.yaml").write_text(TINY_DATA_SCENARIO)
    sweep = tmp_path / "s.yaml"
    sweep.write_text("schema_version: 1\nbase: base.yaml\ngrid: {seed: [1, 2]}\n")
    monkeypatch.setattr(driver, "prepare", lambda *a: pytest.fail("expanded the points"))
    folder = tmp_path / "ro"
    folder.mkdir()
    with _read_only(folder):
        code = main(["sweep", str(sweep), "--out", str(folder / "s.sqlite"), "--no-progress"])
    assert code == 2 and "cannot write in folder" in capsys.readouterr().err


# ---- modes ----------------------------------------------------------------------------------


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def test_new_outputs_get_the_umask_mode_and_replaced_ones_keep_theirs(tmp_path: Path) -> None:
    store = tmp_path / "store.sqlite"
    from simulator.sweep.store import Store

    Store.open(store, create=True).close()
    outputs_ = {
        "t.html": ["run", SCENARIO, "--timeline"],
        "t.json": ["run", SCENARIO, "--trace"],
        "p.html": ["topology", "show", "pod4", "--html"],
        "e.csv": ["results", "export", str(store), "--out"],
    }
    for mask, mode in ((0o022, 0o644), (0o077, 0o600), (0o002, 0o664)):
        for name, args in outputs_.items():
            if mask != 0o022 and args[0] == "run":
                continue  # the other masks on the quicker commands only
            target = tmp_path / f"{mask:o}-{name}"
            with _umask(mask):
                assert main([*args, str(target)]) == 0
            assert stat.S_IMODE(os.stat(target).st_mode) == mode, (name, oct(mask))
    kept = tmp_path / "22-t.html"
    kept.chmod(0o640)
    with _umask(0o022):
        assert main(["run", SCENARIO, "--timeline", str(kept)]) == 0
    assert stat.S_IMODE(os.stat(kept).st_mode) == 0o640
