"""The fast flow engine computes exactly what the plain one did (issue 16).

The rates come from a prepared solver (private resources folded into caps, rounds over shared
resources only), flows start in batches with one SimPy event each, and tile messages are built
as arrays. None of that may move a simulated figure, not even in the last bit: every check
here compares with ``==`` against the engine as it was (tests/engine_reference.py, a verbatim
copy) on random inputs made to have many ties (equal capacities, sizes and start times).
"""

from __future__ import annotations

import numpy as np
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.engine import maxmin
from simulator.engine.flows import FlowNetwork, FlowSet
from simulator.engine.messages import phase, tile_messages, transfer
from simulator.engine.paths import EGRESS, INGRESS, RELAY, PathModel
from simulator.engine.tasks import TileMessages
from simulator.hardware.build import load_system
from tests import engine_reference as reference

EXACT = settings(max_examples=300, deadline=None)
CAPACITIES = st.sampled_from([1.0, 2.0, 3.0, 7.5, 10.0, 1e9 / 3])


@st.composite
def problems(draw):
    """Flows over 1-8 resources (a resource may be crossed by one flow only, or twice by the
    same flow), with caps, per-message weights and many equal values."""
    n_res = draw(st.integers(1, 8))
    capacity = draw(st.lists(CAPACITIES, min_size=n_res, max_size=n_res))
    n_flows = draw(st.integers(1, 12))
    paths = draw(
        st.lists(
            st.lists(st.integers(0, n_res - 1), min_size=1, max_size=4),
            min_size=n_flows,
            max_size=n_flows,
        )
    )
    caps = draw(
        st.lists(
            st.one_of(st.just(np.inf), st.sampled_from([0.5, 1.0, 2.5, 4.0])),
            min_size=n_flows,
            max_size=n_flows,
        )
    )
    weights = [
        draw(st.lists(st.sampled_from([1.0, 1.25, 0.3, 2.0]), min_size=len(p), max_size=len(p)))
        for p in paths
    ]
    return capacity, paths, caps, weights


@EXACT
@given(problems())
def test_rates_equal_the_plain_algorithm_bit_for_bit(problem) -> None:
    capacity, paths, caps, weights = problem
    inc_flow = np.array([f for f, p in enumerate(paths) for _ in p], dtype=np.int64)
    inc_res = np.array([r for p in paths for r in p], dtype=np.int64)
    inc_w = np.array([w for ws in weights for w in ws])
    args = (inc_flow, inc_res, len(paths), np.asarray(capacity), np.asarray(caps, float), inc_w)
    want = reference.maxmin_rates(*args).tolist()
    assert maxmin.maxmin_rates(*args).tolist() == want
    assert maxmin.small_rates(paths, weights, list(caps), list(capacity)) == want


@EXACT
@given(problems(), st.data())
def test_solves_after_departures_equal_fresh_solves(problem, data) -> None:
    """The prepared structure, with some flows marked gone, solves like a fresh problem
    without them."""
    capacity, paths, caps, weights = problem
    gone = data.draw(st.sets(st.integers(0, len(paths) - 1), max_size=len(paths) - 1))
    inc_flow = np.array([f for f, p in enumerate(paths) for _ in p], dtype=np.int64)
    inc_res = np.array([r for p in paths for r in p], dtype=np.int64)
    inc_w = np.array([w for ws in weights for w in ws])
    cap = np.asarray(capacity)
    structure = maxmin.Structure(inc_flow, inc_res, len(paths), cap, np.asarray(caps, float), inc_w)
    structure.remove(np.array(sorted(gone), dtype=np.int64))
    got = structure.solve(len(paths) - len(gone))
    keep = [f for f in range(len(paths)) if f not in gone]
    sub = [paths[f] for f in keep]
    fresh = reference.maxmin_rates(
        np.array([i for i, p in enumerate(sub) for _ in p], dtype=np.int64),
        np.array([r for p in sub for r in p], dtype=np.int64),
        len(sub),
        cap,
        np.asarray([caps[f] for f in keep], float),
        np.array([w for f in keep for w in weights[f]]),
    )
    assert got[keep].tolist() == fresh.tolist()
    assert not got[sorted(gone)].any()


@st.composite
def timelines(draw):
    """Flows over shared resources started at a few instants, some in batches."""
    n_res = draw(st.integers(1, 6))
    capacity = draw(st.lists(CAPACITIES, min_size=n_res, max_size=n_res))
    per_message = draw(st.lists(st.sampled_from([0.0, 0.5, 4.0]), min_size=n_res, max_size=n_res))
    groups = draw(
        st.lists(
            st.tuples(
                st.sampled_from([0.0, 0.0, 0.5, 1.0, 2.25]),  # start time
                st.lists(
                    st.tuples(
                        st.sets(st.integers(0, n_res - 1), min_size=1).map(sorted),
                        st.sampled_from([0.0, 1.0, 3.0, 10.0, 1e3 / 7]),  # bytes
                        st.one_of(st.just(np.inf), st.sampled_from([0.5, 2.0])),  # cap
                        st.sampled_from([0.0, 0.25, 1.0]),  # messages per byte
                    ),
                    min_size=1,
                    max_size=5,
                ),
            ),
            min_size=1,
            max_size=5,
        )
    )
    return capacity, per_message, groups


@EXACT
@given(timelines())
def test_batched_network_equals_one_flow_at_a_time(timeline) -> None:
    """Same finish time for every flow, same bytes on every resource, same number of rate
    recomputations, whether flows start in batches or one by one."""
    capacity, per_message, groups = timeline
    env_a, env_b = simpy.Environment(), simpy.Environment()
    fast = FlowNetwork(env_a, capacity, per_message)
    plain = reference.FlowNetwork(env_b, capacity, per_message)
    got: dict[tuple[int, int], float] = {}
    want: dict[tuple[int, int], float] = {}

    def run_fast(g: int, at: float, flows: list) -> object:
        yield env_a.timeout(at)
        batch = fast.start_set(
            FlowSet.of([f[0] for f in flows], [f[1] for f in flows], [f[2] for f in flows],
                       [f[3] for f in flows])
        )  # fmt: skip

        def record(_e: simpy.Event) -> None:
            for i, t in enumerate(batch.finish.tolist()):
                got[(g, i)] = t

        batch.event.callbacks.append(record)

    def run_plain(g: int, at: float, flows: list) -> object:
        yield env_b.timeout(at)
        for i, (res, nbytes, cap, ratio) in enumerate(flows):
            ev = plain.start(tuple(res), nbytes, cap, ratio=ratio)
            ev.callbacks.append(lambda _e, key=(g, i): want.__setitem__(key, env_b.now))

    for g, (at, flows) in enumerate(groups):
        env_a.process(run_fast(g, at, flows))
        env_b.process(run_plain(g, at, flows))
    env_a.run()
    env_b.run()
    assert got == want
    assert fast.bytes_carried().tolist() == plain.bytes_carried().tolist()
    assert fast.recomputations == plain.recomputations


def _identity(paths: PathModel, rid: int) -> tuple[object, ...]:
    """What a resource id stands for (ids depend on the order resources were made)."""
    if rid < len(paths.system.channels):
        return ("channel", rid)
    for name, table in (("xout", paths.xout), ("xin", paths.xin)):
        if rid in table:
            return (name, table.index(rid))
    for kind, chips in zip((EGRESS, INGRESS, RELAY), paths._engines, strict=True):
        if rid in chips:
            return ("engine", kind, chips.index(rid))
    for chip, table in paths._tile_ports.items():
        hit = np.argwhere(table == rid)
        if hit.size:
            return ("port", chip, int(hit[0][0]), int(hit[0][1]))
    raise AssertionError(f"unknown resource {rid}")


def test_tile_messages_are_the_phase_of_their_transfers() -> None:
    """The array-built flows of a TileMessages task equal ``phase`` over one ``transfer`` per
    send: same resources (by what they are), bytes, caps, messages per byte and latency."""
    system = load_system("mk1-server16")
    rng = np.random.default_rng(16)
    sends = tuple(
        (int(a), int(s), int(d), int(t))
        for a, s, d, t in zip(
            rng.integers(0, 16, 3000),
            rng.integers(0, 1216, 3000),
            rng.integers(0, 16, 3000),
            rng.integers(0, 1216, 3000),
            strict=True,
        )
    )
    task = TileMessages(sends, 4.0)
    ids = _Ids()
    fast_paths = PathModel(system, ids, ids.many)
    plain_paths = PathModel(system, _Ids())
    fs = tile_messages(fast_paths, task.sends, task.bytes)
    flows = phase(plain_paths, [transfer(plain_paths, a, d, 4.0, s, t) for a, s, d, t in sends])
    assert len(fs) == len(flows)
    for i, f in enumerate(flows):
        mine = fs.resources[fs.offsets[i] : fs.offsets[i + 1]].tolist()
        assert [_identity(fast_paths, r) for r in mine] == [
            _identity(plain_paths, r) for r in f.resources
        ]
        assert (fs.nbytes[i], fs.cap[i], fs.ratio[i], fs.latency[i]) == (
            f.nbytes,
            f.cap,
            f.ratio,
            f.latency,
        )


class _Ids:
    """Resource ids for a PathModel outside a flow network (one at a time, or many)."""

    def __init__(self) -> None:
        self.n = 10**6

    def __call__(self, _capacity: float, _per_message: float = 0.0, _pb: float = 1.0) -> int:
        self.n += 1
        return self.n

    def many(self, _capacity: float, _per_message: float, _pb: float, count: int) -> int:
        first = self.n + 1
        self.n += count
        return first
