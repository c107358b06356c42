"""Which T chips form each tensor group: from the topology, the same machine first.

A tensor group runs four collectives per transformer layer per micro-batch in each direction,
so it wants the shortest, widest links there are: the IPU-Links inside one machine (an
IPU-M2000 or Bow-2000 holds 4 IPUs joined by a ladder rung and rails). Groups are carved out of
each machine's chips in id order while T of them remain; chips left over (T does not divide a
machine) and groups wider than a machine take consecutive machines of one IPU-Link domain (the
next machine along the rails). A replica takes K consecutive groups, one per pipeline stage
(stage k's chip of rank t sends to stage k+1's chip of rank t, over the rails between
neighbouring machines); replicas follow each other. The result states where the groups landed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from simulator.hardware.system import System


@dataclass(frozen=True)
class GroupPlacement:
    """``groups[r][k]``: the chips of replica r's stage k, in rank order; what was decided."""

    groups: list[list[tuple[int, ...]]]
    statement: str
    warnings: tuple[str, ...] = ()


def place_groups(
    system: System,
    stages: int,
    tensor: int,
    replicas: int,
    chips: Sequence[int] | None = None,
) -> GroupPlacement:
    """Groups of ``tensor`` chips for ``replicas`` x ``stages`` stages, over ``chips`` (default:
    every chip of the system; an ensemble member passes its own)."""
    by_machine: dict[tuple[int, int], list[int]] = {}
    for cid in chips if chips is not None else range(system.num_chips):
        chip = system.chips[cid]
        by_machine.setdefault((chip.domain, chip.machine), []).append(chip.id)
    flat: list[tuple[int, ...]] = []
    left: list[int] = []
    for key in sorted(by_machine):
        chips = by_machine[key]
        whole = len(chips) // tensor * tensor
        flat += [tuple(chips[i : i + tensor]) for i in range(0, whole, tensor)]
        left += chips[whole:]
    flat += [tuple(left[i : i + tensor]) for i in range(0, len(left) - tensor + 1, tensor)]
    # machine order: groups carved from whole machines first would break the replicas'
    # adjacency when some are carved from leftovers; keep them in the order of their first chip
    flat.sort(key=lambda grp: grp[0])
    groups = [[flat[r * stages + k] for k in range(stages)] for r in range(replicas)]
    scopes = [system.sync_scope(grp) for grp in flat]
    per_machine = len(next(iter(by_machine.values())))
    kinds = sorted(set(scopes), key=["chip", "machine", "domain", "system"].index)
    warnings: list[str] = []
    if kinds == ["machine"]:
        statement = (
            f"{len(flat)} tensor groups of {tensor} chips, each inside one machine "
            f"({per_machine} chips per machine, joined by IPU-Links)"
        )
    else:
        spans = max(len({system.chips[c].machine for c in grp}) for grp in flat)
        statement = (
            f"{len(flat)} tensor groups of {tensor} chips; a group spans up to {spans} "
            f"machines ({per_machine} chips per machine): "
            + ", ".join(f"{scopes.count(s)} within one {s}" for s in kinds)
        )
        if "system" in kinds:
            warnings.append(
                f"tensor_parallel {tensor}: some tensor groups cross IPU-Link domains, so "
                "their activation collectives cross GW-Links every layer"
            )
        elif tensor <= per_machine:
            warnings.append(
                f"tensor_parallel {tensor} does not divide the {per_machine} chips of a "
                "machine: some tensor groups span two machines"
            )
    return GroupPlacement(groups, statement, tuple(warnings))


__all__ = ["GroupPlacement", "place_groups"]
