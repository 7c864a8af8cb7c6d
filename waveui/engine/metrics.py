"""Figures derived from a RunState: time and cost remaining, learned from this run's tasks."""

from __future__ import annotations

from waveui.engine.state import SLOT_STATES, RunState
from waveui.plan.graph import TaskGraph
from waveui.plan.schedule import list_schedule


def seconds_per_point(state: RunState) -> float | None:
    """Mean running time per story point of the tasks done in this run (None before the first)."""
    seconds = points = 0.0
    for task in state.tasks.values():
        if task.state == "done" and task.story_points > 0 and task.busy_seconds > 0:
            seconds += task.busy_seconds
            points += task.story_points
    return seconds / points if points else None


def estimate_remaining(state: RunState, now: float) -> float | None:
    """Seconds until every unfinished task is done, simulated on the current limit.

    Each remaining task lasts its story points times the learned pace; a task in
    flight only what its pace leaves of it (or what its progress says is left).
    Tasks that cannot run (failed and what waits on them) are left out.
    """
    pace = seconds_per_point(state)
    if pace is None:
        return None
    left = [t for t in state.tasks.values() if t.state not in ("done", "failed", "conflicted", "cancelled", "blocked")]
    if not left:
        return 0.0
    index = {t.id: i for i, t in enumerate(left)}
    weights = []
    for task in left:
        expected = task.story_points * pace
        if task.state in SLOT_STATES:
            ran = task.elapsed(now)
            by_clock = expected - ran
            by_progress = ran * (100 - task.progress) / task.progress if task.progress > 0 else by_clock
            expected = max(0.0, min(by_clock, by_progress) if task.progress > 0 else by_clock)
        weights.append(expected)
    pred = [[index[d] for d in task.requires if d in index] for task in left]
    graph = TaskGraph.from_edges([t.id for t in left], weights, pred)
    order = graph.topological_order()
    tail = graph.tail_lengths(order)
    return list_schedule(graph, max(1, state.limit), [(-tail[i], i) for i in range(len(left))]).makespan


def projected_cost(state: RunState) -> float:
    """Cost spent plus, at this run's cost per story point, the points still to do."""
    spent = state.cost
    done_points = sum(t.story_points for t in state.tasks.values() if t.state == "done")
    left_points = sum(t.story_points for t in state.tasks.values() if t.state not in ("done", "cancelled"))
    done_cost = sum(t.cost for t in state.tasks.values() if t.state == "done")
    if not done_points:
        return spent
    return spent + done_cost / done_points * left_points


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "--"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"
