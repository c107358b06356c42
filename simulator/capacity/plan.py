"""``ipusim plan FILE``: which configurations meet a target, ranked, with the Pareto front.

A plan file asks one question of a set of candidates (a sweep body: base scenario, axes,
derived keys, constraints)::

    schema_version: 1
    kind: plan
    question: Smallest Bow Pod that trains MLPerf BERT-Large in under 10 minutes
    candidates: {base: ..., zip: [...], derive: {...}}
    statistics: {samples_to_target: 2.8e6}        # for time-to-train (simulator.capacity.ttt)
    target: {time_to_train_s: 600}                 # and/or step_time_s, throughput_samples_per_s
    rank_by: [chips, power_W, time_to_train_s]     # ascending, in this order

The candidates run as a sweep (reusing a results store when one is given). A configuration
meets the target when it is feasible and every bound holds (time_to_train_s <=, step_time_s
<=, throughput_samples_per_s >=). The answer is the first of those by ``rank_by``. The Pareto
front keeps the feasible candidates that no other beats in both IPUs and time (time-to-train
when a statistics model is given, else step time); the 3-D front adds energy.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from simulator.capacity.ttt import Statistics
from simulator.config import paths
from simulator.config.base import PositiveFloat, SchemaVersion, StrictModel
from simulator.config.jsonschema import register_file_kind
from simulator.config.load import check_kind, validate
from simulator.config.yamlio import load_document
from simulator.errors import InputError
from simulator.sweep.spec import Sweep, SweepBody, from_document

RankKey = Literal[
    "chips", "power_W", "time_to_train_s", "step_time_s", "energy_to_train_kWh",
    "neg_throughput",
]  # fmt: skip


class Target(StrictModel):
    """Bounds a configuration must meet (at least one)."""

    time_to_train_s: PositiveFloat | None = Field(None, description="At most this many s.")
    step_time_s: PositiveFloat | None = Field(None, description="At most this step time.")
    throughput_samples_per_s: PositiveFloat | None = Field(None, description="At least this.")

    @model_validator(mode="after")
    def _some(self) -> Target:
        if all(v is None for v in self.model_dump().values()):
            raise ValueError(
                "give at least one of time_to_train_s, step_time_s, throughput_samples_per_s"
            )
        return self


def _default_rank_by() -> list[RankKey]:
    return ["chips", "power_W", "time_to_train_s"]


class PlanFile(StrictModel):
    """A capacity-planning question (``kind: plan``)."""

    schema_version: SchemaVersion = Field(description="Format version of this file; always 1.")
    kind: Literal["plan"] = Field("plan", description="File kind.")
    name: str | None = Field(None, description="Defaults to the file stem.")
    question: str = Field("", description="The question, in words, printed with the answer.")
    candidates: SweepBody = Field(description="The configurations to try (a sweep body).")
    statistics: Statistics | None = Field(None, description="Samples to the target.")
    target: Target = Field(description="What a configuration must meet.")
    rank_by: list[RankKey] = Field(
        default_factory=_default_rank_by,
        min_length=1,
        description="Ascending sort keys of the configurations that meet the target.",
    )


@dataclass(frozen=True)
class Question:
    """A loaded plan file."""

    name: str
    question: str
    sweep: Sweep
    target: Target
    rank_by: tuple[str, ...]


def load_plan(path: str | Path) -> Question:
    """Read and validate a plan file (file:line errors, exit 2)."""
    file = Path(path)
    if not file.is_file():  # a built-in one by name: plans/NAME under scenarios/
        file = paths.resolve(path, "scenario")
    doc = load_document(file)
    check_kind(doc, "plan")
    spec = validate(doc, PlanFile)
    name = spec.name or file.stem
    if spec.target.time_to_train_s is not None and spec.statistics is None:
        f, line = doc.location(("target", "time_to_train_s"))
        raise InputError(
            "a time-to-train target needs `statistics:` (samples_to_target, or b_noise with "
            "samples_min / steps_min / reference)",
            file=f,
            line=line,
            key_path="target.time_to_train_s",
        )
    needs_ttt = {"time_to_train_s", "energy_to_train_kWh"} & set(spec.rank_by)
    if needs_ttt and spec.statistics is None:
        f, line = doc.location(("rank_by",))
        raise InputError(
            f"ranking by {', '.join(sorted(needs_ttt))} needs `statistics:`",
            file=f,
            line=line,
            key_path="rank_by",
        )
    sweep = from_document(
        doc,
        spec.candidates,
        ("candidates",),
        name=f"plan:{name}",
        statistics=spec.statistics,
        relative_to=file,
    )
    return Question(name, spec.question, sweep, spec.target, tuple(spec.rank_by))


@dataclass
class Answer:
    """What ``ipusim plan`` reports (JSON-ready; no wall-clock times)."""

    name: str
    question: str
    target: dict[str, float]
    statistics: str | None
    candidates: int
    feasible: int
    meeting: list[dict[str, Any]]  # ranked
    best: dict[str, Any] | None
    pareto_time_chips: list[dict[str, Any]]
    pareto_time_chips_energy: list[dict[str, Any]]
    not_meeting: list[dict[str, Any]] = field(default_factory=list)
    band: dict[str, Any] | None = None  # simulator.capacity.band.PlanBand (None: --no-band)

    def to_json(self) -> str:
        """One JSON document."""
        return json.dumps(asdict(self), indent=2, default=_json_default) + "\n"


SHOWN = ("topology", "chips", "power_W", "stages", "replicas", "micro_batch", "grad_accum",
         "global_batch", "step_time_s", "throughput_samples_per_s", "steps_to_target",
         "time_to_train_s", "energy_to_train_kWh", "tensor_parallel", "status", "reason",
         "values", "key")  # fmt: skip


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


OPTIONAL = ("sparse_samples_factor", "statistics_note")  # shown only for sparse runs


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: row.get(k) for k in SHOWN if k != "topology"}
    out |= {k: row[k] for k in OPTIONAL if row.get(k) is not None}
    out["system"] = row.get("system") or row.get("topology")
    if out["values"] is None:  # a flat table row: the point's swept and derived key paths
        out["values"] = {k: v for k, v in row.items() if "." in k}
    for k, v in out.items():
        if isinstance(v, float):
            out[k] = None if math.isnan(v) else float(f"{v:.12g}")
    return out


def meets(row: dict[str, Any], target: Target) -> bool:
    """Feasible and within every bound of ``target``."""
    if row.get("status") != "ok":
        return False
    checks = [
        (target.time_to_train_s, row.get("time_to_train_s"), "max"),
        (target.step_time_s, row.get("step_time_s"), "max"),
        (target.throughput_samples_per_s, row.get("throughput_samples_per_s"), "min"),
    ]
    for bound, value, kind in checks:
        if bound is None:
            continue
        if value is None or (value > bound if kind == "max" else value < bound):
            return False
    return True


def sort_key(row: dict[str, Any], rank_by: tuple[str, ...]) -> tuple[float, ...]:
    """Ascending ranking tuple (missing values last), the point key breaking ties."""
    out = []
    for k in rank_by:
        v = -(row.get("throughput_samples_per_s") or 0) if k == "neg_throughput" else row.get(k)
        out.append(math.inf if v is None else float(v))
    return tuple(out)


def pareto(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """Rows not dominated on ``keys`` (all minimised), sorted by the keys."""
    usable = [r for r in rows if all(r.get(k) is not None for k in keys)]
    front = []
    for r in usable:
        dominated = any(
            all(o[k] <= r[k] for k in keys) and any(o[k] < r[k] for k in keys) for o in usable
        )
        if not dominated:
            front.append(r)
    return sorted(front, key=lambda r: (*(r[k] for k in keys), r["key"]))


def answer(q: Question, rows: list[dict[str, Any]]) -> Answer:
    """Rank, filter and draw the fronts from the candidates' table rows."""
    time_key = "time_to_train_s" if q.sweep.statistics is not None else "step_time_s"
    feasible = [r for r in rows if r.get("status") == "ok"]
    good = sorted(
        (r for r in feasible if meets(r, q.target)),
        key=lambda r: (*sort_key(r, q.rank_by), r["key"]),
    )
    bad = sorted(
        (r for r in rows if not meets(r, q.target)),
        key=lambda r: (sort_key(r, (time_key,)), r["key"]),
    )
    fronts = pareto(feasible, ("chips", time_key))
    fronts3 = (
        pareto(feasible, ("chips", time_key, "energy_to_train_kWh"))
        if time_key == "time_to_train_s"
        else []
    )
    return Answer(
        name=q.name,
        question=q.question,
        target={k: v for k, v in q.target.model_dump().items() if v is not None},
        statistics=_curve_text(q),
        candidates=len(rows),
        feasible=len(feasible),
        meeting=[_clean(r) for r in good],
        best=_clean(good[0]) if good else None,
        pareto_time_chips=[_clean(r) for r in fronts],
        pareto_time_chips_energy=[_clean(r) for r in fronts3],
        not_meeting=[_clean(r) for r in bad],
    )


def _curve_text(q: Question) -> str | None:
    if q.sweep.statistics is None:
        return None
    from simulator.capacity.ttt import resolve

    return resolve(q.sweep.statistics).describe()


def run_plan(
    q: Question,
    store: str | Path,
    *,
    jobs: int | None = None,
    dask: str | None = None,
    progress: bool = True,
    band: bool = True,
) -> Answer:
    """Run the candidates as a sweep into ``store`` (reusing its points), then answer; with
    ``band``, also the answer's band and the assumptions that would change it
    (:mod:`simulator.capacity.band`)."""
    from simulator.sweep.driver import run_sweep
    from simulator.sweep.export import curves, records
    from simulator.sweep.store import Store

    run_sweep(q.sweep, store, jobs=jobs, dask=dask, progress=progress)
    with Store.open(store, create=False, readonly=True) as s:
        rows = records(s, q.sweep.name)
        curve = curves(s).get(q.sweep.name)
    out = answer(q, rows)
    if band:
        from simulator.capacity.band import plan_band, thresholds

        found = plan_band(q, store, rows, out, jobs=jobs, dask=dask, progress=progress)
        if found is not None:
            best = out.best["key"] if out.best is not None else None
            thresholds(q, found, rows, best, curve)
            out.band = found.to_json()
    return out


def format_text(a: Answer) -> str:
    """The answer for people: the question, the best configuration, the ranking, the front."""
    target = ", ".join(
        f"{k} {'>=' if k.startswith('throughput') else '<='} {v:,g}" for k, v in a.target.items()
    )
    lines = [f"plan {a.name}" + (f": {a.question}" if a.question else "")]
    lines.append(f"  target: {target}" + (f"; {a.statistics}" if a.statistics else ""))
    lines.append(
        f"  {a.candidates} candidates, {a.feasible} feasible, {len(a.meeting)} meet the target"
    )
    if a.best is None:
        lines.append("  answer: no candidate meets the target")
    else:
        lines.append(f"  answer: {_one(a.best)}")
    if a.band is not None:
        from simulator.capacity.band import band_lines

        lines += band_lines(a)
    for title, rows in (
        ("meeting the target, ranked", a.meeting),
        ("Pareto front, time against IPUs", a.pareto_time_chips),
        ("Pareto front, time against IPUs and energy", a.pareto_time_chips_energy),
        ("not meeting the target", a.not_meeting),
    ):
        if rows:
            lines.append(f"  {title}:")
            lines += [f"    {_one(r)}" for r in rows]
    return "\n".join(lines)


def _one(r: dict[str, Any]) -> str:
    head = f"{r['system']} ({r['chips']} IPUs" if r.get("chips") else f"{r['system']} ("
    if r.get("power_W"):
        head += f", {r['power_W'] / 1e3:,.1f} kW"
    head += ")"
    values = r.get("values") or {}
    tensor = r.get("tensor_parallel") or values.get("strategy.tensor_parallel") or 1
    if r.get("status") != "ok":
        varied = ", ".join(
            f"{k}={v}" for k, v in values.items() if not isinstance(v, list | dict)
        )
        return f"{head} [{varied}] {r.get('status')}: {r.get('reason')}"
    layout = f"{r['stages']} stages x {r['replicas']} replicas"
    if tensor > 1:  # tensor parallelism (strategies/tensor): T chips per stage
        layout = f"{r['stages']} stages x {tensor}-chip tensor groups x {r['replicas']} replicas"
    parts = [
        f"{layout}, micro-batch {r['micro_batch']} x "
        f"{r['grad_accum']}, batch {r['global_batch']:,.0f}",
        f"step {r['step_time_s']:.4g} s",
        f"{r['throughput_samples_per_s']:,.0f} samples/s",
    ]
    if r.get("time_to_train_s") is not None:
        parts.append(
            f"{r['steps_to_target']:,} steps = {r['time_to_train_s'] / 60:,.2f} min to train"
        )
    if r.get("sparse_samples_factor") is not None:
        parts.append(f"sparse: {r['sparse_samples_factor']:.2f}x the dense run's samples")
    if r.get("statistics_note"):
        parts.append(f"no time-to-train: {r['statistics_note']}")
    if r.get("energy_to_train_kWh") is not None:
        parts.append(f"{r['energy_to_train_kWh']:,.2f} kWh")
    return f"{head}: " + "; ".join(parts)


register_file_kind("plan", PlanFile)
