"""Several jobs on one system (``ipusim shared``, docs/variability.md): chips assigned and
checked, graphs relabelled, each job alone as it runs by itself, mutual slowdown when the
jobs share gateways and links, none when they share nothing."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import yaml

from simulator.cli import main
from simulator.config.jobs import parse_chips
from simulator.engine.graph import TaskGraph
from simulator.engine.tasks import Collective, Compute, HostSync, Sync, Transfer
from simulator.errors import InputError
from simulator.run import run_scenario
from simulator.shared import add_repeated, relabel, run_jobs_file

ROOT = Path(__file__).resolve().parents[1]


def scenario(tmp: Path, name: str, topology: str, replicas: int, accum: int = 4) -> Path:
    """A small data-parallel MLP job (fast to plan and run)."""
    f = tmp / f"{name}.yaml"
    f.write_text(
        yaml.safe_dump(
            {
                "schema_version": 1,
                "name": name,
                "topology": topology,
                "model": "mlp",
                "strategy": {"type": "data", "replicas": replicas},
                "training": {"micro_batch": 64, "grad_accum": accum},
            },
            sort_keys=False,
        )
    )
    return f


def jobs_file(tmp: Path, topology: str, jobs: list[dict[str, object]]) -> Path:
    f = tmp / "jobs.yaml"
    f.write_text(
        yaml.safe_dump(
            {"schema_version": 1, "kind": "jobs", "topology": topology, "jobs": jobs},
            sort_keys=False,
        )
    )
    return f


def test_parse_chips() -> None:
    assert parse_chips("0-3,8,10-11") == [0, 1, 2, 3, 8, 10, 11]
    for bad in ("0-", "a", "3-1", "1,,2"):
        with pytest.raises(ValueError):
            parse_chips(bad)


def test_relabel_every_task_kind() -> None:
    chips = [10, 11, 12, 13]
    cache: dict[int, tuple[int, ...]] = {}
    assert relabel(Compute(2, 1.0), chips, cache).chip == 12  # type: ignore[union-attr]
    t = relabel(Transfer(0, 3, 8.0), chips, cache)
    assert (t.src, t.dst) == (10, 13)  # type: ignore[union-attr]
    c = relabel(Collective("all_reduce", (0, 1, 2), 4.0, root=1), chips, cache)
    assert c.group == (10, 11, 12) and c.root == 11  # type: ignore[union-attr]
    s = relabel(Sync((1,), across=(0, 2, 3)), chips, cache)
    assert s.group == (11,) and s.across == (10, 12, 13)  # type: ignore[union-attr]
    h = relabel(HostSync((0, 1, 2, 3)), chips, cache)
    assert h.group == (10, 11, 12, 13)  # type: ignore[union-attr]


def test_repeats_are_chained_by_a_barrier() -> None:
    g = TaskGraph()
    a = g.add(Compute(0, cycles=10.0))
    g.add(Compute(1, cycles=10.0), [a])
    g.add(Compute(1, cycles=10.0))  # a second root
    out = TaskGraph()
    ids = add_repeated(out, g, [4, 5], 3, "job")
    assert [len(r) for r in ids] == [3, 3, 3] and len(out) == 3 * 3 + 2
    barrier = out.nodes[ids[0][-1] + 1]
    assert isinstance(barrier.task, Sync) and barrier.task.count == 0
    assert set(barrier.deps) == {ids[0][1], ids[0][2]}  # the previous repeat's sinks
    roots = [n for n in (out.nodes[i] for i in ids[1]) if n.deps == (barrier.id,)]
    assert len(roots) == 2


def _json(args: list[str]) -> tuple[int, dict[str, object]]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(args)
    return code, json.loads(out.getvalue())


def test_alone_a_job_is_its_own_run(tmp_path: Path) -> None:
    """A pod16 job given all of a pod16: its alone step is exactly `ipusim run`'s."""
    job = scenario(tmp_path, "a", "pod16", 16)
    f = jobs_file(tmp_path, "pod16", [{"scenario": job.name}])
    r = run_jobs_file(f)
    own = run_scenario(job).result.step_time_s
    (j,) = r.jobs
    assert j.feasible and j.chips == "0-15"
    assert j.step_time_alone_s == pytest.approx(own, rel=1e-12)
    assert j.slowdown == pytest.approx(1.0, rel=1e-12)


def test_jobs_on_separate_machines_do_not_slow_each_other(tmp_path: Path) -> None:
    a = scenario(tmp_path, "a", "pod16", 8)
    f = jobs_file(
        tmp_path,
        "pod16",
        [{"scenario": a.name, "chips": "0-7"}, {"scenario": a.name, "chips": "8-15"}],
    )
    r = run_jobs_file(f)
    assert [j.slowdown for j in r.jobs] == [pytest.approx(1.0, abs=1e-9)] * 2


def test_interleaved_jobs_slow_each_other(tmp_path: Path) -> None:
    """Two jobs on the first and last two IPUs of every machine of a POD16 share each
    machine's gateway, Host-Link and Streaming Memory and IPU-Links: both slow down."""
    a = scenario(tmp_path, "a", "pod16", 8, accum=8)
    f = jobs_file(
        tmp_path,
        "pod16",
        [
            {"scenario": a.name, "name": "left", "chips": {"per_machine": [0, 1]}},
            {"scenario": a.name, "name": "right", "chips": {"per_machine": [2, 3]}},
        ],
    )
    code, doc = _json(["shared", str(f), "--json"])
    assert code == 0
    jobs = doc["jobs"]
    assert isinstance(jobs, list)
    assert [j["chips"] for j in jobs] == ["0-1,4-5,8-9,12-13", "2-3,6-7,10-11,14-15"]
    for j in jobs:
        assert j["slowdown"] > 1.001
        assert j["step_time_shared_s"] == pytest.approx(
            j["step_time_alone_s"] * j["slowdown"], rel=1e-9
        )


def test_a_short_job_repeats_while_a_long_one_runs(tmp_path: Path) -> None:
    short = scenario(tmp_path, "short", "pod16", 8, accum=1)
    long = scenario(tmp_path, "long", "pod16", 8, accum=12)
    f = jobs_file(
        tmp_path,
        "pod16",
        [
            {"scenario": short.name, "chips": {"per_machine": [0, 1]}},
            {"scenario": long.name, "chips": {"per_machine": [2, 3]}},
        ],
    )
    r = run_jobs_file(f)
    s, lg = r.jobs
    assert s.repeats > 2 and lg.repeats == 1
    assert s.slowdown is not None and s.slowdown >= 1.0


def test_scenario_files_with_topology(tmp_path: Path) -> None:
    a = scenario(tmp_path, "a", "pod16", 16)
    code, doc = _json(["shared", str(a), str(a), "--topology", "pod64", "--json"])
    assert code == 0
    assert [j["chips"] for j in doc["jobs"]] == ["0-15", "16-31"]  # type: ignore[index]
    assert doc["idle_chips"] == "32-63"


@pytest.mark.parametrize(
    "jobs,message",
    [
        (
            [{"scenario": "a.yaml", "chips": "0-9"}, {"scenario": "a.yaml", "chips": "8-15"}],
            "already",
        ),
        ([{"scenario": "a.yaml", "chips": "0-16"}], "chip 16 is not in pod16"),
        ([{"scenario": "a.yaml", "chips": "0-x"}], "not a chip id"),
        ([{"scenario": "a.yaml", "chips": {"per_machine": [4]}}], "no position 4"),
        ([{"scenario": "a.yaml"}, {"scenario": "a.yaml"}], "only 0 of pod16's 16 are free"),
        ([{"scenario": "missing.yaml"}], "missing"),
        ([{"scenario": "a.yaml", "set": ["strategy.replicas=0"]}], "replicas"),
    ],
)
def test_bad_jobs_are_input_errors(
    tmp_path: Path, jobs: list[dict[str, object]], message: str
) -> None:
    scenario(tmp_path, "a", "pod16", 16)
    f = jobs_file(tmp_path, "pod16", jobs)
    with pytest.raises(InputError, match=message):
        run_jobs_file(f)


def test_jobs_file_given_to_run_names_the_command(tmp_path: Path) -> None:
    scenario(tmp_path, "a", "pod16", 16)
    f = jobs_file(tmp_path, "pod16", [{"scenario": "a.yaml"}])
    with pytest.raises(InputError, match="ipusim shared"):
        run_scenario(f)


def test_shipped_jobs_file_reports_mutual_slowdown() -> None:
    """The shipped example: two 64-IPU ResNet-50 jobs interleaved on a POD128."""
    r = run_jobs_file(ROOT / "scenarios/shared/two-resnet50-pod128.yaml")
    assert r.feasible and len(r.jobs) == 2
    for j in r.jobs:
        assert j.slowdown is not None and j.slowdown > 1.01
