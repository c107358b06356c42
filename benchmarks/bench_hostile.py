"""Hostile inputs (issue 15, benchmark): exit code, wall time and peak memory of every case.

Runs each case of the corpus in tests/hostile/ (table: tests/hostile/cases.tsv) as its own
``python -m simulator.cli`` process, sequentially, and prints one row per case — exit code,
whether the outcome is as the table expects, wall seconds (process start to exit, imports
included) and peak resident memory (``wait4``) — then the maxima. Target (issue text): every
case ends within seconds and in under 500 MB, with exit 2 (or 3 for a truly infeasible plan).
Run::

    python benchmarks/bench_hostile.py            # every case
    python benchmarks/bench_hostile.py model-     # the cases whose file starts with model-
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.hostile_cases import load_cases, run_isolated

TARGET_MB = 500


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("prefix", nargs="?", default="", help="only cases whose file starts so")
    args = parser.parse_args()
    cases = [c for c in load_cases() if c.file.startswith(args.prefix)]
    worst_s = worst_mb = 0.0
    failed = []
    print(f"{'case':<40} {'exit':>4} {'ok':>3} {'wall s':>7} {'peak MB':>8}")
    for case in cases:
        with tempfile.TemporaryDirectory(prefix="ipusim-hostile-") as tmp:
            m = run_isolated(case, Path(tmp))
        problems = case.problems(m.code, m.stderr)
        if problems or m.peak_MB >= TARGET_MB:
            failed.append((case.file, problems, m.peak_MB))
        worst_s, worst_mb = max(worst_s, m.wall_s), max(worst_mb, m.peak_MB)
        ok = "no" if problems else "yes"
        print(f"{case.file:<40} {m.code:>4} {ok:>3} {m.wall_s:>7.2f} {m.peak_MB:>8.1f}")
    print(f"{len(cases)} cases; slowest {worst_s:.2f} s, largest peak {worst_mb:.1f} MB "
          f"(target < {TARGET_MB} MB); not as expected: {len(failed)}")  # fmt: skip
    for name, problems, peak in failed:
        print(f"  {name}: {'; '.join(problems) or ''} peak {peak:.1f} MB")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
