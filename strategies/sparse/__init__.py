"""Block-sparse training: ``training.sparsity`` (:mod:`.params`), the hooks by which it enters
the shared training planner (:mod:`.hooks`) and the NumPy reference run of masked-MLP sparse
training with its work ledger (:mod:`.reference`). The kernel model lives in
:mod:`simulator.workloads.sparse`; docs/strategies/sparsity.md describes it all."""
