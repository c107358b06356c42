"""The scenario file shared by every strategy, and the registry of strategy schemas.

A scenario names a topology, a model and a strategy and adds run control (DESIGN.md,
Contracts, "Scenario file"). This module checks the common keys; the keys under ``strategy``
(other than ``type``) are checked by the schema the strategy registered under its type name::

    register_strategy_schema("pipeline", PipelineParams)

``simulator`` never imports ``strategies``: the CLI imports that package, whose modules register
themselves. ``topology``, ``model`` and ``training`` are kept as given here (a name, a path or a
mapping); their own loaders validate them with :func:`simulator.config.load.validate` and
``at=("topology",)`` so errors still point at the right line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model

from simulator.config import paths
from simulator.config.base import NonNegativeInt, SchemaVersion, StrictModel
from simulator.config.jsonschema import register_file_kind
from simulator.config.load import (
    check_kind,
    override_document,
    parse_key_path,
    render_path,
    set_path,
    validate,
)
from simulator.config.yamlio import Document, KeyPath, load_document
from simulator.errors import InputError, did_you_mean


class StrategySection(BaseModel):
    """``strategy:`` — a ``type`` plus that strategy's own keys (checked by its schema)."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)

    type: str = Field(description="The strategy: data, pipeline, local, random_subspace, ...")


class ScenarioFile(StrictModel):
    """One runnable scenario: what hardware, what model, how the work is split, run control."""

    schema_version: SchemaVersion = Field(description="Format version of this file; always 1.")
    name: str | None = Field(None, description="Name in results; defaults to the file stem.")
    description: str = Field("", description="Free text shown in reports.")
    seed: NonNegativeInt = Field(0, description="Seed of the run's one random generator.")
    topology: str | dict[str, Any] = Field(
        description="A system name from topologies/, a path to a system file, or a mapping."
    )
    model: str | dict[str, Any] | None = Field(
        None, description="A model name from models/, a path, or a mapping (not for comm)."
    )
    strategy: StrategySection = Field(description="`type:` plus that strategy's keys.")
    training: dict[str, Any] | None = Field(
        None, description="global_batch, micro_batch, grad_accum, dtype, optimizer, steps."
    )
    baseline: str | dict[str, Any] | None = Field(
        None,
        description="A scenario path relative to this file, or a mapping of key-path "
        "overrides applied to this scenario (e.g. {topology: pod16}).",
    )


_STRATEGIES: dict[str, type[BaseModel]] = {}


def register_strategy_schema(type_name: str, model: type[StrictModel]) -> None:
    """Declare the schema of ``strategy:`` keys for ``type: <type_name>``.

    ``model`` may omit the ``type`` field (it is stripped before validation) or declare it as
    ``Literal["<type_name>"]``.
    """
    existing = _STRATEGIES.get(type_name)
    if existing is not None and existing is not model:
        raise ValueError(f"strategy type {type_name!r} is already registered to {existing!r}")
    _STRATEGIES[type_name] = model


def strategy_types() -> list[str]:
    """Registered strategy type names, sorted."""
    return sorted(_STRATEGIES)


def strategy_schema(type_name: str) -> type[BaseModel]:
    """The schema registered for ``type_name``; an unknown name is an :class:`InputError`."""
    model = _STRATEGIES.get(type_name)
    if model is not None:
        return model
    if not _STRATEGIES:
        raise InputError(
            f"unknown strategy type '{type_name}': no strategies are registered "
            "(the entry point must import the 'strategies' package)"
        )
    names = strategy_types()
    raise InputError(
        f"unknown strategy type '{type_name}'{did_you_mean(type_name, names)}; "
        f"one of: {', '.join(names)}"
    )


@dataclass(frozen=True)
class LoadedScenario:
    """A validated scenario: the common keys, the strategy's parameters, and where they came from.

    ``document`` keeps line numbers (and ``--set`` origins) for the loaders of the topology,
    model and training sections, which validate them later with ``at=(section,)``.
    """

    scenario: ScenarioFile
    strategy: BaseModel
    document: Document
    path: Path

    @property
    def name(self) -> str:
        """The scenario's name (the file stem unless ``name:`` is given)."""
        return self.scenario.name or self.path.stem


def _from_document(doc: Document, path: Path) -> LoadedScenario:
    scenario = validate(doc, ScenarioFile)
    if scenario.name is None:
        scenario = scenario.model_copy(update={"name": path.stem})
    type_name = scenario.strategy.type
    try:
        model = strategy_schema(type_name)
    except InputError as exc:
        file, line = doc.location(("strategy", "type"))
        raise exc.at(file=file, line=line, key_path="strategy.type") from None
    keep_type = "type" in model.model_fields
    params = {k: v for k, v in doc.data["strategy"].items() if keep_type or k != "type"}
    strategy = validate(doc, model, at=("strategy",), data=params)
    return LoadedScenario(scenario, strategy, doc, path)


def load_scenario(path: str | Path, overrides: tuple[str, ...] | list[str] = ()) -> LoadedScenario:
    """Read, override (``--set key.path=value`` texts) and validate one scenario file.

    ``path`` is a path or the name of a built-in scenario under scenarios/.
    """
    file = paths.resolve(path, "scenario")
    doc = load_document(file)
    check_kind(doc, "scenario")  # a sweep or plan file given to `ipusim run`
    if overrides:
        doc = override_document(doc, overrides)
    return _from_document(doc, file)


def load_baseline(loaded: LoadedScenario) -> LoadedScenario | None:
    """The scenario named by ``baseline:``, or None when there is none.

    A string is a scenario path, relative to this scenario's file (``--set`` overrides of this
    run do not apply to it). A mapping is key paths to replace in *this* scenario (after its
    overrides): ``{topology: pod16, strategy.stages: 1}``; a value replaces the whole sub-tree.
    The derived baseline is named ``<name>-baseline`` unless the mapping sets ``name``.
    """
    baseline = loaded.scenario.baseline
    doc = loaded.document
    if baseline is None:
        return None
    if isinstance(baseline, str):
        try:
            file = paths.resolve(baseline, "scenario", relative_to=loaded.path)
        except InputError as exc:
            where, line = doc.location(("baseline",))
            raise exc.at(file=where, line=line, key_path="baseline") from None
        return load_scenario(file)
    data = {k: v for k, v in doc.data.items() if k != "baseline"}
    data["name"] = f"{loaded.name}-baseline"
    origins: dict[KeyPath, tuple[str, int | None]] = {}
    for key, value in baseline.items():
        where, line = doc.location(("baseline", key))
        try:
            target = parse_key_path(str(key), where)
            data = set_path(data, target, value, where)
        except InputError as exc:
            raise exc.at(file=where, line=line, key_path=render_path(("baseline", key))) from None
        origins[target] = (where, line)
    return _from_document(doc.with_data(data, origins), loaded.path)


def scenario_schema_model() -> type[BaseModel]:
    """:class:`ScenarioFile` with ``strategy`` spelled out per registered strategy (for editors)."""
    members: list[type[BaseModel]] = []
    for type_name in strategy_types():
        model = _STRATEGIES[type_name]
        if "type" not in model.model_fields:
            # Literal[type_name] of a runtime value is a valid pydantic field type that no
            # static type can express
            model = create_model(
                model.__name__,
                __base__=model,
                __module__=model.__module__,
                type=(Literal[type_name], Field(description="The strategy.")),  # type: ignore[arg-type]
            )
        members.append(model)
    if not members:
        return ScenarioFile
    annotation: Any = members[0]
    if len(members) > 1:
        annotation = Annotated[Union[tuple(members)], Field(discriminator="type")]  # noqa: UP007
    return create_model(  # type: ignore[call-overload,no-any-return]
        "ScenarioFile",
        __base__=ScenarioFile,
        __module__=__name__,
        strategy=(annotation, Field(description="`type:` plus that strategy's keys.")),
    )


register_file_kind("scenario", scenario_schema_model)
