"""The random-subspace reference run (strategies/reference/rbd.py) proves the algorithm.

(a) W workers exchanging only (step, coefficients) end with bit-identical weights;
(b) on scikit-learn's digits, MLP 64-32-10, d = 24 (1 % of D = 2,410), batch 32, 5 epochs,
    each method at its tuned learning rate (docs/strategies/random_subspace.md, "Reference
    runs"): SGD > RBD > NES > FPD, with margins;
(c) more compartments at equal d draw d·D/c samples per pass;
and the all-gather, the message format and the bad-input errors.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from strategies.reference import Ledger
from strategies.reference.data import Dataset, digits
from strategies.reference.rbd import (
    GatheringCommunicator,
    SubspaceConfig,
    SubspaceRun,
    compartments,
    pack,
    parameter_sizes,
    subspace_ledger,
    train_nes,
    train_sgd,
    train_subspace,
    unpack,
)

SIZES = (64, 32, 10)
D_PARAMS = 2410
D = 24
EPOCHS = 5
SEEDS = (0, 1, 2)
# learning rates tuned on training accuracy over the grids in the docs (mean of seeds 0-2)
LR_SGD, LR_RBD, LR_FPD = 0.5, 0.003, 0.002
LR_NES, SIGMA_NES = 0.03, 0.1


@pytest.fixture(scope="module")
def data() -> Dataset:
    return digits()


def _steps(cfg: SubspaceConfig, steps: int) -> SubspaceRun:
    run = SubspaceRun(cfg)
    rng = np.random.default_rng(7)
    for _ in range(steps):
        x = rng.standard_normal((cfg.global_batch, SIZES[0])).astype(run.dtype)
        run.step(x, rng.integers(0, SIZES[-1], cfg.global_batch))
    return run


@pytest.mark.parametrize(
    "cfg",
    [
        SubspaceConfig(workers=4),
        SubspaceConfig(workers=4, mode="fpd"),
        SubspaceConfig(workers=4, basis="shared"),
        SubspaceConfig(workers=2, replicas=2, compartments="layers"),
        SubspaceConfig(workers=3, compartments=4, distribution="bernoulli"),
    ],
    ids=["rbd", "fpd", "shared", "replicas-layers", "bernoulli-c4"],
)
def test_workers_end_bit_identical(cfg: SubspaceConfig) -> None:
    """(a) Every device applies the same updates from seeds + received coefficients."""
    run = _steps(replace(cfg, sizes=SIZES, d=D, batch=8), steps=5)
    first = run.replicas[0].theta
    assert not np.array_equal(first, SubspaceRun(replace(cfg, sizes=SIZES, d=D)).replicas[0].theta)
    for rep in run.replicas[1:]:
        assert rep.theta.tobytes() == first.tobytes()
    # and nothing but (step, coefficients) crossed between workers
    for record in run.ledger.collectives:
        assert record.tag == "coefficients"
        assert record.nbytes in (4 * D, len(record.group) * (4 + 4 * D))


def test_independent_workers_update_with_every_workers_bases() -> None:
    """W = 2 independent workers differ from one worker on twice the batch (own bases)."""
    two = _steps(SubspaceConfig(sizes=SIZES, d=D, workers=2, batch=8), steps=1)
    one = SubspaceConfig(sizes=SIZES, d=D, workers=1, batch=8)
    assert two.ledger.samples[0] == (2 + 2) * D * D_PARAMS
    assert subspace_ledger(one).samples[0] == 3 * D * D_PARAMS


def test_accuracy_ordering(data: Dataset) -> None:
    """(b) Mean test accuracy over seeds 0-2: SGD > RBD > NES > FPD with margins.

    The paper's Table 1 has NES last; here NES (antithetic, ranked, tuned) beats FPD: its
    directions are redrawn every step, FPD stays in one d-dimensional subspace
    (docs/strategies/random_subspace.md discusses it). Observed when written: SGD 94.5 %,
    RBD 87.5 %, NES 82.9 %, FPD 42.3 %.
    """

    def mean(runs: list[float]) -> float:
        return float(np.mean(runs))

    cfg = SubspaceConfig(sizes=SIZES, d=D, batch=32)
    sgd = mean([train_sgd(SIZES, data, EPOCHS, 32, LR_SGD, s).test_accuracy for s in SEEDS])
    rbd = mean(
        [
            train_subspace(replace(cfg, learning_rate=LR_RBD, seed=s), data, EPOCHS).test_accuracy
            for s in SEEDS
        ]
    )
    fpd = mean(
        [
            train_subspace(
                replace(cfg, mode="fpd", learning_rate=LR_FPD, seed=s), data, EPOCHS
            ).test_accuracy
            for s in SEEDS
        ]
    )
    nes = mean(
        [train_nes(SIZES, data, EPOCHS, 32, D, LR_NES, SIGMA_NES, s).test_accuracy for s in SEEDS]
    )
    assert sgd - rbd >= 0.03
    assert rbd - fpd >= 0.30
    assert rbd - nes >= 0.02
    assert nes - fpd >= 0.20


@pytest.mark.parametrize("c", [1, 2, 3, 4, 6, 8])
def test_samples_fall_as_d_D_over_c(c: int) -> None:
    """(c) At equal d, a pass draws d·D/c samples (d = 24 divides evenly over c)."""
    ledger = subspace_ledger(SubspaceConfig(sizes=SIZES, d=D, compartments=c, batch=4))
    assert ledger.samples[0] == 3 * D * D_PARAMS // c
    assert 3 * D * D_PARAMS % c == 0


def test_all_gather_on_a_ring() -> None:
    ledger = Ledger()
    comm = GatheringCommunicator(ledger)
    bufs = {d: np.full(3, d, dtype=np.float32) for d in (5, 6, 7)}
    out = comm.all_gather(bufs, "x")
    for d in bufs:
        assert [b[0] for b in out[d]] == [5, 6, 7]
        assert ledger.ring_sent[d] == 2 * 12
    assert ledger.collectives[0].nbytes == 36


def test_message_is_step_and_coefficients() -> None:
    g = np.arange(5, dtype=np.float32) / 3
    msg = pack(123_456, g)
    assert msg.nbytes == 4 + 4 * 5
    step, back = unpack(msg)
    assert step == 123_456 and back.tobytes() == g.tobytes()


def test_bad_configurations() -> None:
    with pytest.raises(ValueError, match="larger than the compartment size"):
        compartments(parameter_sizes(SIZES), "layers", 700)  # the 330-parameter layer
    with pytest.raises(ValueError, match="workers must be >= 1"):
        SubspaceConfig(workers=0).check()
    with pytest.raises(ValueError, match="unknown distribution"):
        SubspaceConfig(distribution="cauchy").check()  # type: ignore[arg-type]
