"""The ``ensemble`` strategy: its plan equals the reference run's ledgers, bad input exits 2,
members that do not fit exit 3, and the comparison with data parallelism on the same chips.

Plan vs ledger (``==``), MLP 64-32-10, N members on a ring of N chips (one chip each), M
micro-batches of 4, fp16:

* ``F mb<m> s0`` / ``B mb<m> s0`` on member 0's chip = the member ledger's forward /
  backward_input + backward_weight of (device, m); ``optimizer stage 0`` = optimizer;
* ``T mb<m> t<t>`` summed over the N - 1 teachers = the teacher ledger's ``forward`` of a
  step with teachers (checkpoint codistillation: the extra forward passes);
* ``checkpoint exchange`` Collective: kind, group and bytes = the ledger's all-gather record
  of the exchange step (N x parameters x 2 bytes); ``predictions`` Collectives (online): one
  per micro-batch, bytes = the record (N x micro-batch x classes x 2 bytes);
* left out by the plan, as for every strategy: the ``loss`` phases (cross-entropy, the
  distillation term, and the teachers' softmax and averaging).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

import strategies  # noqa: F401 - registers the strategies
from simulator.cli import main
from simulator.engine.tasks import Collective, Compute
from simulator.run import Outcome, run_scenario
from strategies.reference.ensemble import EnsembleConfig, ensemble_ledgers
from tests.test_local_plan import mlp_model, ring

SIZES = (64, 32, 10)


def scenario(tmp: Path, chips: int, strategy: dict[str, Any], m: int = 2, **kw: Any) -> Path:
    doc = {
        "schema_version": 1,
        "name": "ensemble-check",
        "topology": kw.pop("topology", ring(chips)),
        "model": kw.pop("model", mlp_model(SIZES)),
        "strategy": {"type": "ensemble", **strategy},
        "training": {"micro_batch": 4, "grad_accum": m, "dtype": "fp16", **kw},
    }
    path = tmp / "e.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def plan_flops(out: Outcome) -> dict[tuple[str, int | None], float]:
    flops: dict[tuple[str, int | None], float] = defaultdict(float)
    for node in out.plan.graph.nodes:
        t = node.task
        if isinstance(t, Compute):
            if t.kind == "optimizer":
                flops[("update", None)] += t.flops
            else:
                kind, mb = t.label.split()[:2]
                flops[(kind, int(mb.removeprefix("mb")))] += t.flops
    return dict(flops)


@pytest.mark.parametrize(
    ("mode", "n", "m"),
    [("none", 2, 2), ("checkpoint", 3, 2), ("checkpoint", 4, 1), ("online", 3, 3)],
)
def test_plan_equals_ledger(tmp_path: Path, mode: str, n: int, m: int) -> None:
    strategy: dict[str, Any] = {"members": n, "codistillation": mode}
    if mode == "checkpoint":
        strategy["exchange_every"] = 2
    out = run_scenario(scenario(tmp_path, n, strategy, m))
    assert out.result.feasible
    groups = out.plan.info["groups"]
    devices = tuple(g[0] for g in groups)
    cfg = EnsembleConfig(SIZES, n, 4, m, mode=mode, exchange_every=2, devices=devices, dtype="fp16")  # type: ignore[arg-type]
    ledgers = ensemble_ledgers(cfg, 3)
    led = ledgers[2] if mode == "checkpoint" else ledgers[0]  # step 3 has teachers
    chip = devices[0]
    flops = plan_flops(out)
    per_mb = led.member.flops_per_micro_batch
    for mb in range(m):
        assert flops[("F", mb)] == per_mb[(chip, "forward", mb)]
        assert (
            flops[("B", mb)]
            == per_mb[(chip, "backward_input", mb)] + per_mb[(chip, "backward_weight", mb)]
        )
        teacher = led.teacher.flops_per_micro_batch.get((chip, "forward", mb), 0)
        assert flops.get(("T", mb), 0) == teacher
        assert (teacher > 0) == (mode == "checkpoint")
    assert flops[("update", None)] == led.member.flops[chip]["optimizer"]
    # every member does the same work (so simulating member 0 is complete)
    for d in devices[1:]:
        assert led.member.flops[d] == led.member.flops[chip]
        assert led.teacher.flops[d] == led.teacher.flops[chip]
    colls = [node.task for node in out.plan.graph.nodes if isinstance(node.task, Collective)]
    if mode == "checkpoint":
        record = next(r for r in ledgers[1].member.collectives if r.tag == "checkpoint")
        assert ledgers[1].exchanged and not ledgers[2].exchanged
        (ex,) = colls
        assert (ex.kind, set(ex.group), ex.bytes) == (
            "all_gather",
            set(record.group),
            record.nbytes,
        )
        assert out.result.exchange_bytes_per_chip == record.nbytes
        assert out.result.teacher_forward_flops_per_step == led.teacher.flops[chip]["forward"]
    elif mode == "online":
        records = [r for r in led.member.collectives if r.tag == "predictions"]
        assert len(colls) == len(records) == m
        for c, r in zip(colls, records, strict=True):
            assert (c.kind, set(c.group), c.bytes) == ("all_gather", set(r.group), r.nbytes)
        assert r.nbytes == n * 4 * SIZES[-1] * 2
    else:
        assert colls == [] and led.member.collectives == ()


def test_data_parallel_members_all_reduce_inside_their_group(tmp_path: Path) -> None:
    out = run_scenario(scenario(tmp_path, 4, {"members": 2, "codistillation": "checkpoint"}))
    colls = [n.task for n in out.plan.graph.nodes if isinstance(n.task, Collective)]
    kinds = sorted((c.kind, tuple(sorted(c.group))) for c in colls)
    # member 0 = chips 0, 1 (all-reduce); exchanges pair replica r of each member: {0, 2}, {1, 3}
    assert kinds == [("all_gather", (0, 2)), ("all_gather", (1, 3)), ("all_reduce", (0, 1))]
    res = out.result
    assert res.members == 2 and res.member_chips == 2 and res.chips == 4
    assert res.throughput_samples_per_s == pytest.approx(2 * res.member_throughput_samples_per_s)


@pytest.mark.parametrize(
    ("chips", "strategy", "words"),
    [
        (2, {"members": 3}, "more members than chip groups"),
        (4, {"members": 3, "member_chips": 2}, "more members than chip groups"),
        (2, {"members": 1, "codistillation": "online"}, "at least 2 members"),
        (2, {"members": 2, "exchange_every": 5}, "codistillation: checkpoint"),
    ],
)
def test_invalid_input_exits_2(
    tmp_path: Path,
    chips: int,
    strategy: dict[str, Any],
    words: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["run", str(scenario(tmp_path, chips, strategy)), "--json"]) == 2
    err = capsys.readouterr().err
    assert "e.yaml" in err and words in err


def test_teachers_that_do_not_fit_are_infeasible(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A member that fits alone, whose three teachers do not: exit 3, unless streamed."""
    big = mlp_model((4096, 8192, 8192, 10))  # 100.7 M parameters: 201 MB in fp16
    for extra, code in (
        ({"codistillation": "none"}, 0),
        ({"codistillation": "checkpoint"}, 3),
        ({"codistillation": "checkpoint", "teacher_weights": "streaming"}, 0),
    ):
        path = scenario(tmp_path, 4, {"members": 4, **extra}, model=big, topology="m2000")
        assert main(["run", str(path), "--json"]) == code, extra
        out = capsys.readouterr().out
        if code == 3:
            assert "does not fit in SRAM" in out and "teacher_weights: streaming" in out


def test_against_data_parallel_on_the_same_chips(tmp_path: Path) -> None:
    """Independent members skip the all-reduce: at least as fast as data parallelism on the
    same chips; checkpoint codistillation pays N - 1 teacher forwards per micro-batch."""
    base = {"baseline": {"strategy": {"type": "data"}}}
    path = scenario(tmp_path, 4, {"members": 4})
    doc = {**yaml.safe_load(path.read_text()), **base}
    path.write_text(yaml.safe_dump(doc))
    plain = run_scenario(path).result
    assert plain.speedup >= 1.0
    doc["strategy"]["codistillation"] = "checkpoint"
    path.write_text(yaml.safe_dump(doc))
    codistil = run_scenario(path).result
    assert codistil.speedup < plain.speedup
    assert codistil.step_time_s == pytest.approx(
        codistil.step_without_exchange_s + codistil.exchange_time_s / 1000
    )
    assert codistil.analytic.difference == pytest.approx(0.0, abs=0.02)
