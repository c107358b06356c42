"""Layer 1 (hand-computed values) for the flow model: ``maxmin_rates`` on classic max-min
examples and ``FlowNetwork`` timing in SimPy — a flow alone finishes at bytes ÷ bandwidth, two
flows on one link each get half, departures hand capacity back, claims call their owner.

Every expected number below is worked out by hand in the comment beside it.
"""

from __future__ import annotations

import numpy as np
import pytest
import simpy

from simulator.engine.flows import FlowNetwork, maxmin_rates, on_all

INF = np.inf


def rates(paths: list[tuple[int, ...]], capacity: list[float], caps=None) -> np.ndarray:
    """maxmin_rates for flows given as tuples of resource indices."""
    inc_flow = np.array([f for f, p in enumerate(paths) for _ in p], dtype=np.int64)
    inc_res = np.array([r for p in paths for r in p], dtype=np.int64)
    flow_cap = np.full(len(paths), INF) if caps is None else np.asarray(caps, dtype=float)
    return maxmin_rates(inc_flow, inc_res, len(paths), np.asarray(capacity, float), flow_cap)


# ---- maxmin_rates: classic examples ----------------------------------------------------------


def test_single_flow_gets_the_whole_resource() -> None:
    assert rates([(0,)], [7.0]).tolist() == [7.0]


def test_equal_share_on_one_resource() -> None:
    assert rates([(0,), (0,), (0,), (0,)], [10.0]).tolist() == [2.5] * 4


def test_two_resources_bottleneck_then_leftover() -> None:
    # A on r0; B on r0 and r1; C on r1. r0 = 1, r1 = 2.
    # r0 saturates first at level 1/2 (A, B frozen at 0.5); C takes r1's remaining 2 - 0.5 = 1.5.
    assert rates([(0,), (0, 1), (1,)], [1.0, 2.0]).tolist() == pytest.approx([0.5, 0.5, 1.5])


def test_parking_lot() -> None:
    # Long flow over r0, r1, r2 (each capacity 1); one short flow on each link.
    # Every link has two flows: all get 1/2.
    got = rates([(0, 1, 2), (0,), (1,), (2,)], [1.0, 1.0, 1.0])
    assert got.tolist() == pytest.approx([0.5, 0.5, 0.5, 0.5])


def test_parking_lot_with_a_narrow_link() -> None:
    # As above but r1 has capacity 0.3: long and short-on-r1 get 0.15; the shorts on r0, r2
    # take 1 - 0.15 = 0.85.
    got = rates([(0, 1, 2), (0,), (1,), (2,)], [1.0, 0.3, 1.0])
    assert got.tolist() == pytest.approx([0.15, 0.85, 0.15, 0.85])


def test_rate_cap_frees_capacity_for_the_others() -> None:
    # Three flows on r0 = 9 with caps (1, inf, inf): the capped one stops at 1, the others split 8.
    got = rates([(0,), (0,), (0,)], [9.0], caps=[1.0, INF, INF])
    assert got.tolist() == pytest.approx([1.0, 4.0, 4.0])


def test_cap_above_fair_share_is_not_binding() -> None:
    got = rates([(0,), (0,)], [10.0], caps=[6.0, INF])
    assert got.tolist() == pytest.approx([5.0, 5.0])


def test_classic_textbook_example() -> None:
    # Bertsekas & Gallager style: links a (cap 1), b (cap 1), c (cap 1).
    # f0 over a, b; f1 over a; f2 over b, c; f3 over c.
    # a: f0, f1 -> level 0.5; b: f0, f2 -> 0.5; c: f2, f3 -> 0.5. All saturate at 0.5.
    got = rates([(0, 1), (0,), (1, 2), (2,)], [1.0, 1.0, 1.0])
    assert got.tolist() == pytest.approx([0.5] * 4)
    # widen c to 3: a and b saturate at 0.5 first; f3 then takes 3 - 0.5 = 2.5.
    got = rates([(0, 1), (0,), (1, 2), (2,)], [1.0, 1.0, 3.0])
    assert got.tolist() == pytest.approx([0.5, 0.5, 0.5, 2.5])


def test_capped_flow_without_resources() -> None:
    assert rates([()], [], caps=[3.0]).tolist() == [3.0]


def test_flow_with_neither_resource_nor_cap_is_an_error() -> None:
    with pytest.raises(ValueError, match="neither a resource nor a rate cap"):
        rates([()], [])


def test_no_flows() -> None:
    assert rates([], [1.0]).size == 0


# ---- FlowNetwork in SimPy ------------------------------------------------------------------


def _net(*capacities: float) -> tuple[simpy.Environment, FlowNetwork]:
    env = simpy.Environment()
    return env, FlowNetwork(env, list(capacities))


def _record(env: simpy.Environment, ev: simpy.Event, out: dict, key: object) -> None:
    ev.callbacks.append(lambda _e: out.__setitem__(key, env.now))


def test_flow_alone_finishes_at_bytes_over_bandwidth() -> None:
    env, net = _net(10e9)
    done: dict = {}
    _record(env, net.start((0,), 3e6), done, "a")
    env.run()
    assert done["a"] == pytest.approx(3e6 / 10e9, rel=1e-12)
    assert net.bytes_carried()[0] == pytest.approx(3e6, rel=1e-12)


def test_two_flows_on_one_link_each_get_half() -> None:
    env, net = _net(10e9)
    done: dict = {}
    for k in range(2):
        _record(env, net.start((0,), 1e6), done, k)
    env.run()
    # each runs at 5 GB/s: both finish at 2 x 1e6 / 10e9
    assert done[0] == pytest.approx(2e-4, rel=1e-12)
    assert done[1] == pytest.approx(2e-4, rel=1e-12)
    assert net.bytes_carried()[0] == pytest.approx(2e6, rel=1e-12)


def test_departure_hands_capacity_back() -> None:
    env, net = _net(10.0)
    done: dict = {}
    _record(env, net.start((0,), 10.0), done, "small")
    _record(env, net.start((0,), 30.0), done, "big")
    env.run()
    # both at 5 B/s until small is done at t=2 (big has 20 left), then big at 10 B/s: t=4
    assert done == pytest.approx({"small": 2.0, "big": 4.0}, rel=1e-12)


def test_late_arrival_slows_the_first_flow() -> None:
    env, net = _net(10.0)
    done: dict = {}

    def late() -> object:
        yield env.timeout(5.0)
        _record(env, net.start((0,), 100.0), done, "b")

    _record(env, net.start((0,), 100.0), done, "a")
    env.process(late())
    env.run()
    # a alone for 5 s (50 B), then 5 B/s each: a's last 50 B by t=15; b has 50 left at 10 B/s
    assert done == pytest.approx({"a": 15.0, "b": 20.0}, rel=1e-12)


def test_flow_limited_by_the_narrowest_resource_and_its_cap() -> None:
    env, net = _net(10.0, 4.0)
    done: dict = {}
    _record(env, net.start((0, 1), 8.0), done, "two hops")
    _record(env, net.start((0,), 9.0, rate_cap=3.0), done, "capped")
    env.run()
    # two hops: 4 B/s on r1 -> 2 s; capped: 3 B/s -> 3 s (r0 carries 7 of its 10)
    assert done == pytest.approx({"two hops": 2.0, "capped": 3.0}, rel=1e-12)
    assert net.bytes_carried().tolist() == pytest.approx([17.0, 8.0])


def test_zero_byte_flow_is_done_at_once() -> None:
    env, net = _net(1.0)
    ev = net.start((0,), 0.0)
    assert ev.triggered
    env.run()
    assert env.now == 0.0


def test_add_resource_rejects_non_positive_capacity() -> None:
    _, net = _net()
    with pytest.raises(ValueError, match="> 0"):
        net.add_resource(0.0)
    assert net.add_resource(5.0) == 0
    assert net.capacity(0) == 5.0 and net.num_resources == 1


def test_late_flows_terminate() -> None:
    """Flows that start late in simulated time still end (no endless zero-length wake-ups).

    Near t = 1e5 s one float step of the clock is ~1.5e-11 s; a remainder that would take
    less than that to send must count as sent, or the network re-arms a wake-up at the same
    instant forever.
    """
    env, net = _net(1.3e9)
    done: dict = {}

    def late() -> object:
        yield env.timeout(1e5)
        for k in range(3):
            _record(env, net.start((0,), 7e8 * (k + 1) / 7), done, k)

    env.process(late())
    for _ in range(10_000):
        if env.peek() == simpy.core.Infinity:
            break
        env.step()
    assert len(done) == 3, f"flows still running after 10,000 events: {net.active_flows}"
    # all three share 1.3e9 B/s: total 6e8 B in 0.4615 s of sending
    assert max(done.values()) == pytest.approx(1e5 + 6e8 / 1.3e9, rel=1e-12)


class _Owner:
    def __init__(self) -> None:
        self.calls = 0

    def on_contention(self) -> None:
        self.calls += 1


def test_claim_is_refused_on_busy_resources_and_foreign_flows_break_it() -> None:
    env, net = _net(1.0, 1.0, 1.0)
    owner, other = _Owner(), _Owner()
    net.start((0,), 1.0)
    assert net.busy([0]) and not net.busy([1, 2])
    assert not net.claim(owner, [0, 1])  # r0 has a pending flow
    assert net.claim(owner, [1, 2])
    assert net.busy([2]) and not net.claim(other, [2])
    net.start((1,), 1.0, owner=owner)  # the owner's own flow: no contention
    assert owner.calls == 0
    net.start((2,), 1.0)  # a foreign flow on a claimed resource
    assert owner.calls == 1
    env.run()
    assert net.claim(other, [1, 2])  # every claim of the owner was dropped


def test_on_all_waits_for_every_event() -> None:
    env = simpy.Environment()
    fired: list[float] = []
    evs = [env.timeout(t) for t in (1.0, 3.0, 2.0)]
    on_all(evs, lambda: fired.append(env.now))
    env.run()
    assert fired == [3.0]
    on_all([], lambda: fired.append(-1.0))
    assert fired == [3.0, -1.0]


@pytest.mark.parametrize("nbytes", [np.inf, np.nan])
def test_non_finite_flow_is_refused(nbytes: float) -> None:
    """An infinite or NaN flow never drains; the network refuses it instead of spinning."""
    _, net = _net(1.0)
    with pytest.raises(ValueError, match="finite number of bytes"):
        net.start((0,), nbytes)
