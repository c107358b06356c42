"""Base class of every schema: strict, frozen, unknown keys forbidden.

Every file kind (chip, system, model, scenario, sweep) is a :class:`StrictModel` subclass with
``schema_version``. Loading, line numbers and error messages live in :mod:`simulator.config.load`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

SchemaVersion = Literal[1]

# Sizes, rates and times are finite: .inf or 1e400 is invalid input, not a run that never ends.
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
Fraction = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]


class StrictModel(BaseModel):
    """Frozen, strict (no silent type coercion), extra keys forbidden.

    ``defer_build``: a schema's validator is built the first time it validates, not when its
    module is imported, so a run pays only for the schemas it uses (import time, issue 16).
    """

    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, populate_by_name=False, defer_build=True
    )
