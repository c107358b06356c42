"""``ipusim topology show`` of a chip (``gc200`` or a ``kind: chip`` file) rather than a system.

A chip is not a system, but asking for one should describe it, not fail: :func:`is_chip` tells
the two apart (an unknown name lists both), :func:`show_chip` prints
:func:`simulator.hardware.describe.describe_chip`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from simulator.errors import InputError, did_you_mean

EXIT_OK = 0


def is_chip(name: str) -> bool:
    """Whether ``topology show NAME`` names a chip: a built-in chip that is not a system name,
    or a file whose ``kind`` is chip."""
    from simulator.config import paths
    from simulator.config.yamlio import load_document

    if Path(name).is_file() or paths.looks_like_path(name):
        if not Path(name).is_file():
            return False
        data = load_document(name).data
        return isinstance(data, dict) and data.get("kind") == "chip"
    systems = paths.require_builtin_names("system")
    chips = paths.builtin_names("chip")
    if name in systems or name not in chips:
        if name not in systems:
            raise InputError(
                f"unknown system or chip '{name}'{did_you_mean(name, [*systems, *chips])}; "
                f"systems: {', '.join(systems)}; chips: {', '.join(chips)} "
                "(or give a path to a .yaml file)"
            )
        return False
    return True


def show_chip(args: argparse.Namespace) -> int:
    from simulator.config import paths
    from simulator.config.assumptions import records
    from simulator.config.load import validate
    from simulator.config.topology import ChipFile
    from simulator.config.yamlio import load_document
    from simulator.hardware.build import load_chip_type
    from simulator.hardware.describe import describe_chip, format_chip_text

    if getattr(args, "html", None) or getattr(args, "load_from", None):
        raise InputError(f"{args.name} is a chip: --html draws systems only")
    ct = load_chip_type(args.name)
    doc = load_document(paths.resolve(args.name, "chip"))
    cf = validate(doc, ChipFile)
    blocks = records("chip", doc.data, cf.assumptions, cf.calibrated)
    desc = describe_chip(ct, str(doc.data.get("description", "") or ""), blocks)
    if args.json:
        sys.stdout.write(json.dumps(desc, indent=2) + "\n")
    else:
        sys.stdout.write(format_chip_text(desc))
    return EXIT_OK
