"""Graph analysis of an epic: waves, critical path, graph type, conflicts, schedule estimates.

:func:`make_plan` runs every analysis once and keeps the results in a
:class:`Plan`, which ``waveui plan`` prints and the engine follows. The plan is
of the graph *as it will run*: with ``conflicts = "serialise"`` the edges that
keep overlapping tasks apart are part of it, and with ``conflicts = "lock"``
every estimate keeps locked tasks from running at the same time.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from waveui.core._gc import paused as gc_paused
from waveui.plan.conflicts import (
    Conflict,
    Serialisation,
    SplitSuggestion,
    exclusive_groups,
    exclusive_sets,
    find_conflicts,
    serialisations,
    split_suggestions,
)
from waveui.plan.critical import CriticalPath, critical_path
from waveui.plan.graph import TaskGraph
from waveui.plan.schedule import (
    Schedule,
    best_eager_schedule,
    fifo_schedule,
    locked_span,
    lower_bound,
    wave_schedule,
)
from waveui.plan.shape import Shape, classify
from waveui.core.spec import Epic

__all__ = ["Plan", "TaskGraph", "make_plan", "default_workers"]


def default_workers(epic: Epic) -> int:
    return epic.max_parallel or os.cpu_count() or 1


@dataclass
class Plan:
    epic: Epic
    workers: int
    declared: TaskGraph  # the dependencies the user wrote
    graph: TaskGraph  # as it will run: declared plus serialisation edges
    order: list[int]  # a topological order of ``graph``
    waves: list[list[int]]
    critical: CriticalPath
    shape: Shape
    conflicts: list[Conflict]
    serialised: list[Serialisation]
    splits: list[SplitSuggestion]
    locked: bool  # lock mode and some conflicts: every estimate below keeps locked tasks apart
    lower_bound: float  # in lock mode, counting the locks
    eager: Schedule
    wave_barriers: Schedule
    fifo: Schedule
    timings: dict[str, float] = field(default_factory=dict)

    def ids(self, tasks) -> list[str]:
        return [self.graph.ids[i] for i in tasks]

    @property
    def dispatch_rank(self) -> dict[str, int]:
        """Each task's place in the dispatch order: the engine starts ready tasks lowest rank first."""
        return {self.graph.ids[task]: rank for rank, task in enumerate(self.eager.order)}

    @property
    def exclusive(self) -> list[list[int]]:
        """For lock mode: the tasks each task may never run beside."""
        return exclusive_sets(len(self.graph), self.conflicts)


def make_plan(epic: Epic, workers: int | None = None) -> Plan:
    """Analyse ``epic`` for ``workers`` workers (default: its max_parallel, else the CPU count)."""
    with gc_paused():  # the analysis allocates much and frees little: see waveui.core._gc
        return _make_plan(epic, workers)


def _make_plan(epic: Epic, workers: int | None) -> Plan:
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[step] = now - clock
        clock = now

    workers = workers or default_workers(epic)
    declared = TaskGraph.from_epic(epic)
    order = declared.topological_order()
    level = declared.levels(order)
    lap("graph")
    head, tail = declared.head_lengths(order), declared.tail_lengths(order)
    lap("path lengths")
    conflicts = find_conflicts(declared, [t.affected_files for t in epic.tasks], level, order)
    lap("conflicts")
    position = [0] * len(declared)
    for pos, task in enumerate(order):
        position[task] = pos
    serialised = serialisations(conflicts, head, tail, position)
    graph = declared
    if epic.conflicts == "serialise" and serialised:
        graph = declared.with_edges((s.before, s.after) for s in serialised)
        order = graph.topological_order()
    waves = graph.waves(order) if graph is not declared else declared.waves(level=level)
    lap("waves")
    critical = critical_path(graph, order)
    lap("critical path")
    locked = epic.conflicts == "lock" and bool(conflicts)
    exclusive = exclusive_sets(len(graph), conflicts) if locked else None
    span = critical.length
    if locked:
        groups = exclusive_groups(conflicts, exclusive, graph.weight)
        span = max(span, locked_span(graph.weight, critical.head, critical.tail, exclusive, groups))
        lap("locks")
    bound = lower_bound(graph, span, workers)
    shape = classify(len(graph), sum(graph.weight), span, waves, locked)
    splits = split_suggestions(conflicts)
    eager = best_eager_schedule(graph, critical.tail, workers, exclusive=exclusive, bound=bound)
    lap("eager schedule")
    wave_barriers = wave_schedule(graph, waves, workers, exclusive)
    fifo = fifo_schedule(graph, workers, exclusive)
    lap("other schedules")
    return Plan(
        epic=epic,
        workers=workers,
        declared=declared,
        graph=graph,
        order=order,
        waves=waves,
        critical=critical,
        shape=shape,
        conflicts=conflicts,
        serialised=serialised,
        splits=splits,
        locked=locked,
        lower_bound=bound,
        eager=eager,
        wave_barriers=wave_barriers,
        fifo=fifo,
        timings=timings,
    )
