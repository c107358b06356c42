"""TaskGraph: typed tasks with dependencies. Cycles and dangling dependencies are errors."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from simulator.engine.tasks import Collective, Task, chips_of

if TYPE_CHECKING:
    import networkx as nx


class GraphError(ValueError):
    """A task graph that cannot run: a cycle, a dependency on a missing task, a bad chip id."""


@dataclass(frozen=True, slots=True)
class Node:
    """A task in a graph: its integer id, the task, and the ids it waits for."""

    id: int
    task: Task
    deps: tuple[int, ...]


class TaskGraph:
    """An append-only DAG of tasks. Ids are dense integers in insertion order."""

    def __init__(self) -> None:
        self._nodes: list[Node] = []
        self._valid_for: tuple[int, int | None] | None = None  # (size, chips) last validated

    def add(self, task: Task, deps: Iterable[int] = ()) -> int:
        """Add ``task`` after ``deps`` (ids returned by earlier ``add`` calls); return its id."""
        tid = len(self._nodes)
        self._nodes.append(Node(tid, task, tuple(deps)))
        return tid

    def add_all(self, tasks: Iterable[Task], deps: Iterable[int] = ()) -> list[int]:
        """Add several independent tasks with the same dependencies."""
        d = tuple(deps)
        return [self.add(t, d) for t in tasks]

    @property
    def nodes(self) -> Sequence[Node]:
        return self._nodes

    def __len__(self) -> int:
        return len(self._nodes)

    def to_networkx(self) -> nx.DiGraph:
        """The graph as networkx (edges dep -> task), for analysis and critical paths."""
        import networkx as nx

        g = nx.DiGraph()
        g.add_nodes_from(range(len(self._nodes)))
        for n in self._nodes:
            g.add_edges_from((d, n.id) for d in n.deps)
        return g

    def validate(self, num_chips: int | None = None) -> None:
        """Raise GraphError for dangling dependencies, cycles or chip ids out of range.

        A graph that passed for the same number of chips and has not grown since is not
        checked again (a plan run many times, :mod:`simulator.runcache`)."""
        size = len(self._nodes)
        if self._valid_for == (size, num_chips):
            return
        checked: set[int] = set()  # ids of chip tuples already checked (shared ``across``)
        for n in self._nodes:
            for d in n.deps:
                if not (0 <= d < size):
                    raise GraphError(
                        f"task {n.id} ({_describe(n.task)}) depends on task {d}, "
                        f"which does not exist (ids are 0..{size - 1})"
                    )
            if num_chips is not None:
                across = getattr(n.task, "across", ())
                named = chips_of(n.task)
                if len(across) > 8:
                    if id(across) in checked:
                        named = named[: len(named) - len(across)]
                    else:
                        checked.add(id(across))
                for c in named:
                    if not (0 <= c < num_chips):
                        raise GraphError(
                            f"task {n.id} ({_describe(n.task)}) names chip {c}; "
                            f"the system has chips 0..{num_chips - 1}"
                        )
            task = n.task
            if isinstance(task, Collective) and task.root not in (None, *task.group):
                raise GraphError(
                    f"task {n.id} ({_describe(task)}) has root {task.root}, "
                    f"which is not in its group {list(task.group)}"
                )
        if any(d >= n.id for n in self._nodes for d in n.deps):
            import networkx as nx

            g = self.to_networkx()
            try:
                cycle = nx.find_cycle(g)
            except nx.NetworkXNoCycle:
                self._valid_for = (size, num_chips)
                return
            path = " -> ".join(str(a) for a, _ in cycle) + f" -> {cycle[0][0]}"
            raise GraphError(f"the task graph has a cycle: {path}")
        self._valid_for = (size, num_chips)


def _describe(task: Task) -> str:
    label = getattr(task, "label", "")
    return f"{type(task).__name__}{' ' + label if label else ''}"
