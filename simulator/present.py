"""How results read to a person: the lines that explain a speedup, the closed-form line, and
the compact JSON of ``ipusim run --json``.

Results (:mod:`simulator.metrics`) hold numbers; this module holds the words around them, so
strategies never format explanations and a new result field needs no change here:

* :func:`baseline_lines` — what the speedup is measured against (name, system, chips, step
  time, throughput, global batch), whether the global batches differ and what the speedup then
  means, and why a scaling efficiency above 100 % can happen for this pair of runs.
* :func:`closed_form_line` — the closed-form estimate beside the simulated figure, in words.
* :func:`compact` — the result document with identical per-chip entries (``breakdown``,
  ``memory``, any mapping keyed by chip id) collapsed into one entry keyed by the chip set
  (``"0-15"``, ``"0,4,8-11"``); ``ipusim run --json --full`` prints the full document.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

LABEL = 16  # width of the label column of result text (two spaces of indent before it)
WIDTH = 100  # explanatory sentences wrap at this width


def plural(n: float, word: str) -> str:
    """``1 replica``, ``4 replicas``."""
    return f"{n:,g} {word}" if n == 1 else f"{n:,g} {word}s"


def line(label: str, text: str, *, wrap: bool = False) -> str:
    """One result line: two spaces, the label padded to the column, the text; with ``wrap``,
    long text continues on lines indented to the column (for sentences, not figures)."""
    first = f"  {label:<{LABEL}}"
    if not wrap:
        return first + text
    indent = " " * len(first)
    return textwrap.fill(
        text, WIDTH, initial_indent=first, subsequent_indent=indent, break_on_hyphens=False
    )


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1e3:,.3f} ms"


def si_prefix(x: float, unit: str) -> str:
    """``292.86 GFLOP``, ``249.65 TFLOP/s``: two decimals with an SI prefix (none below mega)."""
    for scale, prefix in ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M")):
        if abs(x) >= scale:
            return f"{x / scale:,.2f} {prefix}{unit}"
    return f"{x:,.2f} {unit}" if x % 1 else f"{x:,.0f} {unit}"


def binary_bytes(n: float) -> str:
    """``897.0 MiB``: one decimal with a binary prefix (plain bytes below a KiB)."""
    for scale, unit in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n:,.0f} B"


def table(rows: list[list[str]], right: set[int]) -> list[str]:
    """Rows of cells as aligned text lines: columns in ``right`` right-aligned, the rest left;
    trailing spaces dropped."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in rows
    ]


def variability_line(result: Any) -> str:
    """What a result with variability sampled, and its step-time distribution, in one line."""
    facts = result.variability
    what = []
    if facts.get("compute_cv"):
        what.append(f"compute_cv {facts['compute_cv']:g}")
    if facts.get("host_jitter"):
        what.append(f"host_jitter {facts['host_jitter']:g}")
    if facts.get("slow_chips"):
        what.append(plural(len(facts["slow_chips"]), "slow chip"))
    if facts.get("link_derate"):
        what.append(plural(len(facts["link_derate"]), "derated link"))
    members = facts.get("members")
    per = f" x {members} members" if members else ""
    return line(
        "variability",
        f"{', '.join(what)}; {plural(facts['samples'], 'sample')}{per} (seed {facts['seed']}): "
        f"step mean {_ms(result.step_time_mean_s)}, p50 {_ms(result.step_time_p50_s)}, "
        f"p99 {_ms(result.step_time_p99_s)}",
        wrap=True,
    )


def closed_form_line(estimate_s: float, difference: float, *, unit: str = "ms") -> str:
    """The closed-form estimate and how the simulation compares with it, in words.

    ``difference`` is simulated / estimate - 1 (the ``analytic.difference`` field).
    """
    scale = 1e6 if unit == "us" else 1e3
    shown = f"{estimate_s * scale:,.3f} {unit}"
    if abs(difference) < 5e-4:
        verdict = "the simulation agrees within 0.05%"
    else:
        verdict = f"simulated {abs(difference):.1%} {'longer' if difference > 0 else 'shorter'}"
    return line("closed form", f"{shown}, the same plan as a formula (no contention); {verdict}")


def baseline_lines(result: Any) -> list[str]:
    """Lines explaining ``result.speedup`` (a TrainingResult with a baseline), or []."""
    base = result.baseline
    if base is None:
        return []
    system = getattr(base, "system", None)
    where = f" on {system}" if system else ""
    named = f"{base.name}{where} ({plural(base.chips, 'chip')})"
    lines = []
    if result.speedup is not None:
        lines.append(line("speedup", f"{result.speedup:,.3f}x the throughput of {named}"))
    batch = getattr(base, "global_batch", None)
    facts = [f"step time {_ms(base.step_time_s)}" if base.step_time_s else "infeasible (below)"]
    if base.throughput_samples_per_s is not None:
        facts.append(f"{base.throughput_samples_per_s:,.1f} samples/s")
    if batch is not None:
        facts.append(f"global batch {batch:,.0f}")
    lines.append(
        line("baseline", ("" if result.speedup is not None else f"{named}: ") + ", ".join(facts))
    )
    if result.scaling_efficiency is not None and result.speedup is not None:
        ratio = result.chips / base.chips
        lines.append(
            line(
                "efficiency",
                f"{result.scaling_efficiency:.1%} = speedup / chip ratio "
                f"({result.speedup:,.3f} / {ratio:,.3g})",
            )
        )
    differ = batch is not None and result.global_batch and batch != result.global_batch
    if result.speedup is not None and differ:
        lines.append(
            line(
                "note",
                f"the global batches differ ({result.global_batch:,.0f} here, {batch:,.0f} in "
                "the baseline): the speedup compares samples per second, i.e. the time to "
                "process the same number of samples, not the time of one step",
                wrap=True,
            )
        )
    efficiency = result.scaling_efficiency
    if efficiency is not None and efficiency > 1.0005:
        lines.append(line("note", _above_100(result, base, batch), wrap=True))
    return lines


def _above_100(result: Any, base: Any, batch: float | None) -> str:
    """Why the scaling efficiency of this pair of runs exceeds 100 %."""
    head = "efficiency above 100 %: "
    if result.chips == base.chips:
        return head + (
            f"both runs use {plural(result.chips, 'chip')}, so it is the speedup itself: this "
            f"plan ({result.strategy}) processes samples faster than {base.name} on as many "
            "chips, not a gain from adding chips"
        )
    if batch and result.global_batch:
        here, there = result.global_batch / result.chips, batch / base.chips
        if here > there * 1.0005:
            return head + (
                f"each chip processes {here:,.4g} samples per step here against {there:,.4g} in "
                "the baseline, so costs paid once per step (gradient exchange, optimizer "
                "update, pipeline fill) are shared by more samples"
            )
    return head + (
        "each chip does its work faster than in the baseline (a different split of the work, "
        "micro-batch or memory traffic); compare the two runs' `mean per chip` lines"
    )


def chip_set(ids: list[int]) -> str:
    """``[0, 1, 2, 3, 8, 10]`` -> ``"0-3,8,10"`` (ascending)."""
    ids = sorted(ids)
    parts: list[str] = []
    start = prev = ids[0]
    for i in [*ids[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ",".join(parts)


def _per_chip(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and len(value) > 1
        and all(isinstance(k, str) and k.isdigit() for k in value)
        and all(isinstance(v, dict) for v in value.values())
    )


def compact(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with every top-level mapping keyed by chip id collapsed: chips whose entries are
    identical share one entry keyed by their chip set, in order of the first chip."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if not _per_chip(value):
            out[key] = value
            continue
        groups: dict[str, list[int]] = {}
        entries: dict[str, Any] = {}
        for chip, entry in value.items():
            text = json.dumps(entry, sort_keys=True)
            groups.setdefault(text, []).append(int(chip))
            entries.setdefault(text, entry)
        ordered = sorted(groups.items(), key=lambda kv: min(kv[1]))
        out[key] = {chip_set(ids): entries[text] for text, ids in ordered}
    return out


def run_text(result: Any, overrides: tuple[str, ...] | list[str] = ()) -> str:
    """``ipusim run``'s text: the result's summary, with the ``--set`` overrides named under
    its first line (the result's name is the scenario file's, which they changed)."""
    lines = result.text().split("\n")
    if overrides:
        lines.insert(1, line("overrides", "--set " + ", --set ".join(overrides)))
    return "\n".join(lines)


def run_json(
    result: Any, overrides: tuple[str, ...] | list[str] = (), *, full: bool = False
) -> str:
    """``ipusim run --json``: one document, :func:`compact` unless ``full``; with ``--set``
    overrides an ``overrides`` field (the ``key.path=value`` texts, in order) follows ``name``."""
    from simulator.metrics import to_document

    doc = to_document(result)
    if overrides:
        items = list(doc.items())
        doc = dict([items[0], ("overrides", list(overrides)), *items[1:]])
    return json.dumps(doc if full else compact(doc), indent=2) + "\n"
