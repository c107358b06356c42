"""Which chips a plan simulates and which repeat them (:class:`Replication`).

Training strategies simulate one replica (replica 0 of data and pipeline parallelism, member 0's
first replica of an ensemble): the other replicas run the same program on their own chips and
join the simulated one only where the graph names their chips (collectives, syncs with
``across``, the hosts' step end). On a steady machine that loses nothing: identical replicas
arrive together. With variability they do not, and the engine needs to know which chip repeats
which (:mod:`simulator.engine.variability`). A plan says so with a Replication; a plan without
one simulates every chip it uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property


@dataclass(frozen=True)
class Replication:
    """The copies of a plan's simulated chips, grouped into independent members.

    ``copies[0]`` are the simulated chips; ``copies[r][k]`` runs the same program as
    ``copies[0][k]`` (r >= 1 are not simulated task by task). ``members`` partitions the copy
    indices into independent jobs that never wait for each other except where the graph says
    (an ensemble's members); ``members[m][p]`` plays the part in member m that
    ``members[0][p]`` plays in member 0, and member 0 holds copy 0 first. Empty: one member
    holding every copy (data and pipeline parallelism: all replicas are one job).
    """

    copies: tuple[tuple[int, ...], ...]
    members: tuple[tuple[int, ...], ...] = ()

    def __post_init__(self) -> None:
        if not self.copies or not self.copies[0]:
            raise ValueError("a replication needs at least one copy with at least one chip")
        width = len(self.copies[0])
        seen: set[int] = set()
        for r, row in enumerate(self.copies):
            if len(row) != width:
                raise ValueError(f"copy {r} has {len(row)} chips, copy 0 has {width}")
            if seen & set(row) or len(set(row)) != len(row):
                raise ValueError(f"copy {r} names a chip another copy (or itself) names")
            seen.update(row)
        if self.members:
            flat = sorted(i for m in self.members for i in m)
            if flat != list(range(len(self.copies))):
                raise ValueError("members must partition the copy indices 0..R-1")
            if len({len(m) for m in self.members}) != 1 or self.members[0][0] != 0:
                raise ValueError("members must be of equal size, member 0 starting with copy 0")

    @property
    def size(self) -> int:
        """Number of copies (R)."""
        return len(self.copies)

    @cached_property
    def groups(self) -> tuple[tuple[int, ...], ...]:
        """The members, or one member holding every copy."""
        return self.members or (tuple(range(len(self.copies))),)

    @cached_property
    def where(self) -> dict[int, tuple[int, int]]:
        """chip -> (copy index, position in the copy)."""
        return {c: (r, k) for r, row in enumerate(self.copies) for k, c in enumerate(row)}

    @classmethod
    def of_rows(
        cls, rows: list[list[int]] | tuple[tuple[int, ...], ...], members: int = 1
    ) -> Replication:
        """Copies given as rows of chips (``rows[r][k]``), split into ``members`` equal
        consecutive groups of copies."""
        copies = tuple(tuple(r) for r in rows)
        if members <= 1:
            return cls(copies)
        per = len(copies) // members
        return cls(copies, tuple(tuple(range(m * per, (m + 1) * per)) for m in range(members)))
