"""Block-sparse work on IPU tiles: the kernel model (:mod:`.kernel`), sparse layers of a
training step (:mod:`.layer`) and the pattern updates of dynamic sparse training (:mod:`.update`).
docs/strategies/sparsity.md describes the model and its calibration."""

from simulator.workloads.sparse.kernel import (
    BLOCKS,
    MODES,
    SparsePlan,
    Sparsity,
    nonzero_blocks,
    plan_sddmm,
    plan_spmm,
    sparse_model,
    sparse_operand_bytes,
    sparse_seconds,
)

__all__ = [
    "BLOCKS",
    "MODES",
    "SparsePlan",
    "Sparsity",
    "nonzero_blocks",
    "plan_sddmm",
    "plan_spmm",
    "sparse_model",
    "sparse_operand_bytes",
    "sparse_seconds",
]
