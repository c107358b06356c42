"""Data-parallel reference runs: the all-reduced gradient is the big-batch gradient (fp64)."""

from __future__ import annotations

import numpy as np
import pytest

from strategies.reference import ReferenceConfig, build
from strategies.reference.data import blobs

SIZES = (8, 6, 5, 3)


def _data(n: int = 48) -> tuple[np.ndarray, np.ndarray]:
    d = blobs(n, SIZES[0], SIZES[-1], seed=1, test_fraction=0.0)
    return d.x_train, d.y_train


def _grads(cfg: ReferenceConfig, x: np.ndarray, y: np.ndarray, replica: int = 0) -> list:
    model = build(cfg)
    model.gradients(x, y, cfg.micro_batch_size)
    return [a.copy() for lay in model.layers(replica) for a in (lay.gw, lay.gb)]


@pytest.mark.parametrize("replicas", [2, 3, 4])
@pytest.mark.parametrize("micro_batch", [None, 2])
def test_averaged_gradient_equals_big_batch_gradient(
    replicas: int, micro_batch: int | None
) -> None:
    x, y = _data(24)
    big = _grads(ReferenceConfig(sizes=SIZES, global_batch=24, dtype="fp64"), x, y)
    cfg = ReferenceConfig(
        sizes=SIZES, global_batch=24, replicas=replicas, micro_batch=micro_batch, dtype="fp64"
    )
    for r in range(replicas):  # every replica ends the all-reduce with the same gradient
        for g_dp, g_big in zip(_grads(cfg, x, y, r), big, strict=True):
            np.testing.assert_allclose(g_dp, g_big, rtol=1e-6, atol=1e-15)


def test_replica_gradients_differ_before_the_all_reduce() -> None:
    """The test above is not vacuous: each shard alone gives a different gradient."""
    x, y = _data(24)
    full = _grads(ReferenceConfig(sizes=SIZES, global_batch=24, dtype="fp64"), x, y)
    half = _grads(ReferenceConfig(sizes=SIZES, global_batch=12, dtype="fp64"), x[:12], y[:12])
    assert not np.allclose(half[0] / 2, full[0], rtol=1e-3)


@pytest.mark.parametrize("replicas, micro_batch", [(4, None), (2, 3), (3, 1)])
def test_data_parallel_training_matches_single_replica(
    replicas: int, micro_batch: int | None
) -> None:
    x, y = _data(48)
    single = build(ReferenceConfig(sizes=SIZES, global_batch=12, dtype="fp64"))
    cfg = ReferenceConfig(
        sizes=SIZES, global_batch=12, replicas=replicas, micro_batch=micro_batch, dtype="fp64"
    )
    parallel = build(cfg)
    for step in range(4):
        rows = slice(12 * step, 12 * (step + 1))
        loss_1 = single.step(x[rows], y[rows], 12, 0.3)
        loss_r = parallel.step(x[rows], y[rows], cfg.micro_batch_size, 0.3)
        assert loss_r == pytest.approx(loss_1, rel=1e-12)
    ref = single.layers(0)
    assert not np.allclose(ref[0].w, build(cfg).layers(0)[0].w)  # training moved the weights
    for r in range(replicas):
        for a, b in zip(parallel.layers(r), ref, strict=True):
            np.testing.assert_allclose(a.w, b.w, rtol=1e-10, atol=1e-14)
            np.testing.assert_allclose(a.b, b.b, rtol=1e-10, atol=1e-14)


def test_uneven_shards_are_rejected() -> None:
    with pytest.raises(ValueError, match="not a multiple"):
        build(ReferenceConfig(sizes=SIZES, global_batch=10, replicas=3))
    model = build(ReferenceConfig(sizes=SIZES, global_batch=12, replicas=2))
    x, y = _data(12)
    with pytest.raises(ValueError, match="whole micro-batches"):
        model.gradients(x[:10].astype(np.float32), y[:10], 3)  # shards of 5
