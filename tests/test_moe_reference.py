"""The NumPy MoE reference run (strategies/moe/reference.py) does the real algorithm.

* its backward pass is the gradient of its loss (cross-entropy + Switch balance loss): central
  differences in fp64 on weights of every kind (classifier, router gate and noise, embedding,
  an expert), routing held fixed by the seed;
* data-parallel copies of the shared weights, and expert replicas, stay identical;
* it learns (the loss falls) on its generated data;
* capacity does what Switch says: more capacity, fewer dropped assignments, and with static
  shapes the all-to-all bytes grow with C;
* :func:`router_counts` (what the plan's ``routing: reference`` uses) is exactly what the run
  routed in its first step.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from strategies.moe.reference import (
    MoeConfig,
    MoeModel,
    expert_capacity,
    reference_moe_ledger,
    router_counts,
    train_moe,
)

SMALL = MoeConfig(
    devices=2,
    experts=4,
    top_k=2,
    tokens=12,
    d_model=6,
    hidden=8,
    vocab=16,
    classes=3,
    dtype="fp64",
    learning_rate=0.0,
    balance_alpha=0.5,
)


def _loss(cfg: MoeConfig, poke) -> float:  # type: ignore[no-untyped-def]
    model = MoeModel(cfg)
    poke(model)
    res = model.step(0)
    return res.loss + res.balance_loss


@pytest.mark.parametrize("static", [True, False])
def test_backward_is_the_gradient(static: bool) -> None:
    cfg = replace(SMALL, static_capacity=static, capacity_factor=0.75)  # some drops
    model = MoeModel(cfg)
    model.step(0)  # lr 0: the weights stay, the summed gradients are left in place
    assert sum(reference_moe_ledger(cfg).dropped.values()) > 0
    used_row = int(np.argmax(np.abs(model.shared[0].grads[0]).sum(axis=1)))
    probes = [
        ("classifier", lambda m: m.shared, lambda s: s.wc, (1, 2), lambda m: m.shared[0].grads[3]),
        (
            "gate",
            lambda m: m.shared,
            lambda s: s.router.w_gate,
            (2, 1),
            lambda m: m.shared[0].router.g_gate,
        ),
        (
            "noise",
            lambda m: m.shared,
            lambda s: s.router.w_noise,
            (3, 0),
            lambda m: m.shared[0].router.g_noise,
        ),
        (
            "embedding",
            lambda m: m.shared,
            lambda s: s.emb,
            (used_row, 4),
            lambda m: m.shared[0].grads[0],
        ),
    ]
    h = 1e-6
    for name, holders, param, idx, grad in probes:

        def poke(m, d, holders=holders, param=param, idx=idx):  # type: ignore[no-untyped-def]
            for s in holders(m):
                param(s)[idx] += d

        up = _loss(cfg, lambda m, poke=poke: poke(m, h))
        down = _loss(cfg, lambda m, poke=poke: poke(m, -h))
        numeric = (up - down) / (2 * h)
        assert grad(model)[idx] == pytest.approx(numeric, rel=1e-5, abs=1e-9), name
    # an expert weight (device 0 holds experts 0 and 1)
    key = (0, 1)

    def poke_expert(m, d):  # type: ignore[no-untyped-def]
        m.experts[key].w1[2, 3] += d

    numeric = _loss(cfg, lambda m: poke_expert(m, h)) - _loss(cfg, lambda m: poke_expert(m, -h))
    assert model.experts[key].grads[0][2, 3] == pytest.approx(numeric / (2 * h), rel=1e-5, abs=1e-9)


def test_replicas_stay_identical() -> None:
    """Shared weights on every device and expert replicas (E < D) after two SGD steps."""
    cfg = MoeConfig(devices=4, experts=2, top_k=1, tokens=8, learning_rate=0.3)
    model = MoeModel(cfg)
    model.step(0)
    model.step(1)
    for sh in model.shared[1:]:
        for a, b in zip(sh.params, model.shared[0].params, strict=True):
            np.testing.assert_array_equal(a, b)
    for e in range(2):
        a, b = model.experts[(e, e)], model.experts[(e + 2, e)]
        for x, y in zip(a.params, b.params, strict=True):
            np.testing.assert_array_equal(x, y)


def test_it_learns() -> None:
    runs = train_moe(MoeConfig(), 40)
    first = np.mean([r.loss for r in runs[:3]])
    last = np.mean([r.loss for r in runs[-5:]])
    assert last < 0.5 * first


def test_capacity_trades_drops_for_bytes() -> None:
    drops, volume = [], []
    for cf in (0.5, 1.0, 1.25, 2.0, 4.0):
        s = reference_moe_ledger(replace(MoeConfig(), capacity_factor=cf))
        drops.append(sum(s.dropped.values()))
        volume.append(s.all_to_all_bytes)
        assert s.capacity == expert_capacity(32, 4, 2, cf)
    assert drops == sorted(drops, reverse=True) and drops[0] > drops[-1] == 0
    assert volume == sorted(volume) and volume[0] < volume[-1]


def test_capacity_formula() -> None:
    assert expert_capacity(32, 4, 2, 1.25) == 20  # 2 x 32 x 1.25 / 4, not 21 from float error
    assert expert_capacity(512, 16, 1, 1.0) == 32
    assert expert_capacity(10, 4, 1, 1.0) == 3


@pytest.mark.parametrize(
    "cfg",
    [
        MoeConfig(),
        MoeConfig(devices=4, experts=8, top_k=1, micro_batches=2),
        MoeConfig(devices=4, experts=2, top_k=2, noisy=False, seed=3),
    ],
)
def test_router_counts_are_what_the_run_routed(cfg: MoeConfig) -> None:
    counts = router_counts(
        seed=cfg.seed,
        layers=1,
        devices=cfg.devices,
        tokens=cfg.tokens,
        micro_batches=cfg.micro_batches,
        d_model=cfg.d_model,
        experts=cfg.experts,
        top_k=cfg.top_k,
        vocab=cfg.vocab,
        token_zipf=cfg.token_zipf,
        noisy=cfg.noisy,
    )
    ledger = reference_moe_ledger(cfg)
    for (m, s, e), n in ledger.assigned.items():
        assert counts[0, m, s, e] == n
