"""``ipusim examples [--copy DIR]``: the built-in scenarios, sweeps and plans.

Listing names each example (``ipusim run NAME`` runs it, wherever ipusim is installed), the
command that reads it and its description. ``--copy DIR`` copies them all, sub-folders kept, so
they can be edited: files already in ``DIR`` with the same content are left, and any with other
content stop the copy before anything is written (a user's file is never replaced).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

from simulator.errors import InputError

EXIT_OK = 0

#: ``kind:`` of a file under scenarios/ -> the command that reads it.
COMMANDS = {
    "scenario": "ipusim run {name}",
    "sweep": "ipusim sweep {name} --out results.db",
    "plan": "ipusim plan {name}",
    "jobs": "ipusim shared {name}",
}


def add_examples_command(sub: Any) -> None:
    """Register ``examples`` on the top-level subparsers."""
    ex = sub.add_parser(
        "examples",
        help="list the built-in example scenarios, sweeps and plans (or copy them to edit)",
        description="List the built-in examples: `ipusim run NAME` runs a scenario by name from "
        "any folder. --copy DIR copies them all there to edit.",
        epilog="Example: ipusim examples --copy my-scenarios",
    )
    ex.add_argument(
        "--copy",
        metavar="DIR",
        help="copy every example into DIR (created if missing; existing files are never replaced)",
    )
    ex.set_defaults(func=cmd_examples)


def _kind_and_description(path: Path) -> tuple[str, str]:
    from simulator.config.yamlio import load_document

    data = load_document(path).data
    kind = data.get("kind") if isinstance(data, dict) else None
    kind = kind if isinstance(kind, str) else "scenario"
    text = data.get("description") or data.get("question") or "" if isinstance(data, dict) else ""
    return kind, " ".join(str(text).split())


def cmd_examples(args: argparse.Namespace) -> int:
    """``ipusim examples``."""
    from simulator.config.paths import builtin_files, folder, require_builtin_names

    require_builtin_names("scenario")
    files = builtin_files("scenario")
    if args.copy:
        return _copy(files, folder("scenario"), Path(args.copy))
    by_kind: dict[str, list[tuple[str, str]]] = {}
    for name, path in files.items():
        kind, text = _kind_and_description(path)
        by_kind.setdefault(kind, []).append((name, text))
    width = max(len(n) for n in files)
    titles = {"scenario": "scenarios", "sweep": "sweeps", "plan": "plans"}
    first = True
    for kind in ("scenario", "sweep", "plan", "jobs", *sorted(set(by_kind) - set(COMMANDS))):
        if kind not in by_kind:
            continue
        if not first:
            print()
        first = False
        how = COMMANDS.get(kind, "").format(name="NAME")
        print(f"{titles.get(kind, kind)} ({how}):" if how else f"{kind}:")
        for name, text in by_kind[kind]:
            print(f"  {name:<{width}}  {text}".rstrip())
    print("\nCopy them to edit: ipusim examples --copy DIR")
    return EXIT_OK


def _copy(files: dict[str, Path], root: Path, target: Path) -> int:
    """Copy every file (relative to ``root``) into ``target``; refuse before writing anything
    when a different file is already there."""
    if target.exists() and not target.is_dir():
        raise InputError(f"--copy: {target} exists and is not a folder")
    plan: list[tuple[Path, Path]] = []
    clashes: list[str] = []
    for path in files.values():
        dest = target / path.relative_to(root)
        if dest.exists():
            if not dest.is_file() or dest.read_bytes() != path.read_bytes():
                clashes.append(str(dest))
            continue
        plan.append((path, dest))
    if clashes:
        shown = ", ".join(clashes[:3]) + (
            f" and {len(clashes) - 3} more" if len(clashes) > 3 else ""
        )
        raise InputError(
            f"--copy: {len(clashes)} file(s) in {target} differ from the examples ({shown}); "
            "nothing was copied (choose another folder or move them away)"
        )
    for src, dest in plan:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
    kept = len(files) - len(plan)
    print(
        f"copied {len(plan)} example file(s) to {target}"
        + (f" ({kept} already there, unchanged)" if kept else "")
    )
    print(f"run one with: ipusim run {target / 'quickstart.yaml'}")
    return EXIT_OK
