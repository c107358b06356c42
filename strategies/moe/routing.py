"""Where the moe strategy's tokens go: expert placement, routing counts, capacity, traffic.

Pure functions of counts (no task graph), so the plan, its summary and the tests share them.
The conventions (docs/strategies/moe.md) are the reference run's
(:mod:`strategies.moe.reference`), computed here independently:

* **Placement** over N chips: E >= N: chip ``e // (E/N)`` holds expert e, one group of all N
  chips; E < N: N/E groups of E consecutive chips, chip ``g E + e`` holds a replica of expert e
  and serves group g. Tokens only travel inside a group.
* **Capacity** per (source chip, expert) per micro-batch: ``C = ceil(top_k x T x cf / E)``,
  T = a chip's tokens per micro-batch (Switch: tokens per group / experts x capacity factor;
  GShard's top-2 capacity 2T/E is the k factor).
* **Dropping**: of the ``a`` assignments a source routes to an expert, ``min(a, C)`` are kept,
  whatever the priority order.
* **Rows**: with static capacity every (source, expert) buffer is C rows, sent and computed
  whether filled or not; otherwise the kept rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

Routing = Literal["reference", "zipf", "uniform"]


def capacity(tokens: int, experts: int, top_k: int, capacity_factor: float) -> int:
    """C = ceil(top_k x tokens x capacity_factor / experts) (rounded to 1e-9 first, so that a
    product that is mathematically whole is not pushed up by float error)."""
    return math.ceil(round(top_k * tokens * capacity_factor / experts, 9))


@dataclass(frozen=True)
class Placement:
    """E experts over N chips (E a multiple of N, or N a multiple of E)."""

    chips: int
    experts: int

    @property
    def experts_per_chip(self) -> int:
        return max(1, self.experts // self.chips)

    @property
    def group_size(self) -> int:
        """Chips that exchange tokens: min(N, E)."""
        return min(self.chips, self.experts)

    @property
    def groups(self) -> list[tuple[int, ...]]:
        """The chip groups, each a block of consecutive chips."""
        g = self.group_size
        return [tuple(range(i, i + g)) for i in range(0, self.chips, g)]

    def expert_chip(self, source: int, expert: int) -> int:
        """The chip serving ``source``'s tokens for ``expert``."""
        if self.experts >= self.chips:
            return expert // self.experts_per_chip
        return (source // self.experts) * self.experts + expert

    def experts_on(self, chip: int) -> list[int]:
        """Experts whose weights ``chip`` holds."""
        if self.experts >= self.chips:
            per = self.experts_per_chip
            return list(range(chip * per, (chip + 1) * per))
        return [chip % self.experts]

    def sources_of(self, chip: int) -> tuple[int, ...]:
        """Chips whose tokens ``chip``'s experts serve (its group)."""
        return self.groups[chip // self.group_size]

    def replicas_of(self, expert: int) -> tuple[int, ...]:
        """Chips holding a copy of ``expert`` (one when E >= N)."""
        return tuple(c for c in range(self.chips) if expert in self.experts_on(c))


# ---- routing counts ------------------------------------------------------------------------
def uniform_counts(chips: int, tokens: int, experts: int, top_k: int) -> np.ndarray:
    """[N, E]: each chip's k x T assignments as even as whole tokens allow (the remainder
    goes to experts c, c+1, ... so no expert is always the fuller one)."""
    base, rest = divmod(top_k * tokens, experts)
    out = np.full((chips, experts), base, dtype=np.int64)
    for c in range(chips):
        for i in range(rest):
            out[c, (c + i) % experts] += 1
    return out


def zipf_counts(
    rng: np.random.Generator, chips: int, tokens: int, experts: int, top_k: int, skew: float
) -> np.ndarray:
    """[N, E]: each token picks top_k distinct experts, expert of popularity rank r with
    probability proportional to (r + 1)^-skew (Gumbel top-k sampling without replacement);
    which expert has which rank is a random permutation (per call)."""
    logp = -skew * np.log(np.arange(1, experts + 1, dtype=np.float64))
    logp = logp[rng.permutation(experts)]
    out = np.zeros((chips, experts), dtype=np.int64)
    for c in range(chips):
        keys = logp + rng.gumbel(size=(tokens, experts))
        top = np.argpartition(-keys, top_k - 1, axis=1)[:, :top_k]
        out[c] = np.bincount(top.ravel(), minlength=experts)
    return out


def routing_counts(
    routing: Routing,
    *,
    seed: int,
    layers: int,
    micro_batches: int,
    chips: int,
    tokens: int,
    experts: int,
    top_k: int,
    skew: float,
    d_model: int,
    vocab: int,
    token_zipf: float,
    noisy: bool,
) -> np.ndarray:
    """Assignments per (MoE layer, micro-batch, source chip, expert), before capacity.

    ``reference`` runs the NumPy reference router (:func:`strategies.moe.reference.router_counts`)
    on the scenario seed; ``zipf`` draws from the scenario seed; ``uniform`` is deterministic.
    """
    if routing == "reference":
        from strategies.moe.reference import router_counts

        return router_counts(
            seed=seed,
            layers=layers,
            devices=chips,
            tokens=tokens,
            micro_batches=micro_batches,
            d_model=d_model,
            experts=experts,
            top_k=top_k,
            vocab=vocab,
            token_zipf=token_zipf,
            noisy=noisy,
        )
    out = np.zeros((layers, micro_batches, chips, experts), dtype=np.int64)
    rng = np.random.default_rng([seed, 29])
    for layer in range(layers):
        for m in range(micro_batches):
            if routing == "uniform":
                out[layer, m] = uniform_counts(chips, tokens, experts, top_k)
            else:
                out[layer, m] = zipf_counts(rng, chips, tokens, experts, top_k, skew)
    return out


# ---- traffic ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Traffic:
    """One MoE layer, one micro-batch: what routing ``assigned`` [N, E] makes the chips do.

    * ``kept`` / ``dropped`` [N, E]: per (source chip, expert).
    * ``pair_rows[(src, dst)]``: token rows sent src -> dst in the dispatch (and back in the
      combine), off-chip pairs with rows > 0 only.
    * ``expert_rows[chip]``: rows each of the chip's experts computes, in ``experts_on`` order.
    """

    assigned: np.ndarray
    kept: np.ndarray
    dropped: np.ndarray
    pair_rows: dict[tuple[int, int], int]
    expert_rows: dict[int, tuple[int, ...]]

    def chip_rows(self, chip: int) -> int:
        """Rows all of ``chip``'s experts compute."""
        return sum(self.expert_rows[chip])


def traffic(assigned: np.ndarray, place: Placement, cap: int, static: bool) -> Traffic:
    """Capacity, dropping and the rows each pair moves and each expert computes."""
    kept = np.minimum(assigned, cap)
    rows = np.full_like(kept, cap) if static else kept
    pair: dict[tuple[int, int], int] = {}
    for src in range(place.chips):
        for e in range(place.experts):
            dst = place.expert_chip(src, e)
            if dst != src and rows[src, e] > 0:
                pair[(src, dst)] = pair.get((src, dst), 0) + int(rows[src, e])
    per_expert = {
        chip: tuple(
            int(sum(rows[s, e] for s in place.sources_of(chip))) for e in place.experts_on(chip)
        )
        for chip in range(place.chips)
    }
    return Traffic(assigned, kept, assigned - kept, dict(sorted(pair.items())), per_expert)
