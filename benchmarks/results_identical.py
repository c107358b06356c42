"""Are the simulated figures exactly what they were? A byte-level snapshot of every result.

Speed work on the engine must not move a simulated figure, not even in the last digit. This
script runs, in one process,

* every shipped scenario (``scenarios/**/*.yaml`` that is not a sweep or plan file) through
  ``ipusim run FILE --json --full``, once with the replay of identical collective steps and
  once with ``--per-transfer``;
* the validation reports: ``python -m validation.report`` (Jia19 tables and predictions),
  ``python -m validation.mlperf --report`` and ``python -m validation.knock_on --json``,

and writes what each printed (stdout and exit code) into one JSON file. Run it on the commit
before a change and after it, then compare::

    python benchmarks/results_identical.py --out before.json      # on the old commit
    python benchmarks/results_identical.py --out after.json --compare before.json

``--compare`` exits 1 and names every case whose output differs (with the first differing
line), 0 when every byte is the same. ``--quick`` skips the validation reports and the
``--per-transfer`` runs. Run from the repository root of the checkout to snapshot.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path.cwd()


def _scenarios() -> list[Path]:
    import yaml

    out = []
    for p in sorted((ROOT / "scenarios").rglob("*.yaml")):
        doc = yaml.safe_load(p.read_text())
        if isinstance(doc, dict) and doc.get("kind", "scenario") == "scenario":
            out.append(p)
    return out


def _capture(call: Callable[[], int | None]) -> str:
    """What ``call`` printed on stdout, and its exit code."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
        try:
            code = call()
        except SystemExit as exc:  # argparse-style exits
            code = exc.code if isinstance(exc.code, int) else 1
    return f"exit {code or 0}\n{buf.getvalue()}"


def snapshot(quick: bool) -> dict[str, str]:
    from simulator.cli import main

    out: dict[str, str] = {}
    modes = [("", [])] if quick else [("", []), (" --per-transfer", ["--per-transfer"])]
    for path in _scenarios():
        rel = path.relative_to(ROOT / "scenarios").as_posix()
        for tag, extra in modes:
            t0 = time.perf_counter()
            out[rel + tag] = _capture(
                lambda p=path, e=extra: main(["run", str(p), "--json", "--full", *e])
            )
            print(f"{rel + tag:<60} {time.perf_counter() - t0:7.2f} s", file=sys.stderr)
    if not quick:
        sys.path.insert(0, str(ROOT))
        from validation import knock_on, mlperf, report

        for name, call in (
            ("validation.report", lambda: report.main([])),
            ("validation.mlperf --report", lambda: mlperf.main(["--report"])),
            ("validation.knock_on --json", lambda: knock_on.main(["--json"])),
        ):
            t0 = time.perf_counter()
            out[name] = _capture(call)
            print(f"{name:<60} {time.perf_counter() - t0:7.2f} s", file=sys.stderr)
    return out


def compare(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """One line per case that differs (or is missing on one side)."""
    problems = []
    for key in sorted(set(before) | set(after)):
        if key not in after:
            problems.append(f"{key}: not run now")
        elif key not in before:
            problems.append(f"{key}: new (no earlier output)")
        elif before[key] != after[key]:
            old, new = before[key].splitlines(), after[key].splitlines()
            first = next(
                (i for i, (a, b) in enumerate(zip(old, new, strict=False)) if a != b),
                min(len(old), len(new)),
            )
            problems.append(
                f"{key}: line {first + 1}: {old[first] if first < len(old) else '<end>'!r} -> "
                f"{new[first] if first < len(new) else '<end>'!r}"
            )
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--compare", type=Path, help="an earlier snapshot to compare with")
    parser.add_argument("--quick", action="store_true", help="default runs of scenarios only")
    args = parser.parse_args()
    now = snapshot(args.quick)
    args.out.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
    if args.compare is None:
        print(f"{len(now)} outputs written to {args.out}")
        return 0
    before = json.loads(args.compare.read_text())
    if args.quick:
        before = {k: v for k, v in before.items() if k in now}
    problems = compare(before, now)
    for p in problems:
        print(p)
    print(f"{len(now)} outputs compared: {len(problems)} differ")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
