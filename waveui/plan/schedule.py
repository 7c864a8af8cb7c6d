"""Makespan estimates for P workers: lower bound, eager list schedules, wave barriers, FIFO.

The engine dispatches eagerly: a task starts as soon as its dependencies are
done and a worker is free, taking the ready task that ranks first. Which
ranking is best depends on the graph, so :func:`best_eager_schedule` tries
several priority rules, then improves the best of them by forward-backward
passes and random perturbations, as far as the graph's size allows, and keeps
the shortest schedule. Every candidate is an eager simulation, so its start
order is a dispatch order that reproduces it (:func:`dispatch_check`).

In lock mode every simulation here (eager, waves, FIFO) keeps the tasks
locked apart from running at the same time, by the one rule of
:func:`_start_unblocked`, and the lower bound counts the locks too
(:func:`locked_span`).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from waveui.plan.graph import EPSILON, TaskGraph

# Effort of best_eager_schedule: a simulation costs about one unit per task and
# a quarter per dependency; up to FULL_EFFORT_UP_TO tasks it may run
# EFFORT // (tasks + dependencies / 4) of them, at most some 0.2 s on one
# core (35 for 2,000 tasks of 4 dependencies each). Beyond, the effort shrinks
# with the square root of the size, down to one simulation from about 20k
# tasks on; LARGE_SIMULATIONS caps it there whatever the dependencies.
EFFORT = 150_000
FULL_EFFORT_UP_TO = 2_000
MAX_SIMULATIONS = 400  # for small graphs: five times more finds little more on the STG set
LARGE_GRAPH = 20_000
LARGE_SIMULATIONS = 2
# Forward-backward improvement stops after this many passes without a gain:
# on the STG set, restarting from a new perturbation pays more than insisting.
PATIENCE = 1


@dataclass
class Schedule:
    rule: str
    makespan: float
    start: list[float]
    order: list[int]  # tasks in the order they start


def lower_bound(graph: TaskGraph, span: float, workers: int) -> float:
    """No schedule on ``workers`` workers can finish before this.

    ``span`` is a bound for any number of workers: the critical path's
    length, or :func:`locked_span` when the locks ask for longer.
    """
    return max(span, sum(graph.weight) / max(1, workers))


def locked_span(weight: Sequence[float], head: Sequence[float], tail: Sequence[float],
                exclusive: Sequence[Sequence[int]], groups: Iterable[Sequence[int]] = ()) -> float:
    """The least makespan the locks allow, on any number of workers.

    The tasks of a group never run at the same time (each pair is locked
    apart), so they take their summed weight one after another; the first
    of them starts no sooner than the earliest any of them can (``head`` less
    its weight), and after the last comes at least the shortest path that
    follows any of them (``tail`` less its weight). ``head`` and ``tail``
    are the longest paths ending and starting at each task, itself included.
    The groups are each locked pair of ``exclusive`` and each of ``groups``.
    """
    release = [h - w for h, w in zip(head, weight)]
    after = [t - w for t, w in zip(tail, weight)]
    span = 0.0
    for task, partners in enumerate(exclusive):
        for other in partners:  # each pair is seen from both ends: once is enough
            if other > task:
                pair = (min(release[task], release[other]) + weight[task] + weight[other]
                        + min(after[task], after[other]))
                if pair > span:
                    span = pair
    for group in groups:
        span = max(span, min(release[t] for t in group) + sum(weight[t] for t in group)
                   + min(after[t] for t in group))
    return span


# ------------------------------------------------------------------ simulating


def _simulate(weight: Sequence[float], succ: Sequence[Sequence[int]], pred: Sequence[Sequence[int]],
              workers: int, rank: Sequence[int] | None,
              exclusive: Sequence[Sequence[int]] | None) -> tuple[float, list[float], list[int]]:
    """Eager list scheduling; returns (makespan, start times, start order).

    ``rank`` is a permutation: the ready task of least rank starts first.
    ``None`` means FIFO, ranking tasks by when they became ready. This is
    the hot path, hence one function with local names and a ready heap of
    plain ints (ranks) rather than tuples.
    A task of weight 0 takes a worker only for the instant it runs; its
    successors become ready at once and compete at the same time.
    """
    n = len(weight)
    waiting = [len(p) for p in pred]
    start = [0.0] * n
    order: list[int] = []
    fifo = rank is None
    task_at: list[int] = [] if fifo else [0] * n  # rank -> task
    if not fifo:
        for task, r in enumerate(rank):
            task_at[r] = task
    ready: list[int] = []
    for i in range(n):
        if not waiting[i]:
            if fifo:
                ready.append(len(task_at))
                task_at.append(i)
            else:
                ready.append(rank[i])
    heapq.heapify(ready)
    push, pop = heapq.heappush, heapq.heappop
    running: list[tuple[float, int]] = []
    # lock mode: how many of each task's partners are running. Counting at each start and
    # finish costs the task's partners once; asking "is any partner running?" of every
    # blocked task at every event would cost them again and again.
    locked_by = [0] * n if exclusive else None
    now, free = 0.0, max(1, workers)
    while True:
        if locked_by is None:
            while ready and free:
                task = task_at[pop(ready)]
                start[task] = now
                order.append(task)
                push(running, (now + weight[task], task))
                free -= 1
        elif ready and free:
            free = _start_unblocked(ready, free, now, task_at, exclusive, locked_by, weight, start, order, running)
        if not running:
            break
        now = running[0][0]
        limit = now + EPSILON  # finishes this close together are one event
        while running and running[0][0] <= limit:
            task = pop(running)[1]
            free += 1
            if locked_by is not None:
                for other in exclusive[task]:
                    locked_by[other] -= 1
            for j in succ[task]:
                waiting[j] -= 1
                if not waiting[j]:
                    if fifo:
                        push(ready, len(task_at))
                        task_at.append(j)
                    else:
                        push(ready, rank[j])
    if len(order) != n:
        raise ValueError("the task graph has a cycle")
    return (now if n else 0.0), start, order


def _start_unblocked(ready: list[int], free: int, now: float, task_at: list[int],
                     exclusive: Sequence[Sequence[int]], locked_by: list[int], weight: Sequence[float],
                     start: list[float], order: list[int], running: list[tuple[float, int]]) -> int:
    """Lock mode: start ready tasks in rank order, skipping those beside a running task they exclude."""
    held = []
    while ready and free:
        r = heapq.heappop(ready)
        task = task_at[r]
        if locked_by[task]:
            held.append(r)  # it waits; tasks behind it may go ahead
            continue
        start[task] = now
        order.append(task)
        for other in exclusive[task]:
            locked_by[other] += 1
        heapq.heappush(running, (now + weight[task], task))
        free -= 1
    for r in held:
        heapq.heappush(ready, r)
    return free


def _rank(key: Sequence) -> list[int]:
    """Each task's place when sorted by ``key``, least first (ties by task number)."""
    rank = [0] * len(key)
    for position, task in enumerate(sorted(range(len(key)), key=key.__getitem__)):
        rank[task] = position
    return rank


def list_schedule(graph: TaskGraph, workers: int, key: Sequence | None, rule: str = "",
                  exclusive: Sequence[Sequence[int]] | None = None) -> Schedule:
    """Simulate eager list scheduling: whenever a worker is free, start the ready task with the least key.

    ``key=None`` is FIFO: tasks start in the order they became ready.
    ``exclusive[i]`` lists tasks that may never run at the same time as ``i``
    (file locks); a ready task blocked by one waits while others go ahead.
    """
    rank = None if key is None else _rank(key)
    makespan, start, order = _simulate(graph.weight, graph.succ, graph.pred, workers, rank, exclusive)
    return Schedule(rule, makespan, start, order)


def dispatch_check(graph: TaskGraph, workers: int, order: Sequence[int],
                   exclusive: Sequence[Sequence[int]] | None = None) -> float:
    """The makespan of eager dispatch that always starts the ready task earliest in ``order``.

    This is what the engine does with a plan's dispatch order when every task
    takes exactly its weight; for a schedule from this module it equals the
    schedule's own makespan.
    """
    rank = [0] * len(graph)
    for position, task in enumerate(order):
        rank[task] = position
    return _simulate(graph.weight, graph.succ, graph.pred, workers, rank, exclusive)[0]


def wave_schedule(graph: TaskGraph, waves: list[list[int]], workers: int,
                  exclusive: Sequence[Sequence[int]] | None = None) -> Schedule:
    """Each wave must finish before the next starts; inside a wave, longest task first.

    Each wave is an eager simulation of its tasks alone (a wave holds no
    dependency), so locked tasks wait for one another as in any schedule here.
    """
    weight = graph.weight
    start = [0.0] * len(graph)
    order: list[int] = []
    place = [0] * len(graph)  # a task's number inside its wave
    wave_of = [-1] * len(graph)  # -1: a wave still to come
    now = 0.0
    for number, wave in enumerate(waves):
        for k, task in enumerate(wave):
            place[task] = k
            wave_of[task] = number
        inside = None
        if exclusive:  # a task is locked against others of its wave only: the waves before have ended
            inside = [[place[o] for o in exclusive[task] if wave_of[o] == number] if exclusive[task] else ()
                      for task in wave]
            if not any(inside):
                inside = None  # no locks inside this wave: the quicker simulation
        no_edges = [()] * len(wave)
        length, wave_start, wave_order = _simulate(
            [weight[task] for task in wave], no_edges, no_edges, workers,
            _rank([-weight[task] for task in wave]), inside)
        for k in wave_order:
            start[wave[k]] = now + wave_start[k]
            order.append(wave[k])
        now += length
    return Schedule("waves", now, start, order)


def fifo_schedule(graph: TaskGraph, workers: int, exclusive: Sequence[Sequence[int]] | None = None) -> Schedule:
    return list_schedule(graph, workers, None, "fifo", exclusive)


# ------------------------------------------------------------ priority rules


def priority_rules(graph: TaskGraph, tail: list[float]) -> dict[str, Callable[[], list]]:
    """Ranking rules for ready tasks: each gives a key per task, least first.

    User priority always comes first (higher runs sooner); the rules differ in
    how they order tasks of equal priority. All start from the longest
    remaining path (critical-path first, the HLFET b-level) and break its
    ties differently; the first rule is the one used alone on huge graphs.
    """
    prio, weight, succ = graph.priority, graph.weight, graph.succ
    n = len(graph)

    def successors_work() -> list[float]:
        return [sum(weight[j] for j in s) for s in succ]

    return {
        # CP/MISF (Kasahara & Narita): among equal paths, the task that frees the most successors
        "critical-path, most successors": lambda: [(-prio[i], -tail[i], -len(succ[i]), i) for i in range(n)],
        "critical-path": lambda: [(-prio[i], -tail[i], i) for i in range(n)],
        "critical-path, longest task": lambda: [(-prio[i], -tail[i], -weight[i], i) for i in range(n)],
        "critical-path, most work unlocked": lambda: [
            (-prio[i], -tail[i], -work, i) for i, work in enumerate(successors_work())
        ],
        # not a tie-break: a task that unlocks much work may go before a slightly longer path
        "critical-path + successors' work": lambda: [
            (-prio[i], -(tail[i] + 0.5 * work), i) for i, work in enumerate(successors_work())
        ],
    }


# ------------------------------------------------------------------ searching


class _Search:
    """Simulations within a budget, remembering the shortest forward schedule."""

    def __init__(self, graph: TaskGraph, workers: int, exclusive: Sequence[Sequence[int]] | None,
                 simulations: int, bound: float):
        self.graph, self.workers, self.exclusive = graph, workers, exclusive
        self.left = simulations
        self.bound = bound
        self.best: Schedule | None = None

    @property
    def done(self) -> bool:
        """No simulations left, or the best already meets the lower bound."""
        return self.left <= 0 or (self.best is not None and self.best.makespan <= self.bound + EPSILON)

    def forward(self, key: Sequence, rule: str) -> Schedule:
        graph = self.graph
        self.left -= 1
        makespan, start, order = _simulate(graph.weight, graph.succ, graph.pred, self.workers, _rank(key),
                                           self.exclusive)
        schedule = Schedule(rule, makespan, start, order)
        # ties go to the schedule found first: the rules come in order of preference
        if self.best is None or makespan < self.best.makespan - EPSILON:
            self.best = schedule
        return schedule

    def backward(self, key: Sequence) -> list[float]:
        """Schedule the reversed graph; returns each task's finish there.

        Read backwards in time, the reversed schedule is a valid schedule of
        the graph in which task i starts at ``makespan - finish[i]``: the
        later its finish in reverse, the earlier its start going forward.
        """
        graph = self.graph
        self.left -= 1
        _, start, _ = _simulate(graph.weight, graph.pred, graph.succ, self.workers, _rank(key), self.exclusive)
        return [s + w for s, w in zip(start, graph.weight)]


def _forward_backward(search: _Search, schedule: Schedule, tail: list[float], head: list[float]) -> None:
    """Improve ``schedule`` by forward-backward passes ("justification").

    The backward pass schedules the reversed graph taking tasks that finish
    last first, which packs the schedule against its end; the forward pass
    then ranks tasks by their start in that packed schedule. Each pass keeps
    or shortens the makespan more often than not, and the forward passes are
    ordinary list schedules, so whatever wins is reproducible by eager
    dispatch in its start order.
    """
    graph = search.graph
    prio, weight, n = graph.priority, graph.weight, len(graph)
    stale = 0
    current = schedule
    while stale < PATIENCE and search.left >= 2 and not search.done:
        finish = [s + w for s, w in zip(current.start, weight)]
        # in reverse, low priority goes first: it then ends up last going forward
        back_finish = search.backward([(prio[i], -finish[i], -head[i], i) for i in range(n)])
        improved = search.forward([(-prio[i], -back_finish[i], -tail[i], i) for i in range(n)],
                                  "critical-path, forward-backward")
        stale = 0 if improved.makespan < current.makespan - EPSILON else stale + 1
        current = improved


def simulation_budget(n: int, edges: int) -> int:
    """How many simulations best_eager_schedule may run on ``n`` tasks and ``edges`` dependencies."""
    effort = EFFORT if n <= FULL_EFFORT_UP_TO else EFFORT * (FULL_EFFORT_UP_TO / n) ** 0.5
    budget = max(1, min(MAX_SIMULATIONS, int(effort // max(1, n + edges // 4))))
    return min(budget, LARGE_SIMULATIONS) if n > LARGE_GRAPH else budget


def best_eager_schedule(graph: TaskGraph, tail: list[float], workers: int, seed: int = 0,
                        exclusive: Sequence[Sequence[int]] | None = None, bound: float | None = None) -> Schedule:
    """The shortest eager schedule found within :func:`simulation_budget`.

    In order, as long as simulations are left and the lower bound is not met:
    the priority rules; forward-backward improvement of the best of them;
    then random perturbations of the critical-path ranking, each improved the
    same way. The result is deterministic: the perturbations use a fixed seed
    and ties between equally short schedules go to the one found first.
    ``bound`` is a known lower bound, such as one that counts the locks;
    by default the critical path's and the work's.
    """
    n = len(graph)
    if bound is None:
        bound = lower_bound(graph, max(tail, default=0.0), workers)
    search = _Search(graph, workers, exclusive, simulation_budget(n, graph.edge_count), bound)
    for name, make_key in priority_rules(graph, tail).items():
        search.forward(make_key(), name)
        if search.done:
            break
    assert search.best is not None
    if search.done or n <= workers:
        return search.best
    head = graph.head_lengths(graph.topological_order())
    _forward_backward(search, search.best, tail, head)
    rng = random.Random(seed)
    prio = graph.priority
    scale = max(tail, default=1.0) or 1.0
    round_ = 0
    while not search.done:
        # noise of 2% to 20% of the critical path, cycling: small shifts swap
        # near-ties of the b-level, large ones try quite different orders
        noise = 0.02 + 0.18 * (round_ % 16) / 16
        round_ += 1
        key = [(-prio[i], -(tail[i] + rng.uniform(-noise, noise) * scale), i) for i in range(n)]
        _forward_backward(search, search.forward(key, "critical-path, perturbed"), tail, head)
    return search.best

