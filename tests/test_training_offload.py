"""Streaming Memory offload costs time: the task graph moves exactly the bytes the memory plan
says it must (weights streamed in before every pass, written back after the update; optimizer
state read and written once per step), and the step gets slower by at least those bytes over
the chip's Streaming Memory path."""

from __future__ import annotations

import pytest

import strategies  # noqa: F401 - registers the strategies
from simulator.engine.tasks import MemLoad, MemStore
from simulator.run import run_scenario

SCENARIO = "scenarios/single/bert-base-gc200.yaml"


def _run(*overrides: str):  # type: ignore[no-untyped-def]
    return run_scenario(SCENARIO, list(overrides))


@pytest.mark.parametrize(
    "overrides",
    [
        ("training.offload_optimizer_state=true",),
        ("training.offload_weights=true",),
        ("training.offload_weights=true", "training.recompute=none", "training.micro_batch=1"),
    ],
)
def test_graph_moves_the_planned_bytes(overrides: tuple[str, ...]) -> None:
    out = _run(*overrides)
    assert out.result.feasible, out.result.reason
    moved = sum(
        n.task.bytes for n in out.plan.graph.nodes if isinstance(n.task, MemLoad | MemStore)
    )
    plan = next(iter(out.plan.info["memory"].values()))
    assert moved == plan.streaming_traffic_bytes > 0


def test_offloading_weights_slows_the_step_by_at_least_its_traffic() -> None:
    # (the scenario keeps its LAMB state in Streaming Memory: without that it does not fit)
    base = _run()
    off = _run("training.offload_weights=true")
    weights = off.plan.info["memory"][0].streaming_traffic_bytes
    weights -= base.plan.info["memory"][0].streaming_traffic_bytes
    system = off.system
    route = system.route("ddr:0", system.chips[0].node)
    fastest = min(system.channels[c].capacity_Bps for c in route.channels)
    slower = off.result.step_time_s - base.result.step_time_s
    assert weights > 0
    assert slower >= weights / fastest * (1 - 1e-9)
    assert off.result.breakdown["0"]["memory"] > 0


def test_replicas_sharing_a_machine_share_its_streaming_memory() -> None:
    """Four data-parallel replicas on one M2000 stream their optimizer state through the same
    DDR (20 GB/s for the machine): replica 0's memory time is set by that shared bandwidth, not
    by its own PCIe link, even though only replica 0's compute is simulated."""
    common = ["topology=m2000", "training.offload_optimizer_state=true"]
    alone = run_scenario(
        "scenarios/quickstart.yaml", [*common, "strategy={type: single}", "baseline=null"]
    ).result
    shared = run_scenario("scenarios/quickstart.yaml", [*common, "baseline=null"]).result
    assert shared.replicas == 4
    ratio = shared.breakdown["0"]["memory"] / alone.breakdown["0"]["memory"]
    # alone: PCIe-bound (11.9 GB/s achieved); shared: 20 GB/s DDR over 4 chips = 5 GB/s each
    assert ratio == pytest.approx(11.9024 / 5.0, rel=0.01)
