"""The ``variability:`` section of a scenario: a noisy machine, slow chips, degraded links and
host jitter, sampled over independent seeded steps (docs/variability.md).

Only the schema lives here. What it does is in :mod:`simulator.engine.variability` (per-task
draws and the waiting they cause), :mod:`simulator.hardware.derate` (degraded and failed links)
and :mod:`simulator.samples` (running the samples and summarising their distribution).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator

from simulator.config.base import NonNegativeInt, StrictModel

#: Largest coefficient of variation accepted for compute and host jitter (a lognormal with
#: CV 2 already puts 1 % of tasks past 6 x their mean: beyond that the model means nothing).
MAX_CV = 2.0
#: Largest number of samples of one run (work bounded before expanded).
MAX_SAMPLES = 10_000

CV = Annotated[float, Field(ge=0, le=MAX_CV, allow_inf_nan=False)]
SlowFactor = Annotated[float, Field(gt=0, le=1000, allow_inf_nan=False)]
LinkFactor = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class LinkDerate(StrictModel):
    """One degraded or failed link: give ``chips: [a, b]`` (the link between two chips) or
    ``link: [node, node]`` (any two nodes of the system graph, e.g. ``[gw:0, sw:gw]``)."""

    chips: list[NonNegativeInt] | None = Field(
        None, description="The two chips whose direct link (both directions) is derated."
    )
    link: list[str] | None = Field(
        None,
        description="Two node names (ipu:3, gw:0, ddr:0, host:0, sw:gw ...) whose direct link "
        "(both directions) is derated.",
    )
    factor: LinkFactor = Field(
        description="Share of the link's bandwidth left: 0.5 halves it (all parallel links "
        "together), 0 fails it (traffic reroutes, or the plan is infeasible)."
    )

    @model_validator(mode="after")
    def _one_of(self) -> LinkDerate:
        if (self.chips is None) == (self.link is None):
            raise ValueError("give exactly one of chips: [a, b] or link: [node, node]")
        ends = self.chips if self.chips is not None else self.link
        assert ends is not None
        if len(ends) != 2 or ends[0] == ends[1]:
            raise ValueError(f"a link joins two different ends (got {ends})")
        return self


class VariabilitySection(StrictModel):
    """``variability:`` — noise and faults applied in the engine, for every strategy alike."""

    compute_cv: CV = Field(
        0.0,
        description="Coefficient of variation of a lognormal (mean 1) multiplying every compute "
        "task's time, drawn per task and per chip from the scenario seed.",
    )
    slow_chips: dict[NonNegativeInt, SlowFactor] = Field(
        default_factory=dict,
        description="Chip id -> factor multiplying that chip's compute time (2 = half speed).",
    )
    link_derate: list[LinkDerate] = Field(
        default_factory=list, description="Degraded (0 < factor < 1) or failed (0) links."
    )
    host_jitter: CV = Field(
        0.0,
        description="Coefficient of variation of a lognormal (mean 1) multiplying each host "
        "instance's per-step work; the step end waits for the slowest instance.",
    )
    samples: Annotated[int, Field(ge=1, le=MAX_SAMPLES)] = Field(
        64,
        description="Independent seeded steps simulated (one when nothing is random: only "
        "slow chips or derated links).",
    )
    seed: NonNegativeInt | None = Field(
        None, description="Seed of the draws (default: the scenario's seed)."
    )

    @field_validator("slow_chips", mode="before")
    @classmethod
    def _chip_keys(cls, value: Any) -> Any:
        """Chip ids written as digit strings (JSON keys, a sweep's values) are chip ids."""
        if isinstance(value, dict):
            return {
                int(k) if isinstance(k, str) and k.isdigit() else k: v for k, v in value.items()
            }
        return value

    @property
    def random(self) -> bool:
        """Whether anything is drawn (compute or host jitter), so samples differ."""
        return self.compute_cv > 0 or self.host_jitter > 0

    @property
    def active(self) -> bool:
        """Whether anything differs from a steady machine. An inactive section (all zeros,
        factors of 1) leaves the run exactly as without it."""
        return (
            self.random
            or any(f != 1 for f in self.slow_chips.values())
            or any(d.factor != 1 for d in self.link_derate)
        )

    @property
    def effective_samples(self) -> int:
        """Samples worth simulating: one when nothing is drawn (they would all be equal)."""
        return self.samples if self.random else 1


__all__ = ["MAX_CV", "MAX_SAMPLES", "LinkDerate", "VariabilitySection"]
