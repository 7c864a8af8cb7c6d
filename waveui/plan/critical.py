"""The critical path weighted by story points, and each task's slack."""

from __future__ import annotations

from dataclasses import dataclass

from waveui.plan.graph import EPSILON, TaskGraph


@dataclass
class CriticalPath:
    tasks: list[int]  # the path itself, first task first
    length: float
    head: list[float]  # longest path ending at each task, itself included
    tail: list[float]  # longest path starting at each task, itself included
    slack: list[float]  # how long each task can slip without lengthening the epic

    @property
    def members(self) -> set[int]:
        return set(self.tasks)


def critical_path(graph: TaskGraph, order: list[int]) -> CriticalPath:
    """The longest weighted path through the graph.

    Ties are broken deterministically: among equally long paths the one whose
    tasks come first in the file wins, task by task from the start. A task's
    slack is ``length - (head + tail - weight)``: zero exactly on some
    longest path.
    """
    head = graph.head_lengths(order)
    tail = graph.tail_lengths(order)
    weight = graph.weight
    length = max(head, default=0.0)
    tolerance = EPSILON * max(1.0, length)
    # head + tail - weight adds the same points in another order than head alone:
    # a difference within rounding error is no slack at all.
    slack = [length - (h + t - w) for h, t, w in zip(head, tail, weight)]
    slack = [s if s > tolerance else 0.0 for s in slack]
    if not graph.ids:
        return CriticalPath([], 0.0, head, tail, slack)
    start = next(i for i in range(len(graph)) if not graph.pred[i] and tail[i] >= length - tolerance)
    path = [start]
    while graph.succ[path[-1]]:
        current = path[-1]
        remaining = tail[current] - weight[current]
        nexts = [j for j in graph.succ[current] if tail[j] >= remaining - tolerance]
        path.append(min(nexts))
    return CriticalPath(path, length, head, tail, slack)
