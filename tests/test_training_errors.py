"""Bad input and infeasible plans of the training strategies (DESIGN.md § Contracts).

Through the command line (:func:`simulator.cli.main` in-process, capsys) and the API
(:func:`simulator.run.run_scenario`):

* invalid input is exit 2 with one ``ipusim: error: <file>:<line>: <key path>: ...`` line on
  stderr and nothing on stdout: stages x replicas that do not match the chips (pipeline and
  data), ``layers_per_stage`` not adding up to the model's blocks, ``attention_ffn_per_stage``
  of the wrong length, ``global_batch`` that is not micro_batch x grad_accum x replicas x
  samples_per_input (micro-batches that do not divide the batch), the interleaved schedule
  with micro-batches that are not a multiple of the stages, ``chunks`` without
  ``interleaved``, an unknown model (with a did-you-mean), a ``single`` chip that does not
  exist, negative placement counts;
* a model that does not fit in SRAM is a result, not an error: exit 3, ``--json`` prints one
  document with ``feasible: false`` and a ``reason`` saying by how much it is over and what
  would help.

**A placement cannot name a layer twice — by construction.** None of the three placement forms
names layers: ``auto`` cuts the model's units into contiguous runs; ``layers_per_stage`` and
``attention_ffn_per_stage`` give *counts* that take blocks (parts) in model order, each from
where the previous stage stopped, and the counts must add up to the model's blocks (parts).
So every layer lands on exactly one stage, in order, as long as no count is negative (a
negative count would step back and hand a block out twice; the schema rejects it: exit 2).
:func:`test_every_placement_form_partitions_the_layers` proves the partition property over
every split of bert-base's 12 encoder layers into 1–4 stages, every attention/FFN split that
shifts parts between neighbouring stages, and ``auto`` for 1…all units; the negative-count
tests prove the guard.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

import strategies  # noqa: F401 - registers the strategies
from simulator import cli
from simulator.config.yamlio import dump_yaml
from simulator.errors import InputError
from simulator.run import run_scenario
from simulator.workloads.library import load_model
from strategies import placement


def write(tmp: Path, text: str, name: str = "scenario.yaml") -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def run_cli(capsys: pytest.CaptureFixture[str], path: Path, *extra: str) -> tuple[int, str, str]:
    code = cli.main(["run", str(path), *extra])
    out, err = capsys.readouterr()
    return code, out, err


def line_of(path: Path, needle: str) -> int:
    """1-based line of the first line of ``path`` containing ``needle``."""
    for i, text in enumerate(path.read_text().splitlines(), 1):
        if needle in text:
            return i
    raise AssertionError(f"{needle!r} not in {path}")


def assert_input_error(
    capsys: pytest.CaptureFixture[str],
    path: Path,
    key_path: str,
    needle: str,
    *words: str,
) -> str:
    """Exit 2, one stderr line naming file:line and the key path, and the words; the API
    raises the same InputError."""
    code, out, err = run_cli(capsys, path, "--json")
    assert code == 2, err
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    prefix = f"ipusim: error: {path}:{line_of(path, needle)}: {key_path}: "
    assert lines[0].startswith(prefix), (lines[0], prefix)
    for w in words:
        assert w in lines[0], (w, lines[0])
    with pytest.raises(InputError) as info:
        run_scenario(path)
    assert info.value.location.key_path == key_path
    assert info.value.location.line == line_of(path, needle)
    return lines[0]


PIPELINE = """\
schema_version: 1
topology: m2000
model: {model}
strategy:
  type: pipeline
  stages: {stages}
  replicas: {replicas}
  schedule: {schedule}
{extra}training:
  micro_batch: 2
  grad_accum: {grad_accum}
  dtype: fp16
{training}"""


def pipeline(
    model: str = "mlp",
    stages: int = 4,
    replicas: int = 1,
    schedule: str = "1f1b",
    extra: str = "",
    grad_accum: int = 4,
    training: str = "",
) -> str:
    return PIPELINE.format(
        model=model,
        stages=stages,
        replicas=replicas,
        schedule=schedule,
        extra=extra,
        grad_accum=grad_accum,
        training=training,
    )


# ---- invalid input: exit 2 --------------------------------------------------------------------
def test_stages_times_replicas_not_the_chips(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, pipeline(model="bert-base", stages=3, replicas=1))
    msg = assert_input_error(
        capsys, path, "strategy.stages", "stages: 3", "3 stage(s) x 1 replica(s) = 3", "has 4"
    )
    assert "[1, 2, 4]" in msg  # what is valid


def test_data_replicas_not_the_chips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "schema_version: 1\ntopology: m2000\nmodel: mlp\nstrategy:\n  type: data\n"
    text += "  replicas: 3\ntraining:\n  micro_batch: 4\n"
    path = write(tmp_path, text)
    assert_input_error(capsys, path, "strategy.replicas", "replicas: 3", "m2000 has 4")


def test_layers_per_stage_not_adding_up(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, pipeline(model="bert-base", extra="  layers_per_stage: [3, 3, 3, 2]\n"))
    assert_input_error(
        capsys,
        path,
        "strategy.layers_per_stage",
        "layers_per_stage",
        "add up to 11",
        "has 12 repeated blocks",
        "make them add up to 12",
    )


def test_layers_per_stage_wrong_length(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, pipeline(model="bert-base", extra="  layers_per_stage: [6, 6]\n"))
    assert_input_error(
        capsys, path, "strategy.layers_per_stage", "layers_per_stage", "2 entries for 4 stages"
    )


def test_attention_ffn_per_stage_wrong_length(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = "  attention_ffn_per_stage: [[4, 4], [4, 4], [4, 4]]\n"
    path = write(tmp_path, pipeline(model="bert-base", extra=extra))
    assert_input_error(
        capsys,
        path,
        "strategy.attention_ffn_per_stage",
        "attention_ffn_per_stage",
        "3 entries for 4 stages",
        "one entry per stage",
    )


def test_attention_ffn_per_stage_not_adding_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = "  attention_ffn_per_stage: [[3, 3], [3, 3], [3, 3], [3, 2]]\n"
    path = write(tmp_path, pipeline(model="bert-base", extra=extra))
    assert_input_error(
        capsys,
        path,
        "strategy.attention_ffn_per_stage",
        "attention_ffn_per_stage",
        "ffn counts add up to 11",
        "12 ffn parts",
    )


def test_both_placements_given(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    extra = (
        "  layers_per_stage: [3, 3, 3, 3]\n"
        "  attention_ffn_per_stage: [[3, 3], [3, 3], [3, 3], [3, 3]]\n"
    )
    path = write(tmp_path, pipeline(model="bert-base", extra=extra))
    assert_input_error(capsys, path, "strategy.layers_per_stage", "layers_per_stage", "not both")


def test_stage_without_layers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, pipeline(model="bert-base", extra="  layers_per_stage: [6, 0, 3, 3]\n"))
    # bert-base's embedding goes to stage 0 and its heads to the last stage: stage 1 is empty
    assert_input_error(capsys, path, "strategy", "strategy:", "stage 1 would hold no layer")


@pytest.mark.parametrize(
    "extra",
    [
        "  layers_per_stage: [7, -1, 3, 3]\n",
        "  attention_ffn_per_stage: [[4, 4], [-1, 1], [5, 4], [4, 3]]\n",
    ],
)
def test_negative_placement_counts_are_invalid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str
) -> None:
    """A negative count would step back and hand a block to two stages; the schema forbids it."""
    path = write(tmp_path, pipeline(model="bert-base", extra=extra))
    code, out, err = run_cli(capsys, path, "--json")
    assert code == 2 and out == ""
    assert f"{path}:{line_of(path, '-1')}: strategy." in err
    assert "-1" in err


def test_global_batch_not_the_product(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(
        tmp_path, pipeline(stages=2, replicas=2, grad_accum=3, training="  global_batch: 16\n")
    )
    assert_input_error(
        capsys,
        path,
        "training.global_batch",
        "global_batch",
        "global_batch 16 != micro_batch 2 x grad_accum 3 x replicas 2",
        "= 12",
    )


def test_interleaved_needs_micro_batches_a_multiple_of_stages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        pipeline(model="bert-base", schedule="interleaved", extra="  chunks: 2\n", grad_accum=6),
    )
    assert_input_error(
        capsys, path, "training.grad_accum", "grad_accum", "(6)", "multiple of the stages (4)"
    )


def test_chunks_without_interleaved(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, pipeline(model="bert-base", extra="  chunks: 2\n"))
    assert_input_error(
        capsys, path, "strategy.chunks", "chunks", "needs schedule interleaved", "chunks: 1"
    )


def test_unknown_model_did_you_mean(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "schema_version: 1\ntopology: m2000\nmodel: bert-bsae\nstrategy:\n  type: data\n"
    text += "training:\n  micro_batch: 4\n"
    path = write(tmp_path, text)
    assert_input_error(
        capsys, path, "model", "model:", "unknown model 'bert-bsae'", "did you mean 'bert-base'"
    )


def test_single_chip_out_of_range(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "schema_version: 1\ntopology: m2000\nmodel: mlp\nstrategy:\n  type: single\n"
    text += "  chip: 4\ntraining:\n  micro_batch: 4\n"
    path = write(tmp_path, text)
    assert_input_error(
        capsys, path, "strategy.chip", "chip: 4", "chip 4 does not exist", "chips 0..3"
    )


def test_set_override_errors_name_the_override(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, pipeline(stages=2, replicas=2))
    code, out, err = run_cli(capsys, path, "--set", "strategy.stages=3")
    assert code == 2 and out == ""
    assert "strategy.stages" in err and "3 stage(s) x 2 replica(s) = 6" in err


# ---- infeasible: exit 3 -----------------------------------------------------------------------
def test_model_too_big_is_infeasible_with_a_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "schema_version: 1\ntopology: m2000\nmodel: gpt2-xl\nstrategy:\n  type: single\n"
    text += "training:\n  micro_batch: 4\n  dtype: fp16\n"
    path = write(tmp_path, text)
    code, out, err = run_cli(capsys, path, "--json")
    assert code == 3, err
    doc = json.loads(out)  # exactly one JSON document
    assert doc["feasible"] is False
    assert doc["step_time_s"] is None and doc["throughput_samples_per_s"] is None
    reason = doc["reason"]
    assert reason.startswith("does not fit in SRAM: chip 0 needs ")
    assert "MiB over" in reason  # by how much
    assert "would help: " in reason  # and what would
    assert "recomputation" in reason and "more pipeline stages" in reason
    assert doc["memory"]["0"]["total"] > doc["memory"]["0"]["capacity"]
    # the API: a result, not an exception
    outcome = run_scenario(path)
    assert outcome.result.feasible is False and outcome.trace is None
    assert outcome.result.reason == reason


def test_fitting_on_more_stages_is_feasible_where_one_chip_is_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same check, per chip: bert-base fits one GC200 at micro-batch 1 but not 64."""
    text = "schema_version: 1\ntopology: m2000\nmodel: bert-base\nstrategy:\n  type: single\n"
    text += "training:\n  micro_batch: 64\n  dtype: fp16\n"
    path = write(tmp_path, text)
    code, out, _ = run_cli(capsys, path, "--json")
    assert code == 3 and json.loads(out)["feasible"] is False
    code, out, _ = run_cli(capsys, path, "--json", "--set", "training.micro_batch=1")
    assert code == 0 and json.loads(out)["feasible"] is True


# ---- placements name every layer exactly once -------------------------------------------------
def _fail(key_path: tuple[str | int, ...], message: str) -> Exception:
    return InputError(message, key_path=".".join(map(str, key_path)))


def _assert_partition(stages: list[list[int]], n: int) -> None:
    flat = [i for s in stages for i in s]
    assert sorted(flat) == list(range(n))  # every layer once: none missing, none twice
    assert flat == list(range(n)) or all(s == sorted(s) for s in stages)


def _splits(total: int, parts: int) -> list[tuple[int, ...]]:
    return [c for c in itertools.product(range(total + 1), repeat=parts) if sum(c) == total]


def test_every_placement_form_partitions_the_layers() -> None:
    model = load_model("bert-base")
    n = len(model.layers)
    blocks = 12
    checked = 0
    for k in (1, 2, 3, 4):
        for counts in _splits(blocks, k):
            stages = placement.by_block_counts(model, counts, _fail)
            _assert_partition(stages, n)
            assert [i for s in stages for i in s] == list(range(n))  # contiguous, in order
            checked += 1
        for counts in _splits(blocks, k)[:40]:
            for shift in (-1, 0, 1):  # FFN parts shifted against attention parts
                ffn = list(counts)
                if k > 1:
                    ffn[0] += shift
                    ffn[-1] -= shift
                if min(ffn) < 0:
                    continue
                pairs = [[a, f] for a, f in zip(counts, ffn, strict=True)]
                _assert_partition(placement.by_part_counts(model, pairs, _fail), n)
                checked += 1
    for k in range(1, len(placement.units(model)) + 1, 7):
        stages = placement.balanced(model, k, _fail)
        assert len(stages) == k
        assert [i for s in stages for i in s] == list(range(n))
        checked += 1
    assert checked > 500


def test_counts_not_adding_up_are_refused_before_any_layer_is_placed() -> None:
    model = load_model("bert-base")
    for counts in ([12, 1], [6, 5], [13]):
        with pytest.raises(InputError, match="add up to"):
            placement.by_block_counts(model, counts, _fail)
    with pytest.raises(InputError, match="attention counts add up to 13"):
        placement.by_part_counts(model, [[7, 6], [6, 6]], _fail)


def _scenario(tmp: Path, strategy: dict[str, Any]) -> Path:
    doc = {
        "schema_version": 1,
        "topology": "m2000",
        "model": "bert-base",
        "strategy": strategy,
        "training": {"micro_batch": 1, "grad_accum": 4, "dtype": "fp16"},
    }
    return write(tmp, dump_yaml(doc))


@pytest.mark.parametrize(
    "strategy",
    [
        {"type": "pipeline", "stages": 4, "layers_per_stage": [2, 4, 4, 2]},
        {
            "type": "pipeline",
            "stages": 4,
            "attention_ffn_per_stage": [[2, 3], [4, 3], [3, 3], [3, 3]],
        },
        {"type": "pipeline", "stages": 4},
        {
            "type": "pipeline",
            "stages": 2,
            "replicas": 2,
            "schedule": "interleaved",
            "chunks": 2,
            "layers_per_stage": [3, 3, 3, 3],
        },
    ],
)
def test_planned_layouts_place_every_layer_once(tmp_path: Path, strategy: dict[str, Any]) -> None:
    outcome = run_scenario(_scenario(tmp_path, strategy))
    lay = outcome.plan.info["layout"]
    n = len(outcome.plan.info["model"].layers)
    _assert_partition(lay.vstage_layers, n)
    # and the plan runs each layer's forward pass once per micro-batch, on one chip
    assert outcome.result.feasible
