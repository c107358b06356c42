"""Jobs files (``kind: jobs``): several training scenarios run at once on one system, each on
its own chips (docs/variability.md, "Several jobs on one system")::

    schema_version: 1
    kind: jobs
    name: two-resnets-pod128
    topology: pod128                   # the shared system
    jobs:
      - scenario: ../variability/resnet50-data-pod64.yaml   # relative to this file, or built-in
        chips: 0-31,64-95              # optional: default, the next free chips in order
        set: [variability=null]        # optional --set overrides of that scenario
      - scenario: ../variability/resnet50-data-pod64.yaml
        chips: 32-63,96-127
        set: [variability=null]

Only the schema and the chip-range syntax live here; :mod:`simulator.shared` runs them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from simulator.config.base import NonNegativeInt, SchemaVersion, StrictModel
from simulator.config.jsonschema import register_file_kind

#: Most repeats of one job's step in a shared run (work bounded before expanded).
MAX_REPEATS = 64


class PerMachine(StrictModel):
    """Chips picked by their place in each machine: ``{per_machine: [0, 1]}`` is the first two
    chips of every machine (interleaving jobs so that they share every gateway)."""

    per_machine: Annotated[list[NonNegativeInt], Field(min_length=1)] = Field(
        description="Positions of the chips inside each machine (0 = its lowest chip id)."
    )
    machines: str | list[NonNegativeInt] | None = Field(
        None, description="Machines to take them from (ids or ranges); default: all."
    )


class JobEntry(StrictModel):
    """One job of a jobs file."""

    scenario: str = Field(
        description="A training scenario: a path relative to this file, or a built-in name."
    )
    name: str | None = Field(None, description="Name in results; default: the scenario's.")
    chips: str | list[NonNegativeInt] | PerMachine | None = Field(
        None,
        description="Chips of the shared system this job runs on, in the order its plan "
        "numbers them: a list, ranges ('0-31,64-95') or {per_machine: [0, 1]}; default: as "
        "many as the scenario's own system has, the next free ones in id order.",
    )
    set: list[str] = Field(
        default_factory=list, description="--set style overrides of the scenario (key.path=value)."
    )


class JobsFile(StrictModel):
    """Several jobs sharing one system (``kind: jobs``)."""

    schema_version: SchemaVersion = Field(description="Format version of this file; always 1.")
    kind: Literal["jobs"] = Field(description="File kind.")
    name: str | None = Field(None, description="Name in results; defaults to the file stem.")
    description: str = Field("", description="Free text.")
    topology: str = Field(
        description="The shared system: a built-in name or a path relative to this file."
    )
    jobs: Annotated[list[JobEntry], Field(min_length=1)] = Field(
        description="The jobs; each on its own chips."
    )
    max_repeats: Annotated[int, Field(ge=1, le=MAX_REPEATS)] = Field(
        16,
        description="Most steps of the shortest job simulated while the longest runs one "
        "(more: a steadier shared measurement, slower).",
    )


def parse_chips(text: str) -> list[int]:
    """``'0-3,8,10-11'`` -> ``[0, 1, 2, 3, 8, 10, 11]``; ValueError on anything else."""
    out: list[int] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            raise ValueError(f"empty item in chip ranges '{text}'")
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(f"'{part}' is not a chip id or a range a-b")
        a, b = int(lo), int(hi) if sep else int(lo)
        if b < a:
            raise ValueError(f"range '{part}' runs backwards")
        out.extend(range(a, b + 1))
    return out


register_file_kind("jobs", JobsFile)

__all__ = ["MAX_REPEATS", "JobEntry", "JobsFile", "PerMachine", "parse_chips"]
