"""How long the rest of a run will take, from what it has done so far.

The ETA learns how long a story point takes from the tasks that finished,
then simulates the rest of the run with the same eager list scheduling the
engine uses (running tasks first, then by priority and dispatch rank) on the
current worker limit. Failed, conflicted and blocked tasks, and everything
waiting on them, are left out: they finish only if someone steps in.
"""

from __future__ import annotations

from waveui.plan.graph import TaskGraph
from waveui.plan.schedule import list_schedule
from waveui.run.state import ACTIVE_STATES, SLOT_STATES, RunState, TaskView

STUCK_STATES = frozenset({"failed", "conflicted", "blocked", "cancelled"})
# Below this progress a task's own percentage says little about its pace.
TRUSTED_PROGRESS = 10.0
# A task past its expected duration is assumed to need this share of it again.
OVERRUN_SHARE = 0.1


def seconds_per_point(state: RunState, now: float) -> float | None:
    """Running seconds per story point, learnt from finished tasks (else from well-advanced running ones)."""
    done = [t for t in state.tasks.values() if t.state == "done" and t.story_points > 0]
    if done:
        return sum(t.elapsed(now) for t in done) / sum(t.story_points for t in done)
    going = [t for t in state.tasks.values()
             if t.state in SLOT_STATES and t.progress >= TRUSTED_PROGRESS and t.story_points > 0]
    if going:
        return sum(t.elapsed(now) * 100.0 / t.progress for t in going) / sum(t.story_points for t in going)
    return None


def _remaining_seconds(task: TaskView, rate: float, now: float) -> float:
    expected = task.story_points * rate
    if task.state == "merging":
        return 0.0
    if task.state not in SLOT_STATES:
        return expected
    elapsed = task.elapsed(now)
    if task.progress >= TRUSTED_PROGRESS:
        expected = elapsed * 100.0 / task.progress
    return max(expected - elapsed, expected * OVERRUN_SHARE)


def _unfinishable(state: RunState) -> set[str]:
    """Stuck tasks and every task that waits on one, directly or not (one walk over the dependents)."""
    dependents = state.dependents
    stuck = {tid for tid, t in state.tasks.items() if t.state in STUCK_STATES}
    frontier = list(stuck)
    while frontier:
        for tid in dependents.get(frontier.pop(), ()):
            if tid not in stuck and state.tasks[tid].state != "done":
                stuck.add(tid)
                frontier.append(tid)
    return stuck


def estimate_remaining(state: RunState, now: float) -> float | None:
    """Seconds until every task that can still finish has, or None before anything can be learnt."""
    if state.finished:
        return 0.0
    rate = seconds_per_point(state, now)
    if rate is None:
        return None
    excluded = _unfinishable(state)
    left = [t for t in state.tasks.values() if t.state != "done" and t.id not in excluded]
    if not left:
        return 0.0
    index = {t.id: i for i, t in enumerate(left)}
    graph = TaskGraph.from_edges(
        [t.id for t in left],
        [_remaining_seconds(t, rate, now) for t in left],
        [[index[d] for d in dict.fromkeys(t.requires) if d in index] for t in left],
    )
    key = [(0 if t.state in ACTIVE_STATES else 1, -t.priority, t.rank) for t in left]
    holding = sum(1 for t in left if t.state in SLOT_STATES)
    return list_schedule(graph, max(1, state.limit, holding), key).makespan
