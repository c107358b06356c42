"""Where points run: local worker processes (default: every core) or a Dask cluster.

Both runners take :class:`~simulator.sweep.worker.PointTask` items and call ``on_done`` in
the calling process with each :class:`~simulator.sweep.worker.PointRecord` as soon as it
finishes, so the caller can store it at once. At most ``window`` points are in flight (a few
per worker), which bounds what a killed run can lose. A worker that dies (a crash, not an
error of the point: those come back as records) loses its point, which is reported and not
stored, so the next run retries it.

Local workers are long-lived processes (``forkserver`` where available, with the simulator
preloaded; else ``spawn``): each imports once and runs many points, keeping its caches warm.
Each worker watches the sweep's process (:func:`watch_parent`) and exits on its own within a
second when that process is gone — even after ``kill -9``, which no handler sees; with the
workers gone, the forkserver and multiprocessing's resource tracker (which live while any
process holds their pipes) exit too, so a killed sweep leaves no process behind.
Dask: ``local`` starts a :class:`distributed.LocalCluster` of ``jobs`` single-threaded
worker processes on loopback; any other value is the address of a running scheduler, whose
workers must have the same ipusim installed.
"""

from __future__ import annotations

import multiprocessing
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from simulator.errors import InputError
from simulator.sweep.worker import PointRecord, PointTask, run_point

OnDone = Callable[[PointRecord], None]
OnLost = Callable[[PointTask, str], None]
PRELOAD = ["strategies", "simulator.sweep.worker", "simulator.sweep.runners", "simulator.run"]
#: Seconds between checks of the parent where pidfd (Linux >= 5.3) is not available.
PARENT_POLL_S = 0.5
CONNECT_TIMEOUT_S = 5


def default_jobs() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _context() -> Any:
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        return ctx
    return multiprocessing.get_context("spawn")  # pragma: no cover - not Linux


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C so a sweep stops the same clean way:
    pending points cancelled, workers stopped, every finished point already stored."""

    exit_code = 128 + signal.SIGTERM


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (main thread only; elsewhere a
    no-op). The previous handler is restored afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def watch_parent(pid: int) -> None:
    """In a worker: exit (``os._exit``) as soon as process ``pid`` — the sweep — is gone.

    A daemon thread waits on a pidfd of ``pid`` (readable when it exits; no polling, no
    confusion with a later process that reuses the id), or polls every
    :data:`PARENT_POLL_S` where pidfds do not exist. The worker's own parent is the
    forkserver, not the sweep, so ``PR_SET_PDEATHSIG`` would not do."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(1)  # already gone
    except (AttributeError, OSError):
        fd = None

    def wait() -> None:
        if fd is not None:
            select.select([fd], [], [])
        else:  # pragma: no cover - kernels without pidfd
            while _alive(pid):
                time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=wait, name="ipusim-watch-parent", daemon=True).start()


def _alive(pid: int) -> bool:  # pragma: no cover - kernels without pidfd
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_local(tasks: Sequence[PointTask], jobs: int, on_done: OnDone, on_lost: OnLost) -> None:
    """Run ``tasks`` on ``jobs`` local processes (``jobs == 1``: in this process)."""
    if jobs <= 1:
        for task in tasks:
            on_done(run_point(task))
        return
    window = 2 * jobs
    queue = iter(tasks)
    with ProcessPoolExecutor(
        max_workers=jobs, mp_context=_context(), initializer=watch_parent, initargs=(os.getpid(),)
    ) as pool:
        pending: dict[Future[PointRecord], PointTask] = {}
        try:
            while True:
                while len(pending) < window:
                    queued = next(queue, None)
                    if queued is None:
                        break
                    pending[pool.submit(run_point, queued)] = queued
                if not pending:
                    return
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                if any(isinstance(f.exception(), BrokenProcessPool) for f in finished):
                    for task in pending.values():
                        on_lost(task, "its worker process died")
                    raise RuntimeError(
                        "a local worker process died (killed, or out of memory); the points "
                        "finished so far are stored, run the sweep again to continue"
                    )
                for fut in finished:
                    task = pending.pop(fut)
                    exc = fut.exception()
                    if exc is None:
                        on_done(fut.result())
                    else:
                        on_lost(task, f"{type(exc).__name__}: {exc}")
        except BaseException:
            for fut in pending:
                fut.cancel()
            if isinstance(sys.exc_info()[1], KeyboardInterrupt):
                _stop_workers(pool)  # points in flight would be thrown away anyway
            raise


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Terminate the pool's worker processes (CPython keeps them in ``_processes``; Python
    3.14 has ``terminate_workers``), so an interrupted sweep does not wait for the points in
    flight, whose results it would not store. Without either, shutdown waits for them."""
    terminate = getattr(pool, "terminate_workers", None)
    if terminate is not None:  # pragma: no cover - Python >= 3.14
        terminate()
        return
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.terminate()


@dataclass
class DaskTarget:
    """A connected Dask client (and the LocalCluster it owns, for ``--dask local``)."""

    client: Any
    cluster: Any
    address: str

    def close(self) -> None:
        """Close the client, then the cluster this process started (if any)."""
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def connect_dask(address: str, jobs: int) -> DaskTarget:
    """A client for ``address`` (``local``: start a LocalCluster); unreachable: InputError."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:  # pragma: no cover - depends on the environment
        raise InputError(
            "--dask needs the dask extra: pip install 'ipusim[dask]'", file="--dask"
        ) from None
    if address == "local":
        cluster = LocalCluster(
            n_workers=jobs,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",
        )
        return DaskTarget(Client(cluster), cluster, cluster.scheduler_address)
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, ValueError) as exc:
        raise InputError(
            f"cannot reach the Dask scheduler at '{address}' ({type(exc).__name__}: {exc}); "
            "give a running scheduler's address (tcp://HOST:PORT) or 'local'",
            file="--dask",
        ) from None
    return DaskTarget(client, None, address)


def run_dask(
    tasks: Sequence[PointTask], target: DaskTarget, on_done: OnDone, on_lost: OnLost
) -> None:
    """Run ``tasks`` on the cluster behind ``target``; records come back as they finish."""
    from distributed import as_completed

    client = target.client
    workers = max(1, len(client.scheduler_info().get("workers", {})))
    window = 2 * workers + 2
    queue = iter(tasks)

    def submit(task: PointTask) -> Any:
        fut = client.submit(run_point, task, key=f"ipusim-point-{task.key}", retries=0)
        by_key[fut.key] = task
        return fut

    by_key: dict[str, PointTask] = {}
    first = [submit(t) for t in _take(queue, window)]
    done = as_completed(first)
    try:
        for fut in done:
            task = by_key.pop(fut.key)
            if fut.status == "finished":
                on_done(fut.result())
            else:
                on_lost(task, f"{type(fut.exception()).__name__}: {fut.exception()}")
            fut.release()
            following = next(queue, None)
            if following is not None:
                done.add(submit(following))
    except BaseException:
        client.cancel(list(done.futures))
        raise


def _take(it: Iterator[PointTask], n: int) -> list[PointTask]:
    out = []
    for _ in range(n):
        task = next(it, None)
        if task is None:
            break
        out.append(task)
    return out


@contextmanager
def dask_target(address: str | None, jobs: int) -> Iterator[DaskTarget | None]:
    """:func:`connect_dask` as a context (None when ``address`` is None)."""
    target = connect_dask(address, jobs) if address else None
    try:
        yield target
    finally:
        if target is not None:
            target.close()
