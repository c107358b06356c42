"""Reading a results store as a table: pandas DataFrame, CSV and Parquet.

One row per (sweep, point), in sweep then point order. Columns: ``sweep``, ``index``,
``key``, ``status``, ``reason``; one column per swept or derived key path (``topology``,
``strategy.stages`` ...); ``chips`` and ``power_W`` (the system's); every scalar field of the
result JSON (``step_time_s``, ``throughput_samples_per_s`` ...; fields in docs/metrics.md),
except that ``name`` (every point runs under the base scenario's name) becomes the base name
with the point's values unless the sweep sets ``name`` itself;
for sweeps with a ``statistics:`` model, ``samples_to_target``, ``steps_to_target``,
``time_to_train_s`` and ``energy_to_train_kWh`` (power_W x time_to_train_s / 3.6e6), computed
at read time so changing the model never invalidates a stored point; sparse runs add
``sparse_samples_factor`` (or ``statistics_note`` when no ratio applies, TTT left empty); and for
points run with their sensitivity band (``ipusim sweep --band``), ``band_low_s``,
``band_high_s`` (the band of the step time), ``band_top_assumption`` (the assumption that moves
it most) and, with a statistics model, ``time_to_train_low_s`` and ``time_to_train_high_s``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simulator import outputs
from simulator.capacity.ttt import Curve, Statistics, resolve
from simulator.errors import InputError
from simulator.sweep.store import Store

if TYPE_CHECKING:
    import pandas as pd

FIXED = ("sweep", "index", "key", "status", "reason")
TTT = ("samples_to_target", "steps_to_target", "time_to_train_s", "energy_to_train_kWh")


def curves(store: Store) -> dict[str, Curve | None]:
    """Each sweep's time-to-train curve (None without a statistics model)."""
    out: dict[str, Curve | None] = {}
    for sweep, text in store.sweeps().items():
        out[sweep] = None if text is None else resolve(Statistics.model_validate_json(text))
    return out


def flatten(row: dict[str, Any], curve: Curve | None) -> dict[str, Any]:
    """One table row from a store row (see the module docstring)."""
    out: dict[str, Any] = {k: row[k] for k in FIXED}
    values = json.loads(row["values"])
    out.update(values)
    out["chips"], out["power_W"] = row["chips"], row["power_W"]
    result = json.loads(row["result"]) if row["result"] else {}
    if "name" not in values and "name" in result:  # every point ran as the base scenario's name
        out["name"] = point_name(result["name"], values)
    for key, value in result.items():
        if key not in out and not isinstance(value, dict | list):
            out[key] = value
    sens = result.get("sensitivity")
    if sens:  # a point run with --band (docs/sweeps.md)
        out["band_low_s"], out["band_high_s"] = sens["band_s"]
        out["band_top_assumption"] = sens["assumptions"][0]["name"] if sens["assumptions"] else None
    if curve is not None:
        batch = result.get("global_batch")
        step = result.get("step_time_s")
        sparsity = result.get("sparsity")
        ttt = curve.time_to_train(batch, step, sparsity) if batch else dict.fromkeys(TTT[:3])
        out.update(ttt)
        power, t = row["power_W"], ttt["time_to_train_s"]
        out["energy_to_train_kWh"] = power * t / 3.6e6 if power and t else None
        if sens and batch:
            for end, s in zip(("low", "high"), sens["band_s"], strict=True):
                out[f"time_to_train_{end}_s"] = curve.time_to_train(batch, s)["time_to_train_s"]
    return out


def point_name(base: str, values: dict[str, Any]) -> str:
    """A point's name in tables: the base scenario's name and the point's scalar values
    (``bert (topology=bow-pod64, training.micro_batch=2)``); lists are left to their columns."""
    shown = [
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in values.items()
        if not isinstance(v, list | dict)
    ]
    return f"{base} ({', '.join(shown)})" if shown else base


def records(store: Store, sweep: str | None = None) -> list[dict[str, Any]]:
    """Every row of the store (or of one sweep) as a flat mapping."""
    known = curves(store)
    if sweep is not None and sweep not in known:
        names = ", ".join(known) or "none"
        raise InputError(
            f"no sweep named '{sweep}' in the store (sweeps: {names})", file=store.path
        )
    return [flatten(r, known.get(r["sweep"])) for r in store.rows(sweep)]


def load_results(path: str | Path, sweep: str | None = None) -> pd.DataFrame:
    """A results store as a pandas DataFrame (read-only)::

    from simulator.sweep import load_results
    df = load_results("bert.sqlite")
    df[df.status == "ok"].sort_values("step_time_s")
    """
    import pandas as pd

    with Store.open(path, create=False, readonly=True) as store:
        rows = records(store, sweep)
    columns = list(dict.fromkeys(k for r in rows for k in r)) or list(FIXED)
    return pd.DataFrame(rows, columns=columns)


FORMATS = ("csv", "parquet")


def export(
    path: str | Path,
    out: str | Path,
    fmt: str | None = None,
    sweep: str | None = None,
    *,
    force: bool = False,
) -> int:
    """Write the store at ``path`` to ``out`` as CSV or Parquet; returns the row count.

    ``fmt`` defaults to the suffix of ``out`` (``.csv``, ``.parquet``).
    """
    out = Path(out)
    fmt = fmt or out.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise InputError(
            f"unknown export format '{fmt}'; one of: {', '.join(FORMATS)} "
            "(give --format or an .csv / .parquet file name)",
            file=out,
        )
    outputs.check(out, force=force, option="--out", ours=is_export)
    df = load_results(path, sweep)
    if fmt == "csv":
        data = df.to_csv(index=False).encode("utf-8")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(_parquet_safe(df), preserve_index=False)
        meta = {**(table.schema.metadata or {}), b"generator": b"ipusim"}
        sink = pa.BufferOutputStream()
        pq.write_table(table.replace_schema_metadata(meta), sink)
        data = sink.getvalue().to_pybytes()
    outputs.write(out, data)
    return len(df)


def is_export(path: Path) -> bool:
    """Whether ``path`` is an earlier export of ipusim's (CSV: our leading columns; Parquet:
    our schema metadata), which ``results export`` may replace."""
    if path.suffix.lower() == ".parquet":
        try:
            import pyarrow.parquet as pq

            return (pq.read_schema(path).metadata or {}).get(b"generator") == b"ipusim"
        except Exception:
            return False
    with path.open("rb") as f:
        return f.readline().startswith(",".join(FIXED).encode())


def _parquet_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Object columns of mixed types (an axis of lists, or of numbers and names) as text."""
    df = df.copy()
    for col in df.columns:
        if df[col].dtype != object:
            continue
        kinds = {type(v) for v in df[col] if v is not None}
        if len(kinds) > 1 or kinds & {list, dict}:
            df[col] = [
                None if v is None else v if isinstance(v, str) else json.dumps(v) for v in df[col]
            ]
    return df
