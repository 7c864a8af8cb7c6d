"""The ready queue: which waiting tasks may start now, and in what order.

Pure bookkeeping over the run model, no asyncio and no I/O. A task becomes a
candidate when every task it requires is done, every task it is only ordered
after (a serialisation) has finished whatever its outcome, and it is itself waiting;
candidates are picked by user priority, then plan rank (critical path first).
The engine tells the queue of every state change (:meth:`ReadyQueue.track`)
and asks it for tasks to start (:meth:`ReadyQueue.next_ready`), passing in
whether a task's file locks are free.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from waveui.run.state import FINAL_STATES, TROUBLE_STATES, RunState

SETTLED = FINAL_STATES | TROUBLE_STATES
STUCK_STATES = TROUBLE_STATES | {"cancelled"}  # their dependents cannot run
WAITING = frozenset({"pending", "ready"})


class ReadyQueue:
    """Waiting tasks whose dependencies are done, best first; and when each retry may start."""

    def __init__(self, waves: bool = False):
        self.waves = waves  # strategy "waves": only the lowest wave with unsettled tasks may start
        self.state = RunState()
        self.retry_at: dict[str, float] = {}  # a task retried after a failure may not start before then
        self._unmet: dict[str, int] = {}  # dependencies not yet done, per task
        self._candidates: set[str] = set()  # waiting tasks with every dependency done
        self._queue: list[tuple[int, int, str]] = []  # candidates by (-priority, rank); may hold stale entries
        self._unsettled = 0

    def index(self, state: RunState) -> None:
        """Count each task's dependencies not yet done; the ones with none are candidates to start."""
        self.state = state
        tasks = state.tasks
        self._unmet = {t: sum(tasks[d].state != "done" for d in tasks[t].requires)
                       + sum(tasks[d].state not in SETTLED for d in tasks[t].after if d in tasks) for t in tasks}
        self._candidates = {t for t, n in self._unmet.items() if n == 0 and tasks[t].state in WAITING}
        self._queue = []
        for task_id in self._candidates:
            self._enqueue(task_id)
        self._unsettled = sum(task.state not in SETTLED for task in tasks.values())

    def track(self, task_id: str, before: str, state: str) -> None:
        """Follow a task's change of state from ``before`` to ``state`` (already folded into the run state).

        Incremental, so a state change costs the task's dependents, not a scan
        of the whole epic (which made 2,000-task epics crawl).
        """
        self._unsettled += (before in SETTLED) - (state in SETTLED)
        if state in WAITING and self._unmet[task_id] == 0:
            if task_id not in self._candidates:
                self._candidates.add(task_id)
                self._enqueue(task_id)
        else:
            self._candidates.discard(task_id)
        if state == "done" and before != "done":
            self._met(self.state.dependents[task_id])
        if (state in SETTLED) != (before in SETTLED):  # finished, or set going again (a retry)
            if state in SETTLED:
                self._met(self.state.followers.get(task_id, ()))
            else:
                for follower in self.state.followers.get(task_id, ()):
                    self._unmet[follower] += 1
                    self._candidates.discard(follower)

    def _met(self, waiting: list[str]) -> None:
        """One more of these tasks' conditions holds; those with none left are candidates."""
        for task_id in waiting:
            self._unmet[task_id] -= 1
            if self._unmet[task_id] == 0 and self.state.tasks[task_id].state in WAITING:
                self._candidates.add(task_id)
                self._enqueue(task_id)

    def reprioritised(self, task_id: str) -> None:
        """Queue a candidate again under its new priority (already folded); the old entry is now stale."""
        if task_id in self._candidates:
            self._enqueue(task_id)

    def next_ready(self, wanted: int, now: float, locks_free: Callable[[str], bool]) -> list[str]:
        """Up to ``wanted`` tasks that may start now, best first (user priority, then plan rank).

        Candidates wait in a heap; entries left stale by a start or a
        priority change are dropped as they surface, so picking costs a few
        heap operations, not a sort of every waiting task. A candidate whose
        retry is not due, whose files are locked or (with waves) whose wave has
        not come is held back.
        """
        tasks = self.state.tasks
        current_wave = None
        if self.waves:
            current_wave = min((t.wave for t in tasks.values() if t.state not in SETTLED), default=None)
        picked, held_back = [], []
        while self._queue and len(picked) < wanted:
            entry = heapq.heappop(self._queue)
            neg_priority, _, task_id = entry
            if task_id not in self._candidates or -neg_priority != tasks[task_id].priority or task_id in picked:
                continue
            if ((current_wave is not None and tasks[task_id].wave != current_wave)
                    or self.retry_at.get(task_id, 0) > now or not locks_free(task_id)):
                held_back.append(entry)
                continue
            picked.append(task_id)
            held_back.append(entry)  # stays queued until it really starts
        for entry in held_back:
            heapq.heappush(self._queue, entry)
        return picked

    def settled(self) -> bool:
        """Nothing left that could still run (whatever waits on a stuck task is blocked)."""
        return not self.retry_at and self._unsettled == 0

    def next_retry_in(self, now: float) -> float | None:
        """Seconds until the first retry is due; None when no retry waits."""
        if not self.retry_at:
            return None
        return max(0.01, min(self.retry_at.values()) - now)

    def _enqueue(self, task_id: str) -> None:
        task = self.state.tasks[task_id]
        heapq.heappush(self._queue, (-task.priority, task.rank, task_id))
