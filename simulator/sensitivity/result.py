"""What a sensitivity analysis found: the band, and the assumptions ranked by effect.

The **band** is the envelope of the one-at-a-time runs: the lowest and the highest time among
the base run and every run with one assumption at one end of its range (the others at their
values). It is not a confidence interval and not the worst case of all assumptions moved
together; docs/metrics.md says so beside the field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from simulator.config.assumptions import format_value


@dataclass(frozen=True)
class Effect:
    """One assumption and the time with it at each end of its range."""

    name: str  # key path (chip keys prefixed with ``chip.``)
    assumption: str  # the ASSUMPTION name
    value: bool | int | float | None
    low: bool | int | float
    high: bool | int | float
    unit: str | None
    low_s: float | None  # None: infeasible at that end (``low_reason``)
    high_s: float | None
    low_reason: str | None = None
    high_reason: str | None = None

    def effect(self, base: float) -> float:
        """The larger move of the time from ``base`` (an infeasible end: infinite)."""
        moves = [math.inf if t is None else abs(t - base) for t in (self.low_s, self.high_s)]
        return max(moves)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "assumption": self.assumption,
            "value": self.value,
            "low": self.low,
            "high": self.high,
            "unit": self.unit,
            "low_s": self.low_s,
            "high_s": self.high_s,
        }
        if self.low_reason:
            out["low_reason"] = self.low_reason
        if self.high_reason:
            out["high_reason"] = self.high_reason
        return out


@dataclass(frozen=True)
class Counts:
    """What the analysis cost, in runs (deterministic; no wall-clock time)."""

    plans: int = 0  # plans made for variants
    executions: int = 0  # simulations of a variant
    shared_plans: int = 0  # executions that reused the base plan
    reused: int = 0  # variant ends whose time is the base run's (nothing they change is used)

    def to_json(self) -> dict[str, int]:
        return {"plans": self.plans, "executions": self.executions,
                "shared_plans": self.shared_plans, "reused": self.reused}  # fmt: skip


@dataclass(frozen=True)
class Sensitivity:
    """The band of a result and the assumptions that make it, largest effect first."""

    metric: str  # step_time_s (training) or time_s (comm)
    value_s: float  # the base run's time
    band_s: tuple[float, float]
    assumptions: tuple[Effect, ...]
    untouched: tuple[str, ...] = ()  # declared but not used by this run: left out, not run
    pinned: tuple[str, ...] = ()  # low = high: never varied
    calibrated: tuple[str, ...] = ()  # solved values, held (docs/config.md)
    counts: Counts = field(default_factory=Counts)

    @property
    def infeasible(self) -> list[str]:
        """Assumption ends at which the plan does not fit, as ``NAME=end``."""
        return [
            f"{e.name} at its {end} end"
            for e in self.assumptions
            for end, t in (("low", e.low_s), ("high", e.high_s))
            if t is None
        ]

    def to_json(self) -> dict[str, Any]:
        """The ``sensitivity`` field of ``ipusim run --sensitivity --json`` (docs/metrics.md)."""
        return {
            "metric": self.metric,
            "value_s": self.value_s,
            "band_s": list(self.band_s),
            "assumptions": [e.to_json() for e in self.assumptions],
            "untouched": list(self.untouched),
            "pinned": list(self.pinned),
            "calibrated": list(self.calibrated),
            "runs": self.counts.to_json(),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Sensitivity:
        """Read back :meth:`to_json` (results stores keep it in the result JSON)."""
        effects = tuple(
            Effect(
                e["name"], e["assumption"], e.get("value"), e["low"], e["high"], e.get("unit"),
                e.get("low_s"), e.get("high_s"), e.get("low_reason"), e.get("high_reason"),
            )
            for e in doc["assumptions"]
        )  # fmt: skip
        runs = doc.get("runs") or {}
        return cls(
            doc["metric"],
            doc["value_s"],
            (doc["band_s"][0], doc["band_s"][1]),
            effects,
            tuple(doc.get("untouched", ())),
            tuple(doc.get("pinned", ())),
            tuple(doc.get("calibrated", ())),
            Counts(**{k: int(v) for k, v in runs.items()}),
        )


def ranked(effects: list[Effect], base: float) -> tuple[Effect, ...]:
    """Largest effect first; ties by name (deterministic)."""
    return tuple(sorted(effects, key=lambda e: (-e.effect(base), e.name)))


def envelope(base: float, effects: list[Effect]) -> tuple[float, float]:
    """The band: min and max of the base and every feasible end."""
    times = [base] + [t for e in effects for t in (e.low_s, e.high_s) if t is not None]
    return (min(times), max(times))


# ---- text ------------------------------------------------------------------------------------


def _time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:,.4g} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:,.4g} ms"
    return f"{seconds * 1e6:,.4g} µs"


def _move(t: float | None, base: float) -> str:
    if t is None:
        return "infeasible"
    if base == 0:
        return _time(t)
    move = t / base - 1
    return "0.0%" if abs(move) < 0.0005 else f"{move:+.1%}"


def format_text(s: Sensitivity, *, top: int | None = 15) -> str:
    """The lines ``ipusim run --sensitivity`` prints below the result."""
    what = "step time" if s.metric == "step_time_s" else "time"
    lo, hi = s.band_s
    lines = [
        f"  band            {what} {_time(s.value_s)}: {_time(lo)} – {_time(hi)} within the "
        f"ranges of {len(s.assumptions)} assumption(s), one at a time "
        f"({_move(lo, s.value_s)} / {_move(hi, s.value_s)})",
    ]
    if s.infeasible:
        lines.append(f"                  infeasible at: {', '.join(s.infeasible)}")
    if s.assumptions:
        shown = s.assumptions if top is None else s.assumptions[:top]
        rows = [["assumption", "name", "range", "at low", "at high"]]
        for e in shown:
            rows.append(
                [
                    e.assumption,
                    e.name,
                    f"{format_value(e.low)} – {format_value(e.high, e.unit)}",
                    _move(e.low_s, s.value_s),
                    _move(e.high_s, s.value_s),
                ]
            )
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        for i, r in enumerate(rows):
            text = "  ".join(
                c.rjust(widths[j]) if j >= 3 and i else c.ljust(widths[j]) for j, c in enumerate(r)
            )
            lines.append(("  ranked          " if i == 0 else "                  ") + text.rstrip())
        if len(shown) < len(s.assumptions):
            lines.append(
                f"                  ... {len(s.assumptions) - len(shown)} more (--json lists all)"
            )
    c = s.counts
    notes = [
        f"{len(s.untouched)} not used by this run (left out, not run)" if s.untouched else "",
        f"{len(s.pinned)} pinned" if s.pinned else "",
        f"calibrated, held: {', '.join(s.calibrated)}" if s.calibrated else "",
    ]
    notes = [n for n in notes if n]
    if notes:
        lines.append("  not varied      " + "; ".join(notes))
    lines.append(
        f"  runs            {c.executions} simulations ({c.shared_plans} on the shared plan), "
        f"{c.plans} plans, {c.reused} ends that change nothing the run uses"
    )
    return "\n".join(lines)
