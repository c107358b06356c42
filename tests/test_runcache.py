"""Runs that share a RunCache reuse systems, plans and (when asked) results — and give the same
results, to the byte, as runs that build everything themselves (issue 16)."""

from __future__ import annotations

import shutil
from pathlib import Path

from simulator.config import paths
from simulator.config.scenario import load_scenario
from simulator.metrics import to_json
from simulator.run import run_loaded
from simulator.runcache import RunCache
from tests.helpers import TINY_DATA_SCENARIO

QUICKSTART = paths.resolve("quickstart", "scenario")


def _json(path: Path, overrides: tuple[str, ...] = (), cache: RunCache | None = None) -> str:
    return to_json(run_loaded(load_scenario(path, overrides), cache=cache).result)


def test_a_repeated_run_reuses_system_and_plan_and_gives_the_same_bytes() -> None:
    cache = RunCache()
    first = _json(QUICKSTART, cache=cache)
    assert cache.hits["plan"] == 0
    again = _json(QUICKSTART, cache=cache)
    # the scenario and its baseline: both systems and both plans come from the cache
    assert cache.hits["system"] == 2 and cache.hits["plan"] == 2
    assert first == again == _json(QUICKSTART)


def test_a_changed_key_makes_a_new_plan_on_the_same_system() -> None:
    cache = RunCache()
    _json(QUICKSTART, ("baseline=null",), cache)
    other = _json(QUICKSTART, ("baseline=null", "training.micro_batch=8"), cache)
    assert cache.hits["system"] == 1 and cache.hits["plan"] == 0
    assert other == _json(QUICKSTART, ("baseline=null", "training.micro_batch=8"))
    _json(QUICKSTART, ("baseline=null", "topology=pod4"), cache)
    assert cache.misses["system"] == 2


def test_shared_baselines_come_from_the_result_cache() -> None:
    """Two variants whose baseline replaces the key they differ in share one baseline run."""
    cache = RunCache(results=True)
    a = _json(QUICKSTART, ("topology=pod16",), cache)
    b = _json(QUICKSTART, ("topology=pod64",), cache)
    assert cache.hits["result"] == 1  # the m2000 baseline of the second run
    assert (a, b) == (
        _json(QUICKSTART, ("topology=pod16",)),
        _json(QUICKSTART, ("topology=pod64",)),
    )


def test_results_are_not_kept_unless_asked() -> None:
    cache = RunCache()
    _json(QUICKSTART, ("baseline=null",), cache)
    _json(QUICKSTART, ("baseline=null",), cache)
    assert cache.hits["result"] == 0 and cache.misses["result"] == 0


def test_editing_a_named_file_makes_a_new_key(tmp_path: Path) -> None:
    """The keys hold the content of the files a scenario names, not only their names."""
    model = tmp_path / "net.yaml"
    shutil.copy(paths.resolve("mlp", "model"), model)
    scenario = tmp_path / "s.yaml"
    scenario.write_text(TINY_DATA_SCENARIO.replace("model: mlp", "model: net.yaml"))
    cache = RunCache(results=True)
    before = _json(scenario, cache=cache)
    text = model.read_text()
    model.write_text(text + "\n# edited\n")
    _json(scenario, cache=cache)
    assert cache.hits["plan"] == cache.hits["result"] == 0
    assert cache.hits["system"] == 1
    assert before == _json(scenario)


def test_least_recently_used_entries_are_dropped() -> None:
    cache = RunCache(size=1)
    _json(QUICKSTART, ("baseline=null",), cache)
    _json(QUICKSTART, ("baseline=null", "topology=pod4"), cache)
    _json(QUICKSTART, ("baseline=null",), cache)
    assert cache.hits["system"] == 0 and cache.misses["system"] == 3


#: one small shipped scenario per strategy type
PER_STRATEGY = (
    "microbench/all-reduce-64MiB-pod16",
    "single/resnet50-gc200",
    "mlperf/resnet50-v1.0-pod16",
    "mlperf/bert-large-v1.0-pod16",
    "local/resnet50-greedy-m2000",
    "random_subspace/mlp-independent-w8",
    "ensemble/resnet50-codistill-pod16",
    "moe/switch-pod16-cf1.0",
)


def test_every_strategy_gives_the_same_bytes_from_a_cached_plan() -> None:
    """A plan run again (its summary made again from it) gives what a fresh run gives, for
    every strategy: no strategy changes its plan while summarising."""
    for name in PER_STRATEGY:
        path = paths.resolve(name, "scenario")
        cache = RunCache()
        first = _json(path, cache=cache)
        again = _json(path, cache=cache)
        assert cache.hits["plan"] >= 1, name
        assert first == again == _json(path), name
