"""Layers 2 and 3 for collectives: closed forms and the fast path.

Layer 2 (closed forms): ring all-reduce on 4 chips = 2(N−1)(α + M/(Nβ)) within 1%, computed by
the full per-transfer simulation (``fast_collectives=False``), with α (the group's sync, exchange
latency + route latency of a ring step) and β (bottleneck capacity of the ring's links) read
from the System objects, on a hand-built ring (no message costs); on the shipped m2000 each
step also pays its messages (one per tile: a header on the link or the off-chip engine,
whichever is slower, and the slowest of the deliveries), written out from the GC200 YAML values.

Layer 3 (fast path = identical concurrent steps simulated once): for every algorithm × kind on
4- and 8-chip rings and lines and on pod16 the replayed run equals the per-transfer simulation
to 1e-9 relative; in a contended case (a large Transfer released mid-way through an
all-reduce) both give the same time, both depart from the closed form, and the replay was
interrupted.
"""

from __future__ import annotations

import pytest

from simulator.analytic import steps_estimate
from simulator.engine.collectives import minimum_payload, ring_order, schedule
from simulator.engine.executor import execute
from simulator.engine.graph import TaskGraph
from simulator.engine.tasks import ALGORITHMS, COLLECTIVE_KINDS, Collective, Compute, Transfer
from simulator.hardware.build import load_system
from simulator.hardware.system import System
from tests.helpers import line_system, ring_alpha_beta, ring_system, run_collective

FAST_REL = 1e-9


def ring_allreduce(n: int, m: float, alpha: float, beta: float) -> float:
    """Our own closed form, not the code under test's: 2(N−1)(α + M/(Nβ))."""
    return 2 * (n - 1) * (alpha + m / (n * beta))


@pytest.fixture(scope="module")
def m2000() -> System:
    return load_system("m2000")


@pytest.fixture(scope="module")
def pod16() -> System:
    return load_system("pod16")


# ---- layer 2: closed forms from the per-transfer simulation ----------------------------------


@pytest.mark.parametrize("nbytes", [1e4, 1e6, 64 * 2**20])
def test_ring_allreduce_on_a_4_ring_matches_the_closed_form(nbytes: float) -> None:
    s = ring_system(4)
    ring = (0, 1, 2, 3)
    alpha, beta = ring_alpha_beta(s, ring)
    assert (alpha, beta) == (100e-9 + 1e-6 + 200e-9, 10e9)  # the fixture's numbers, by hand
    t = run_collective(s, "all_reduce", ring, nbytes, "ring", fast_collectives=False)
    assert t.cached_steps == 0 and t.simulated_steps == 6
    assert t.makespan == pytest.approx(ring_allreduce(4, nbytes, alpha, beta), rel=0.01)


@pytest.mark.parametrize("nbytes", [1e5, 1e6, 64 * 2**20])
def test_ring_allreduce_on_m2000_matches_the_closed_form(m2000: System, nbytes: float) -> None:
    ring = ring_order(m2000, range(4))
    alpha, beta = ring_alpha_beta(m2000, ring)
    # by hand from the YAML: 377.4 ns external sync (one machine) + 128.62 ns exchange + 231 ns
    # egress + 160 ns hop; a rail (2 links)
    assert alpha == pytest.approx(377.4e-9 + 128.62e-9 + 231e-9 + 160e-9, rel=1e-12)
    assert beta == pytest.approx(2 * 32e9 * 0.86625, rel=1e-12)
    # each fragment (M/4) leaves as 1,472 messages, one per GC200 tile: 24 B of header each on
    # the link, 2.6 cycles each in the off-chip engines; the slowest of 1,472 deliveries waits
    # 45.46 cycles x 1471/1473 (topologies/chips/gc200.yaml messages; clock 1.325 GHz)
    frag, m, clock = nbytes / 4, 1472, 1.325e9
    step = alpha + max((frag + m * 24) / beta, m * 2.6 / clock) + 45.46 / clock * (m - 1) / (m + 1)
    t = run_collective(m2000, "all_reduce", ring, nbytes, "ring", fast_collectives=False)
    assert t.makespan == pytest.approx(6 * step, rel=0.01)


def test_ring_reduce_scatter_and_all_gather_are_half_an_allreduce() -> None:
    s = ring_system(4)
    alpha, beta = ring_alpha_beta(s, (0, 1, 2, 3))
    frag = 1e6 / 4
    # the reduction of each received fp32 fragment on the vector units: frag / 4 elements
    reduce_s = (frag / 4) / s.chips[0].type.peak_vector_flops("fp32")
    gather = 3 * (alpha + frag / beta)
    t = run_collective(s, "all_gather", (0, 1, 2, 3), 1e6, "ring", fast_collectives=False)
    assert t.makespan == pytest.approx(gather, rel=0.01)
    t = run_collective(s, "reduce_scatter", (0, 1, 2, 3), 1e6, "ring", fast_collectives=False)
    assert t.makespan == pytest.approx(gather + 3 * reduce_s, rel=0.01)
    assert t.makespan != pytest.approx(gather, rel=0.01)  # the arithmetic is costed


def test_bidirectional_ring_uses_both_directions() -> None:
    # each direction carries half of every fragment: 2(N-1)(alpha + M/(2N beta))
    s = ring_system(8)
    alpha, beta = ring_alpha_beta(s, tuple(range(8)))
    t = run_collective(
        s, "all_reduce", tuple(range(8)), 8e6, "bidirectional_ring", fast_collectives=False
    )
    assert t.makespan == pytest.approx(14 * (alpha + 8e6 / (16 * beta)), rel=0.01)


def test_simulation_agrees_with_the_analytic_estimate_where_nothing_contends() -> None:
    s = ring_system(4)
    ring = (0, 1, 2, 3)
    ct = s.chips[0].type
    steps = schedule(s, "all_reduce", ring, 1e6, "ring", elem_bytes=4.0)
    est = steps_estimate(s, steps, None, ct.peak_vector_flops("fp32"))
    t = run_collective(s, "all_reduce", ring, 1e6, "ring", fast_collectives=False)
    assert t.makespan == pytest.approx(est.estimate_s, rel=1e-9)
    assert t.makespan >= est.lower_bound_s


# ---- schedules carry the bytes a collective must move ----------------------------------------


@pytest.mark.parametrize("algorithm", ["ring", "bidirectional_ring", "meet_in_middle", "direct"])
@pytest.mark.parametrize("n", [2, 3, 4, 5, 8])
def test_schedules_move_the_minimum_payload(algorithm: str, n: int) -> None:
    s = ring_system(n)
    group = tuple(range(n))
    for kind in COLLECTIVE_KINDS:
        steps = schedule(s, kind, group, 1.2e6, algorithm)
        sent = sum(len(st.pairs) * st.nbytes for st in steps)
        need = minimum_payload(kind, n, 1.2e6)
        if kind == "reduce" and algorithm != "direct":  # reduce-scatter, then gather to the root
            assert sent == pytest.approx(need + (n - 1) * 1.2e6 / n, rel=1e-12), kind
        else:
            assert sent == pytest.approx(need, rel=1e-12), kind
        assert all(a != b for st in steps for a, b in st.pairs)
        assert {c for st in steps for p in st.pairs for c in p} <= set(group)


def test_single_chip_and_empty_collectives_take_no_time() -> None:
    s = ring_system(4)
    assert run_collective(s, "all_reduce", (2,), 1e6).makespan == 0.0
    assert run_collective(s, "all_reduce", (0, 1), 0.0).makespan == 0.0


# ---- layer 3: the fast path equals the per-transfer simulation ------------------------------

SYSTEMS = {
    "ring4": lambda: ring_system(4),
    "ring8": lambda: ring_system(8),
    "line4": lambda: line_system(4),
    "line8": lambda: line_system(8),
    "pod16": lambda: load_system("pod16"),
}
_built: dict[str, System] = {}


def _system(name: str) -> System:
    if name not in _built:
        _built[name] = SYSTEMS[name]()
    return _built[name]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("name", list(SYSTEMS))
def test_fast_path_equals_per_transfer(name: str, algorithm: str) -> None:
    s = _system(name)
    group = ring_order(s, range(s.num_chips))
    for kind in COLLECTIVE_KINDS:
        nbytes = 3.2e6
        fast = run_collective(s, kind, group, nbytes, algorithm)
        slow = run_collective(s, kind, group, nbytes, algorithm, fast_collectives=False)
        assert fast.makespan == pytest.approx(slow.makespan, rel=FAST_REL), kind
        assert fast.channel_bytes == pytest.approx(slow.channel_bytes, rel=FAST_REL), kind
        steps = schedule(s, kind, group, nbytes, algorithm)
        distinct = len({st.key for st in steps})
        assert slow.cached_steps == 0 and slow.simulated_steps == len(steps), kind
        assert fast.simulated_steps == distinct, kind
        assert fast.cached_steps == len(steps) - distinct, kind
        if len(steps) > distinct:
            assert fast.cached_steps > 0, kind


def test_fast_path_replays_on_pod16_quickstart_size(pod16: System) -> None:
    group = ring_order(pod16, range(16))
    fast = run_collective(pod16, "all_reduce", group, 64 * 2**20, "ring")
    slow = run_collective(pod16, "all_reduce", group, 64 * 2**20, "ring", fast_collectives=False)
    assert fast.cached_steps == 28 and fast.simulated_steps == 2
    assert fast.flows_started < slow.flows_started
    assert fast.makespan == pytest.approx(slow.makespan, rel=FAST_REL)


# ---- layer 3: a contended case -------------------------------------------------------------

# ring of 5; the all-reduce runs on chips 0-3 (step 3->0 goes 3->4->0), chip 4 computes and then
# releases a large Transfer 0->1 that shares the collective's 0->1 link. With 1e6 B per chip a
# reduce-scatter step is 0.2 us sync + 25 us sending + 2.1 us latency + 0.3125 us reduction
# = 27.6125 us.
STEP_S = 27.6125e-6


def _contended(compute_s: float, transfer_bytes: float = 5e5) -> TaskGraph:
    g = TaskGraph()
    g.add(Collective("all_reduce", (0, 1, 2, 3), 1e6, "ring"))
    c = g.add(Compute(4, cycles=compute_s * 1e9))  # TEST_CHIP runs at 1 GHz
    g.add(Transfer(0, 1, transfer_bytes), deps=[c])
    return g


def test_uncontended_step_length_is_what_the_contended_cases_assume() -> None:
    s = ring_system(5)
    t = run_collective(s, "all_reduce", (0, 1, 2, 3), 1e6, "ring", fast_collectives=False)
    assert t.task_end[0] == pytest.approx(3 * STEP_S + 3 * (0.2e-6 + 25e-6 + 2.1e-6), rel=1e-12)


@pytest.mark.parametrize(
    ("label", "compute_s"),
    [
        ("during the first (simulated) step", 10e-6),
        ("while a replayed step sends", STEP_S * 2 + 5e-6),
        ("in a replayed step's latency tail", STEP_S * 2 + 26e-6),
        ("in the all-gather phase", STEP_S * 3 + 40e-6),
    ],
)
def test_contention_mid_collective(label: str, compute_s: float) -> None:
    s = ring_system(5)
    group = (0, 1, 2, 3)
    alone = run_collective(s, "all_reduce", group, 1e6, "ring")
    fast = execute(s, _contended(compute_s))
    slow = execute(s, _contended(compute_s), fast_collectives=False)
    assert fast.task_end[0] == pytest.approx(slow.task_end[0], rel=FAST_REL), label
    assert fast.makespan == pytest.approx(slow.makespan, rel=FAST_REL), label
    # both depart from the uncontended time and from the closed forms
    alpha, beta = ring_alpha_beta(s, group)
    steps = schedule(s, "all_reduce", group, 1e6, "ring")
    est = steps_estimate(s, steps, None, s.chips[0].type.peak_vector_flops("fp32"))
    for t in (fast, slow):
        assert t.task_end[0] > alone.makespan * (1 + 1e-3), label
        assert t.task_end[0] > est.estimate_s * (1 + 1e-3), label
        assert t.task_end[0] > ring_allreduce(4, 1e6, alpha, beta), label
    # the replay was interrupted: more steps simulated than the two distinct ones
    assert fast.simulated_steps > alone.simulated_steps == 2, label
    assert fast.cached_steps < alone.cached_steps, label
    # every byte is accounted for on the links, replayed or not
    assert fast.channel_bytes == pytest.approx(slow.channel_bytes, rel=FAST_REL), label


def test_contention_after_the_collective_changes_nothing() -> None:
    s = ring_system(5)
    alone = run_collective(s, "all_reduce", (0, 1, 2, 3), 1e6, "ring")
    fast = execute(s, _contended(1e-3))
    assert fast.task_end[0] == pytest.approx(alone.makespan, rel=1e-12)
    assert fast.cached_steps == alone.cached_steps


def test_collective_starting_on_a_busy_link_runs_per_transfer() -> None:
    s = ring_system(5)
    g = TaskGraph()
    g.add(Transfer(0, 1, 5e6))
    g.add(Collective("all_reduce", (0, 1, 2, 3), 1e6, "ring"))
    fast = execute(s, g)
    slow = execute(s, g, fast_collectives=False)
    assert fast.cached_steps == 0
    assert fast.task_end[1] == pytest.approx(slow.task_end[1], rel=FAST_REL)


def test_two_collectives_sharing_links() -> None:
    s = ring_system(8)

    def graph() -> TaskGraph:
        g = TaskGraph()
        g.add(Collective("all_reduce", (0, 2, 4, 6), 2e6, "ring"))
        g.add(Collective("all_reduce", (1, 3, 5, 7), 1e6, "ring"))
        return g

    fast = execute(s, graph())
    slow = execute(s, graph(), fast_collectives=False)
    for tid in (0, 1):
        assert fast.task_end[tid] == pytest.approx(slow.task_end[tid], rel=FAST_REL)
    assert fast.channel_bytes == pytest.approx(slow.channel_bytes, rel=FAST_REL)


@pytest.mark.parametrize(
    "algorithm", ["ring", "bidirectional_ring", "meet_in_middle", "direct", "hierarchical", "auto"]
)
def test_reduce_ends_on_the_root(algorithm: str) -> None:
    s = ring_system(4)
    steps = schedule(s, "reduce", (0, 1, 2, 3), 1e6, algorithm, root=2)
    assert {b for _, b in steps[-1].pairs} == {2}
    assert {a for a, _ in steps[-1].pairs} == {0, 1, 3}


def test_hierarchical_reduce_across_domains_ends_on_the_root() -> None:
    s = load_system("pod128")  # two IPU-Link domains
    steps = schedule(s, "reduce", tuple(range(128)), 1e6, "hierarchical", root=5)
    assert {b for _, b in steps[-1].pairs} == {5}
