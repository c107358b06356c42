"""The band of a plan's answer, and the assumption that would change the answer.

``ipusim plan`` answers with one configuration (the first meeting the target by ``rank_by``).
Its assumptions make that answer uncertain in two ways: the answer itself may stop meeting the
target, and a configuration ranked before it (a smaller system, say) may start to. Both are
checked one assumption at a time, as ``ipusim run --sensitivity`` does:

1. The candidates that can take the answer's place are run with their bands (stored in the
   results store as the sweep ``plan:NAME:band``, so a re-run with ``--store`` reuses them): the
   answer; the feasible candidates ranked before it (they miss the target at the assumptions'
   values), nearest to the target first, at most :data:`MAX_AHEAD` (each band is ~50 runs: the
   others, which miss by more, are counted as not banded); and, while the answer can fail at
   some end, the next candidates after it that meet the target, one at a time (at most
   :data:`MAX_AFTER`).
2. For every assumption end, the answer under it is the first candidate by ``rank_by`` that
   meets the target with that end (candidates not banded count at their values).
3. Where that answer differs, the value at which it changes is found by bisection on the
   candidate that decides it (up to :data:`MAX_THRESHOLDS` changes, largest effect first).

The band of the answer is its time-to-train (or step time without a statistics model) from the
band of its step time.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from simulator.capacity.plan import Answer, Question, meets, sort_key
from simulator.sensitivity.result import Sensitivity

MAX_AHEAD = 1
MAX_AFTER = 3
MAX_THRESHOLDS = 2
BISECTIONS = 10  # at most; they stop at 1 % of the distance from the value to the end


@dataclass
class Change:
    """One assumption end under which the plan's answer is another configuration."""

    name: str
    assumption: str
    end: str  # low | high
    value: Any  # the end's value
    unit: str | None
    answer: dict[str, Any] | None  # the configuration that answers instead (None: none meets)
    threshold: Any = None  # where it changes: the answer differs at this value (bisection)
    threshold_from: Any = None  # ... and is still the same at this one (None: not searched)
    direction: str = ""  # "above" / "below" the threshold (or the end, when not searched)


@dataclass
class PlanBand:
    """The band of a plan's answer and what would change the answer (JSON: ``band``)."""

    metric: str  # time_to_train_s, or step_time_s without a statistics model
    value: float
    band: tuple[float, float]
    top: list[dict[str, Any]]  # the answer's largest effects: name, assumption, low_s, high_s
    checked: list[str]  # the candidates banded: their point keys (in rank order)
    not_checked: int  # feasible candidates ranked before the answer that were not banded
    changes: list[Change] = field(default_factory=list)
    closest: str | None = None  # with no change: how near the answer came to changing
    rank_by: list[str] = field(default_factory=list)
    infeasible: list[str] = field(default_factory=list)  # the answer's ends that do not fit

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _at(row: dict[str, Any], step: float | None, curve: Any) -> dict[str, Any]:
    """``row`` as it would read with step time ``step`` (None: infeasible)."""
    out = dict(row)
    if step is None:
        out["status"] = "infeasible"
        return out
    old = row.get("step_time_s")
    out["step_time_s"] = step
    if old and row.get("throughput_samples_per_s"):
        out["throughput_samples_per_s"] = row["throughput_samples_per_s"] * old / step
    if curve is not None and row.get("global_batch"):
        out["time_to_train_s"] = curve.time_to_train(row["global_batch"], step)["time_to_train_s"]
    return out


def _step(sens: Sensitivity | None, row: dict[str, Any], name: str, end: str) -> float | None:
    """A candidate's step time with assumption ``name`` at ``end`` (its value when its band
    does not vary it, or when it was not banded)."""
    if sens is not None:
        for e in sens.assumptions:
            if e.name == name:
                return e.low_s if end == "low" else e.high_s
    return row.get("step_time_s")


def _metric(row: dict[str, Any], metric: str) -> float | None:
    value = row.get(metric)
    return None if value is None else float(value)


def _fmt(seconds: float, metric: str) -> str:
    if metric == "time_to_train_s" and seconds >= 120:
        return f"{seconds / 60:,.2f} min"
    if seconds >= 1:
        return f"{seconds:,.4g} s"
    return f"{seconds * 1e3:,.4g} ms"


def plan_band(
    q: Question,
    store: Any,
    rows: list[dict[str, Any]],
    ans: Answer,
    *,
    jobs: int | None = None,
    dask: str | None = None,
    progress: bool = True,
) -> PlanBand | None:
    """Band the answer of ``q`` (module docstring); None without a feasible candidate."""
    from simulator.sweep.export import curves
    from simulator.sweep.store import Store

    metric = "time_to_train_s" if q.sweep.statistics is not None else "step_time_s"
    feasible = [r for r in rows if r.get("status") == "ok"]
    if not feasible:
        return None
    order = sorted(feasible, key=lambda r: (*sort_key(r, q.rank_by), r["key"]))
    best_key = ans.best["key"] if ans.best is not None else None
    at = next((i for i, r in enumerate(order) if r["key"] == best_key), len(order))
    bound = q.target.model_dump()

    def miss(r: dict[str, Any]) -> float:  # how far a candidate is from meeting (nearest first)
        ratios = [
            (r.get(k) or math.inf) / v if k != "throughput_samples_per_s" else v / (r.get(k) or 0)
            for k, v in bound.items()
            if v is not None
        ]
        return max(ratios)

    ahead = sorted(order[:at], key=miss)
    chosen = {r["key"] for r in ahead[:MAX_AHEAD]}
    if best_key is not None:
        chosen.add(best_key)
    sens: dict[str, Sensitivity] = {}
    _band_rows(q, store, rows, chosen, jobs, dask, progress, sens)
    with Store.open(store, create=False, readonly=True) as s:
        curve = curves(s).get(q.sweep.name)
    ends = sorted({(e.name, end) for se in sens.values() for e in se.assumptions
                   for end in ("low", "high")})  # fmt: skip
    # the answer under each end; band the candidates after the answer that it falls to
    after = 0
    while True:
        winners = {}
        need = None
        for name, end in ends:
            winner = None
            for r in order:
                if r["key"] in sens or r["key"] == best_key:
                    step = _step(sens.get(r["key"]), r, name, end)
                    if meets(_at(r, step, curve), q.target):
                        winner = r
                        break
                elif meets(r, q.target):
                    if need is None:
                        need = r
                    winner = r
                    break
            winners[(name, end)] = winner
        if need is None or after >= MAX_AFTER:
            break
        after += 1
        chosen.add(need["key"])
        _band_rows(q, store, rows, chosen, jobs, dask, progress, sens)
        ends = sorted({(e.name, end) for se in sens.values() for e in se.assumptions
                       for end in ("low", "high")})  # fmt: skip
    return _summarise(q, order, best_key, sens, winners, curve, metric, ahead, chosen)


def _band_rows(
    q: Question,
    store: Any,
    rows: list[dict[str, Any]],
    chosen: set[str],
    jobs: int | None,
    dask: str | None,
    progress: bool,
    sens: dict[str, Sensitivity],
) -> None:
    """Run (or reuse) the band points of ``chosen`` (plain point keys); fill ``sens``."""
    import json

    from simulator.sweep.driver import band_name, run_sweep
    from simulator.sweep.store import Store

    by_key = {r["key"]: r for r in rows}
    indices = {by_key[k]["index"] for k in chosen}
    run_sweep(q.sweep, store, jobs=jobs, dask=dask, progress=progress, band=True, indices=indices)
    with Store.open(store, create=False, readonly=True) as s:
        banded = {r["index"]: r for r in s.rows(band_name(q.sweep.name))}
    for k in chosen:
        r = banded.get(by_key[k]["index"])
        if r is None or not r["result"]:
            continue
        doc = json.loads(r["result"]).get("sensitivity")
        if doc:
            sens[k] = Sensitivity.from_json(doc)


def _summarise(
    q: Question,
    order: list[dict[str, Any]],
    best_key: str | None,
    sens: dict[str, Sensitivity],
    winners: dict[tuple[str, str], dict[str, Any] | None],
    curve: Any,
    metric: str,
    ahead: list[dict[str, Any]],
    chosen: set[str],
) -> PlanBand:
    from simulator.capacity.plan import _clean

    best = next((r for r in order if r["key"] == best_key), None)
    ref = best if best is not None else min(ahead, key=lambda r: r.get(metric) or math.inf)
    s = sens.get(ref["key"])
    value = _metric(ref, metric) or 0.0
    lo = hi = value
    top: list[dict[str, Any]] = []
    infeasible: list[str] = []
    if s is not None:
        infeasible = s.infeasible
        steps = [_at(ref, t, curve) for t in s.band_s]
        lo, hi = (_metric(steps[0], metric) or value), (_metric(steps[1], metric) or value)
        for e in s.assumptions[:3]:
            top.append({"name": e.name, "assumption": e.assumption,
                        "low": _metric(_at(ref, e.low_s, curve), metric),
                        "high": _metric(_at(ref, e.high_s, curve), metric)})  # fmt: skip
    changes = []
    for (name, end), winner in sorted(winners.items()):
        if (winner["key"] if winner else None) == best_key:
            continue
        e = _effect(sens, name)
        changes.append(
            Change(name, e.assumption if e else name, end, getattr(e, end) if e else None,
                   e.unit if e else None, _clean(winner) if winner else None)
        )  # fmt: skip
    rank = {e.name: i for i, e in enumerate(s.assumptions)} if s is not None else {}
    changes.sort(key=lambda c: (rank.get(c.name, len(rank)), c.name, c.end))
    checked = [r["key"] for r in order if r["key"] in chosen]
    band = PlanBand(
        metric, value, (lo, hi), top, checked, max(0, len(ahead) - MAX_AHEAD), changes,
        rank_by=list(q.rank_by), infeasible=infeasible,
    )  # fmt: skip
    if not changes:
        band.closest = _closest(q, order, best_key, sens, curve, metric)
    return band


def _effect(sens: dict[str, Sensitivity], name: str) -> Any:
    for s in sens.values():
        for e in s.assumptions:
            if e.name == name:
                return e
    return None


def _closest(
    q: Question,
    order: list[dict[str, Any]],
    best_key: str | None,
    sens: dict[str, Sensitivity],
    curve: Any,
    metric: str,
) -> str | None:
    """With no change, how near it came: the answer's slowest end and the fastest end of the
    nearest banded candidate ranked before it, against the target."""
    target = getattr(q.target, metric, None)
    if target is None:
        return None
    mine, rivals = None, []
    for r in order:
        s = sens.get(r["key"])
        if s is None:
            continue
        lo = _metric(_at(r, s.band_s[0], curve), metric)
        hi = _metric(_at(r, s.band_s[1], curve), metric)
        if r["key"] == best_key and hi is not None:
            mine = f"{r['system']} takes at most {_fmt(hi, metric)}"
        elif lo is not None:
            rivals.append((lo / target, f"{r['system']} needs at least {_fmt(lo, metric)}"))
    notes = [n for n in (mine, min(rivals)[1] if rivals else None) if n]
    return " and ".join(notes) + f" (target {_fmt(target, metric)})" if notes else None


def thresholds(q: Question, band: PlanBand, rows: list[dict[str, Any]], best_key: str | None,
               curve: Any) -> None:  # fmt: skip
    """Find where each of the first :data:`MAX_THRESHOLDS` changes happens (bisection on the
    candidate that decides it: the answer when it stops meeting, else the new answer)."""
    from simulator.config.scenario import load_scenario
    from simulator.sensitivity.runner import time_at
    from simulator.sweep.points import expand

    points = {p.key: p for p in expand(q.sweep).points}
    by_key = {r["key"]: r for r in rows}
    for change in band.changes[:MAX_THRESHOLDS]:
        new = change.answer
        decider = by_key[best_key] if new is None or _ranks_after(q, new, by_key.get(best_key)) \
            else by_key.get(new["key"])  # fmt: skip
        if decider is None:
            continue
        loaded = load_scenario(q.sweep.base, points[decider["key"]].overrides)
        record = _find(loaded, change.name)
        nominal = record.value if record is not None else None
        end = change.value
        change.direction = "above" if _greater(end, nominal) else "below"
        if nominal is None or isinstance(end, bool) or isinstance(nominal, bool):
            continue

        def ok(
            x: float, d: dict[str, Any] = decider, sc: Any = loaded, n: str = change.name
        ) -> bool:
            return meets(_at(d, time_at(sc, n, x), curve), q.target)

        a, b = nominal, end
        good_a = meets(decider, q.target)
        integer = isinstance(end, int) and isinstance(nominal, int)
        tol = max(1 if integer else 0, abs(end - nominal) / 100)
        for _ in range(BISECTIONS):
            if abs(b - a) <= tol:
                break
            m = round((a + b) / 2) if integer else (a + b) / 2
            if ok(m) == good_a:
                a = m
            else:
                b = m
        change.threshold, change.threshold_from = b, a


def _find(loaded: Any, name: str) -> Any:
    from simulator.run import build_system
    from simulator.sensitivity.variants import assumptions_of

    return next((r for r in assumptions_of(loaded, build_system(loaded)) if r.name == name), None)


def _greater(a: Any, b: Any) -> bool:
    try:
        return bool(a > b)
    except TypeError:
        return True


def _ranks_after(q: Question, row: dict[str, Any], best: dict[str, Any] | None) -> bool:
    if best is None:
        return False
    return (*sort_key(row, q.rank_by), row["key"]) > (*sort_key(best, q.rank_by), best["key"])


_WHO = {"chips": "the smallest system", "power_W": "the lowest-power configuration"}


def _value(value: Any, unit: str | None) -> str:
    from simulator.config.assumptions import format_value

    return format_value(value, unit)


def band_lines(a: Answer) -> list[str]:
    """The lines ``ipusim plan`` prints about the answer's band (after the answer)."""
    b = a.band
    if b is None:
        return []
    metric = b["metric"]
    lo, hi = b["band"]
    head = "answer" if a.best is not None else "nearest"
    top = b["top"][0] if b["top"] else None
    moved = f"; moved most by {top['name']} ({top['assumption']})" if top else ""
    lines = [
        f"  band: {head} {_fmt(b['value'], metric)}, {_fmt(lo, metric)} – {_fmt(hi, metric)} "
        f"within the assumption ranges (one at a time){moved}"
    ]
    if b["infeasible"]:
        lines.append(f"  band: the {head} does not fit with {', '.join(b['infeasible'])}")
    who = _WHO.get(b["rank_by"][0] if b["rank_by"] else "", "the answer")
    if not b["changes"]:
        text = "  changes: no single assumption within its range changes the answer"
        if b.get("closest"):
            text += f"; closest: {b['closest']}"
        lines.append(text)
    for c in b["changes"]:
        new = c["answer"]
        if c["threshold"] is not None:
            when = f"is {c['direction']} {_value(c['threshold'], c['unit'])}"
        else:
            when = f"is at its {c['end']} end ({_value(c['value'], c['unit'])})"
        cond = f"if {c['assumption']} ({c['name']}) {when}"
        if new:
            what = f"{who} becomes {new['system']} ({new['chips']} IPUs)"
        else:
            what = "no candidate meets the target"
        lines.append(f"  changes: {what} {cond}")
    if b["not_checked"]:
        lines.append(
            f"  not banded: {b['not_checked']} candidate(s) ranked before the answer that miss "
            "the target by more than those checked"
        )
    return lines
