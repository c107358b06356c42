"""Results: frozen, JSON-ready, with every field defined in docs/metrics.md.

Results hold no wall-clock times, dates or absolute paths, so the same scenario and seed give
byte-identical JSON. Floats are rounded to 12 significant digits when serialised, which keeps
the text stable across platforms without losing meaningful precision.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return None
        return float(f"{value:.12g}")
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def to_json(result: Any) -> str:
    """One JSON document for a result dataclass (deterministic key order and float text)."""
    return json.dumps(_clean(asdict(result)), indent=2, sort_keys=False) + "\n"


@dataclass(frozen=True)
class Analytic:
    """The closed-form estimate beside a simulated figure."""

    estimate_s: float  # congestion-unaware closed form of the same plan
    lower_bound_s: float  # max(latency bound, busiest resource's bytes / capacity)
    simulated_s: float
    difference: float  # simulated / estimate - 1
    formula: str


@dataclass(frozen=True)
class EngineStats:
    """Deterministic counts of what the engine did (no timings)."""

    tasks: int
    events: int
    flows: int
    flow_recomputations: int
    simulated_steps: int
    cached_steps: int


@dataclass(frozen=True)
class CommResult:
    """Result of a communication scenario (``strategy.type: comm``)."""

    name: str
    feasible: bool
    reason: str | None
    pattern: str
    system: str
    chips: int
    tiles_per_chip: int
    transfers: int
    algorithm: str | None
    bytes_per_tile: float
    bytes_per_chip: float
    payload_bytes: float
    time_s: float
    bandwidth_GBps: float
    algbw_GBps: float | None
    analytic: Analytic
    link_utilisation: dict[str, float] = field(default_factory=dict)
    engine: EngineStats | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 0 if self.feasible else 3

    def text(self) -> str:
        """A short human summary."""
        lines = [
            f"{self.name}: {self.pattern} on {self.system} "
            f"({self.chips} chips x {self.tiles_per_chip} tiles, {self.transfers} transfers"
            + (f", {self.algorithm}" if self.algorithm else "")
            + ")",
            f"  time            {self.time_s * 1e6:,.3f} us",
            f"  bandwidth       {self.bandwidth_GBps:,.2f} GB/s "
            f"(payload {self.payload_bytes:,.0f} B)",
        ]
        if self.algbw_GBps is not None:
            lines.append(f"  algbw           {self.algbw_GBps:,.2f} GB/s")
        a = self.analytic
        lines.append(
            f"  closed form     {a.estimate_s * 1e6:,.3f} us ({a.formula}); "
            f"simulated/estimate - 1 = {a.difference:+.2%}"
        )
        if self.link_utilisation:
            busiest = max(self.link_utilisation.items(), key=lambda kv: kv[1])
            lines.append(f"  busiest link    {busiest[0]} at {busiest[1]:.1%} of the time")
        lines.extend(f"  warning: {w}" for w in self.warnings)
        return "\n".join(lines)
