"""Mixture of experts: the ``moe`` strategy, expert parallelism inside pipeline stages, and the
NumPy reference run both are checked against.

* :mod:`.params` — the scenario keys of ``type: moe``;
* :mod:`.costs` — the model's MoE layers and what a micro-batch of them costs;
* :mod:`.routing` — expert placement, routing counts, capacity and traffic (pure counts);
* :mod:`.graph` — one training step as a task graph (dispatch, experts, combine, all-reduces);
* :mod:`.strategy` — planning: the checks, the memory of each chip, the plan (registers ``moe``);
* :mod:`.result` — the result: routing figures and the analytic estimate;
* :mod:`.pipeline_experts` — ``strategy.expert_parallel`` of ``type: pipeline``: a stage's MoE
  layers with their experts spread over the stage's replicas;
* :mod:`.reference`, :mod:`.gating` — the NumPy reference run (noisy top-k routing, capacity,
  all-to-alls, Switch balance loss) with its work ledger; they never import ``simulator``.

This module imports nothing, so the reference run can be loaded without the simulator and a
pipeline run without the ``moe`` strategy. docs/strategies/moe.md describes it all.
"""
