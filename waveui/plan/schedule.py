"""Makespan estimates for P workers: lower bound, eager list schedules, wave barriers, FIFO.

The engine dispatches eagerly: a task starts as soon as its dependencies are
done and a worker is free, taking the ready task that ranks first. Which
ranking is best depends on the graph, so :func:`best_eager_schedule` simulates
several priority rules and keeps the shortest schedule; its start order is the
dispatch order the engine follows.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from waveui.plan.graph import EPSILON, TaskGraph

# Graphs up to this size also try randomly perturbed priorities; beyond it the
# deterministic rules alone keep `waveui plan` fast.
PERTURB_UP_TO = 2_000
PERTURB_ROUNDS = 64


@dataclass
class Schedule:
    rule: str
    makespan: float
    start: list[float]
    order: list[int]  # tasks in the order they start


def lower_bound(graph: TaskGraph, critical_length: float, workers: int) -> float:
    """No schedule on ``workers`` workers can finish before this."""
    return max(critical_length, sum(graph.weight) / max(1, workers))


def list_schedule(graph: TaskGraph, workers: int, key: Sequence | None, rule: str = "",
                  exclusive: Sequence[Sequence[int]] | None = None) -> Schedule:
    """Simulate eager list scheduling: whenever a worker is free, start the ready task with the least key.

    ``key=None`` is FIFO: tasks start in the order they became ready.
    ``exclusive[i]`` lists tasks that may never run at the same time as ``i``
    (file locks); a ready task blocked by one waits while others go ahead.
    """
    n = len(graph)
    weight, succ = graph.weight, graph.succ
    waiting = [len(p) for p in graph.pred]
    start = [0.0] * n
    order: list[int] = []
    ready: list = []
    sequence = 0

    def push(task: int) -> None:
        nonlocal sequence
        heapq.heappush(ready, (sequence if key is None else key[task], task))
        sequence += 1

    for i in range(n):
        if waiting[i] == 0:
            push(i)
    running: list[tuple[float, int]] = []
    now = 0.0
    busy = [False] * n if exclusive else None
    while ready or running:
        held_back = []
        while ready and len(running) < workers:
            entry = heapq.heappop(ready)
            task = entry[1]
            if busy is not None and any(busy[o] for o in exclusive[task]):
                held_back.append(entry)
                continue
            start[task] = now
            order.append(task)
            if busy is not None:
                busy[task] = True
            heapq.heappush(running, (now + weight[task], task))
        for entry in held_back:
            heapq.heappush(ready, entry)
        if not running:
            break
        now = running[0][0]
        while running and running[0][0] <= now + EPSILON:
            _, task = heapq.heappop(running)
            if busy is not None:
                busy[task] = False
            for j in succ[task]:
                waiting[j] -= 1
                if waiting[j] == 0:
                    push(j)
    if len(order) != n:
        raise ValueError("the task graph has a cycle")
    return Schedule(rule, now if n else 0.0, start, order)


def wave_schedule(graph: TaskGraph, waves: list[list[int]], workers: int) -> float:
    """Makespan when each wave must finish before the next starts (longest task first inside a wave)."""
    total = 0.0
    for wave in waves:
        finish = [0.0] * min(workers, len(wave))
        heapq.heapify(finish)
        for task in sorted(wave, key=lambda t: -graph.weight[t]):
            heapq.heappush(finish, heapq.heappop(finish) + graph.weight[task])
        total += max(finish, default=0.0)
    return total


def _successor_counts(graph: TaskGraph) -> list[int]:
    return [len(s) for s in graph.succ]


def priority_rules(graph: TaskGraph, tail: list[float]) -> dict[str, Callable[[], list]]:
    """Ranking rules for ready tasks: each gives a key per task, least first.

    User priority always comes first (higher runs sooner); the rules differ in
    how they order tasks of equal priority. All start from the longest
    remaining path (critical-path first).
    """
    prio = graph.priority
    succ_count = _successor_counts(graph)
    weight = graph.weight

    def successors_work() -> list[float]:
        return [sum(weight[j] for j in s) for s in graph.succ]

    return {
        "critical-path": lambda: [(-prio[i], -tail[i], i) for i in range(len(graph))],
        "critical-path, most successors": lambda: [(-prio[i], -tail[i], -succ_count[i], i) for i in range(len(graph))],
        "critical-path, longest task": lambda: [(-prio[i], -tail[i], -weight[i], i) for i in range(len(graph))],
        "critical-path, most work unlocked": lambda: [
            (-prio[i], -tail[i], -work, i) for i, work in enumerate(successors_work())
        ],
        "critical-path + successors' work": lambda: [
            (-prio[i], -(tail[i] + 0.5 * work), i) for i, work in enumerate(successors_work())
        ],
    }


def best_eager_schedule(graph: TaskGraph, tail: list[float], workers: int, seed: int = 0,
                        exclusive: Sequence[Sequence[int]] | None = None) -> Schedule:
    """The shortest schedule among the priority rules (and, for small graphs, perturbations of them).

    The result is deterministic: the random perturbations use a fixed seed and
    ties between equally short schedules go to the rule tried first.
    """
    best: Schedule | None = None
    for name, make_key in priority_rules(graph, tail).items():
        schedule = list_schedule(graph, workers, make_key(), name, exclusive)
        if best is None or schedule.makespan < best.makespan - EPSILON:
            best = schedule
    assert best is not None
    if len(graph) <= PERTURB_UP_TO and len(graph) > workers:
        rng = random.Random(seed)
        prio = graph.priority
        scale = max(tail, default=1.0) or 1.0
        for round_ in range(PERTURB_ROUNDS):
            noise = 0.02 + 0.18 * round_ / PERTURB_ROUNDS
            key = [(-prio[i], -(tail[i] + rng.uniform(-noise, noise) * scale), i) for i in range(len(graph))]
            schedule = list_schedule(graph, workers, key, "critical-path, perturbed", exclusive)
            if schedule.makespan < best.makespan - EPSILON:
                best = schedule
    return best


def fifo_schedule(graph: TaskGraph, workers: int) -> Schedule:
    return list_schedule(graph, workers, None, "fifo")
