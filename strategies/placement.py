"""Which layers go to which pipeline stage.

Units: consecutive layers of one named group (a residual block, an encoder's attention or
FFN part) move together; ungrouped layers are units of their own. Three ways to place:

* ``auto``: contiguous units balanced by training FLOPs (binary search on the bottleneck).
* ``layers_per_stage: [n0, n1, ...]``: counts of repeated blocks (``encoder.3`` …) per stage;
  layers before the first block go to stage 0 (embedding on IPU 0, as in the MLPerf configs),
  layers after the last block to the last stage — except a head whose weights are tied to the
  embedding (BERT's tied MLM decoder), which goes to stage 0 with the embedding, as Graphcore's
  MLPerf BERT placed it. Its data dependency on the last stage is not modelled (the head's
  work is charged to stage 0 in each pipeline cycle; its input of masked rows is not sent).
* ``attention_ffn_per_stage: [[a0, f0], ...]``: counts of attention and FFN parts per stage,
  as Graphcore's MLPerf BERT configs give them. Parts of each kind are taken in model order; a
  stage may therefore hold the FFN of a layer whose attention sits on the next stage (the
  encoder layers are identical, so the stage costs are those of the published placement).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from simulator.workloads.model import Model

Fail = Callable[[tuple[str | int, ...], str], Exception]
_BLOCK = re.compile(r"^([^.]+\.\d+)(?:\.([^.]+))?")


def units(model: Model) -> list[list[int]]:
    """Layer indices grouped into placement units, in model order."""
    out: list[list[int]] = []
    last = None
    for i, layer in enumerate(model.layers):
        key = layer.group or None
        if key is not None and key == last:
            out[-1].append(i)
        else:
            out.append([i])
        last = key
    return out


def balanced(model: Model, stages: int, fail: Fail) -> list[list[int]]:
    """Contiguous units over ``stages`` minimising the largest stage's training FLOPs."""
    us = units(model)
    if stages > len(us):
        raise fail(
            ("strategy", "stages"),
            f"{stages} stages but the model has only {len(us)} "
            f"placeable units (choose at most {len(us)})",
        )
    work = [
        sum(model.layers[i].forward_flops + model.layers[i].backward_flops for i in u) or 1
        for u in us
    ]

    def split(limit: float) -> list[list[int]] | None:
        parts: list[list[int]] = [[]]
        load = 0.0
        for u, w in zip(us, work, strict=True):
            if parts[-1] and load + w > limit:
                parts.append([])
                load = 0.0
            parts[-1].extend(u)
            load += w
        return parts if len(parts) <= stages else None

    lo: float
    hi: float
    lo, hi = max(work), sum(work)
    best = split(hi)
    for _ in range(60):
        mid = (lo + hi) / 2
        got = split(mid)
        if got is None:
            lo = mid
        else:
            hi, best = mid, got
    assert best is not None
    while len(best) < stages:  # split the largest stage further so every stage has work
        big = max(range(len(best)), key=lambda j: len(best[j]))
        if len(best[big]) < 2:
            raise fail(("strategy", "stages"), f"cannot give {stages} stages work")
        half = len(best[big]) // 2
        best[big : big + 1] = [best[big][:half], best[big][half:]]
    return best


def _blocks(model: Model) -> tuple[list[int], dict[str, list[int]], list[str], list[int]]:
    """Layers before any block, layers per block (in order), block order, layers after."""
    before: list[int] = []
    after: list[int] = []
    blocks: dict[str, list[int]] = {}
    order: list[str] = []
    for i, layer in enumerate(model.layers):
        m = _BLOCK.match(layer.group or "")
        if m:
            if m.group(1) not in blocks:
                blocks[m.group(1)] = []
                order.append(m.group(1))
            blocks[m.group(1)].append(i)
        elif not blocks:
            before.append(i)
        else:
            after.append(i)
    return before, blocks, order, after


def by_block_counts(model: Model, counts: Sequence[int], fail: Fail) -> list[list[int]]:
    """``layers_per_stage``: counts of repeated blocks per stage."""
    before, blocks, order, after = _blocks(model)
    if sum(counts) != len(order):
        raise fail(
            ("strategy", "layers_per_stage"),
            f"the counts add up to {sum(counts)} but {model.name} has {len(order)} "
            f"repeated blocks ({order[0] if order else '-'} ...); make them add up to "
            f"{len(order)}",
        )
    stages: list[list[int]] = []
    pos = 0
    for n in counts:
        stages.append([i for b in order[pos : pos + n] for i in blocks[b]])
        pos += n
    return _ends(model, stages, before, after)


def _ends(
    model: Model, stages: list[list[int]], before: list[int], after: list[int]
) -> list[list[int]]:
    """Layers before the blocks to stage 0, after them to the last stage, heads tied to the
    embedding to stage 0."""
    tied = [i for i in after if _tied_to_embedding(model, i)]
    stages[0] = before + stages[0] + tied
    stages[-1] = stages[-1] + [i for i in after if i not in tied]
    return stages


def _tied_to_embedding(model: Model, i: int) -> bool:
    layer = model.layers[i]
    return layer.kind == "pretraining_heads" and bool(getattr(layer.spec, "tied", False))


def by_part_counts(model: Model, counts: Sequence[Sequence[int]], fail: Fail) -> list[list[int]]:
    """``attention_ffn_per_stage``: counts of attention and FFN parts per stage."""
    before, blocks, order, after = _blocks(model)
    parts: dict[str, list[list[int]]] = {"attention": [], "ffn": []}
    for b in order:
        for kind in parts:
            idx = [i for i in blocks[b] if (model.layers[i].group or "").split(".")[-1] == kind]
            if idx:
                parts[kind].append(idx)
    for j, kind in enumerate(("attention", "ffn")):
        total = sum(c[j] for c in counts)
        if total != len(parts[kind]):
            raise fail(
                ("strategy", "attention_ffn_per_stage"),
                f"the {kind} counts add up to {total} but {model.name} has "
                f"{len(parts[kind])} {kind} parts; make them add up to "
                f"{len(parts[kind])}",
            )
    stages: list[list[int]] = []
    pos = {"attention": 0, "ffn": 0}
    for a, f in counts:
        layers: list[int] = []
        for kind, n in (("attention", a), ("ffn", f)):
            for idx in parts[kind][pos[kind] : pos[kind] + n]:
                layers.extend(idx)
            pos[kind] += n
        stages.append(sorted(layers))
    return _ends(model, stages, before, after)
