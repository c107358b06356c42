"""Sweeps: many scenario variants from one file, run on every core or a Dask cluster.

* :mod:`~simulator.sweep.spec` — the sweep file (base scenario, grid / zip axes over key
  paths, derived keys, ``where:`` constraints), validated with file:line errors.
* :mod:`~simulator.sweep.points` — expansion into points and the hash of a resolved point.
* :mod:`~simulator.sweep.worker` — running one point (never raises for the point's own
  problems).
* :mod:`~simulator.sweep.runners` — local processes and Dask.
* :mod:`~simulator.sweep.store` — the SQLite results store (resumable, append-only).
* :mod:`~simulator.sweep.export` — DataFrame / CSV / Parquet.
* :mod:`~simulator.sweep.driver` — ``ipusim sweep``.

From Python::

    from simulator.sweep import load_results, load_sweep, run_sweep
    run_sweep(load_sweep("scenarios/sweeps/mlperf-bert-bow.yaml"), "bert.sqlite")
    df = load_results("bert.sqlite")
"""

from simulator.sweep.driver import Summary, run_sweep
from simulator.sweep.export import export, load_results
from simulator.sweep.spec import Sweep, load_sweep

__all__ = ["Summary", "Sweep", "export", "load_results", "load_sweep", "run_sweep"]
