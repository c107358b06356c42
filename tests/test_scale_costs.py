"""The costs that do not shrink as a system grows, through the real simulation path.

Closed forms computed here from the System objects (not from the engine's own estimate) for
the collectives used at scale — meet-in-the-middle rings and the hierarchical all-reduce across
POD64s — plus hand-computed training cases: host input alone limiting a tiny model, the
critical-path breakdown summing to the step, and the BERT pre-training heads' parameters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import strategies  # noqa: F401 - registers the strategies
from simulator.config.yamlio import dump_yaml
from simulator.engine.collectives import ring_order
from simulator.hardware.build import load_system
from simulator.run import Outcome, run_scenario
from simulator.workloads.library import load_model
from tests.helpers import ring_alpha_beta, ring_system, run_collective


def _reduce_rate(system: Any) -> float:
    ct = system.chips[0].type
    return float(ct.tiles * ct.clock_hz * ct.vector_flop_per_cycle["fp32"])


def test_meet_in_the_middle_all_reduce_closed_form() -> None:
    """n = 8: reduce-scatter in 3 steps that send a fragment both ways round the ring (and
    reduce two), one step one way; the all-gather likewise without reductions."""
    s = ring_system(8)
    m = 8e6
    alpha, beta = ring_alpha_beta(s, tuple(range(8)))
    frag = m / 8
    red = frag / 4 / _reduce_rate(s)  # fp32 elements of one fragment
    step = alpha + frag / beta
    expected = 3 * (step + 2 * red) + (step + red) + 4 * step
    t = run_collective(s, "all_reduce", tuple(range(8)), m, "meet_in_middle")
    assert t.makespan == pytest.approx(expected, rel=1e-6)


def _pod128_without_message_costs(tmp: Path) -> Any:
    """pod128 with a GC200 whose per-message costs are zero (the closed form below has no
    message term; the message model has its own closed-form tests,
    tests/test_engine_messages.py)."""
    from simulator.config import paths
    from simulator.config.yamlio import load_document

    chip = load_document(paths.resolve("gc200", "chip")).data
    chip["messages"] = dict.fromkeys(chip["messages"], 0)
    (tmp / "gc200-free.yaml").write_text(dump_yaml(chip))
    system = load_document(paths.resolve("pod128", "system")).data
    system["chip"] = str(tmp / "gc200-free.yaml")
    (tmp / "pod128-free.yaml").write_text(dump_yaml(system))
    return load_system(tmp / "pod128-free.yaml")


def test_hierarchical_all_reduce_across_pod64s_closed_form(tmp_path: Path) -> None:
    """pod128, 64 MB per chip: a bidirectional ring reduce-scatter inside each POD64, a ring
    all-reduce of each chip's 1 MB shard with its twin in the other POD64 over GW-Links, and
    the all-gather inside. Every step syncs all 128 chips (two POD64s: a packet over GW-Links)."""
    p = _pod128_without_message_costs(tmp_path)
    m, group = 64e6, tuple(range(128))
    ct = p.chips[0].type
    sync = p.sync_latency_s(group)
    inner = ring_order(p, range(64))
    a_in, b_in = ring_alpha_beta(p, inner)
    a_in += sync - p.sync_latency_s(inner)
    frag = m / 64  # per chip per inner step, half each way round
    inner_rs = 63 * (a_in + frag / 2 / b_in + frag / 2 / 4 / _reduce_rate(p))
    inner_ag = 63 * (a_in + frag / 2 / b_in)
    route = p.chip_route(0, 64)  # chip -> gateway -> GW switch -> gateway -> chip
    assert [p.channels[c].kind for c in route.channels] == ["pcie", "gw_link", "gw_link", "pcie"]
    a_out = sync + ct.exchange_latency_s + route.latency_s
    # the 4 chips of a machine cross at once: 2 GW-Links x 12.5 GB/s shared 4 ways (PCIe is
    # 16 GB/s x 0.7439 = 11.9 GB/s, not the bottleneck)
    b_out = 2 * 12.5e9 / 4
    half = m / 64 / 2  # each of the two chips sends half its shard in each phase
    outer = (a_out + half / b_out + half / 4 / _reduce_rate(p)) + (a_out + half / b_out)
    t = run_collective(p, "all_reduce", group, m, "hierarchical")
    assert t.makespan == pytest.approx(inner_rs + outer + inner_ag, rel=1e-6)
    # at least what the GW-Links must carry: each machine sends 4 chips x 1 MB / 2 per phase
    gw_bytes = 4 * (m / 64 / 2) * 2
    assert t.collective_gw_s[0] >= gw_bytes / (2 * 12.5e9)
    # with the GC200's per-message costs (the shipped system) it can only take longer
    real = run_collective(load_system("pod128"), "all_reduce", group, m, "hierarchical")
    assert real.makespan > t.makespan
    assert real.collective_gw_s[0] >= gw_bytes / (2 * 12.5e9)


def run_doc(tmp: Path, doc: dict[str, Any]) -> Outcome:
    path = tmp / "scenario.yaml"
    path.write_text(dump_yaml({"schema_version": 1, "name": "scale", **doc}))
    return run_scenario(path)


def test_host_input_alone_limits_a_tiny_model(tmp_path: Path) -> None:
    """64 replicas of a tiny MLP on a POD64 with 4 hosts making 1,000 samples/s each: the
    system can train no faster than the hosts make samples, 4 x 1,000 samples/s."""
    out = run_doc(
        tmp_path,
        {
            "topology": "pod64",
            "model": {"name": "mlp", "params": {"inputs": 64, "hidden": 64}},
            "strategy": {"type": "data", "replicas": 64},
            "training": {"micro_batch": 4, "grad_accum": 16, "dtype": "fp32"},
            "hosts": {"samples_per_s_per_host": 1000.0},
        },
    )
    r = out.result
    assert r.feasible
    assert r.throughput_samples_per_s == pytest.approx(4 * 1000.0, rel=0.02)
    assert r.throughput_samples_per_s <= 4 * 1000.0
    assert r.step_breakdown["host_io"] > 0.9 * r.step_time_s
    # with synthetic data the same run is far faster
    free = run_doc(
        tmp_path,
        {
            "topology": "pod64",
            "model": {"name": "mlp", "params": {"inputs": 64, "hidden": 64}},
            "strategy": {"type": "data", "replicas": 64},
            "training": {"micro_batch": 4, "grad_accum": 16, "dtype": "fp32"},
        },
    )
    assert free.result.throughput_samples_per_s > 10 * r.throughput_samples_per_s


@pytest.mark.parametrize(
    "scenario",
    [
        "scenarios/quickstart.yaml",
        "scenarios/mlperf/bert-large-v2.0-bow-pod16.yaml",
        "scenarios/mlperf/bert-large-v2.0-bow-pod256.yaml",
        "scenarios/mlperf/resnet50-v1.1-pod256.yaml",
        "scenarios/local/resnet50-greedy-m2000.yaml",
        "scenarios/moe/switch-pod16-cf1.0.yaml",
    ],
)
def test_step_breakdown_sums_to_the_step(scenario: str) -> None:
    r = run_scenario(scenario).result
    assert r.feasible and r.step_breakdown is not None
    assert sum(r.step_breakdown.values()) == pytest.approx(r.step_time_s, rel=0.01)
    assert r.step_breakdown["compute"] > 0
    if r.chips > 64:  # across POD64s the gradient collective crosses GW-Links
        assert r.step_breakdown["collective_gw_link"] > 0


def test_sync_and_host_costs_grow_with_the_system() -> None:
    """The same BERT pipeline: a step-end host sync and the boundary syncs cost more on a
    Bow Pod256 (four POD64s: packets over GW-Links) than on a Bow Pod16."""
    small = run_scenario("scenarios/mlperf/bert-large-v2.0-bow-pod16.yaml").result
    big = run_scenario("scenarios/mlperf/bert-large-v2.0-bow-pod256.yaml").result
    per_cycle_small = small.step_breakdown["sync"] / (small.grad_accum + small.stages - 1)
    per_cycle_big = big.step_breakdown["sync"] / (big.grad_accum + big.stages - 1)
    assert per_cycle_big > per_cycle_small
    assert big.step_breakdown["host"] > small.step_breakdown["host"]


def test_bert_pretraining_heads_parameters() -> None:
    """BertForPreTraining = BertModel + MLM transform (H x H + H, layer norm 2H) + decoder bias
    (vocab; the decoder weight is the word embedding) + NSP (2H + 2); the pooler is kept."""
    for name, h, base in (("bert-base", 768, 109_482_240), ("bert-large", 1024, 335_141_888)):
        heads = load_model(name, overrides={"pretraining": 1})
        assert load_model(name).params == base
        assert heads.params == base + (h * h + h) + 2 * h + 30_522 + (2 * h + 2)
    assert load_model("bert-base", overrides={"pretraining": 1}).params == 110_106_428
