"""Variability in the engine: per-task compute draws, slow chips, host jitter, and the waiting
of the copies a plan does not simulate (docs/variability.md).

Two objects. A :class:`Profile` is built once per plan: it classifies every task and holds the
slow-chip factors, so the samples of one run reuse it. ``Profile.sample(s)`` gives a
:class:`Variability` — the draws of sample ``s`` — which the executor consults at three points
only: when a task starts (:meth:`Variability.begin`: how long it must first wait for copies that
are late), the seconds of a Compute task (:meth:`Variability.compute`) and the hosts' extra work
at a HostSync (:meth:`Variability.host_extra`). Strategies are not involved: the waiting
follows from which chips each task names.

**Copies.** A plan simulates copy 0 of its replicas (:class:`~simulator.engine.replicas.
Replication`). For every task the engine keeps an offset vector ``delta[r]``: when copy r
finishes that task, minus when the simulated copy does. Copy r runs the same tasks in the same
order; only its compute draws differ. A task's copy r is ready when its dependencies are done
*in copy r* (their end + their offset) and its chip is free *in copy r* (the end of the
chip's previous task + that task's offset). Relative to the simulated copy's readiness this is
``sigma[r]``:

* a task that names only copy-0 chips (compute, exchange, a transfer between stages, ...) is
  run by every copy on its own: ``delta = sigma`` plus, for compute, the difference of the
  copies' draws;
* a task that names chips of copy 0 and of other copies (a collective, a sync with
  ``across``, the hosts' step end) is one task they all join: it starts when the latest
  arrives — the simulated task first waits ``w = max(0, max sigma)`` — and they all leave
  together (``delta = 0``). Copies it does not name run an analogue of it: in another member,
  the same positions meet among themselves; otherwise they pass it without waiting;
* a task that names other copies' chips but not copy 0's is work the plan adds beside copy 0
  for its contention (another replica's input read on the same gateway, a collective of other
  replicas): it stays on copy 0's timeline (it does not wait), so the contention copy 0 sees
  is the steady machine's; the copies it names meet in it (their offsets become their
  latest).

So a straggler delays exactly the syncs, collectives and pipeline dependencies that the graph
makes wait for it, and nothing else. This is exact when copies follow the simulated copy's
schedule and see the same non-compute times (link contention is simulated for copy 0's
traffic, not re-simulated per copy).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from simulator.engine.graph import TaskGraph
from simulator.engine.replicas import Replication
from simulator.engine.tasks import (
    Collective,
    Compute,
    Exchange,
    HostSync,
    MemLoad,
    Sync,
    Task,
    chips_of,
)
from simulator.hardware.system import System

#: Entropy tag separating the variability draws from every other use of the scenario seed.
STREAM = 0x5EED_0019


@dataclass(frozen=True)
class Noise:
    """What varies, in internal terms (the ``variability:`` section without ``samples``)."""

    compute_cv: float = 0.0
    slow_chips: Mapping[int, float] = field(default_factory=dict)
    host_jitter: float = 0.0
    seed: int = 0


def lognormal_params(cv: float) -> tuple[float, float]:
    """(mu, sigma) of the lognormal with mean 1 and coefficient of variation ``cv``."""
    s2 = math.log1p(cv * cv)
    return -s2 / 2.0, math.sqrt(s2)


_REPLICATED, _GATE, _MEET = 0, 1, 2  # task kinds (module docstring)


class Profile:
    """A plan's tasks as the draws need them, computed once and reused by every sample."""

    def __init__(
        self,
        graph: TaskGraph,
        system: System,
        noise: Noise,
        replication: Replication | None = None,
    ) -> None:
        self.graph = graph
        self.noise = noise
        rep = replication or Replication((tuple(range(system.num_chips)),))
        self.replication = rep
        self.copies = rep.size
        where = rep.where
        self.where = where
        slow = noise.slow_chips
        # fac[k, r]: slow factor of the chip at position k of copy r
        self.fac = np.array(
            [[slow.get(row[k], 1.0) for row in rep.copies] for k in range(len(rep.copies[0]))]
        )
        groups = np.array(rep.groups)
        member_of = {r: (m, p) for m, grp in enumerate(rep.groups) for p, r in enumerate(grp)}
        across_cache: dict[int, frozenset[int]] = {}
        n = len(graph)
        self.kind = np.zeros(n, dtype=np.int8)
        self.rows: dict[int, np.ndarray] = {}  # gate -> analogue rows of copy indices
        self.row_of_gate: dict[int, int] = {}  # gate -> the row that the task itself is
        self.held: list[tuple[int, ...]] = []  # copy-0 chips each task holds
        self.compute_row: dict[int, int] = {}
        self.host_row: dict[int, int] = {}
        for node in graph.nodes:
            task = node.task
            named = self._named(task, across_cache)
            if named - {0}:
                self.kind[node.id] = _GATE if 0 in named else _MEET
                gate = sorted(named)
                ms = {member_of[r][0] for r in gate}
                if len(rep.groups) > 1 and len(ms) == 1:
                    pos = [member_of[r][1] for r in gate]
                    self.rows[node.id] = groups[:, pos]
                    self.row_of_gate[node.id] = ms.pop()
                else:
                    self.rows[node.id] = np.array([gate])
                    self.row_of_gate[node.id] = 0
            self.held.append(self._held0(task))
            if isinstance(task, Compute):
                self.compute_row[node.id] = len(self.compute_row)
            elif isinstance(task, HostSync):
                self.host_row[node.id] = len(self.host_row)
        hosts = system.hosts
        self.host_instances = hosts.instances if hosts is not None else 0
        self.host_work_s = hosts.step_overhead_s if hosts is not None else 0.0

    def _named(self, task: Task, cache: dict[int, frozenset[int]]) -> frozenset[int]:
        """Copy indices of the chips ``task`` names (chips outside every copy are left out)."""
        where = self.where
        across: tuple[int, ...] = getattr(task, "across", ())
        out: set[int] = set()
        if across:
            hit = cache.get(id(across))
            if hit is None:
                hit = cache[id(across)] = frozenset(where[c][0] for c in across if c in where)
            out.update(hit)
            chips = task.group  # type: ignore[union-attr]
        else:
            chips = chips_of(task)
        out.update(where[c][0] for c in chips if c in where)
        return frozenset(out)

    def _held0(self, task: Task) -> tuple[int, ...]:
        """The copy-0 chips whose executor slot ``task`` holds."""
        where = self.where
        if isinstance(task, Compute | Exchange) or (isinstance(task, MemLoad) and task.hold):
            chips: tuple[int, ...] = (task.chip,)
        elif isinstance(task, Collective | Sync | HostSync):
            chips = tuple(sorted(set(task.group)))
        else:
            return ()
        return tuple(c for c in chips if c in where and where[c][0] == 0)

    def sample(self, index: int) -> Variability:
        """The draws of sample ``index`` (independent of every other sample and of the plan's
        own use of the seed)."""
        return Variability(self, index)


class Variability:
    """One sample's draws and the copies' offsets, consulted by the executor."""

    def __init__(self, profile: Profile, index: int) -> None:
        self.p = profile
        noise = profile.noise
        rng = np.random.default_rng(np.random.SeedSequence([STREAM, noise.seed, index]))
        n_compute = len(profile.compute_row)
        if noise.compute_cv > 0 and n_compute:
            mu, sigma = lognormal_params(noise.compute_cv)
            self.eps = rng.lognormal(mu, sigma, size=(n_compute, profile.copies))
        else:
            self.eps = np.ones((n_compute, profile.copies))
        n_host, inst = len(profile.host_row), profile.host_instances
        if noise.host_jitter > 0 and n_host and inst and profile.host_work_s > 0:
            mu, sigma = lognormal_params(noise.host_jitter)
            self.host = rng.lognormal(mu, sigma, size=(n_host, inst)).max(axis=1)
        else:
            self.host = np.ones(n_host)
        self.delta: dict[int, np.ndarray] = {}
        self._last: dict[int, int] = {}  # copy-0 chip -> last task that held it
        self._end: Mapping[int, float] = {}

    def bind(self, task_end: Mapping[int, float]) -> None:
        """The executor's record of task ends (read when later tasks start)."""
        self._end = task_end

    # ---- the executor's hooks ---------------------------------------------------------------
    def begin(self, tid: int) -> float:
        """Task ``tid`` has its dependencies and its chips: how long it first waits for late
        copies (0 unless it joins several copies)."""
        p = self.p
        if p.copies == 1:
            return 0.0
        end, delta = self._end, self.delta
        ready: np.ndarray | None = None
        for d in p.graph.nodes[tid].deps:
            t = end[d] + delta[d]
            ready = t if ready is None else np.maximum(ready, t)
        for c in p.held[tid]:
            h = self._last.get(c)
            if h is not None:
                t = end[h] + delta[h]
                ready = t if ready is None else np.maximum(ready, t)
            self._last[c] = tid
        sigma = np.zeros(p.copies) if ready is None else ready - ready[0]
        if p.kind[tid] == _REPLICATED:
            self.delta[tid] = sigma
            return 0.0
        rows = p.rows[tid]
        own = rows[p.row_of_gate[tid]]
        wait = max(0.0, float(sigma[own].max())) if p.kind[tid] == _GATE else 0.0
        out = sigma - wait
        out[rows] = (sigma[rows].max(axis=1) - wait)[:, None]
        self.delta[tid] = out
        return wait

    def compute(self, tid: int, chip: int, seconds: float) -> float:
        """The simulated seconds of Compute task ``tid`` on ``chip`` (``seconds`` on a steady
        machine); the other copies' own draws go into its offsets."""
        p = self.p
        row = self.eps[p.compute_row[tid]]
        r, k = p.where.get(chip, (0, -1))
        if k < 0:  # a chip outside every copy: its own factor, copy 0's draw
            return seconds * p.noise.slow_chips.get(chip, 1.0) * float(row[0])
        durations = seconds * p.fac[k] * row
        if r == 0 and p.copies > 1 and p.kind[tid] == _REPLICATED:
            self.delta[tid] = self.delta[tid] + (durations - durations[0])
        return float(durations[r])

    def host_extra(self, tid: int) -> float:
        """Extra seconds of a HostSync: the slowest host instance's work beyond its mean."""
        p = self.p
        return p.host_work_s * (float(self.host[p.host_row[tid]]) - 1.0)

    # ---- after the run ------------------------------------------------------------------------
    def member_shifts(self) -> list[np.ndarray]:
        """Per member: per task (in id order), the offset of its slowest copy — when the
        member has finished the task, minus when the simulated copy did."""
        p = self.p
        n = len(p.graph)
        if p.copies == 1:
            return [np.zeros(n)]
        matrix = np.zeros((n, p.copies))
        for tid, d in self.delta.items():
            matrix[tid] = d
        return [matrix[:, list(grp)].max(axis=1) for grp in p.replication.groups]


__all__ = ["STREAM", "Noise", "Profile", "Variability", "lognormal_params"]
