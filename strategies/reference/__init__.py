"""Reference runs: small real NumPy training runs of each strategy with an exact work ledger.

A tiny MLP (:mod:`.nn`) trains with the real algorithm — data-parallel replicas
(:mod:`.data_parallel`), pipelined micro-batches (:mod:`.pipeline`) — while every FLOP,
byte sent and random sample is charged to a :class:`~.ledger.Ledger` by instrumented
operations and a counting communicator. :func:`reference_ledger` runs one step of a
configuration and returns the frozen :class:`~.ledger.LedgerSummary` that a strategy's plan
for the same configuration must equal. See docs/reference_runs.md.

This package depends on NumPy only (scikit-learn for its shipped digits data set); it never
imports the simulator, so its counts are independent of plan code.
"""

from strategies.reference.ledger import (
    PHASES,
    CollectiveRecord,
    CountingCommunicator,
    Ledger,
    LedgerSummary,
    Phase,
)
from strategies.reference.nn import ELEMENTWISE, Block, Dense, Ops
from strategies.reference.runs import ReferenceConfig, TrainResult, build, reference_ledger, train

__all__ = [
    "ELEMENTWISE",
    "PHASES",
    "Block",
    "CollectiveRecord",
    "CountingCommunicator",
    "Dense",
    "Ledger",
    "LedgerSummary",
    "Ops",
    "Phase",
    "ReferenceConfig",
    "TrainResult",
    "build",
    "reference_ledger",
    "train",
]
