"""The scenario file shared by every strategy, and the registry of strategy schemas.

A scenario names a topology, a model and a strategy and adds run control (DESIGN.md,
Contracts, "Scenario file"). This module checks the common keys; the keys under ``strategy``
(other than ``type``) are checked by the schema the strategy registered under its type name::

    register_strategy_schema("pipeline", PipelineParams)

``simulator`` never imports ``strategies``: its modules are declared as ``ipusim.strategies``
entry points and imported on the first lookup (:mod:`simulator.plugins`); they register
themselves, or declare the module of each type (:func:`declare_strategy_module`), which is then
imported the first time that type is looked up. ``topology``, ``model`` and ``training`` are
kept as given here (a name, a path or a mapping); their own loaders validate them with
:func:`simulator.config.load.validate` and ``at=("topology",)`` so errors still point at the
right line.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, create_model

from simulator.config import files, paths
from simulator.config.assumptions import (
    ASSUMPTIONS_DESCRIPTION,
    CALIBRATED_DESCRIPTION,
    Assumptions,
    Calibrations,
    check_blocks,
)
from simulator.config.base import (
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    SchemaVersion,
    StrictModel,
)
from simulator.config.jsonschema import register_file_kind
from simulator.config.load import (
    check_kind,
    override_document,
    parse_key_path,
    render_path,
    set_path,
    validate,
)
from simulator.config.variability import VariabilitySection
from simulator.config.yamlio import Document, KeyPath, dump_yaml, load_document, parse_document
from simulator.errors import InputError, did_you_mean
from simulator.plugins import GROUP, load_strategies


class StrategySection(BaseModel):
    """``strategy:`` — a ``type`` plus that strategy's own keys (checked by its schema)."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True, defer_build=True)

    type: str = Field(description="The strategy: data, pipeline, local, random_subspace, ...")


class HostsSection(StrictModel):
    """``hosts:`` — overrides of the system's host defaults for this run."""

    count: PositiveInt | None = Field(None, description="Host servers (system's `host.hosts`).")
    instances: PositiveInt | None = Field(
        None, description="Runtime instances (poprun processes); default: one per host."
    )
    samples_per_s_per_host: PositiveFloat | None = Field(
        None, description="Host data-pipeline throughput; absent: the system's (synthetic data)."
    )
    step_overhead_us: NonNegativeFloat | None = Field(
        None, description="Host-side work per step per instance."
    )

    def system_keys(self) -> dict[str, Any]:
        """The given keys under their names in a system file's ``host:`` section."""
        names = {"count": "hosts"}
        return {names.get(k, k): v for k, v in self.model_dump(exclude_none=True).items()}


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
    hosts: HostsSection | None = Field(
        None,
        description="Overrides of the system's hosts: count, instances, "
        "samples_per_s_per_host, step_overhead_us.",
    )
    baseline: str | dict[str, Any] | None = Field(
        None,
        description="A scenario path relative to this file, or a mapping of key-path "
        "overrides applied to this scenario (e.g. {topology: pod16}).",
    )
    variability: VariabilitySection | None = Field(
        None,
        description="Noise and faults: compute_cv, slow_chips, link_derate, host_jitter, "
        "samples (docs/variability.md). Absent or all zeros: the steady machine.",
    )
    assumptions: Assumptions = Field(default_factory=dict, description=ASSUMPTIONS_DESCRIPTION)
    calibrated: Calibrations = Field(default_factory=dict, description=CALIBRATED_DESCRIPTION)


#: type name -> its schema, or the module that registers it when imported (a declaration)
_STRATEGIES: dict[str, type[BaseModel] | str] = {}


def register_strategy_schema(type_name: str, model: type[StrictModel]) -> None:
    """Declare the schema of ``strategy:`` keys for ``type: <type_name>``.

    ``model`` may omit the ``type`` field (it is stripped before validation) or declare it as
    ``Literal["<type_name>"]``.
    """
    existing = _STRATEGIES.get(type_name)
    if existing is not None and not isinstance(existing, str) and existing is not model:
        raise ValueError(f"strategy type {type_name!r} is already registered to {existing!r}")
    _STRATEGIES[type_name] = model


def declare_strategy_module(type_name: str, module: str) -> None:
    """Declare that importing ``module`` registers ``type_name``: it is imported the first time
    that type is looked up, so a run imports only the strategy it uses (start-up time)."""
    _STRATEGIES.setdefault(type_name, module)


def _resolved(type_name: str) -> type[BaseModel] | None:
    """The schema of ``type_name``, importing its declared module first; None if unknown."""
    entry = _STRATEGIES.get(type_name)
    if isinstance(entry, str):
        importlib.import_module(entry)
        entry = _STRATEGIES.get(type_name)
        if isinstance(entry, str):
            raise RuntimeError(f"module {entry} did not register strategy type {type_name!r}")
    return entry


def strategy_types() -> list[str]:
    """Registered strategy type names, sorted (the entry points are loaded first)."""
    load_strategies()
    return sorted(_STRATEGIES)


def strategy_schema(type_name: str) -> type[BaseModel]:
    """The schema registered for ``type_name``; an unknown name is an :class:`InputError`."""
    load_strategies()
    model = _resolved(type_name)
    if model is not None:
        return model
    if not _STRATEGIES:
        raise InputError(
            f"unknown strategy type '{type_name}': no strategies are registered (their "
            f"modules are '{GROUP}' entry points: install ipusim, e.g. pip install -e .)"
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


def _check_not_other_kind(doc: Document) -> None:
    """A sweep, plan, model, system or chip file (or a Hugging Face config) given as a scenario
    is an error that names the command reading it, before its keys meet the wrong schema."""
    data = doc.data if isinstance(doc.data, dict) else {}
    kind = data.get("kind")
    if isinstance(kind, str) and kind in files.COMMAND and kind != "scenario":
        where, line = doc.location(("kind",))
        raise InputError(
            files.wrong_kind(kind, "scenario", doc.file), file=where, line=line, key_path="kind"
        )
    if "schema_version" not in data and isinstance(data.get("model_type"), str):
        raise InputError(
            "this is a Hugging Face model config, not a scenario; see it with "
            f"`ipusim model show {doc.file}`, or name it as `model: {doc.file}` in a scenario",
            file=doc.file,
        )


def _from_document(doc: Document, path: Path) -> LoadedScenario:
    _check_not_other_kind(doc)
    scenario = validate(doc, ScenarioFile)
    check_blocks(doc, ScenarioFile)
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
    _check_not_other_kind(doc)  # a sweep, plan, model... file given to `ipusim run`: its command
    check_kind(doc, "scenario")  # one of another kind by its keys alone
    if overrides:
        doc = override_document(doc, overrides)
    return _from_document(doc, file)


def with_overrides(
    loaded: LoadedScenario, overrides: list[str] | tuple[str, ...]
) -> LoadedScenario:
    """``loaded`` with further ``key.path=value`` overrides applied (as ``--set`` would)."""
    return _from_document(override_document(loaded.document, overrides), loaded.path)


#: How a scenario given as a Python mapping is named in messages and results.
MAPPING_LABEL = "<scenario mapping>"


def scenario_from_mapping(
    data: Mapping[str, Any], overrides: tuple[str, ...] | list[str] = ()
) -> LoadedScenario:
    """Validate a scenario given as a Python mapping (the API's ``run_scenario({...})``).

    The mapping is read with the same YAML 1.2 rules as a file (it is written out and read
    back, so tuples become lists and only YAML's types are accepted); errors name
    :data:`MAPPING_LABEL` and the key path. Relative paths inside it are taken from the current
    directory; ``name`` defaults to ``scenario``.
    """
    if not isinstance(data, Mapping):
        raise InputError(f"a scenario must be a mapping of keys, got {type(data).__name__}")
    try:
        text = dump_yaml(_plain(data))
    except yaml.YAMLError as exc:
        raise InputError(f"not a YAML-like mapping: {exc}", file=MAPPING_LABEL) from None
    parsed = parse_document(text, MAPPING_LABEL)
    doc = Document(parsed.data, MAPPING_LABEL)  # no lines: they would be of text nobody wrote
    if overrides:
        doc = override_document(doc, overrides)
    return _from_document(doc, Path.cwd() / "scenario")


def _plain(value: Any) -> Any:
    """Tuples as lists and mappings as dicts, all the way down (what YAML can write)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


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
    for type_name in strategy_types():  # loads the strategies' entry points
        model = strategy_schema(type_name)
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
