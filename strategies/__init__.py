"""Strategies: each module plans one way of splitting the work and registers itself.

Importing this package registers every strategy with :mod:`simulator.strategy`.
"""

from strategies import comm, data, ensemble, kernel, local, moe, pipeline, random_subspace

__all__ = ["comm", "data", "ensemble", "kernel", "local", "moe", "pipeline", "random_subspace"]
