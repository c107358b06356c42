"""The reference ledger against hand counts, and its invariants (docs/reference_runs.md)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from strategies.reference import (
    PHASES,
    CollectiveRecord,
    CountingCommunicator,
    Ledger,
    Ops,
    ReferenceConfig,
    build,
    reference_ledger,
)

# The hand-sized network: dense 2->3, relu, dense 3->2, softmax cross-entropy; batch 4.
TINY = (2, 3, 2)


def test_one_device_step_by_hand() -> None:
    s = reference_ledger(ReferenceConfig(sizes=TINY, global_batch=4))
    assert s.flops == {
        0: {
            # dense 2->3: 2·4·2·3 = 48; relu 4·3 = 12; dense 3->2: 2·4·3·2 = 48
            "forward": 48 + 12 + 48,
            # rowmax, shift, exp, rowsum, normalise: 5·(4·2); log 4, pick-subtract 4, total 4;
            # minus one-hot 4·2, scale 4·2: 7·8 + 3·4 = 68
            "loss": 7 * 4 * 2 + 3 * 4,
            # layer 1 input gradient dY Wᵀ: 2·4·2·3 = 48; relu select 12; layer 0 needs none
            "backward_input": 48 + 12,
            # layer 1: Xᵀ dY 2·3·4·2 = 48, bias column sums 4·2 = 8;
            # layer 0: 2·2·4·3 = 48, bias 4·3 = 12
            "backward_weight": 48 + 8 + 48 + 12,
            # SGD: 2 FLOP per parameter, (2·3 + 3) + (3·2 + 2) = 17 parameters
            "optimizer": 2 * 17,
        }
    }
    assert s.dtype == "fp32"
    assert s.transfers == {} and s.collectives == ()
    assert s.activation_bytes == () and s.gradient_bytes == ()
    assert s.all_reduce_bytes == {0: 0} and s.ring_bytes == {0: 0} and s.samples == {0: 0}
    assert s.order == {0: (("F", 0), ("B", 0))}
    assert s.peak_stash == {0: 1}


def test_two_replicas_two_stages_by_hand() -> None:
    """R = 2, K = 2: devices 0, 1 (replica 0) and 2, 3 (replica 1); 2 rows per replica."""
    s = reference_ledger(ReferenceConfig(sizes=TINY, global_batch=4, replicas=2, stages=2))
    stage0 = {
        "forward": 2 * 2 * 2 * 3 + 2 * 3,  # dense 2->3 on 2 rows (24), relu (6)
        "loss": 0,
        "backward_input": 2 * 3,  # relu select only
        "backward_weight": 2 * 2 * 2 * 3 + 2 * 3,  # Xᵀ dY (24), bias (6)
        "optimizer": 2 * 9,  # 9 parameters
    }
    stage1 = {
        "forward": 2 * 2 * 3 * 2,  # dense 3->2 on 2 rows: 24
        "loss": 7 * 2 * 2 + 3 * 2,  # 7BC + 3B, B = 2, C = 2: 34
        "backward_input": 2 * 2 * 2 * 3,  # the gradient sent to stage 0: 24
        "backward_weight": 2 * 3 * 2 * 2 + 2 * 2,  # 24 + bias 4
        "optimizer": 2 * 8,  # 8 parameters
    }
    assert s.flops == {0: stage0, 1: stage1, 2: stage0, 3: stage1}
    # A (2, 3) fp32 activation forward and its gradient back: 6 · 4 = 24 bytes each way.
    assert s.transfers == {
        (0, 1, "activation"): 24,
        (1, 0, "gradient"): 24,
        (2, 3, "activation"): 24,
        (3, 2, "gradient"): 24,
    }
    assert s.activation_bytes == (24,) and s.gradient_bytes == (24,)
    # One fused all-reduce per stage: stage 0 has 9 parameters (36 bytes), stage 1 has 8 (32).
    assert s.collectives == (
        CollectiveRecord("all_reduce", (0, 2), "gradients", 36),
        CollectiveRecord("all_reduce", (1, 3), "gradients", 32),
    )
    assert s.all_reduce_bytes == {0: 36, 1: 32, 2: 36, 3: 32}
    # Ring of 2: 2(N-1)/N = 1 x the buffer (chunks 5 + 4 and 4 + 4 elements).
    assert s.ring_bytes == {0: 36, 1: 32, 2: 36, 3: 32}


def test_fp16_halves_the_bytes_and_keeps_the_flops() -> None:
    cfg = ReferenceConfig(sizes=(6, 5, 4, 3), global_batch=8, replicas=2, stages=3, micro_batch=2)
    s32 = reference_ledger(cfg)
    s16 = reference_ledger(replace(cfg, dtype="fp16"))
    assert s16.dtype == "fp16"
    assert s16.flops == s32.flops
    assert {k: 2 * v for k, v in s16.transfers.items()} == s32.transfers
    assert {k: 2 * v for k, v in s16.all_reduce_bytes.items()} == s32.all_reduce_bytes
    assert {k: 2 * v for k, v in s16.ring_bytes.items()} == s32.ring_bytes
    # fp32 boundaries: 2 micro-batches x 2 rows x width (5, then 4) x 4 bytes
    assert s32.activation_bytes == (2 * 2 * 5 * 4, 2 * 2 * 4 * 4)


def test_tanh_counts_by_hand() -> None:
    s = reference_ledger(ReferenceConfig(sizes=TINY, global_batch=4, activation="tanh"))
    assert s.flops[0]["forward"] == 48 + 12 + 48  # tanh: one evaluation per element
    assert s.flops[0]["backward_input"] == 48 + 3 * 12  # dy (1 - y²): 3 per element


def _invariant_ledger(schedule: str = "gpipe") -> Ledger:
    cfg = ReferenceConfig(
        sizes=(5, 4, 4, 3), global_batch=12, replicas=3, stages=3, micro_batch=2, schedule=schedule
    )
    model = build(cfg)
    rng = np.random.default_rng(0)
    model.step(rng.standard_normal((12, 5)).astype(np.float32), rng.integers(0, 3, 12), 2, 0.1)
    return model.ledger


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
def test_bytes_sent_equal_bytes_received(schedule: str) -> None:
    ledger = _invariant_ledger(schedule)
    assert ledger.sent and dict(ledger.sent) == dict(ledger.received)


@pytest.mark.parametrize("stages", [2, 3])
@pytest.mark.parametrize("micro_batch", [1, 3, 6])
def test_stage_flops_sum_to_one_stage_flops(stages: int, micro_batch: int) -> None:
    """Splitting into stages or micro-batches moves work, it never adds or drops any."""
    base = ReferenceConfig(sizes=(7, 6, 5, 4), global_batch=6)
    one = reference_ledger(base)
    split = reference_ledger(
        ReferenceConfig(sizes=base.sizes, global_batch=6, stages=stages, micro_batch=micro_batch)
    )
    for phase in PHASES:
        assert split.total_flops(phase) == one.total_flops(phase), phase


def test_replicas_repeat_the_update_only() -> None:
    one = reference_ledger(ReferenceConfig(sizes=(7, 6, 4), global_batch=8))
    four = reference_ledger(ReferenceConfig(sizes=(7, 6, 4), global_batch=8, replicas=4))
    for phase in PHASES:
        factor = 4 if phase == "optimizer" else 1
        assert four.total_flops(phase) == factor * one.total_flops(phase), phase


@pytest.mark.parametrize("n, elems", [(2, 17), (3, 10), (4, 8), (5, 3)])
def test_ring_all_reduce_sums_and_counts_the_wire(n: int, elems: int) -> None:
    ledger = Ledger()
    comm = CountingCommunicator(ledger)
    rng = np.random.default_rng(n)
    buffers = {10 + d: rng.standard_normal(elems) for d in range(n)}
    out = comm.all_reduce(buffers, tag="g")
    total = sum(buffers.values())
    for d in buffers:
        np.testing.assert_allclose(out[d], total, rtol=1e-12)
    chunks = [len(c) for c in np.array_split(np.zeros(elems), n)]
    for i, d in enumerate(buffers):
        # every chunk but i+1 in the reduce-scatter, every chunk but i+2 in the all-gather
        wire = 2 * elems - chunks[(i + 1) % n] - chunks[(i + 2) % n]
        assert ledger.ring_sent[d] == 8 * wire
        assert ledger.all_reduced[d] == 8 * elems
    assert sum(ledger.ring_sent.values()) == 8 * 2 * (n - 1) * elems


def test_ring_wire_bytes_closed_form_when_chunks_are_equal() -> None:
    ledger = Ledger()
    out = CountingCommunicator(ledger).all_reduce(
        {d: np.ones(12, dtype=np.float32) for d in range(4)}, tag="g"
    )
    assert all((v == 4).all() for v in out.values())
    assert dict(ledger.ring_sent) == dict.fromkeys(range(4), 2 * 3 * 48 // 4)  # 2(N-1)/N · 48


def test_point_to_point_counts_and_checks() -> None:
    ledger = Ledger()
    comm = CountingCommunicator(ledger)
    comm.send(np.zeros((3, 5), dtype=np.float16), 0, 1, "activation", key=7)
    assert comm.ready(0, 1, "activation", 7) and not comm.ready(0, 1, "activation", 8)
    with pytest.raises(RuntimeError, match="sent twice"):
        comm.send(np.zeros(1), 0, 1, "activation", key=7)
    assert comm.recv(0, 1, "activation", 7).shape == (3, 5)
    assert ledger.sent == ledger.received == {(0, 1, "activation"): 30}
    assert comm.pending() == 0


def test_unattributed_work_is_an_error() -> None:
    ops = Ops(Ledger())
    with pytest.raises(RuntimeError, match="outside any device"):
        ops.relu(np.ones(3))
    with ops.ledger.at(device=0), pytest.raises(RuntimeError, match="outside any phase"):
        ops.relu(np.ones(3))


def test_random_samples_are_counted_per_device() -> None:
    ops = Ops(Ledger())
    rng = np.random.default_rng(0)
    with ops.ledger.at(device=3, phase="forward"):
        x = ops.rng_normal(rng, (4, 5), np.float32)
        with ops.ledger.at(device=4):
            ops.rng_normal(rng, (2,), np.float32)
    assert x.dtype == np.float32
    assert dict(ops.ledger.samples) == {3: 20, 4: 2}
    assert not ops.ledger.flops  # drawing is not arithmetic
