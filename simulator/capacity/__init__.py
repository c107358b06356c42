"""Capacity planning: time-to-train from a statistical-efficiency model, and plan files.

* :mod:`simulator.capacity.ttt` — steps to reach a target as a function of the global batch
  (McCandlish noise-scale form, or samples-to-target given directly) and time-to-train.
* :mod:`simulator.capacity.noise` — B_noise estimated from a NumPy reference run at two batch
  sizes.
* :mod:`simulator.capacity.plan` — ``ipusim plan FILE``: run the candidates, keep those that
  meet the target, rank them and draw the Pareto front.
"""
