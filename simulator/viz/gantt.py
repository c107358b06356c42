"""The timeline of one step as data: rows (chips, RNG units, busy links) and bars (spans).

Three things keep a 1,024-chip timeline small without hiding anything the engine computed:

- **Mirroring.** Training strategies simulate replica 0 only; the other replicas' chips carry
  only their own (collective) spans in the trace. Every chip ``chips[r][k]`` of the plan's
  layout gets replica 0's stage-``k`` spans (marked *mirrored*) plus its own spans.
- **Aggregation.** With more than ``full_rows`` chips, chips whose rows would be identical
  (same spans, same times, same labels) become one row (replica 0's chips always keep their
  own rows). This is exact: nothing is dropped.
- **Decimation.** Only when the bars still exceed ``max_bars``: first the compute, exchange
  and sync spans of one phase (same label, back to back) become one bar, coloured by the kind
  that took longest and remembering its exchange time (the timeline draws it as a strip in the
  exchange colour, so exchange never disappears); then bars closer together than a time bucket
  are merged. The page says so.

No plotly here: :mod:`simulator.viz.timeline` draws a :class:`Gantt`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from simulator.engine.trace import Span, Trace
from simulator.hardware.system import System

KINDS = (
    "compute",
    "exchange",
    "sync",
    "collective",
    "rng",
    "memory",
    "host",
    "transfer",
    "idle",
)
KIND_TITLES = {
    "compute": "compute",
    "exchange": "exchange",
    "sync": "sync",
    "collective": "collective",
    "rng": "RNG",
    "memory": "memory traffic",
    "host": "host",
    "transfer": "link transfer",
    "idle": "idle",
}


@dataclass(frozen=True)
class Row:
    """One row of the timeline: a chip (or identical chips), an RNG unit, or a link channel."""

    label: str
    group: str  # what the row belongs to: "replica 0", "replicas 1–127", "links", ...
    chips: tuple[int, ...] = ()  # the chips this row stands for (several when aggregated)
    channel: int | None = None
    busy_s: float = 0.0  # union of the row's bars


@dataclass(frozen=True)
class Bar:
    """One span (or several merged spans) drawn on a row."""

    row: int
    start: float
    end: float
    kind: str  # one of KINDS except idle
    label: str
    task: int
    bytes: float = 0.0
    flops: float = 0.0
    mirrored: bool = False  # replica 0's span shown on a replica that was not simulated
    merged: int = 1  # number of spans in this bar (decimation)
    detail: str = ""  # extra hover line (layers, merged kinds)
    exchange_s: float = 0.0  # of a merged bar: the exchange time inside it (drawn as a strip)

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def exchange_time(self) -> float:
        """Exchange seconds this bar stands for (its own duration for an exchange span)."""
        if self.merged > 1:
            return self.exchange_s
        return self.duration if self.kind == "exchange" else 0.0


@dataclass
class Gantt:
    """Rows, bars and what the page must say about how they were made."""

    title: str
    makespan: float
    rows: list[Row] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def groups(self) -> list[tuple[str, int, int]]:
        """(group, first row, last row) in row order, for jumping to a replica."""
        out: list[tuple[str, int, int]] = []
        for i, row in enumerate(self.rows):
            if out and out[-1][0] == row.group:
                out[-1] = (row.group, out[-1][1], i)
            else:
                out.append((row.group, i, i))
        return out


def ranges(ids: Iterable[int]) -> str:
    """``0-3, 8, 10-11`` for the sorted ids (en dash between the ends)."""
    vals = sorted(set(ids))
    parts: list[str] = []
    i = 0
    while i < len(vals):
        j = i
        while j + 1 < len(vals) and vals[j + 1] == vals[j] + 1:
            j += 1
        parts.append(str(vals[i]) if i == j else f"{vals[i]}–{vals[j]}")
        i = j + 1
    return ", ".join(parts)


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Layers:
    """Layer names of a stage, from the plan's layout and model (duck-typed: a plan may have
    neither, e.g. communication scenarios)."""

    _VSTAGE = re.compile(r"\bs(\d+)$")
    _STAGE = re.compile(r"\bstage (\d+)$")

    def __init__(self, info: dict[str, Any]) -> None:
        lay, model = info.get("layout"), info.get("model")
        self.vstages: list[list[int]] = list(getattr(lay, "vstage_layers", None) or [])
        self.stages = int(getattr(lay, "stages", 1) or 1)
        self.names = [layer.name for layer in getattr(model, "layers", ())]

    def _describe(self, idx: list[int]) -> str:
        if not idx or not self.names:
            return ""
        lo, hi = min(idx), max(idx)
        if lo == hi:
            return f"layer {lo} ({self.names[lo]})"
        return f"layers {lo}–{hi} ({_short(self.names[lo], 28)} … {_short(self.names[hi], 28)})"

    def of(self, label: str) -> str:
        m = self._VSTAGE.search(label)
        if m and int(m.group(1)) < len(self.vstages):
            return self._describe(self.vstages[int(m.group(1))])
        m = self._STAGE.search(label)
        if m and self.vstages:
            d = int(m.group(1))
            return self._describe(
                [i for j, ls in enumerate(self.vstages) if j % self.stages == d for i in ls]
            )
        return ""


def _key(s: Span) -> tuple[str, float, float, str]:
    return (s.kind, s.start, s.end, s.label)


@dataclass
class _Chips:
    """Which chips to draw, in which order, and whose spans each one shows."""

    order: list[tuple[str, str, int]]  # (group, row label, chip)
    base: dict[int, int]  # chip -> the simulated chip it mirrors (itself if simulated)
    replica: dict[int, int]  # chip -> replica (layouts only)
    stage: dict[int, int]


def _chips(info: dict[str, Any], system: System, spans: dict[int, list[Span]]) -> _Chips:
    lay = info.get("layout")
    layout_chips: list[list[int]] | None = getattr(lay, "chips", None)
    if not layout_chips:
        used = sorted(spans)
        return _Chips(
            [(f"machine {system.chips[c].machine}", f"ipu {c}", c) for c in used],
            {c: c for c in used},
            {},
            {},
        )
    order, base, replica, stage = [], {}, {}, {}
    for r, row in enumerate(layout_chips):
        for k, c in enumerate(row):
            order.append((f"replica {r}", f"r{r} s{k} · ipu {c}", c))
            base[c], replica[c], stage[c] = layout_chips[0][k], r, k
    for c in sorted(set(spans) - set(base)):
        order.append(("other chips", f"ipu {c}", c))
        base[c] = c
    return _Chips(order, base, replica, stage)


def _union(bars: Sequence[Bar]) -> float:
    total, end = 0.0, float("-inf")
    for b in sorted(bars, key=lambda b: (b.start, b.end)):
        if b.end <= end:
            continue
        total += b.end - max(b.start, end)
        end = b.end
    return total


def build(
    trace: Trace,
    system: System,
    info: dict[str, Any] | None = None,
    *,
    title: str = "",
    full_rows: int = 64,
    max_link_rows: int = 96,
    max_bars: int = 10_000,
) -> Gantt:
    """The Gantt of ``trace`` (``info`` is the plan's info: layout and model, if any)."""
    info = info or {}
    spans: dict[int, list[Span]] = {}
    for s in trace.chip_spans:
        spans.setdefault(s.row, []).append(s)
    rng: dict[int, list[Span]] = {}
    for s in trace.rng_spans:
        rng.setdefault(s.row, []).append(s)
    sel = _chips(info, system, {**spans, **rng})
    layers = _Layers(info)
    g = Gantt(title, trace.makespan)

    aggregate = len(sel.order) > full_rows
    rows, bars, merged_rows = _chip_rows(sel, spans, rng, layers, aggregate)
    if not aggregate and len(bars) > max_bars:
        aggregate = True
        rows, bars, merged_rows = _chip_rows(sel, spans, rng, layers, aggregate)
    g.rows, g.bars = rows, bars
    if merged_rows:
        g.notes.append(
            f"Aggregated: {len(sel.order):,} chips are drawn as "
            f"{len(sel.order) - merged_rows:,} chip rows; chips "
            "whose rows would be identical (same spans at the same times) share one row, "
            "labelled with their replicas or chips. Nothing is dropped."
        )
    if any(sel.base.get(c, c) != c for _, _, c in sel.order):
        g.notes.append(
            "Replica 0 is simulated; the other replicas are identical, so a replica shows "
            "replica 0's spans of every kind it has none of its own (marked 'mirrored' in the "
            "hover). Their collectives, host syncs and the traffic that shares replica 0's "
            "machine are simulated and shown as they ran."
        )
    _links(g, trace, system, max_link_rows)
    if len(g.bars) > max_bars:
        _decimate(g, max_bars)
    return g


def _chip_rows(
    sel: _Chips,
    spans: dict[int, list[Span]],
    rng: dict[int, list[Span]],
    layers: _Layers,
    aggregate: bool,
) -> tuple[list[Row], list[Bar], int]:
    """Chip (and RNG) rows and their bars; with ``aggregate``, identical rows become one.

    A chip that was not simulated (it mirrors ``sel.base``) shows its own spans and, of every
    kind it has none of, its base chip's spans (mirrored)."""

    def effective(c: int) -> tuple[list[tuple[Span, bool]], list[tuple[Span, bool]]]:
        b = sel.base.get(c, c)
        mine = [(s, False) for s in spans.get(c, ())]
        kinds = {s.kind for s in spans.get(c, ())}
        mirrored = [(s, True) for s in spans.get(b, ()) if b != c and s.kind not in kinds]
        chip = sorted(mirrored + mine, key=lambda p: (p[0].start, p[0].end, p[0].task))
        rr = [(s, False) for s in rng.get(c, ())] or [(s, b != c) for s in rng.get(b, ())]
        return chip, rr

    groups: dict[Any, list[tuple[str, str, int]]] = {}
    if aggregate:
        for entry in sel.order:
            chip_spans, rng_spans = effective(entry[2])
            sig = (
                tuple(_key(s) for s, _ in chip_spans),
                tuple(_key(s) for s, _ in rng_spans),
                sel.stage.get(entry[2]),
            )
            groups.setdefault(sig, []).append(entry)
    else:
        groups = {i: [entry] for i, entry in enumerate(sel.order)}
    rows: list[Row] = []
    bars: list[Bar] = []
    merged_rows = 0
    for members in groups.values():
        group, label, c = members[0]
        chips = tuple(m[2] for m in members)
        if len(members) > 1:
            merged_rows += len(members) - 1
            reps = [sel.replica[m] for m in chips if m in sel.replica]
            if reps and len(reps) == len(chips):
                group = f"replicas {ranges(reps)}"
                label = f"r{ranges(reps)} s{sel.stage[c]} · {len(chips)} ipus"
            else:
                group, label = "identical chips", f"ipu {ranges(chips)} · {len(chips)} ipus"
        chip_spans, rng_spans = effective(c)
        for spans_of, suffix in ((chip_spans, ""), (rng_spans, " RNG")):
            if not spans_of:
                continue
            row = len(rows)
            mine = [
                Bar(
                    row,
                    s.start,
                    s.end,
                    "rng" if suffix else s.kind,
                    s.label or s.kind,
                    s.task,
                    s.bytes,
                    s.flops,
                    mirrored=m and len(members) == 1,
                    detail=layers.of(s.label),
                )
                for s, m in spans_of
            ]
            rows.append(Row(label + suffix, group, chips, busy_s=_union(mine)))
            bars.extend(mine)
    return rows, bars, merged_rows


def _links(g: Gantt, trace: Trace, system: System, max_rows: int) -> None:
    by_channel: dict[int, list[Span]] = {}
    for s in trace.link_spans:
        by_channel.setdefault(s.row, []).append(s)
    if not by_channel:
        if len(trace.channel_bytes) and float(trace.channel_bytes.sum()) > 0:
            g.notes.append(
                "No link rows: collectives are not recorded span by span on links; their bytes "
                "per link are in the report's link utilisation heatmap."
            )
        return
    busy = {
        ch: _union([Bar(0, s.start, s.end, "transfer", "", 0) for s in ss])
        for ch, ss in by_channel.items()
    }
    keep = sorted(by_channel)
    if len(keep) > max_rows:
        keep = sorted(sorted(keep, key=lambda ch: (-busy[ch], ch))[:max_rows])
        g.notes.append(
            f"Links: the {max_rows} busiest of {len(by_channel):,} busy links are drawn."
        )
    for ch in keep:
        c = system.channels[ch]
        row = len(g.rows)
        g.rows.append(Row(f"{c.src}→{c.dst}", "links", channel=ch, busy_s=busy[ch]))
        g.bars.extend(
            Bar(row, s.start, s.end, "transfer", s.label, s.task, s.bytes, s.flops)
            for s in sorted(by_channel[ch], key=lambda s: (s.start, s.end, s.task))
        )
    g.notes.append(
        "Link rows show point-to-point transfers (pipeline activations and gradients) of "
        "the simulated replica; collective traffic per link is in the report's heatmap."
    )


def _merge(bars: Sequence[Bar]) -> Bar:
    """One bar for ``bars`` (same row), coloured by the kind that took longest."""
    per_kind: dict[str, float] = {}
    for b in bars:
        per_kind[b.kind] = per_kind.get(b.kind, 0.0) + b.duration
    kind = max(per_kind.items(), key=lambda kv: (kv[1], -KINDS.index(kv[0])))[0]
    labels = list(dict.fromkeys(b.label for b in bars))
    label = labels[0] if len(labels) == 1 else f"{labels[0]} … {labels[-1]}"
    parts = ", ".join(f"{k} {v * 1e3:.4g} ms" for k, v in per_kind.items())
    first = bars[0]
    return replace(
        first,
        end=max(b.end for b in bars),
        kind=kind,
        label=label,
        bytes=sum(b.bytes for b in bars),
        flops=sum(b.flops for b in bars),
        merged=sum(b.merged for b in bars),
        detail=f"{len(bars)} spans: {parts}" + (f"; {first.detail}" if first.detail else ""),
        exchange_s=sum(b.exchange_time for b in bars),
    )


def _decimate(g: Gantt, max_bars: int) -> None:
    before = len(g.bars)
    by_row: dict[int, list[Bar]] = {}
    for b in g.bars:
        by_row.setdefault(b.row, []).append(b)
    eps = g.makespan * 1e-9
    out: list[Bar] = []
    for bars in by_row.values():  # level 1: one bar per phase (same label, back to back)
        run: list[Bar] = []
        for b in bars:
            if run and (b.label != run[-1].label or b.start - run[-1].end > eps):
                out.append(_merge(run) if len(run) > 1 else run[0])
                run = []
            run.append(b)
        if run:
            out.append(_merge(run) if len(run) > 1 else run[0])
    note = "one bar per phase (compute, exchange and sync of one micro-batch merged)"
    if len(out) > max_bars:  # level 2: merge bars that fall in the same time bucket
        width = g.makespan * max(1, len(by_row)) / max_bars
        buckets: dict[tuple[int, int], list[Bar]] = {}
        for b in out:
            buckets.setdefault((b.row, int(b.start // width) if width > 0 else 0), []).append(b)
        out = [_merge(bs) if len(bs) > 1 else bs[0] for bs in buckets.values()]
        note += f"; then bars starting within the same {width * 1e3:.3g} ms were merged"
    g.bars = sorted(out, key=lambda b: (b.row, b.start, b.task))
    g.notes.append(
        f"Decimated: {before:,} spans drawn as {len(g.bars):,} bars ({note}); the hover of a "
        "merged bar lists its spans by kind, and the orange strip along its lower edge is the "
        "exchange time inside it. The Chrome trace (--trace) has every span."
    )
