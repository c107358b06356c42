"""The scenario file, the strategy-schema registry, baselines and the JSON Schemas
(simulator.config.scenario, simulator.config.jsonschema)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import pytest

from simulator import plugins
from simulator.config import jsonschema, scenario
from simulator.config.base import PositiveInt, StrictModel
from simulator.config.scenario import (
    ScenarioFile,
    load_baseline,
    load_scenario,
    register_strategy_schema,
    strategy_schema,
)
from simulator.errors import InputError

REPO = Path(__file__).resolve().parents[1]
SCHEMA_DIR = REPO / "docs" / "schemas"
EXPECTED_KINDS = {"chip", "system", "model", "scenario"}


class PipelineParams(StrictModel):
    stages: PositiveInt
    micro_batches: PositiveInt = 1


class DataParams(StrictModel):
    type: Literal["data"]
    replicas: PositiveInt = 1


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """A private strategy registry holding two test strategies (entry points not loaded)."""
    monkeypatch.setattr(scenario, "_STRATEGIES", {})
    monkeypatch.setitem(plugins._state, "loaded", True)
    register_strategy_schema("pipeline", PipelineParams)
    register_strategy_schema("data", DataParams)


def write(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


BASIC = """\
schema_version: 1
topology: pod16
model: mlp
strategy:
  type: pipeline
  stages: 4
"""


def load_error(path: Path, overrides: tuple[str, ...] = ()) -> InputError:
    with pytest.raises(InputError) as info:
        load_scenario(path, overrides)
    return info.value


def test_minimal_scenario_defaults(registry: None, tmp_path: Path) -> None:
    loaded = load_scenario(write(tmp_path, BASIC))
    assert loaded.name == "exp" and loaded.scenario.name == "exp"
    assert loaded.scenario.seed == 0 and loaded.scenario.description == ""
    assert loaded.scenario.topology == "pod16" and loaded.scenario.model == "mlp"
    assert loaded.scenario.training is None and loaded.scenario.baseline is None
    assert loaded.strategy == PipelineParams(stages=4)
    assert loaded.path == tmp_path / "exp.yaml"
    assert loaded.document.line_of(("strategy", "stages")) == 6


def test_inline_topology_keeps_lines_for_later(registry: None, tmp_path: Path) -> None:
    text = BASIC.replace("topology: pod16", "topology:\n  machines: 4\n  chip: gc200")
    loaded = load_scenario(write(tmp_path, text))
    assert loaded.scenario.topology == {"machines": 4, "chip": "gc200"}
    assert loaded.document.line_of(("topology", "chip")) == 4


def test_strategy_model_declaring_type_keeps_it(registry: None, tmp_path: Path) -> None:
    text = BASIC.replace("type: pipeline\n  stages: 4", "type: data\n  replicas: 8")
    loaded = load_scenario(write(tmp_path, text))
    assert loaded.strategy == DataParams(type="data", replicas=8)


def test_unknown_strategy_type(registry: None, tmp_path: Path) -> None:
    err = load_error(write(tmp_path, BASIC.replace("type: pipeline", "type: pipline")))
    assert err.location.line == 5 and err.location.key_path == "strategy.type"
    assert "unknown strategy type 'pipline' (did you mean 'pipeline'?)" in err.detail
    assert "one of: data, pipeline" in err.detail


def test_strategy_without_type(registry: None, tmp_path: Path) -> None:
    err = load_error(write(tmp_path, BASIC.replace("  type: pipeline\n", "")))
    assert err.location.line == 4 and err.location.key_path == "strategy"
    assert err.detail == "missing required key 'type'"


def test_strategy_keys_checked_by_registered_schema(registry: None, tmp_path: Path) -> None:
    err = load_error(write(tmp_path, BASIC + "  micro_batchs: 8\n"))
    assert err.location.line == 7 and err.location.key_path == "strategy"
    assert "unknown key 'micro_batchs' (did you mean 'micro_batches'?)" in err.detail
    assert "valid keys: stages, micro_batches" in err.detail
    err = load_error(write(tmp_path, BASIC.replace("stages: 4", "stages: 0")))
    assert (
        str(err) == f"{tmp_path / 'exp.yaml'}:6: strategy.stages: out of range (got 0; must be > 0)"
    )


def test_strategy_schema_lookup(registry: None) -> None:
    assert strategy_schema("pipeline") is PipelineParams
    with pytest.raises(InputError, match="did you mean 'data'"):
        strategy_schema("date")


def test_no_strategies_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scenario, "_STRATEGIES", {})
    monkeypatch.setitem(plugins._state, "loaded", True)
    with pytest.raises(InputError, match="no strategies are registered"):
        strategy_schema("data")


def test_registering_twice_is_a_bug(registry: None) -> None:
    register_strategy_schema("pipeline", PipelineParams)  # same model again is harmless
    with pytest.raises(ValueError, match="already registered"):
        register_strategy_schema("pipeline", DataParams)


@pytest.mark.parametrize(
    ("change", "line", "key_path", "fragment"),
    [
        (("seed: 0", "seed: -1"), 2, "seed", "out of range (got -1; must be >= 0)"),
        (("seed: 0", "seed: '7'"), 2, "seed", "wrong type (got '7'; expected an integer)"),
        (("seed: 0", "sed: 1"), 2, None, "unknown key 'sed' (did you mean 'seed'?)"),
        (("schema_version: 1", "schema_version: 2"), 1, "schema_version", "one of: 1"),
        (("topology: pod16\n", ""), 1, None, "missing required key 'topology'"),
        (("topology: pod16", "topology: 16"), 3, "topology", "expected a string or a mapping"),
        (("model: mlp", "model: [mlp]"), 4, "model", "expected a string or a mapping"),
        (
            ("strategy:\n  type: pipeline\n  stages: 4", "strategy: pipeline"),
            5,
            "strategy",
            "a mapping",
        ),
    ],
)
def test_common_key_errors(
    registry: None,
    tmp_path: Path,
    change: tuple[str, str],
    line: int,
    key_path: str | None,
    fragment: str,
) -> None:
    text = BASIC.replace("topology:", "seed: 0\ntopology:", 1)
    err = load_error(write(tmp_path, text.replace(*change)))
    assert err.location.line == line, str(err)
    assert err.location.key_path == key_path
    assert fragment in err.detail


def test_builtin_scenario_name_resolves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "scenarios").mkdir()
    monkeypatch.setenv("IPUSIM_DATA", str(tmp_path))
    # no built-in scenarios at all is a broken installation or override, never "unknown"
    with pytest.raises(InputError, match=r"no built-in scenario files found .*IPUSIM_DATA"):
        load_scenario("nope")
    (tmp_path / "scenarios" / "sub").mkdir()
    (tmp_path / "scenarios" / "sub" / "nape.yaml").write_text("schema_version: 1\n")
    with pytest.raises(InputError, match="unknown scenario 'nope' \\(did you mean 'sub/nape'"):
        load_scenario("nope")


def test_overrides(registry: None, tmp_path: Path) -> None:
    path = write(tmp_path, BASIC)
    loaded = load_scenario(path, ("strategy.stages=8", "seed=3", "name=exp2"))
    assert loaded.strategy == PipelineParams(stages=8)
    assert loaded.scenario.seed == 3 and loaded.name == "exp2"
    err = load_error(path, ("strategy.stages=x",))
    assert str(err) == "--set: strategy.stages: wrong type (got 'x'; expected an integer)"
    err = load_error(path, ("strategy.type=piepline",))
    assert err.location.file == "--set" and "did you mean 'pipeline'" in err.detail


def test_baseline_mapping(registry: None, tmp_path: Path) -> None:
    path = write(tmp_path, BASIC + "baseline: {topology: pod4, strategy.stages: 1}\n")
    base = load_baseline(load_scenario(path))
    assert base is not None
    assert base.name == "exp-baseline" and base.scenario.topology == "pod4"
    assert base.strategy == PipelineParams(stages=1) and base.scenario.baseline is None


def test_baseline_mapping_error_names_its_line(registry: None, tmp_path: Path) -> None:
    path = write(tmp_path, BASIC + "baseline:\n  strategy.stages: 0\n")
    with pytest.raises(InputError) as info:
        load_baseline(load_scenario(path))
    assert info.value.location.file == str(path) and info.value.location.line == 8
    assert "must be > 0" in info.value.detail


def test_baseline_path_relative_to_scenario(registry: None, tmp_path: Path) -> None:
    write(tmp_path, BASIC.replace("stages: 4", "stages: 1"), "single.yaml")
    loaded = load_scenario(write(tmp_path, BASIC + "baseline: single.yaml\n"))
    base = load_baseline(loaded)
    assert base is not None and base.name == "single" and base.strategy.stages == 1  # type: ignore[attr-defined]
    missing = load_scenario(write(tmp_path, BASIC + "baseline: gone.yaml\n", "m.yaml"))
    with pytest.raises(InputError, match="not found") as info:
        load_baseline(missing)
    assert info.value.location.line == 7 and info.value.location.key_path == "baseline"
    assert load_baseline(load_scenario(write(tmp_path, BASIC, "n.yaml"))) is None


# --- JSON Schemas -----------------------------------------------------------------------------


def test_scenario_schema_lists_registered_strategies(registry: None) -> None:
    schema = jsonschema.schema_of("scenario", scenario.scenario_schema_model())
    strategy = schema["properties"]["strategy"]
    assert set(strategy["discriminator"]["mapping"]) == {"data", "pipeline"}
    assert schema["additionalProperties"] is False and "topology" in schema["required"]


def test_write_schemas(tmp_path: Path) -> None:
    written = jsonschema.write_schemas(tmp_path)
    assert tmp_path / "scenario.schema.json" in written
    schema = json.loads((tmp_path / "scenario.schema.json").read_text())
    assert schema["title"] == "ipusim scenario file"


def _registered() -> dict:
    jsonschema.discover()
    return jsonschema.file_kinds()


def test_committed_schemas_are_up_to_date() -> None:
    kinds = _registered()
    stale = [
        kind
        for kind, model in kinds.items()
        if not (SCHEMA_DIR / jsonschema.schema_file_name(kind)).is_file()
        or (SCHEMA_DIR / jsonschema.schema_file_name(kind)).read_text(encoding="utf-8")
        != jsonschema.render(kind, model)
    ]
    assert not stale, (
        f"docs/schemas is out of date for {stale}; "
        "run: python -m simulator.config.jsonschema docs/schemas"
    )
    orphans = {p.name for p in SCHEMA_DIR.glob("*.schema.json")} - {
        jsonschema.schema_file_name(k) for k in kinds
    }
    assert not orphans, f"schema files of unregistered kinds: {sorted(orphans)}"


def test_every_file_kind_is_registered() -> None:
    assert set(_registered()) >= EXPECTED_KINDS


def test_scenario_file_model_is_strict() -> None:
    assert ScenarioFile.model_config["extra"] == "forbid"
    assert ScenarioFile.model_config["frozen"] is True
