"""Training scenarios that live in the small-message regime, run and tabulated (issue 12).

The per-message cost and hardware multicast of the exchange and the IPU-Links change every
transfer the engine runs, most where messages are small: the random-subspace coefficient
exchange (a few bytes per worker), MoE all-to-all with few tokens per expert, pipeline boundaries
of small micro-batches. This script runs those scenarios and prints their step time and speedup;
``--json`` writes the figures as one JSON document, ``--before FILE`` adds the figures of an
earlier run (e.g. ``validation/knock_on_before.json``, recorded before the per-message model)
as before/after columns in Markdown.

    python -m validation.knock_on [--json] [--before validation/knock_on_before.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import strategies  # noqa: F401 - registers the strategies
from simulator.run import run_scenario

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Case:
    """One scenario run: a file (from the repository root) and --set overrides."""

    id: str
    group: str
    scenario: str
    set: tuple[str, ...] = ()


_RS = "scenarios/random_subspace/"
_W64 = ("strategy.workers=64", "topology=pod64")
CASES: tuple[Case, ...] = (
    Case("mlp-shared-w8", "random subspace", _RS + "mlp-shared-w8.yaml"),
    Case("mlp-shared-w16", "random subspace", _RS + "mlp-shared-w16.yaml"),
    Case("mlp-shared-w64", "random subspace", _RS + "mlp-shared-w8.yaml", _W64),
    Case("mlp-independent-w8", "random subspace", _RS + "mlp-independent-w8.yaml"),
    Case("mlp-independent-w16", "random subspace", _RS + "mlp-independent-w16.yaml"),
    Case("mlp-independent-w64", "random subspace", _RS + "mlp-independent-w8.yaml", _W64),
    Case("resnet8-shared-w8", "random subspace", _RS + "resnet8-shared-w8.yaml"),
    Case("resnet8-shared-w16", "random subspace", _RS + "resnet8-shared-w16.yaml"),
    Case("resnet8-independent-w8", "random subspace", _RS + "resnet8-independent-w8.yaml"),
    Case("resnet8-independent-w16", "random subspace", _RS + "resnet8-independent-w16.yaml"),
    Case(
        "resnet8-independent-w16-layers",
        "random subspace",
        _RS + "resnet8-independent-w16-layers.yaml",
    ),
    Case(
        "resnet8-shared-layers-w64",
        "random subspace",
        _RS + "resnet8-shared-w8.yaml",
        ("strategy.compartments=layers", *_W64),
    ),
    Case(
        "resnet8-shared-layers-w256",
        "random subspace",
        _RS + "resnet8-shared-w8.yaml",
        ("strategy.compartments=layers", "strategy.workers=256", "topology=pod256"),
    ),
    Case("mlp100m-shared-w64", "random subspace", _RS + "mlp100m-shared-w64.yaml"),
    Case("mlp100m-independent-w64", "random subspace", _RS + "mlp100m-independent-w64.yaml"),
    Case("moe-cf1.0", "MoE", "scenarios/moe/switch-pod16-cf1.0.yaml"),
    Case("moe-cf1.25", "MoE", "scenarios/moe/switch-pod16-cf1.25.yaml"),
    Case("moe-cf2.0", "MoE", "scenarios/moe/switch-pod16-cf2.0.yaml"),
    Case("moe-skewed-dynamic", "MoE", "scenarios/moe/skewed-dynamic-pod16.yaml"),
    Case("moe-pod64", "MoE", "scenarios/moe/switch-pod64.yaml"),
    Case("bert-v1.1-pod16-mb2", "pipeline", "scenarios/mlperf/bert-large-v1.1-pod16.yaml"),
    Case(
        "bert-v1.1-pod16-mb1",
        "pipeline",
        "scenarios/mlperf/bert-large-v1.1-pod16.yaml",
        ("training.micro_batch=1", "training.grad_accum=384"),
    ),
    Case("bert-v2.0-bow-pod16-mb3", "pipeline", "scenarios/mlperf/bert-large-v2.0-bow-pod16.yaml"),
    Case(
        "bert-v2.0-bow-pod16-mb1",
        "pipeline",
        "scenarios/mlperf/bert-large-v2.0-bow-pod16.yaml",
        ("training.micro_batch=1", "training.grad_accum=768"),
    ),
    Case("local-resnet50-greedy", "pipeline", "scenarios/local/resnet50-greedy-m2000.yaml"),
    Case("quickstart-data", "data", "scenarios/quickstart.yaml"),
)


def figures(case: Case) -> dict[str, float | None]:
    """Step time and speedup of one case (None where the result has none)."""
    result = run_scenario(ROOT / case.scenario, case.set).result
    return {
        "step_time_s": getattr(result, "step_time_s", None),
        "speedup": getattr(result, "speedup", None),
    }


def _fmt(x: float | None, scale: float = 1.0, digits: int = 4) -> str:
    return "—" if x is None else f"{x * scale:.{digits}g}"


def _change(before: float | None, after: float | None) -> str:
    if before is None or after is None or before == 0:
        return "—"
    return f"{after / before - 1:+.1%}"


def markdown(after: dict[str, dict[str, float | None]], before: dict[str, dict]) -> str:
    """Before/after table: step time (ms) and speedup of every case."""
    head = (
        "| group | case | settings | step before (ms) | step after (ms) | change "
        "| speedup before | speedup after |"
    )
    lines = [head, "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for c in CASES:
        b, a = before.get(c.id, {}), after[c.id]
        setting = "`" + " ".join([Path(c.scenario).stem, *(f"--set {s}" for s in c.set)]) + "`"
        lines.append(
            f"| {c.group} | {c.id} | {setting} | {_fmt(b.get('step_time_s'), 1e3)} | "
            f"{_fmt(a['step_time_s'], 1e3)} | "
            f"{_change(b.get('step_time_s'), a['step_time_s'])} | "
            f"{_fmt(b.get('speedup'), digits=3)} | {_fmt(a['speedup'], digits=3)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m validation.knock_on", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--before", type=Path, help="JSON of an earlier run, for a before/after table"
    )
    args = parser.parse_args(argv)
    after = {c.id: figures(c) for c in CASES}
    if args.json:
        sys.stdout.write(json.dumps(after, indent=1, sort_keys=True) + "\n")
        return 0
    before = json.loads(args.before.read_text()) if args.before else {}
    sys.stdout.write(markdown(after, before) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
