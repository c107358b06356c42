"""Sweep files: expansion (grid, zip, derive, where), validation, and the point hash.

A tiny base scenario (the library MLP, data parallel on an M2000) keeps every point fast.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.errors import InputError
from simulator.sweep import expr
from simulator.sweep.points import check_keys, expand
from simulator.sweep.spec import load_sweep
from tests.helpers import TINY_DATA_SCENARIO

BASE = TINY_DATA_SCENARIO


def write(tmp_path: Path, body: str, base: str = BASE) -> Path:
    (tmp_path / "base.yaml").write_text(base)
    path = tmp_path / "sweep.yaml"
    path.write_text("schema_version: 1\nbase: base.yaml\n" + body)
    return path


def points(tmp_path: Path, body: str) -> list[dict]:
    return [p.values for p in expand(load_sweep(write(tmp_path, body))).points]


def test_grid_is_the_cartesian_product_last_axis_fastest(tmp_path: Path) -> None:
    got = points(tmp_path, "grid:\n  topology: [m2000, pod16]\n  training.micro_batch: [8, 16]\n")
    assert got == [
        {"topology": "m2000", "training.micro_batch": 8},
        {"topology": "m2000", "training.micro_batch": 16},
        {"topology": "pod16", "training.micro_batch": 8},
        {"topology": "pod16", "training.micro_batch": 16},
    ]


def test_zip_advances_together_and_combines_with_grid(tmp_path: Path) -> None:
    body = (
        "grid:\n  training.grad_accum: [1, 2]\n"
        "zip:\n  - {topology: [m2000, pod16], training.micro_batch: [8, 32]}\n"
    )
    got = points(tmp_path, body)
    assert len(got) == 4
    assert {(p["topology"], p["training.micro_batch"]) for p in got} == {
        ("m2000", 8),
        ("pod16", 32),
    }


def test_derive_and_where_use_key_paths_and_chips(tmp_path: Path) -> None:
    body = (
        "grid:\n  topology: [m2000, pod16]\n  training.micro_batch: [8, 16]\n"
        "derive:\n  training.global_batch: chips * training.micro_batch\n"
        "where:\n  - training.global_batch <= 128\n"
    )
    sweep = load_sweep(write(tmp_path, body))
    exp = expand(sweep)
    assert exp.combinations == 4 and exp.skipped == 1
    got = [(p.values["topology"], p.values["training.global_batch"]) for p in exp.points]
    assert got == [("m2000", 32), ("m2000", 64), ("pod16", 128)]
    assert exp.points[0].data["training"]["global_batch"] == 32
    assert "training.global_batch=32" in exp.points[0].overrides


def test_point_hash_is_of_the_resolved_point(tmp_path: Path) -> None:
    a = expand(load_sweep(write(tmp_path, "grid:\n  training.micro_batch: [8, 16]\n"))).points
    # the same points written another way (zip, other order, a no-op axis) hash the same
    b = expand(
        load_sweep(
            write(
                tmp_path, "zip:\n  - {training.micro_batch: [16, 8], training.grad_accum: [1, 1]}\n"
            )
        )
    ).points
    assert {p.key for p in a} == {p.key for p in b}
    assert len({p.key for p in a}) == 2


def test_editing_a_named_file_changes_the_hash(tmp_path: Path) -> None:
    model = (Path(__file__).resolve().parents[1] / "models" / "mlp.yaml").read_text()
    (tmp_path / "m.yaml").write_text(model)
    base = BASE.replace("model: mlp", "model: m.yaml")

    def key() -> str:
        body = "grid:\n  training.micro_batch: [8]\n"
        return expand(load_sweep(write(tmp_path, body, base))).points[0].key

    before = key()
    (tmp_path / "m.yaml").write_text(model.replace("hidden: 128", "hidden: 64"))
    assert key() != before


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "grid:\n  training.micro_bach: [8]\n",
            "no key training.micro_bach: unknown key 'micro_bach' (did you mean 'micro_batch'?)",
        ),
        ("grid:\n  strategy.replicaz: [4]\n", "no key strategy.replicaz"),
        ("grid:\n  topology.foo: [1]\n", "cannot set topology.foo"),
        ("grid:\n  training.micro_batch: []\n", "must have at least 1 items"),
        ("zip:\n  - {topology: [m2000], training.micro_batch: [8, 16]}\n", "must have one length"),
        ("grid:\n  topology: [m2000]\nzip:\n  - {topology: [pod16]}\n", "swept twice"),
        ("grid:\n  topology: [m2000]\nwhere:\n  - chips >\n", "invalid expression"),
        ("grid:\n  topology: [m2000]\nwhere:\n  - __import__('os')\n", "only these functions"),
        (
            "grid:\n  topology: [m2000]\nwhere:\n  - training.nope > 1\n",
            "unknown name 'training.nope'",
        ),
        ("grid:\n  topology: [m2000]\nwhere:\n  - chips > 100\n", "no points"),
        ("grids:\n  topology: [m2000]\n", "unknown key 'grids' (did you mean 'grid'?)"),
    ],
)
def test_bad_sweeps_are_input_errors_with_a_line(tmp_path: Path, body: str, message: str) -> None:
    from simulator.sweep.driver import prepare

    with pytest.raises(InputError) as info:
        prepare(load_sweep(write(tmp_path, body)))
    assert message in str(info.value)
    assert str(info.value).startswith(str(tmp_path / "sweep.yaml"))


def test_a_key_absent_from_the_base_but_valid_is_accepted(tmp_path: Path) -> None:
    sweep = load_sweep(write(tmp_path, "grid:\n  training.compute_scale: [1.0, 2.0]\n"))
    check_keys(sweep, expand(sweep))  # no error


def test_expressions_are_sandboxed() -> None:
    lookup = expr.mapping_lookup({"a": {"b": 6}}, {"chips": lambda: 16})
    assert expr.evaluate(expr.parse("chips // a.b + max(1, 2)"), lookup) == 4
    for bad in ("().__class__", "[x for x in a]", "lambda: 1", "open('f')"):
        with pytest.raises(expr.ExprError):
            expr.parse(bad)
    with pytest.raises(expr.ExprError, match="over the limit"):
        expr.evaluate(expr.parse("2 ** 100000"), lookup)


SHIPPED = Path(__file__).resolve().parents[1] / "scenarios"


@pytest.mark.parametrize("path", sorted((SHIPPED / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_sweeps_are_valid(path: Path) -> None:
    from simulator.sweep.driver import prepare

    expansion = prepare(load_sweep(path))
    assert expansion.points and len({p.key for p in expansion.points}) == len(expansion.points)


def test_shipped_mlperf_sweep_covers_bow_pod16_to_256() -> None:
    points = expand(load_sweep(SHIPPED / "sweeps" / "mlperf-bert-bow.yaml")).points
    assert [p.values["topology"] for p in points[:4]] == [
        "bow-pod16", "bow-pod64", "bow-pod128", "bow-pod256",
    ]  # fmt: skip
    assert [p.data["training"]["global_batch"] for p in points[:4]] == [3072, 4608, 6144, 6912]
