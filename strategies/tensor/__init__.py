"""Tensor (intra-layer) model parallelism for the ``data`` and ``pipeline`` strategies.

``strategy.tensor_parallel: T`` makes every pipeline stage a group of T chips that split its
attention heads, FFN width and vocabulary (Megatron-LM style) and join their partial
activations with collectives on the real IPU-Links: chips = stages x T x replicas.

* :mod:`.keys` — the scenario keys;
* :mod:`.shard` — the split of each layer and the collectives it needs;
* :mod:`.placement` — which chips form a group (the same machine first);
* :mod:`.passes` — a stage's passes as segments joined by the group's collectives;
* :mod:`.layout` — the split applied to a pipeline x data layout (what the planner asks);
* :mod:`.closed_form` — bytes and uncontended time of the collectives;
* :mod:`.result`, :mod:`.advice` — the result fields; "would help" when a stage does not fit;
* :mod:`.reference` — the NumPy reference: a transformer split over T workers, with a ledger
  of the collectives it ran.

docs/strategies/tensor_parallel.md describes the whole.
"""

from strategies.tensor.layout import Sharded, split_layout

__all__ = ["Sharded", "split_layout"]
