"""Layer 7: determinism — the same input gives byte-identical output (DESIGN.md § Contracts).

``ipusim run --json`` twice in-process and in two subprocesses (different hash seeds, different
working directories) prints the same bytes; the random pattern is a function of the scenario
seed (same seed, same bytes; another seed, another result); the engine's Trace is identical
across runs of the same graph.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from simulator import cli
from simulator.engine.executor import execute
from simulator.engine.graph import TaskGraph
from simulator.engine.tasks import Collective, Compute, Transfer
from tests.helpers import ring_system

ALL_REDUCE = """\
schema_version: 1
topology: pod16
strategy:
  type: comm
  pattern: all_reduce
  bytes_per_chip: 3000000
"""

RANDOM = """\
schema_version: 1
seed: 7
topology: m2000
strategy:
  type: comm
  pattern: random
  tiles_per_chip: 16
  bytes_per_tile: 100000
"""


def _json(argv: list[str], capsys) -> str:
    assert cli.main([*argv, "--json"]) == 0
    return capsys.readouterr().out


def _ipusim() -> list[str]:
    script = Path(sys.executable).parent / "ipusim"
    return [str(script)] if script.exists() else [sys.executable, "-m", "simulator.cli"]


@pytest.mark.parametrize("text", [ALL_REDUCE, RANDOM], ids=["all_reduce", "random"])
def test_same_scenario_twice_in_process(text: str, tmp_path: Path, capsys) -> None:
    path = tmp_path / "case.yaml"
    path.write_text(text)
    first = _json(["run", str(path)], capsys)
    second = _json(["run", str(path)], capsys)
    assert first == second
    slow = [_json(["run", str(path), "--per-transfer"], capsys) for _ in range(2)]
    assert slow[0] == slow[1]


def test_same_scenario_in_two_subprocesses(tmp_path: Path, capsys) -> None:
    path = tmp_path / "case.yaml"
    path.write_text(RANDOM)
    in_process = _json(["run", str(path)], capsys)
    outputs = []
    for hash_seed, cwd in (("1", tmp_path), ("12345", Path("/"))):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        arg = "case.yaml" if cwd == tmp_path else str(path)
        proc = subprocess.run(
            [*_ipusim(), "run", arg, "--json"],
            capture_output=True,
            text=True,
            env=env,
            cwd=cwd,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        outputs.append(proc.stdout)
    assert outputs[0] == outputs[1] == in_process


def test_random_pattern_follows_the_seed(tmp_path: Path, capsys) -> None:
    path = tmp_path / "rnd.yaml"
    path.write_text(RANDOM)
    seven = json.loads(_json(["run", str(path)], capsys))
    again = json.loads(_json(["run", str(path), "--set", "seed=7"], capsys))
    other = json.loads(_json(["run", str(path), "--set", "seed=8"], capsys))
    assert again.pop("overrides") == ["seed=7"]  # the printed result names the --set it ran with
    other.pop("overrides")
    assert seven == again
    assert seven != other


def test_trace_is_identical_across_runs() -> None:
    def graph() -> TaskGraph:
        g = TaskGraph()
        a = g.add(Compute(4, flops=3e7))
        g.add(Collective("all_reduce", (0, 1, 2, 3), 1e6, "ring"))
        g.add(Transfer(0, 1, 7e5), deps=[a])
        g.add(Transfer(2, 0, 3e5))
        return g

    s = ring_system(5)
    one, two = execute(s, graph()), execute(s, graph())
    assert one.chip_spans == two.chip_spans
    assert one.link_spans == two.link_spans
    assert one.task_end == two.task_end
    assert one.channel_bytes.tolist() == two.channel_bytes.tolist()
    assert (one.events_processed, one.cached_steps, one.simulated_steps) == (
        two.events_processed,
        two.cached_steps,
        two.simulated_steps,
    )
