"""``training.sparsity``: which linear layers are block-sparse, how, and how the pattern changes
(docs/strategies/sparsity.md, "Sparse training"; docs/config.md)."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Literal

from pydantic import Field, model_validator

from simulator.config.base import Fraction, PositiveInt, StrictModel
from simulator.strategy import PlanContext
from simulator.workloads.layers import BUILDERS, Layer
from simulator.workloads.model import Model
from simulator.workloads.sparse import Sparsity
from simulator.workloads.sparse.layer import LINEAR_KINDS, block_misfit, weight_products

#: Training strategies that take ``training.sparsity``; the others refuse it with a reason.
SUPPORTED = ("single", "data", "pipeline", "local", "ensemble")
REFUSED: dict[str, str] = {
    "random_subspace": "random-subspace training trains d coefficients of a dense random "
    "projection of every weight; a block-sparse pattern on the weights is not that algorithm",
    "moe": "the moe planner routes tokens to experts and ends the step its own way; it has no "
    "sparse-pattern update step, so sparse experts are not modelled (use data or pipeline)",
}


class BlockPattern(StrictModel):
    """A block-sparse pattern: a kernel's ``strategy.sparsity`` (A is sparse) and the core of
    ``training.sparsity``."""

    density: Fraction = Field(description="Share of the sparse matrix's blocks kept, (0, 1].")
    block: Literal[1, 4, 8, 16] = Field(1, description="Block side: 1 (unstructured), 4, 8, 16.")
    mode: Literal["static", "dynamic"] = Field(
        "static",
        description="static: the pattern is fixed and known when the program is compiled; "
        "dynamic: bucketed kernels for a pattern that changes (in training: pruned and "
        "regrown every update_every_steps steps).",
    )

    @property
    def pattern(self) -> Sparsity:
        """The kernel-level pattern."""
        return Sparsity(self.density, self.block, self.mode)


class SparsityParams(BlockPattern):
    """``training.sparsity``: block-sparse weights in the model's linear layers."""
    update_every_steps: PositiveInt | None = Field(
        None, description="Dynamic only: steps between pattern updates (N)."
    )
    regrow: Literal["random", "gradient"] | None = Field(
        None,
        description="Dynamic only: random (SET) or by dense-gradient magnitude (RigL, a dense "
        "weight gradient on update steps).",
    )
    drop_fraction: Fraction = Field(
        0.3,
        description="Dynamic only: share of the non-zero blocks dropped and regrown per update.",
    )
    layers: list[str] = Field(
        default_factory=lambda: ["attention", "ffn", "dense"],
        min_length=1,
        description="Layer kinds (dense, attention, ffn, pooler, lm_head) or name patterns "
        "(fnmatch, e.g. encoder.*.ffn) whose weights are sparse.",
    )

    @model_validator(mode="after")
    def _mode_keys(self) -> SparsityParams:
        if self.mode == "static":
            given = [
                k for k in ("update_every_steps", "regrow") if k in self.model_fields_set
            ]
            if given:
                raise ValueError(
                    f"{', '.join(given)}: a static pattern never changes; use mode: dynamic "
                    "to prune and regrow it"
                )
        elif self.update_every_steps is None or self.regrow is None:
            raise ValueError(
                "mode dynamic needs update_every_steps (steps between updates) and regrow "
                "(random or gradient)"
            )
        return self


def selected(layer: Layer, p: SparsityParams) -> bool:
    """Whether ``layer``'s weights are sparse under ``p`` (a linear layer matching an entry)."""
    if not weight_products(layer):
        return False
    return any(e == layer.kind or fnmatch.fnmatchcase(layer.name, e) for e in p.layers)


def check_strategy(ctx: PlanContext) -> None:
    """Refuse ``training.sparsity`` for strategies where it does not make sense (exit 2)."""
    kind = ctx.scenario.scenario.strategy.type
    if kind in REFUSED:
        raise ctx.error(
            ("training", "sparsity"),
            f"training.sparsity is not supported with strategy {kind}: {REFUSED[kind]} "
            f"(supported: {', '.join(SUPPORTED)})",
        )


def check_model(ctx: PlanContext, model: Model, p: SparsityParams) -> list[Layer]:
    """The sparse layers of ``model``; invalid selections are errors naming the key (exit 2)."""
    at = ("training", "sparsity")
    names = {x.name for x in model.layers}
    for i, entry in enumerate(p.layers):
        if entry in LINEAR_KINDS:
            continue  # a kind the model may not have (the default list names three)
        glob = any(c in entry for c in "*?[")
        if glob or entry in names:
            hits = [x for x in model.layers if fnmatch.fnmatchcase(x.name, entry)]
            if not any(weight_products(x) for x in hits):
                kinds = sorted({x.kind for x in hits})
                what = f"only {kinds} layers, which are not linear" if hits else "no layer"
                raise ctx.error(
                    (*at, "layers", i),
                    f"'{entry}' matches {what} in model {model.name} (linear kinds: "
                    f"{', '.join(LINEAR_KINDS)})",
                )
            continue
        if entry in BUILDERS:
            raise ctx.error(
                (*at, "layers", i),
                f"{entry} layers are not linear layers; sparsity applies to "
                f"{', '.join(LINEAR_KINDS)} (the weight products of the model)",
            )
        raise ctx.error(
            (*at, "layers", i),
            f"'{entry}' is neither a linear layer kind ({', '.join(LINEAR_KINDS)}) nor a layer "
            f"name or pattern of model {model.name} (e.g. {sorted(names)[0]})",
        )
    chosen = [x for x in model.layers if selected(x, p)]
    if not chosen:
        raise ctx.error(
            (*at, "layers"),
            f"{p.layers} selects no linear layer of model {model.name} (its kinds: "
            f"{', '.join(sorted({x.kind for x in model.layers}))})",
        )
    for x in chosen:
        if x.kind == "lm_head" and getattr(x.spec, "tied", False):
            raise ctx.error(
                (*at, "layers"),
                f"layer {x.name} is a tied lm_head: its weights are the embedding table, which "
                "is not a linear layer here; leave lm_head out",
            )
        why = block_misfit(x, p.block)
        if why is not None:
            ok = [b for b in (1, 4, 8, 16) if all(block_misfit(y, b) is None for y in chosen)]
            raise ctx.error(
                (*at, "block"),
                f"{why}; choose a block that divides every selected layer ({ok}) or leave the "
                "layer out of training.sparsity.layers",
            )
    return chosen


def sparse_layers(layers: Sequence[Layer], p: SparsityParams | None) -> list[Layer]:
    """The sparse ones of ``layers`` (none without sparsity)."""
    return [] if p is None else [x for x in layers if selected(x, p)]


__all__ = [
    "REFUSED",
    "SUPPORTED",
    "BlockPattern",
    "SparsityParams",
    "check_model",
    "check_strategy",
    "selected",
    "sparse_layers",
]
