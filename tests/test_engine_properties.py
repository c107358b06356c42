"""Layer 4 (invariants, with hypothesis) for the flow model, the executor and collectives.

* max-min rates on random small resource graphs: no resource carries more than its capacity,
  and the allocation is max-min optimal (every flow meets its cap or has a saturated resource
  on its path where its rate is the largest) — also with per-message weights (a flow uses
  ``w`` units of a resource per byte), where the load is the weighted sum;
* FlowNetwork (with or without per-message costs): bytes are conserved per resource, no flow
  beats its (weighted) bottleneck, and flows alone on one link finish exactly as processor
  sharing says (the last at total bytes ÷ bandwidth);
* executor: link bytes equal the bytes of the transfers and collective steps routed over them,
  with or without the fast path and with contention released at random times;
* collectives never beat the latency and bandwidth lower bound (simulator.analytic), and
  relabelling chips of a ring (rotating or reversing the group) changes nothing.
"""

from __future__ import annotations

import numpy as np
import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.analytic import steps_estimate
from simulator.engine.collectives import schedule
from simulator.engine.executor import execute
from simulator.engine.flows import FlowNetwork, maxmin_rates
from simulator.engine.graph import TaskGraph
from simulator.engine.tasks import ALGORITHMS, COLLECTIVE_KINDS, Collective, Compute, Transfer
from tests.helpers import line_system, ring_system, run_collective

PROP = settings(max_examples=50, deadline=None)
FEW = settings(max_examples=25, deadline=None)
TOL = 1e-9


@st.composite
def flow_sets(draw, with_caps: bool = True):
    """(capacities, paths, caps): 1-5 resources, 1-8 flows over non-empty resource subsets."""
    n_res = draw(st.integers(1, 5))
    capacity = draw(st.lists(st.floats(0.5, 100.0), min_size=n_res, max_size=n_res))
    subsets = st.sets(st.integers(0, n_res - 1), min_size=1).map(lambda s: tuple(sorted(s)))
    paths = draw(st.lists(subsets, min_size=1, max_size=8))
    cap_values = st.one_of(st.just(np.inf), st.floats(0.1, 50.0)) if with_caps else st.just(np.inf)
    caps = draw(st.lists(cap_values, min_size=len(paths), max_size=len(paths)))
    return capacity, paths, caps


def _maxmin(capacity, paths, caps) -> np.ndarray:
    inc_flow = np.array([f for f, p in enumerate(paths) for _ in p], dtype=np.int64)
    inc_res = np.array([r for p in paths for r in p], dtype=np.int64)
    return maxmin_rates(
        inc_flow, inc_res, len(paths), np.asarray(capacity, float), np.asarray(caps, float)
    )


@PROP
@given(flow_sets())
def test_maxmin_is_feasible_and_optimal(fs) -> None:
    capacity, paths, caps = fs
    rate = _maxmin(capacity, paths, caps)
    assert_feasible_and_optimal(capacity, paths, caps, [[1.0] * len(p) for p in paths], rate)


def assert_feasible_and_optimal(capacity, paths, caps, weights, rate) -> None:
    """Every resource carries at most its capacity (flows use ``weights[f][i]`` units of their
    i-th resource per byte); every flow meets its cap or has a saturated resource on its path
    where no other flow gets a higher rate (max-min optimality)."""
    load = np.zeros(len(capacity))
    for f, p in enumerate(paths):
        assert rate[f] > 0
        assert rate[f] <= caps[f] * (1 + TOL)
        for r, w in zip(p, weights[f], strict=True):
            load[r] += rate[f] * w
    assert (load <= np.asarray(capacity) * (1 + TOL)).all()
    for f, p in enumerate(paths):
        if rate[f] >= caps[f] * (1 - TOL):
            continue
        bottleneck = [
            r
            for r in p
            if load[r] >= capacity[r] * (1 - TOL)
            and all(rate[f] >= rate[g] * (1 - TOL) for g, q in enumerate(paths) if r in q)
        ]
        assert bottleneck, f"flow {f} (rate {rate[f]}) has no bottleneck resource"


@PROP
@given(flow_sets(), st.data())
def test_weighted_maxmin_is_feasible_and_optimal(fs, data) -> None:
    capacity, paths, caps = fs
    weights = [
        data.draw(st.lists(st.floats(0.1, 10.0), min_size=len(p), max_size=len(p))) for p in paths
    ]
    inc_flow = np.array([f for f, p in enumerate(paths) for _ in p], dtype=np.int64)
    inc_res = np.array([r for p in paths for r in p], dtype=np.int64)
    inc_w = np.array([w for ws in weights for w in ws])
    rate = maxmin_rates(
        inc_flow, inc_res, len(paths), np.asarray(capacity, float), np.asarray(caps, float), inc_w
    )
    assert_feasible_and_optimal(capacity, paths, caps, weights, rate)


@PROP
@given(flow_sets(), st.lists(st.floats(0.0, 5.0), min_size=8, max_size=8), st.data())
def test_flow_network_conserves_bytes_and_respects_bottlenecks(fs, starts, data) -> None:
    """With or without per-message costs (each resource a cost per message, each flow some
    messages per byte): every byte arrives, each resource carries exactly the bytes routed over
    it, and no flow beats its own weighted bottleneck."""
    capacity, paths, caps = fs
    sizes = data.draw(st.lists(st.floats(1.0, 1e3), min_size=len(paths), max_size=len(paths)))
    n_res = len(capacity)
    per_message = data.draw(st.lists(st.floats(0.0, 50.0), min_size=n_res, max_size=n_res))
    ratios = data.draw(st.lists(st.floats(0.0, 1.0), min_size=len(paths), max_size=len(paths)))
    env = simpy.Environment()
    net = FlowNetwork(env, capacity, per_message)
    done: dict[int, float] = {}

    def launch(f: int):
        yield env.timeout(starts[f])
        ev = net.start(paths[f], sizes[f], caps[f], ratio=ratios[f])
        ev.callbacks.append(lambda _e: done.__setitem__(f, env.now))

    def alone(f: int) -> float:
        """Seconds alone: bytes x (1 + per_message x ratio) / capacity on the slowest resource."""
        weighted = (capacity[r] / (1 + per_message[r] * ratios[f]) for r in paths[f])
        return sizes[f] / min(caps[f], *weighted)

    for f in range(len(paths)):
        env.process(launch(f))
    env.run()
    assert sorted(done) == list(range(len(paths)))
    expected = np.zeros(len(capacity))
    for f, p in enumerate(paths):
        for r in p:
            expected[r] += sizes[f]
        assert done[f] - starts[f] >= alone(f) * (1 - TOL)
    assert net.bytes_carried() == pytest.approx(expected, rel=TOL, abs=1e-6)
    # a busy resource is never idle: it has carried everything by the time it could have
    last = max(done.values())
    assert last <= max(starts) + sum(alone(f) for f in done) * (1 + TOL)


@PROP
@given(st.lists(st.floats(1.0, 1e9), min_size=1, max_size=10), st.floats(1e6, 1e11))
def test_flows_alone_on_one_link_share_it_exactly(sizes, bandwidth) -> None:
    env = simpy.Environment()
    net = FlowNetwork(env, [bandwidth])
    ends: list[float] = [0.0] * len(sizes)
    for i, b in enumerate(sizes):
        net.start((0,), b).callbacks.append(lambda _e, i=i: ends.__setitem__(i, env.now))
    env.run()
    # processor sharing: the k-th smallest (1-based) ends at (b_1 + ... + b_k + (n - k) b_k) / C
    order = sorted(range(len(sizes)), key=lambda i: sizes[i])
    n = len(sizes)
    prefix = 0.0
    for k, i in enumerate(order, start=1):
        prefix += sizes[i]
        assert ends[i] == pytest.approx((prefix + (n - k) * sizes[i]) / bandwidth, rel=TOL)
    assert max(ends) == pytest.approx(sum(sizes) / bandwidth, rel=TOL)


kinds = st.sampled_from(COLLECTIVE_KINDS)
algorithms = st.sampled_from(ALGORITHMS)


@PROP
@given(
    st.integers(2, 6),
    st.booleans(),
    kinds,
    algorithms,
    st.floats(1e3, 1e7),
    st.booleans(),
)
def test_collective_never_beats_its_lower_bound(n, ring, kind, algorithm, nbytes, fast) -> None:
    s = ring_system(n) if ring else line_system(n)
    group = tuple(range(n))
    t = run_collective(s, kind, group, nbytes, algorithm, fast_collectives=fast)
    steps = schedule(s, kind, group, nbytes, algorithm, elem_bytes=4.0)
    est = steps_estimate(s, steps, None, s.chips[0].type.peak_vector_flops("fp32"))
    assert t.makespan >= est.lower_bound_s * (1 - TOL)
    assert t.makespan <= est.estimate_s * (1 + TOL)  # alone, nothing contends beyond the step


@PROP
@given(st.integers(3, 8), st.integers(0, 7), st.booleans(), kinds, algorithms, st.floats(1e3, 1e7))
def test_relabelling_a_ring_changes_nothing(n, shift, reverse, kind, algorithm, nbytes) -> None:
    s = ring_system(n)
    base = tuple(range(n))
    k = shift % n
    relabelled = base[k:] + base[:k]
    if reverse:
        relabelled = relabelled[::-1]
    a = run_collective(s, kind, base, nbytes, algorithm)
    b = run_collective(s, kind, relabelled, nbytes, algorithm)
    assert b.makespan == pytest.approx(a.makespan, rel=TOL)
    # which way a two-way tie on the ring is routed is not relabelling-invariant (ties go by
    # construction order), so only the total is; the time is
    assert b.channel_bytes.sum() == pytest.approx(a.channel_bytes.sum(), rel=TOL)


@FEW
@given(
    st.integers(3, 6),
    kinds,
    st.sampled_from(["ring", "bidirectional_ring", "meet_in_middle"]),
    st.lists(
        st.tuples(
            st.floats(0.0, 300e-6), st.integers(0, 7), st.integers(0, 7), st.floats(1e4, 1e6)
        ),
        max_size=3,
    ),
)
def test_link_bytes_match_routed_bytes_with_contention(n, kind, algorithm, extra) -> None:
    """A collective on chips 0..n-1 of an (n+1)-ring plus Transfers released by the spare
    chip's computations at random times: fast and per-transfer runs agree, and each channel's
    bytes are the bytes routed over it."""
    s = ring_system(n + 1)
    spare = n
    group = tuple(range(n))
    g = TaskGraph()
    g.add(Collective(kind, group, 1e6, algorithm))  # type: ignore[arg-type]
    transfers = []
    for at, a, b, nbytes in extra:
        src, dst = a % (n + 1), b % (n + 1)
        c = g.add(Compute(spare, cycles=max(at * 1e9, 1.0)))
        g.add(Transfer(src, dst, nbytes), deps=[c])
        transfers.append((src, dst, nbytes))
    fast = execute(s, g)
    slow = execute(s, g, fast_collectives=False)
    assert fast.makespan == pytest.approx(slow.makespan, rel=TOL)
    expected = np.zeros(len(s.channels))
    for step in schedule(s, kind, group, 1e6, algorithm):
        if step.multicast:  # one transmission per source: each channel of its routes once
            for a in {a for a, _ in step.pairs}:
                tree = {ch for x, b in step.pairs if x == a for ch in s.chip_route(a, b).channels}
                expected[sorted(tree)] += step.nbytes
            continue
        for a, b in step.pairs:
            for ch in s.chip_route(a, b).channels:
                expected[ch] += step.nbytes
    for src, dst, nbytes in transfers:
        for ch in s.chip_route(src, dst).channels:
            expected[ch] += nbytes
    for t in (fast, slow):
        assert t.channel_bytes == pytest.approx(expected, rel=TOL, abs=1e-3)
