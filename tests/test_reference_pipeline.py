"""Pipelined reference runs: micro-batch accumulation is exactly the full-batch gradient."""

from __future__ import annotations

import numpy as np
import pytest

from strategies.reference import ReferenceConfig, build, reference_ledger
from strategies.reference.data import blobs
from strategies.reference.pipeline import (
    balanced_placement,
    run_pipeline,
    stage_order,
    stage_ranges,
)

SIZES = (8, 7, 6, 5, 3)  # four dense layers


def _grads(cfg: ReferenceConfig, replica: int = 0) -> list[np.ndarray]:
    d = blobs(cfg.global_batch, SIZES[0], SIZES[-1], seed=2, test_fraction=0.0)
    model = build(cfg)
    model.gradients(d.x_train, d.y_train, cfg.micro_batch_size)
    return [a.copy() for lay in model.layers(replica) for a in (lay.gw, lay.gb)]


FULL = ReferenceConfig(sizes=SIZES, global_batch=12, dtype="fp64")


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
@pytest.mark.parametrize(
    "stages, placement", [(2, None), (4, None), (3, (0, 1, 1, 2)), (2, (0, 0, 0, 1))]
)
@pytest.mark.parametrize("micro_batch", [1, 3, 4])
def test_accumulated_gradient_equals_full_batch(
    schedule: str, stages: int, placement: tuple[int, ...] | None, micro_batch: int
) -> None:
    cfg = ReferenceConfig(
        sizes=SIZES,
        global_batch=12,
        micro_batch=micro_batch,
        stages=stages,
        placement=placement,
        schedule=schedule,
        dtype="fp64",
    )
    for g_pipe, g_full in zip(_grads(cfg), _grads(FULL), strict=True):
        np.testing.assert_allclose(g_pipe, g_full, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
def test_pipeline_with_replicas(schedule: str) -> None:
    """R = 3 replicas x K = 2 stages on 6 devices, custom grid; all-reduce between stages."""
    grid = ((0, 5), (1, 4), (2, 3))
    cfg = ReferenceConfig(
        sizes=SIZES,
        global_batch=12,
        micro_batch=2,
        replicas=3,
        stages=2,
        grid=grid,
        schedule=schedule,
        dtype="fp64",
    )
    for r in range(3):
        for g, g_full in zip(_grads(cfg, r), _grads(FULL), strict=True):
            np.testing.assert_allclose(g, g_full, rtol=1e-12, atol=1e-15)
    s = reference_ledger(cfg)
    assert [c.group for c in s.collectives] == [(0, 1, 2), (5, 4, 3)]
    assert set(s.transfers) == {
        (a, b, t) for a, b in ((0, 5), (1, 4), (2, 3)) for t in ("activation",)
    } | {(b, a, "gradient") for a, b in ((0, 5), (1, 4), (2, 3))}


def test_schedules_by_hand() -> None:
    # GPipe: all forwards, then all backwards, last micro-batch first.
    assert stage_order("gpipe", 0, 3, 3) == [
        ("F", 0), ("F", 1), ("F", 2), ("B", 2), ("B", 1), ("B", 0)
    ]  # fmt: skip
    # 1F1B, K = 3: stage 0 warms up with 2 forwards, stage 2 alternates from the start.
    assert stage_order("1f1b", 0, 3, 4) == [
        ("F", 0), ("F", 1), ("F", 2), ("B", 0), ("F", 3), ("B", 1), ("B", 2), ("B", 3)
    ]  # fmt: skip
    assert stage_order("1f1b", 2, 3, 4) == [
        ("F", 0), ("B", 0), ("F", 1), ("B", 1), ("F", 2), ("B", 2), ("F", 3), ("B", 3)
    ]  # fmt: skip
    assert balanced_placement(5, 2) == (0, 0, 0, 1, 1)
    assert stage_ranges((0, 0, 1, 2)) == [range(0, 2), range(2, 3), range(3, 4)]
    with pytest.raises(ValueError, match="consecutive"):
        stage_ranges((0, 2, 2))


@pytest.mark.parametrize("schedule, stash", [("gpipe", (8, 8, 8, 8)), ("1f1b", (4, 3, 2, 1))])
def test_order_and_stash_follow_the_schedule(schedule: str, stash: tuple[int, ...]) -> None:
    """GPipe stashes all M micro-batches; 1F1B at most K - s on stage s."""
    cfg = ReferenceConfig(sizes=SIZES, global_batch=8, micro_batch=1, stages=4, schedule=schedule)
    s = reference_ledger(cfg)
    assert tuple(s.peak_stash[d] for d in range(4)) == stash
    for d in range(4):
        assert s.order[d] == tuple(stage_order(schedule, d, 4, 8))


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
@pytest.mark.parametrize("stages, micro_batches", [(2, 1), (3, 4), (4, 6)])
def test_ticks_match_the_bubble_closed_form(schedule: str, stages: int, micro_batches: int) -> None:
    """Unit-time blocks: the step takes 2(M + K - 1) ticks, so bubble = (K-1)/(M+K-1)."""
    d = blobs(micro_batches * 2, SIZES[0], SIZES[-1], test_fraction=0.0)
    model = build(
        ReferenceConfig(
            sizes=SIZES, global_batch=2 * micro_batches, micro_batch=2, stages=stages,
            schedule=schedule,
        )
    )  # fmt: skip
    xs = [d.x_train[i : i + 2].astype(np.float32) for i in range(0, 2 * micro_batches, 2)]
    ys = [d.y_train[i : i + 2] for i in range(0, 2 * micro_batches, 2)]
    run = run_pipeline(model.blocks[0], model.grid[0], xs, ys, model.comm, schedule, 0.5)
    assert run.ticks == 2 * (micro_batches + stages - 1)


def test_boundary_bytes_per_micro_batch() -> None:
    """Each micro-batch of b rows sends b x width x 4 bytes across each boundary, each way."""
    s = reference_ledger(ReferenceConfig(sizes=SIZES, global_batch=12, micro_batch=3, stages=4))
    # boundaries carry widths 7, 6, 5; 4 micro-batches of 3 rows; fp32
    assert s.activation_bytes == tuple(4 * 3 * w * 4 for w in (7, 6, 5))
    assert s.gradient_bytes == s.activation_bytes
    per_mb = {k: v for k, v in s.flops_per_micro_batch.items() if k[1] == "forward"}
    assert len({v for (d, _, _), v in per_mb.items() if d == 0}) == 1  # equal micro-batches
