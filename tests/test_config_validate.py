"""Schema validation with file:line errors, --set overrides and name resolution
(simulator.config.load, simulator.config.paths)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from pydantic import Field, model_validator

from simulator.config import paths
from simulator.config.base import PositiveFloat, PositiveInt, SchemaVersion, StrictModel
from simulator.config.load import (
    apply_overrides,
    load_file,
    override_document,
    parse_key_path,
    render_path,
    validate,
)
from simulator.config.yamlio import parse_document
from simulator.errors import InputError


class Link(StrictModel):
    bandwidth_GBps: PositiveFloat
    latency_ns: float = 0.0


class Ring(StrictModel):
    kind: Literal["ring"]
    chips: list[int]


class Tree(StrictModel):
    kind: Literal["tree"]
    fanout: PositiveInt


class System(StrictModel):
    schema_version: SchemaVersion
    name: str
    chips: PositiveInt
    links: list[Link] = Field(default_factory=list)
    schedule: Literal["gpipe", "1f1b", "interleaved"] = "gpipe"
    source: str | dict[str, int] = "builtin"
    offload: bool = False
    tiles: Literal["all"] | PositiveInt = "all"
    members: Literal["all"] | list[int] = "all"
    collective: Annotated[Ring | Tree, Field(discriminator="kind")] | None = None

    @model_validator(mode="after")
    def _even(self) -> System:
        if self.chips % 2:
            raise ValueError(f"{self.chips} chips cannot form IPU-Link pairs (use an even number)")
        return self


GOOD = "schema_version: 1\nname: pod\nchips: 4\n"


def check(text: str, model: type[StrictModel] = System, **kwargs: Any) -> InputError:
    doc = parse_document(text, "sys.yaml")
    with pytest.raises(InputError) as info:
        validate(doc, model, **kwargs)
    return info.value


def test_valid_document() -> None:
    doc = parse_document(GOOD + "links:\n  - bandwidth_GBps: 64\n", "sys.yaml")
    system = validate(doc, System)
    assert system.links[0].bandwidth_GBps == 64.0 and system.chips == 4


def test_unknown_key_did_you_mean_and_valid_keys() -> None:
    err = check(GOOD + "links:\n  - bandwidth_GBps: 64\n  - bandwith_GBps: 64\n")
    assert err.location.file == "sys.yaml"
    assert err.location.line == 6
    assert err.location.key_path == "links[1]"
    assert "unknown key 'bandwith_GBps' (did you mean 'bandwidth_GBps'?)" in err.detail
    assert "valid keys: bandwidth_GBps, latency_ns" in err.detail
    # the missing bandwidth_GBps is the same mistake: neither shown nor counted
    assert "more)" not in err.detail
    assert str(err).startswith("sys.yaml:6: links[1]: unknown key")


def test_misspelt_required_key_keeps_its_did_you_mean() -> None:
    """The missing key is reported at the line of its mapping, which comes before the line of
    the misspelling: without merging the two, the did-you-mean would be hidden."""
    err = check("schema_version: 1\nname: pod\nchipz: 4\n")
    assert err.location.line == 3
    assert "unknown key 'chipz' (did you mean 'chips'?)" in err.detail
    assert "missing" not in err.detail and "more)" not in err.detail


def test_unknown_top_level_key() -> None:
    err = check(GOOD + "chipz: 3\n")
    assert err.location.line == 4 and err.location.key_path is None
    assert "unknown key 'chipz'" in err.detail and "valid keys: schema_version, name" in err.detail


def test_wrong_type_names_expected_type() -> None:
    err = check("schema_version: 1\nname: pod\nchips: '4'\n")
    assert err.location.line == 3 and err.location.key_path == "chips"
    assert err.detail == "wrong type (got '4'; expected an integer)"


def test_float_for_int_is_wrong_type() -> None:
    err = check("schema_version: 1\nname: pod\nchips: 4.0\n")
    assert "expected an integer" in err.detail and "got 4.0" in err.detail


def test_int_is_accepted_for_float() -> None:
    doc = parse_document(GOOD + "links: [{bandwidth_GBps: 64}]\n", "sys.yaml")
    assert validate(doc, System).links[0].bandwidth_GBps == 64


def test_yaml_1_1_boolean_gets_a_hint() -> None:
    err = check(GOOD + "offload: yes\n")
    assert err.location.line == 4 and "expected true or false" in err.detail
    assert "YAML 1.2" in err.detail


def test_out_of_range_states_the_bound() -> None:
    err = check(GOOD + "links:\n  - bandwidth_GBps: 0\n")
    assert err.location.line == 5
    assert err.location.key_path == "links[0].bandwidth_GBps"
    assert err.detail == "out of range (got 0; must be > 0)"


def test_literal_lists_choices_with_did_you_mean() -> None:
    err = check(GOOD + "schedule: gpip\n")
    assert err.location.line == 4 and err.location.key_path == "schedule"
    assert err.detail == (
        "unknown value 'gpip' (did you mean 'gpipe'?); one of: gpipe, 1f1b, interleaved"
    )


def test_schema_version() -> None:
    err = check("schema_version: 2\nname: pod\nchips: 4\n")
    assert err.location.line == 1 and "unknown value 2; one of: 1" in err.detail


def test_missing_key_names_parent_line() -> None:
    err = check(GOOD + "links:\n  - latency_ns: 3\n")
    assert err.location.line == 5 and err.location.key_path == "links[0]"
    assert err.detail == "missing required key 'bandwidth_GBps'"


def test_missing_key_sorted_with_others_by_line() -> None:
    err = check("schema_version: 1\nchips: 4\nlinks:\n  - latency_ns: 3\n    x: 1\n")
    assert err.location.line == 1 and err.detail == "missing required key 'name' (and 2 more)"


def test_missing_top_level_key() -> None:
    err = check("schema_version: 1\nchips: 4\n")
    assert err.location.line == 1 and err.location.key_path is None
    assert err.detail == "missing required key 'name'"


def test_first_error_by_line_and_count() -> None:
    err = check("schema_version: 1\nname: pod\nchips: 0\nschedule: x\noffload: 3\n")
    assert err.location.line == 3 and err.detail.endswith("(and 2 more)")


def test_union_reports_one_merged_message() -> None:
    err = check(GOOD + "source: 5\n")
    assert err.detail == "wrong type (got 5; expected a string or a mapping)"


def test_union_reports_the_member_that_got_further() -> None:
    err = check(GOOD + "source:\n  a: 1\n  b: x\n")
    assert err.location.line == 6 and err.location.key_path == "source.b"
    assert "expected an integer" in err.detail and "more" not in err.detail


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        ("0", "out of range (got 0; must be > 0, or one of: all)"),
        ("al", "unknown value 'al' (did you mean 'all'?); one of: all, or an integer"),
        ("1.5", "wrong type (got 1.5; expected an integer, or one of: all)"),
    ],
)
def test_union_of_literal_and_number(value: str, detail: str) -> None:
    err = check(GOOD + f"tiles: {value}\n")
    assert err.location.line == 4 and err.location.key_path == "tiles"
    assert err.detail == detail


def test_union_of_literal_and_list_reports_the_item() -> None:
    err = check(GOOD + "members: [0, 1, x]\n")
    assert err.location.key_path == "members[2]"
    assert err.detail == "wrong type (got 'x'; expected an integer)"


def test_discriminated_union_bad_tag() -> None:
    err = check(GOOD + "collective:\n  kind: rign\n")
    assert err.location.line == 5 and err.location.key_path == "collective.kind"
    assert "unknown value 'rign' (did you mean 'ring'?); one of: ring, tree" in err.detail


def test_discriminated_union_lists_keys_of_chosen_member() -> None:
    err = check(GOOD + "collective:\n  kind: tree\n  fanout: 2\n  chips: [1]\n")
    assert err.location.line == 7 and err.location.key_path == "collective"
    assert "valid keys: kind, fanout" in err.detail


def test_discriminated_union_missing_tag() -> None:
    err = check(GOOD + "collective:\n  fanout: 2\n")
    assert err.location.line == 4 and err.detail == "missing required key 'kind'"


def test_list_item_path() -> None:
    err = check(GOOD + "collective:\n  kind: ring\n  chips: [0, 1, 2, x]\n")
    assert err.location.key_path == "collective.chips[3]" and err.location.line == 6


def test_model_validator_message_shown_as_written() -> None:
    err = check("schema_version: 1\nname: pod\nchips: 3\n")
    assert err.detail == "3 chips cannot form IPU-Link pairs (use an even number)"
    assert err.location.line == 1


def test_sub_tree_at_key_path() -> None:
    doc = parse_document("topology:\n  latency_ns: 3\n  bandwidth_GBps: -1\n", "s.yaml")
    with pytest.raises(InputError) as info:
        validate(doc, Link, at=("topology",))
    assert info.value.location.line == 3
    assert info.value.location.key_path == "topology.bandwidth_GBps"
    link = validate(doc, Link, at=("topology",), data={"bandwidth_GBps": 1})
    assert link.bandwidth_GBps == 1


def test_sub_tree_missing() -> None:
    doc = parse_document("a: 1\n", "s.yaml")
    with pytest.raises(InputError, match="missing required key 'topology'"):
        validate(doc, Link, at=("topology",))


def test_load_file(tmp_path: Path) -> None:
    path = tmp_path / "sys.yaml"
    path.write_text(GOOD + "chips: 2\n")
    with pytest.raises(InputError, match="duplicate key 'chips'") as info:
        load_file(path, System)
    assert info.value.location.file == str(path) and info.value.location.line == 4
    path.write_text(GOOD)
    assert load_file(path, System).name == "pod"


# --- overrides --------------------------------------------------------------------------------


def test_override_values_parse_as_yaml_1_2() -> None:
    data = {"strategy": {"type": "pipeline"}}
    out = apply_overrides(
        data, ["strategy.stages=4", "x=1e6", "flag=yes", "on=true", "s='4'", "chips=[0, 1]"]
    )
    assert out["strategy"] == {"type": "pipeline", "stages": 4}
    assert out["x"] == 1e6 and isinstance(out["x"], float)
    assert out["flag"] == "yes" and out["on"] is True and out["s"] == "4"
    assert out["chips"] == [0, 1]
    assert data == {"strategy": {"type": "pipeline"}}  # input untouched


def test_override_creates_mappings_and_indexes_lists() -> None:
    out = apply_overrides({"a": {"l": [1, 2, 3]}}, ["new.deep.key=1", "a.l[1]=9", "a.l.2=8"])
    assert out == {"a": {"l": [1, 9, 8]}, "new": {"deep": {"key": 1}}}


def test_override_value_with_equals_sign() -> None:
    assert apply_overrides({}, ["description=a=b"]) == {"description": "a=b"}


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("strategy.stages", "expected key.path=value"),
        ("=4", "expected key.path=value"),
        ("a..b=1", "bad key path"),
        ("a.l[7]=1", "no item 7"),
        ("a.n.x=1", "is 5, not a mapping"),
        ("x=[1,", "invalid YAML"),
        ("x=!!python/name:os.system", "not allowed"),
    ],
)
def test_bad_overrides(override: str, match: str) -> None:
    with pytest.raises(InputError, match=match) as info:
        apply_overrides({"a": {"l": [1], "n": 5}}, [override])
    assert info.value.location.file == "--set"


def test_override_errors_name_set_not_a_line() -> None:
    doc = parse_document(GOOD, "sys.yaml")
    doc = override_document(doc, ["chips=-2"])
    with pytest.raises(InputError) as info:
        validate(doc, System)
    assert str(info.value) == "--set: chips: out of range (got -2; must be > 0)"
    doc = override_document(parse_document(GOOD, "sys.yaml"), ["linkz=1"])
    with pytest.raises(InputError, match=r"^--set: unknown key 'linkz' \(did you mean 'links'\?\)"):
        validate(doc, System)


def test_key_path_round_trip() -> None:
    assert parse_key_path("strategy.chips[3].x") == ("strategy", "chips", 3, "x")
    assert render_path(("strategy", "chips", 3, "x")) == "strategy.chips[3].x"


# --- paths ------------------------------------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "data"
    for rel in ("topologies/chips", "models", "scenarios"):
        (root / rel).mkdir(parents=True)
    for rel in ("topologies/pod16", "topologies/pod64", "topologies/chips/gc200", "models/mlp"):
        (root / f"{rel}.yaml").write_text("schema_version: 1\n")
    monkeypatch.setenv(paths.ENV_VAR, str(root))
    return root


def test_builtin_files_are_package_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the override, built-ins are the package data of simulator.builtin, which an
    editable install of this tree maps onto its top-level folders (setup.py)."""
    monkeypatch.delenv(paths.ENV_VAR, raising=False)
    assert paths.data_root() is None
    repo = Path(__file__).resolve().parents[1]
    assert paths.folder("system").resolve() == repo / "topologies"
    assert paths.folder("chip").resolve() == repo / "topologies" / "chips"
    assert paths.folder("model").resolve() == repo / "models"
    assert paths.folder("scenario").resolve() == repo / "scenarios"


def test_resolve_builtin_names(data_dir: Path) -> None:
    assert paths.data_root() == data_dir
    assert paths.resolve("pod16", "system") == data_dir / "topologies/pod16.yaml"
    assert paths.resolve("gc200", "chip") == data_dir / "topologies/chips/gc200.yaml"
    assert paths.builtin_names("system") == ["pod16", "pod64"]


def test_resolve_unknown_name_lists_available(data_dir: Path) -> None:
    with pytest.raises(InputError) as info:
        paths.resolve("pod61", "system")
    message = str(info.value)
    assert message.startswith("unknown system 'pod61' (did you mean 'pod")
    assert "built-in systems: pod16, pod64" in message


def test_resolve_paths(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scen_dir = tmp_path / "exp"
    scen_dir.mkdir()
    (scen_dir / "mine.yaml").write_text("a: 1\n")
    scenario = scen_dir / "s.yaml"
    assert paths.resolve("mine.yaml", "system", relative_to=scenario) == scen_dir / "mine.yaml"
    monkeypatch.chdir(tmp_path)
    assert paths.resolve("exp/mine.yaml", "system") == Path("exp/mine.yaml")
    with pytest.raises(InputError, match=r"system file 'other\.yaml' not found"):
        paths.resolve("other.yaml", "system", relative_to=scenario)
    # a bare name that exists as a file is that file, not the built-in
    (tmp_path / "pod16").write_text("x: 1\n")
    assert paths.resolve("pod16", "system") == Path("pod16")
