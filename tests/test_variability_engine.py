"""Variability in the engine (docs/variability.md): order statistics, the copies that are not
simulated against simulating them, slow chips, host jitter, seeds.

The order-statistics expectation is computed here, independently of the code under test: the
lognormal's parameters from its definition (mean 1, coefficient of variation c:
sigma^2 = ln(1 + c^2), mu = -sigma^2 / 2), E[max of N] by numerical integration of
1 - F(x)^N with F from math.erf, and sums of draws by a high-sample NumPy Monte Carlo.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulator.engine.executor import execute
from simulator.engine.graph import TaskGraph
from simulator.engine.replicas import Replication
from simulator.engine.tasks import Compute, HostSync, Sync
from simulator.engine.variability import Noise, Profile
from simulator.hardware.build import load_system
from simulator.hardware.system import System

TASK_S = 1e-3  # seconds of one compute task on a steady machine


@pytest.fixture(scope="module")
def pod16() -> System:
    return load_system("pod16")


def _compute(system: System, chip: int, seconds: float = TASK_S) -> Compute:
    return Compute(chip, cycles=seconds * system.chips[chip].type.clock_hz)


def one_copy_then_sync(system: System, n: int, tasks: int) -> tuple[TaskGraph, Replication]:
    """Copy 0's chain of compute tasks and a final sync that the other n-1 copies join."""
    g = TaskGraph()
    last: list[int] = []
    for _ in range(tasks):
        last = [g.add(_compute(system, 0), last)]
    g.add(Sync((0,), across=tuple(range(1, n)), label="final"), last)
    return g, Replication.of_rows([[c] for c in range(n)])


def every_chip_then_sync(system: System, n: int, tasks: int) -> TaskGraph:
    """The same work with every chip simulated and one sync over all of them."""
    g = TaskGraph()
    ends = []
    for chip in range(n):
        last: list[int] = []
        for _ in range(tasks):
            last = [g.add(_compute(system, chip), last)]
        ends.extend(last)
    g.add(Sync(tuple(range(n)), label="final"), ends)
    return g


def steps(
    system: System,
    graph: TaskGraph,
    noise: Noise,
    replication: Replication | None,
    samples: int,
) -> np.ndarray:
    profile = Profile(graph, system, noise, replication)
    return np.array(
        [execute(system, graph, variability=profile.sample(s)).makespan for s in range(samples)]
    )


def lognormal(cv: float) -> tuple[float, float]:
    s2 = math.log(1 + cv * cv)
    return -s2 / 2, math.sqrt(s2)


def expected_max(n: int, cv: float) -> float:
    """E[max of n lognormals of mean 1 and CV cv] = integral of 1 - F(x)^n over x > 0."""
    mu, sigma = lognormal(cv)
    x = np.linspace(1e-6, 1 + 30 * cv, 200_001)
    cdf = 0.5 * (1 + np.vectorize(math.erf)((np.log(x) - mu) / (sigma * math.sqrt(2))))
    dx = x[1] - x[0]
    return float(np.sum(1 - cdf**n) * dx)


def test_expected_max_by_integration_matches_monte_carlo() -> None:
    """The reference itself: the integral against a brute-force Monte Carlo."""
    mu, sigma = lognormal(0.1)
    draws = np.random.default_rng(7).lognormal(mu, sigma, size=(200_000, 16)).max(axis=1)
    assert expected_max(16, 0.1) == pytest.approx(draws.mean(), rel=1e-3)


@pytest.mark.parametrize("n,cv", [(16, 0.1), (16, 0.2), (8, 0.05)])
def test_order_statistics_final_sync(pod16: System, n: int, cv: float) -> None:
    """N replicas with lognormal jitter and only a final sync: the mean step is E[max of N]
    (within 2 %), when only copy 0 is simulated and the others are its copies."""
    graph, rep = one_copy_then_sync(pod16, n, tasks=1)
    sync_s = pod16.sync_latency_s(tuple(range(n)))
    got = steps(pod16, graph, Noise(compute_cv=cv, seed=3), rep, samples=300) - sync_s
    assert got.mean() / TASK_S == pytest.approx(expected_max(n, cv), rel=0.02)
    # a steady machine pays the plain step
    steady = execute(pod16, graph).makespan
    assert steady == pytest.approx(TASK_S + sync_s, rel=1e-12)


def test_copies_match_simulating_every_chip(pod16: System) -> None:
    """Chains of 4 jittered tasks then a sync: the copies' offsets give the same distribution
    as simulating all 16 chains (both against E[max of sums] by Monte Carlo, 1 %)."""
    n, tasks, cv = 16, 4, 0.2
    graph, rep = one_copy_then_sync(pod16, n, tasks)
    sync_s = pod16.sync_latency_s(tuple(range(n)))
    copies = steps(pod16, graph, Noise(compute_cv=cv, seed=1), rep, 300) - sync_s
    full = every_chip_then_sync(pod16, n, tasks)
    simulated = steps(pod16, full, Noise(compute_cv=cv, seed=2), None, 300) - sync_s
    mu, sigma = lognormal(cv)
    sums = np.random.default_rng(11).lognormal(mu, sigma, size=(100_000, n, tasks)).sum(axis=2)
    expected = sums.max(axis=1).mean() * TASK_S
    assert copies.mean() == pytest.approx(expected, rel=0.01)
    assert simulated.mean() == pytest.approx(expected, rel=0.01)


def test_slow_copy_gates_the_sync_by_its_factor(pod16: System) -> None:
    """No noise, chip 5 (a copy, not simulated) 1.5x slower: the sync waits 0.5 x its compute;
    the same slow chip simulated (chip 0) gives the same step."""
    graph, rep = one_copy_then_sync(pod16, 16, tasks=3)
    steady = execute(pod16, graph).makespan
    for chip in (5, 0):
        noise = Noise(slow_chips={chip: 1.5})
        got = steps(pod16, graph, noise, rep, 1)[0]
        assert got - steady == pytest.approx(0.5 * 3 * TASK_S, rel=1e-9)


def test_a_copy_outside_the_sync_does_not_wait(pod16: System) -> None:
    """A slow chip whose copy takes part in no sync of copy 0 changes nothing."""
    graph, _ = one_copy_then_sync(pod16, 8, tasks=2)
    rep = Replication.of_rows([[c] for c in range(16)])  # copies 8..15 never meet copy 0
    steady = execute(pod16, graph).makespan
    assert steps(pod16, graph, Noise(slow_chips={12: 3.0}), rep, 1)[0] == steady
    assert steps(pod16, graph, Noise(slow_chips={3: 3.0}), rep, 1)[0] > steady


def test_members_meet_only_inside_themselves(pod16: System) -> None:
    """Two members of 4 copies: member 0's sync has an analogue in member 1; a slow chip in
    member 1 delays member 1's end (its member shift), not the simulated member."""
    graph, _ = one_copy_then_sync(pod16, 4, tasks=2)
    rep = Replication.of_rows([[c] for c in range(8)], members=2)
    profile = Profile(graph, pod16, Noise(slow_chips={6: 2.0}), rep)
    var = profile.sample(0)
    trace = execute(pod16, graph, variability=var)
    assert trace.makespan == pytest.approx(execute(pod16, graph).makespan, rel=1e-12)
    own, other = var.member_shifts()
    assert own.max() == pytest.approx(0.0, abs=1e-15)
    assert other[-1] == pytest.approx(2 * TASK_S, rel=1e-9)  # the sync: 2 tasks x (2 - 1)


def test_host_jitter_waits_for_the_slowest_instance() -> None:
    """The step end pays the slowest of the host instances' jittered work: its mean extra is
    step_overhead x (E[max of I lognormals] - 1), here with 8 instances on 4 hosts."""
    system = load_system("pod64", host={"hosts": 4, "instances": 8})
    hosts = system.hosts
    assert hosts is not None and hosts.step_overhead_s > 0 and hosts.instances == 8
    g = TaskGraph()
    g.add(HostSync((0,), label="step end"))
    steady = execute(system, g).makespan
    got = steps(system, g, Noise(host_jitter=0.3, seed=4), None, 400)
    extra = (got - steady).mean() / hosts.step_overhead_s
    assert extra == pytest.approx(expected_max(hosts.instances, 0.3) - 1, abs=0.02)


def test_seeds_reproduce_exactly(pod16: System) -> None:
    graph, rep = one_copy_then_sync(pod16, 16, tasks=3)
    a = steps(pod16, graph, Noise(compute_cv=0.1, seed=9), rep, 5)
    b = steps(pod16, graph, Noise(compute_cv=0.1, seed=9), rep, 5)
    c = steps(pod16, graph, Noise(compute_cv=0.1, seed=10), rep, 5)
    assert a.tolist() == b.tolist()
    assert a.tolist() != c.tolist()
    assert len(set(a.tolist())) == 5  # the samples are independent draws


def test_zero_noise_is_the_steady_machine(pod16: System) -> None:
    """Draws of a zero CV and factors of 1 change no time at all."""
    graph, rep = one_copy_then_sync(pod16, 16, tasks=3)
    steady = execute(pod16, graph)
    got = execute(pod16, graph, variability=Profile(graph, pod16, Noise(), rep).sample(0))
    assert got.task_end == steady.task_end and not got.waits
