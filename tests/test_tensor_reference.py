"""The NumPy reference of tensor parallelism (strategies/tensor/reference*.py) proves the split:
a GPT-style transformer (and its MLP block alone) split over T workers gives the unsplit
model's losses and gradients to fp64 rounding, forward and backward, in both the all-reduce
(Megatron) and the reduce-scatter (sequence-parallel) form; the unsplit backward pass is right
(finite differences); the ring collectives return the right arrays and put on the wire what
the closed form says (2 (T - 1) / T of the buffer per all-reduce, (T - 1) / T per reduce-scatter
or all-gather), counted from the arrays they sent.
"""

from __future__ import annotations

import numpy as np
import pytest

from strategies.reference.ledger import Ledger
from strategies.tensor import reference as ref
from strategies.tensor import reference_layers as R
from strategies.tensor import reference_run
from strategies.tensor.closed_form import wire_bytes
from strategies.tensor.reference import GroupCommunicator, ReferenceConfig
from strategies.tensor.reference_run import run

FP64_RTOL = 1e-12


def _close(a: np.ndarray, b: np.ndarray) -> float:
    """Largest difference relative to the largest magnitude of ``b``."""
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


@pytest.fixture(scope="module")
def whole() -> ref.TensorRun:
    return run(ReferenceConfig())


@pytest.mark.parametrize("mode", ["all_reduce", "reduce_scatter"])
@pytest.mark.parametrize("tensor", [2, 4])
def test_split_transformer_equals_the_whole_one(
    whole: ref.TensorRun, tensor: int, mode: str
) -> None:
    split = run(ReferenceConfig(tensor=tensor, mode=mode))  # type: ignore[arg-type]
    assert _close(split.losses, whole.losses) < FP64_RTOL
    assert set(split.grads) == set(whole.grads)
    for name, g in whole.grads.items():
        assert split.grads[name].shape == g.shape
        assert _close(split.grads[name], g) < 1e-11, name
    assert split.collectives, "a split run talks"
    assert not whole.collectives, "a group of one makes no collective"


def test_the_whole_backward_pass_matches_finite_differences(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The reference's hand-written backward pass (layer norm, causal attention, GELU FFN, tied
    head, cross-entropy) against central differences of its own forward pass, fp64."""
    cfg = ReferenceConfig(micro_batches=1, layers=1)
    grads = run(cfg).grads
    p0 = ref.init_params(cfg)
    rng = np.random.default_rng(7)
    eps = 1e-6

    def loss(params: dict[str, np.ndarray]) -> float:
        monkeypatch.setattr(reference_run, "init_params", lambda _c: params)
        return float(run(cfg).losses.mean())

    for name, value in p0.items():
        idx = tuple(int(rng.integers(0, n)) for n in value.shape)
        plus = {k: v.copy() for k, v in p0.items()}
        minus = {k: v.copy() for k, v in p0.items()}
        plus[name][idx] += eps
        minus[name][idx] -= eps
        fd = (loss(plus) - loss(minus)) / (2 * eps)
        assert grads[name][idx] == pytest.approx(fd, rel=1e-5, abs=1e-9), name


@pytest.mark.parametrize("tensor", [2, 4])
def test_split_mlp_block_equals_the_whole_one(tensor: int) -> None:
    """The FFN (MLP) alone: column-split up projection, row-split down projection; the partial
    outputs and partial input gradients sum to the whole block's, weight gradients are the
    whole ones' slices."""
    rng = np.random.default_rng(0)
    h, f = 8, 16
    x = rng.standard_normal((2, 5, h))
    w_up, b_up = rng.standard_normal((h, f)), rng.standard_normal(f)
    w_down = rng.standard_normal((f, h))
    dout = rng.standard_normal((2, 5, h))
    out, cache = R.ffn(R.Flops(), x, w_up, b_up, w_down)
    dx, dw_up, db_up, dw_down = R.ffn_back(R.Flops(), dout, cache)
    cols = np.array_split(np.arange(f), tensor)
    parts = [R.ffn(R.Flops(), x, w_up[:, c], b_up[c], w_down[c]) for c in cols]
    assert _close(sum(o for o, _ in parts), out) < FP64_RTOL
    backs = [R.ffn_back(R.Flops(), dout, c) for _, c in parts]
    assert _close(sum(b[0] for b in backs), dx) < FP64_RTOL
    for c, b in zip(cols, backs, strict=True):
        assert _close(b[1], dw_up[:, c]) < FP64_RTOL
        assert _close(b[2], db_up[c]) < FP64_RTOL
        assert _close(b[3], dw_down[c]) < FP64_RTOL


@pytest.mark.parametrize("n", [2, 3, 4])
def test_ring_collectives_return_the_right_arrays_and_bytes(n: int) -> None:
    """What each worker gets, and what it put on the wire, against the closed form."""
    rng = np.random.default_rng(n)
    bufs = [rng.standard_normal((2, 4 * n, 3)) for _ in range(n)]
    total = sum(bufs)
    assert total is not None
    nbytes = bufs[0].nbytes

    ledger = Ledger()
    got = GroupCommunicator(ledger, n).all_reduce(bufs, "ar")
    assert all(_close(g, total) < FP64_RTOL for g in got)
    assert all(ledger.ring_sent[i] == wire_bytes("all_reduce", n, nbytes) for i in range(n))

    ledger = Ledger()
    got = GroupCommunicator(ledger, n).all_reduce(bufs, "max", op="max")
    assert all(np.array_equal(g, np.maximum.reduce(bufs)) for g in got)

    ledger = Ledger()
    shards = GroupCommunicator(ledger, n).reduce_scatter(bufs, "rs")
    for t, s in enumerate(shards):
        assert _close(s, total[:, 4 * t : 4 * (t + 1)]) < FP64_RTOL
    assert all(ledger.ring_sent[i] == wire_bytes("reduce_scatter", n, nbytes) for i in range(n))

    ledger = Ledger()
    whole = GroupCommunicator(ledger, n).all_gather(shards, "ag")
    assert all(_close(w, total) < FP64_RTOL for w in whole)
    assert all(ledger.ring_sent[i] == wire_bytes("all_gather", n, nbytes) for i in range(n))
    assert [r.nbytes for r in ledger.collectives] == [nbytes]


def test_runs_keep_their_dtype() -> None:
    """An fp16 or fp32 run sends fp16 or fp32 activations (bytes = elements x 2 or 4); the loss
    terms are fp32 at least."""
    for dtype, size in (("fp16", 2), ("fp32", 4)):
        cfg = ReferenceConfig(tensor=2, dtype=dtype)
        out = run(cfg)
        elems = cfg.micro_batch * cfg.seq * cfg.hidden
        tokens = cfg.micro_batch * cfg.seq
        for rec in out.collectives:
            what = rec.tag.split(": ")[1]
            expect = {"loss max": tokens * 4, "loss sums": 2 * tokens * 4}.get(what, elems * size)
            assert rec.nbytes == expect, rec


def test_bad_splits_are_refused() -> None:
    with pytest.raises(ValueError, match="heads"):
        ReferenceConfig(heads=4, tensor=3, vocab=63, intermediate=33).check()
    with pytest.raises(ValueError, match="sequence"):
        ReferenceConfig(seq=6, tensor=4, mode="reduce_scatter").check()
