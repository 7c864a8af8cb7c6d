"""The engine's coordinator: dispatch an epic's tasks to workers, merge their work, journal every change.

One asyncio loop runs everything. Blocking git and psutil calls go to threads
(``asyncio.to_thread``) so a user interface sharing the loop never stalls.
Every change is emitted as an event: appended to the journal (and on disk)
first, folded into :attr:`Engine.state` next, then passed to listeners.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from waveui import agents
from waveui.engine.adaptive import AdaptiveLimit
from waveui.engine import notify
from waveui.engine.notify import NOTIFY_TIMEOUT_SECONDS, Notifier
from waveui.run.events import (
    AttemptKept,
    Event,
    LimitChanged,
    MetricsSample,
    Notice,
    PriorityChanged,
    RunFinished,
    RunPaused,
    RunStarted,
    SetupRan,
    TaskProgress,
    TaskStateChanged,
)
from waveui.engine.errors import EngineError, RunAlreadyComplete
from waveui.engine.ready import SETTLED, STUCK_STATES, WAITING, ReadyQueue
from waveui.engine.resume import Adoption, Resume
from waveui.engine import attempts, remote
from waveui.engine.resolving import Conflicts
from waveui.engine.sandboxing import Sandboxing
from waveui.executors import Executor, ExecutorFactory, StepHandle, step_failure
from waveui.executors.local import LocalExecutor
from waveui.executors.local.processes import sample_machine
from waveui.git.guard import RepositoryGuard
from waveui.run.journal import Journal, ensure_private_dir, new_run_id, runs_dir
from waveui.run.usage import Usage
from waveui.engine.opening import check_repository, conflict_rows, task_infos
from waveui.engine.locks import ControllerBusy, ControllerLock, FileLocks
from waveui.core.errors import describe
from waveui.engine.recovery import merge_message
from waveui.git.merge import GitError, Integrator, RefMoved
from waveui.git.worktrees import BrokenSlot, Worktree, WorktreePool
from waveui.git.command import clean_env
from waveui.run.metrics import committed_cost, money
from waveui.run.state import SLOT_STATES, Attempt, RunState, fold, replay
from waveui.plan import Plan, default_workers, make_plan
from waveui.core.spec import Epic, Task

SAMPLE_SECONDS = 2.0
TERM_GRACE_SECONDS = 5.0
RETRY_BACKOFF_SECONDS = 2.0  # doubled for every further attempt
MERGE_RETRY_SECONDS = (1.0, 30.0)  # a merge that cannot happen yet is tried again, backing off to the second
BUDGET_REACHED = "budget reached"  # the reason a run ends with when [epic] max_cost stopped it
EXIT_BUDGET = 3  # `waveui run`'s exit status then: it resumes once the budget is raised
STUCK_WORDS = {"failed": "failed", "conflicted": "is in conflict", "cancelled": "was cancelled"}

__all__ = ["BUDGET_REACHED", "EXIT_BUDGET", "Engine", "EngineError", "RunAlreadyComplete", "RunOptions"]


@dataclass
class RunOptions:
    max_parallel: int | None = None
    fresh: bool = False
    grace: float = TERM_GRACE_SECONDS
    sample_seconds: float = SAMPLE_SECONDS
    backoff: float = RETRY_BACKOFF_SECONDS
    listeners: list[Callable[[Event], None]] = field(default_factory=list)
    executor: ExecutorFactory = LocalExecutor  # builds a run's executor from the repository and the run id
    notify_timeout: float = NOTIFY_TIMEOUT_SECONDS  # a notify command still running then is killed
    # With a user at the keyboard the run is theirs until they quit: with nothing left to run it waits
    # for a retry or an un-cancel instead of finishing (see Engine.close).
    stay_open: bool = False


class Engine:
    """Runs one epic in a repository. Implements :class:`waveui.engine.control.RunControl`."""

    def __init__(self, epic: Epic, repo_root: Path, options: RunOptions | None = None,
                 clock: Callable[[], float] = time.time):
        self.epic = epic
        self.repo_root = repo_root.resolve()
        self.options = options or RunOptions()
        self.clock = clock
        self.state = RunState()
        self.plan: Plan = make_plan(epic, self.options.max_parallel or default_workers(epic))
        self.tasks: dict[str, Task] = {t.id: t for t in epic.tasks}
        partners = {self.plan.graph.ids[i]: [self.plan.graph.ids[j] for j in others]
                    for i, others in enumerate(self.plan.exclusive)}
        self.locks = FileLocks(partners if epic.conflicts == "lock" else {})
        self.git = epic.isolation == "worktree"
        self.run_dir: Path | None = None
        self.set_aside: str | None = None  # where --fresh moved an earlier integration branch
        self.previous_events: list[Event] | None = None  # the journal of the run being resumed
        self.resume = Resume(self)
        self.conflicts = Conflicts(self)
        self.sandboxing = Sandboxing(epic, self.repo_root)
        self.ready = ReadyQueue(waves=epic.strategy == "waves")
        self.executor: Executor | None = None  # built once the run folder is chosen
        self.journal: Journal | None = None
        self.pool: WorktreePool | None = None
        self.integrator: Integrator | None = None
        self.guard: RepositoryGuard | None = None
        self._early_notices: list[Notice] = []  # said before the journal was open
        self._halted: str | None = None  # why the run stopped itself (a ref moved behind waveui's back)
        self._processes: dict[str, StepHandle] = {}
        # CPU and memory of tasks on other machines, as their workers last posted them: for the app's
        # workers table only, so never journaled (the app samples the tasks running here itself).
        self.remote_usage: dict[str, Usage] = {}
        self._worktrees: dict[str, object | None] = {}  # the worktree each running job holds until it frees it
        self._jobs: dict[str, asyncio.Task] = {}
        self._free_slots: list[int] = []
        self._holding: dict[str, int] = {}  # the worker slot each task holds, from its command to its merge
        # Tasks whose worktree is prepared without a worker, while every worker is busy, so that the worker
        # freed next starts a command at once: git's work stays off the workers' time.
        self._ahead: set[str] = set()
        self._awaiting_worker: dict[str, asyncio.Future[int]] = {}  # prepared ahead: the worker, once given
        self._wake = asyncio.Event()
        self._stopping: str | None = None
        self._detached = False  # stopped with tasks left running for the next waveui to adopt
        self._adaptive: AdaptiveLimit | None = None
        self._controller = ControllerLock(self.repo_root)  # nothing is written before the run is checked
        self._journal_error: OSError | None = None
        self._claimed = False  # the repository checked and its controller lock held
        self._loop: asyncio.AbstractEventLoop | None = None
        self._over_budget: dict[str, str] = {}  # tasks stopped for passing their max_cost, and why
        self._start_from: dict[str, int] = {}  # retries asked to go on from a kept attempt: its number
        self._briefs: dict[str, tuple[Attempt, Path]] = {}  # what each attempt is told of the one before
        self._budget_reached = False  # [epic] max_cost: no task starts any more
        self._closing = False  # the user quit with nothing running: finish once nothing is left
        self._idle_said = False  # "nothing left to run" told since the last task started
        self.notifier = Notifier(epic.notify, lambda text: self.notice(text, kind="notify"),
                                 self.options.notify_timeout)

    # ------------------------------------------------------------ events

    def emit(self, event: Event) -> None:
        assert self.journal is not None
        if self._journal_error:
            return  # nothing more can be recorded; the run is ending and stays resumable
        try:
            self.journal.append(event)
        except OSError as error:
            # A full disk: what is not journaled must not happen, so stop, leave running tasks to the
            # next run (it adopts them) and report one line rather than a traceback per task.
            self._journal_error = error
            self.stop(leave_resumable=True)
            return
        fold(self.state, event)
        for listener in list(self.options.listeners):
            try:
                listener(event)
            except Exception:  # a broken reader (a closed pipe, a bug in a view) must not break the run
                self.options.listeners.remove(listener)

    def notice(self, text: str, level: str = "warning", task: str = "", kind: str = "") -> None:
        """Tell the user something that is no task's state; kept until the journal is open, if need be."""
        event = Notice(t=self.clock(), level=level, text=text, task=task, kind=kind)
        if self.journal is None:
            self._early_notices.append(event)
        else:
            self.emit(event)

    def _notice_from_thread(self, text: str) -> None:
        """For the pool, which works in threads: the event is emitted on the loop."""
        loop = self._loop
        if loop is None or loop.is_closed():
            self._early_notices.append(Notice(t=self.clock(), text=text))
        else:
            loop.call_soon_threadsafe(self.notice, text)

    def _set_state(self, task_id: str, state: str, **fields) -> None:
        task = self.state.tasks[task_id]
        before = task.state
        fields.setdefault("attempt", task.attempt)
        self.emit(TaskStateChanged(t=self.clock(), task=task_id, state=state, **fields))
        self.ready.track(task_id, before, state)
        self._idle_said = False  # what is left changed: say it again once idle
        if state in ("failed", "conflicted") and before != state:
            event = notify.TASK_FAILED if state == "failed" else notify.TASK_CONFLICTED
            self._notify(event, fields.get("reason", ""), task_id)
        if state in STUCK_STATES and state != "blocked":  # whatever waits on a task in trouble is blocked
            self._block_dependents(task_id, task_id, STUCK_WORDS[state])
        self._wake.set()

    def _block_dependents(self, stuck: str, root: str, what: str) -> None:
        """Block what requires ``stuck``, naming the task whose trouble is the cause (``root``), not a link between.

        Tasks only ordered after it (serialisations) are not blocked: they start once it has finished.
        """
        for dependent in self.state.dependents[stuck]:
            if self.state.tasks[dependent].state in WAITING:
                through = f" (through {stuck})" if stuck != root else ""
                self._set_state(dependent, "blocked", reason=f"waiting on {root}, which {what}{through}")
                self._block_dependents(dependent, root, what)

    # ------------------------------------------------------------ starting

    def _limits(self) -> tuple[int, int]:
        maximum = self.options.max_parallel or default_workers(self.epic)
        minimum = min(self.epic.min_parallel, maximum)
        return minimum, maximum

    def choose_run(self) -> Path:
        """The run folder: the unfinished run to resume, or a new one (decided once).

        Raises EngineError, before anything is written, for an edit of the
        epic the run cannot follow or an integration branch no journal explains.
        """
        if self.run_dir is None:
            previous = None if self.options.fresh else self.resume.resumable_run()
            if not self.options.fresh:
                self.resume.read_branch()
            if previous:
                self.resume.check_edits(*previous)
                self.run_dir, self.previous_events = previous
            else:
                self.resume.check_lost_journal()
                self.run_dir = runs_dir(self.repo_root) / new_run_id(self.epic.name)
        return self.run_dir

    async def _open(self) -> bool:
        """Set up the run folder, git and the journal; True when resuming."""
        self.choose_run()
        previous = self.previous_events
        if previous is not None:
            self.state = replay(previous)
        ensure_private_dir(self.run_dir / "logs")
        self.executor = self.options.executor(self.repo_root, self.run_dir.name)
        if self.executor.remote:
            await remote.connect(self)
        if self.git:
            try:
                self.integrator = Integrator(self.repo_root, self.epic.name, self.epic.base)
                if self.options.fresh:
                    self.set_aside = await asyncio.to_thread(self.integrator.set_aside, self.run_dir.name)
                tip = await asyncio.to_thread(self.integrator.ensure_branch)
                if previous is not None:
                    await asyncio.to_thread(self.resume.accept_branch_since_last_run, tip)
                self.pool = WorktreePool(self.repo_root, self.epic.name, self.epic.setup, self.epic.setup_inputs,
                                         self.run_dir / "logs", on_notice=self._notice_from_thread,
                                         run_setup=self.executor.run_to_end)
                self.guard = await asyncio.to_thread(RepositoryGuard, self.integrator.repository, self.epic.name)
            except (GitError, ValueError) as error:  # ValueError: a name no branch may have
                raise EngineError(str(error)) from None
        try:
            self.journal = Journal(self.run_dir)
        except OSError as error:
            raise EngineError(f"cannot write the journal in {self.run_dir}: {error.strerror or error}") from None
        return previous is not None

    def claim(self) -> None:
        """Check the repository and take its controller lock, or raise EngineError; nothing is written when refused.

        :meth:`run` claims when this was not done first; a front end claims
        before it shows anything, so a refused run prints only its reason.
        """
        if self._claimed:
            return
        check_repository(self.repo_root, self.git)
        fallback = self.sandboxing.check()
        if fallback:
            self.notice(fallback, kind="sandbox")
        try:
            self._controller.acquire()
        except ControllerBusy as error:
            raise EngineError(str(error)) from None
        self._claimed = True

    def _start_events(self, resumed: bool) -> None:
        minimum, maximum = self._limits()
        limit = maximum
        if self.epic.adaptive:
            limit = max(minimum, min(maximum, self.state.limit if resumed else maximum))
            self._adaptive = AdaptiveLimit(minimum, maximum, limit, self.epic.cpu_high, self.epic.cpu_low,
                                           self.epic.min_free_memory)
        self._free_slots = list(range(maximum))
        self.emit(RunStarted(
            t=self.clock(), run_id=self.run_dir.name, epic=self.epic.name,
            branch=self.integrator.branch if self.integrator else "", base=self.epic.base or "",
            strategy=self.epic.strategy, conflict_mode=self.epic.conflicts, max_parallel=maximum, limit=limit,
            tasks=task_infos(self.epic, self.plan), conflicts=conflict_rows(self.epic, self.plan),
            critical_length=self.plan.critical.length,
            resumed=resumed, tip=(self.integrator.expected or "") if self.integrator else "",
            max_cost=self.epic.max_cost,
        ))
        for notice in self._early_notices:
            self.emit(notice)
        self._early_notices.clear()

    # ------------------------------------------------------------ the run

    async def run(self) -> RunState:
        """Run the epic to the end (or until stopped); return the final state."""
        self._loop = asyncio.get_running_loop()
        if not self._claimed:
            await asyncio.to_thread(self.claim)
        sampler = None
        try:
            resumed = await self._open()
            if resumed:
                await self.resume.stop_removed()  # before the new task list drops them from the state
            self._start_events(resumed)
            await self.resume.settle_other_runs()
            self.ready.index(self.state)
            await self.resume.reconcile(resumed)
            if resumed:
                await self.conflicts.collect(merged_outside=True)
                await self.resume.recover_in_flight()
                if self.state.paused:  # a new session dispatches again
                    self.emit(RunPaused(t=self.clock(), paused=False))
            sampler = asyncio.create_task(self._sample_loop())
            await self._dispatch_loop()
            if self._jobs:
                await asyncio.gather(*self._jobs.values(), return_exceptions=True)
            self._finish()
            await self.notifier.drain()  # the last notification is not cut off by the end of the process
        except OSError as error:
            # A folder made read-only, a file where a folder belongs, a full disk outside the journal:
            # one line naming the path and the cause; the journal so far keeps the run resumable.
            raise EngineError(describe(error, resumable=self.journal is not None)) from None
        finally:
            if sampler:
                sampler.cancel()
            if self.executor is not None and self.executor.remote:
                await self.executor.close()  # attempts it holds go on, for the next waveui of the run to collect
            if not self._detached:
                for process in list(self._processes.values()):
                    await process.terminate(self.options.grace)
            if self.journal:
                self.journal.close()
            self._controller.release()
            self._claimed = False
        if self._halted:
            raise EngineError(self._halted + "; once that is put right, `waveui run` resumes the run")
        if self._journal_error:
            error = self._journal_error
            raise EngineError(describe(error, error.filename or self.journal.path, resumable=True))
        return self.state

    def _finish(self) -> None:
        ok = all(t.state == "done" for t in self.state.tasks.values())
        if self._stopping:
            reason, ok = self._stopping, False
        elif self._budget_reached and not ok:
            reason = BUDGET_REACHED
        else:
            reason = "complete" if ok else "finished with tasks not done"
        self.emit(RunFinished(t=self.clock(), ok=ok, reason=reason))
        if not self._detached:
            self._notify(notify.RUN_FINISHED, f"{self.epic.name}: run {reason}, "
                         f"{self.state.done}/{self.state.total} done, cost {money(self.state.cost)}")

    def _check_run_budget(self) -> bool:
        """Whether ``[epic] max_cost`` lets another task start; says so (once) when it does not."""
        budget = self.epic.max_cost
        if budget is None or self._budget_reached:
            return not self._budget_reached
        committed = committed_cost(self.state)
        if committed < budget:
            return True
        self._budget_reached = True
        text = (f"budget reached: {money(committed)} spent or committed of [epic] max_cost {money(budget)}; "
                "no more tasks start (raise max_cost and `waveui run` again to go on)")
        self.notice(text, kind="budget")
        self._notify(notify.BUDGET_REACHED, text)
        return False

    async def _dispatch_loop(self) -> None:
        while True:
            self._wake.clear()
            if self._stopping:
                return
            if not self.state.paused:
                self._start_tasks()
            if not self._jobs and (self.ready.settled() or self._budget_reached):
                if self._closing or not self.options.stay_open:
                    return
                self._say_idle()
            timeout = self.ready.next_retry_in(self.clock())
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except asyncio.TimeoutError:
                pass

    def _start_tasks(self) -> None:
        """Give each free worker to the best task, and prepare the next best ahead of a worker.

        Best is by user priority, then plan rank (critical path first), whether
        the task was prepared ahead or is only ready: a worker never goes to a
        prepared task while a better one waits unprepared.
        """
        # slots held, not states: a job just created has not emitted its first state yet
        free = min(self.state.limit - len(self._holding), len(self._free_slots))
        ahead = max(0, self._ahead_limit() - len(self._ahead))
        picked = self.ready.next_ready(free + ahead, self.clock(), self.locks.free_for) if free + ahead > 0 else []
        # its last attempt is still being kept: its job wakes us when done
        candidates = [task_id for task_id in picked if task_id not in self._jobs]
        if candidates and not self._check_run_budget():
            candidates = []  # they stay queued, for a run resumed with a higher budget
        prepared = sorted(self._awaiting_worker, key=self._rank)
        while free > 0 and (prepared or candidates):
            if prepared and (not candidates or self._rank(prepared[0]) <= self._rank(candidates[0])):
                task_id = prepared.pop(0)
                self._ahead.discard(task_id)
                self._holding[task_id] = slot = self._free_slots.pop(0)
                self._awaiting_worker.pop(task_id).set_result(slot)
                free -= 1
            elif self._admit(candidates.pop(0), with_worker=True):
                free -= 1
        for task_id in candidates[:ahead]:
            self._admit(task_id, with_worker=False)

    def _admit(self, task_id: str, with_worker: bool) -> bool:
        """Start the task's job, with a worker or to be prepared ahead of one; False if its files are taken."""
        if not self.locks.free_for(task_id):  # a task picked just before holds its file
            return False
        self.locks.acquire(task_id)
        slot = None
        if with_worker:
            self._holding[task_id] = slot = self._free_slots.pop(0)
        else:
            self._ahead.add(task_id)
        self._jobs[task_id] = asyncio.create_task(self._run_task(task_id, slot))
        return True

    def _ahead_limit(self) -> int:
        """How many tasks may be prepared ahead of a worker: some with worktrees to prepare, else none.

        None under a run budget: whether a task may start is decided by what is spent when a worker frees.
        """
        if self.pool is None or self.executor is None or self.executor.remote or self.epic.max_cost is not None:
            return 0
        return max(1, self.state.limit // 4)

    def _rank(self, task_id: str) -> tuple[int, int]:
        task = self.state.tasks[task_id]
        return -task.priority, task.rank

    async def _worker_for(self, task_id: str) -> int | None:
        """Wait until the dispatch gives this task, prepared ahead, a worker; its number, None if cancelled."""
        given = asyncio.get_running_loop().create_future()
        self._awaiting_worker[task_id] = given
        self._wake.set()
        return await given

    # ------------------------------------------------------------ one task

    def _merge_message(self, task_id: str) -> str:
        """The message of a task's commit and merge; the trailer lets a lost journal be rebuilt from git."""
        return merge_message(task_id, self.tasks[task_id].title)

    def _branch(self, task_id: str) -> str:
        return self.pool.branch_for(task_id) if self.pool else ""

    @functools.cached_property
    def _clean_env(self) -> dict[str, str]:
        """This process's environment without a GIT_DIR or GIT_INDEX_FILE that would aim a task's git elsewhere.

        Read once, at the first step, and copied for each: going through ``os.environ`` decodes every
        variable again, which cost more of the engine's time per task than anything else it does.
        """
        return clean_env(os.environ)

    def _env(self, task: Task, attempt: int, workdir: Path) -> dict[str, str]:
        env = dict(self._clean_env)
        env.update({
            "WAVEUI_TASK_ID": task.id,
            "WAVEUI_TITLE": task.title,
            "WAVEUI_PROMPT": task.prompt or task.title,
            "WAVEUI_WORKTREE": str(workdir),
            "WAVEUI_EPIC": self.epic.name,
            "WAVEUI_ATTEMPT": str(attempt),
            "WAVEUI_RUN_ID": self.run_dir.name,
            "WAVEUI_AFFECTED_FILES": "\n".join(task.affected_files),
        })
        # Budgets for agents that take them (recipes pass them on by shell expansion). The epic's
        # max_cost is the whole run's, not any one task's: a task gets only its own.
        if task.max_cost is not None:
            env["WAVEUI_MAX_COST"] = f"{task.max_cost:g}"
        max_turns = task.max_turns if task.max_turns is not None else self.epic.max_turns
        if max_turns is not None:
            env["WAVEUI_MAX_TURNS"] = str(max_turns)
        if task.id in self._briefs:
            previous, brief = self._briefs[task.id]
            conflict_files = self.conflicts.conflict_files(task.id)
            env["WAVEUI_PREVIOUS_ATTEMPT"] = previous.ref
            env["WAVEUI_PREVIOUS_ATTEMPT_FILE"] = str(brief)
            env["WAVEUI_PROMPT"] += attempts.told_in_prompt(previous, brief, conflict_files)
            if conflict_files:
                env["WAVEUI_CONFLICT_FILES"] = "\n".join(conflict_files)
        return env

    def _brief_previous(self, task_id: str, attempt: int) -> None:
        """Write what attempt ``attempt`` should know of the kept attempt before it, if there is one."""
        self._briefs.pop(task_id, None)
        previous = attempts.previous_attempt(self.state.tasks[task_id], attempt)
        if previous is None or self.integrator is None:
            return
        brief = self.run_dir / "attempts" / f"{task_id}.{previous.number}.txt"
        attempts.write_brief(brief, self.state.tasks[task_id], previous, self.run_dir / "logs" / f"{task_id}.log",
                             self.integrator.attempt_diff, self.conflicts.conflict_files(task_id))
        self._briefs[task_id] = (previous, brief)

    def _notify(self, event: str, message: str, task_id: str = "") -> None:
        """Run ``[epic] notify`` for ``event``, with the task's variables when it is about one."""
        if not self.epic.notify:
            return
        if task_id:
            view = self.state.tasks[task_id]
            env = self._env(self.tasks[task_id], view.attempt, Path(view.worktree or self.repo_root))
        else:
            env = dict(self._clean_env)
            env.update({"WAVEUI_EPIC": self.epic.name, "WAVEUI_RUN_ID": self.run_dir.name})
        self.notifier.send(event, message, env)

    def _on_directive(self, task_id: str) -> Callable[[dict], None]:
        task = self.tasks[task_id]

        def record(values: dict) -> None:
            self.emit(TaskProgress.reported(self.clock(), task_id, values))
            if task.max_cost is not None and "cost" in values:
                self._check_task_budget(task_id, task.max_cost)
        return record

    def _check_task_budget(self, task_id: str, budget: float) -> None:
        """Stop a task whose attempt has cost more than its ``max_cost``: for agents that do not stop themselves."""
        view = self.state.tasks[task_id]
        spent = view.cost - view.earlier_cost
        if spent <= budget or task_id in self._over_budget or view.state not in SLOT_STATES:
            return  # within budget, stopped already, or a late line of an attempt that has ended
        self._over_budget[task_id] = f"over its budget ({money(spent)} of {money(budget)})"
        process = self._processes.get(task_id)
        if process is not None:  # else it is being started: _run_commands stops it once it is
            self._loop.create_task(process.terminate(self.options.grace))

    async def _run_task(self, task_id: str, slot: int | None, adopted: Adoption | None = None) -> None:
        """One attempt of the task, from its worktree to its merge; ``slot`` is its worker, None if it is
        prepared ahead of one (then given one before its setup and commands)."""
        task = self.tasks[task_id]
        attempt = adopted.attempt if adopted else self.state.tasks[task_id].attempt + 1
        self.ready.retry_at.pop(task_id, None)
        self._over_budget.pop(task_id, None)
        self._worktrees[task_id] = adopted.worktree if adopted else None
        try:
            if self.executor.remote:  # the whole attempt runs on another machine; its commit comes back
                await remote.run_attempt(self, task_id, slot, attempt, adopted)
                return
            start_point = adopted.start_point if adopted else ""
            if not adopted:
                self._set_state(task_id, "preparing", attempt=attempt, worker=slot, reason=self._order_note(task_id))
                if self.pool:
                    resume_from = self._kept_attempt(task_id, self._start_from.pop(task_id, None))
                    # One hand-over to a thread for all of it: each costs milliseconds on a busy machine.
                    start_point, worktree = await asyncio.to_thread(self._prepare_worktree, task_id, attempt,
                                                                    resume_from)
                    self._worktrees[task_id] = worktree
                    if self.state.tasks[task_id].state == "cancelled":  # while its worktree was made
                        return
                    # journaled before the command starts, so a task adopted after a crash knows its base
                    self._set_state(task_id, "preparing", attempt=attempt, worker=slot, worktree=str(worktree.path),
                                    start_point=start_point, reason="" if slot is not None else "waiting for a worker")
                    if slot is None:
                        slot = await self._worker_for(task_id)
                        if slot is None:  # cancelled while it waited
                            return
                        self._set_state(task_id, "preparing", attempt=attempt, worker=slot)
                    if not await self._setup(task, worktree, attempt):
                        return
            worktree = self._worktrees[task_id]
            workdir = worktree.path if worktree else self.repo_root
            outcome = await self._run_commands(task, attempt, slot, workdir, start_point, adopted)
            await self._guard_repository(task_id)
            if outcome is not None:
                reason, exit_code = outcome
                # a retry would only spend past the budget again
                await self._failed(task_id, reason, attempt, retry=task_id not in self._over_budget,
                                   exit_code=exit_code)
                return
            if not self.pool:
                self._set_state(task_id, "done", reason="commands succeeded")
                return
            await self._integrate(task, worktree, start_point, attempt)
        except asyncio.CancelledError:
            raise
        except RefMoved as error:
            self._halt(error.message)
        except BrokenSlot as error:
            await self._failed(task_id, error.message, attempt)
        except GitError as error:  # a full disk while committing, say: the attempt's work is kept on release
            await self._failed(task_id, "git failed: " + " ".join(error.message.split())[:300], attempt)
        except Exception as error:  # a bug or a git failure must not take the whole run down
            await self._failed(task_id, f"internal error: {type(error).__name__}: {error}", attempt, retry=False)
        finally:
            # Left resumable: a task in flight keeps its worktree, even one whose step was being started
            # when its job was cancelled (not yet in _processes): that step may run, and the next run adopts
            # it; so does one whose work was being committed, which the next run commits.
            view = self.state.tasks[task_id]
            left_running = self._detached and (task_id in self._processes or view.state in SLOT_STATES
                                               or (view.state == "merging" and not view.commit))
            self._processes.pop(task_id, None)
            worktree = self._worktrees.pop(task_id, None)
            if worktree is not None and not left_running:  # a task left running keeps its worktree
                await self._release(task_id, worktree, attempt)
            self._free_worker(task_id)
            self._ahead.discard(task_id)
            self._awaiting_worker.pop(task_id, None)
            if self.state.tasks[task_id].state != "merging":
                self.locks.release(task_id)
            self._jobs.pop(task_id, None)
            self._wake.set()

    def _prepare_worktree(self, task_id: str, attempt: int, resume_from: Attempt | None) -> tuple[str, Worktree]:
        """The attempt's start point (the integration tip, checked unmoved) and its worktree; blocking.

        Going on from a kept attempt, it starts from where that attempt started.
        """
        start_point = self.integrator.check_unmoved()
        if resume_from is not None:
            start_point = resume_from.base
        self._brief_previous(task_id, attempt)
        return start_point, self.pool.acquire(task_id, start_point, resume_from.commit if resume_from else None)

    def _free_worker(self, task_id: str) -> None:
        """Give back the worker slot the task holds, if it still holds one, and let the dispatch use it."""
        slot = self._holding.pop(task_id, None)
        if slot is not None:
            self._free_slots.append(slot)
            self._free_slots.sort()
            self._wake.set()

    def _kept_attempt(self, task_id: str, number: int | None) -> Attempt | None:
        """Attempt ``number`` of the task, if its work is kept (and where it started is known)."""
        for attempt in self.state.tasks[task_id].kept_attempts():
            if attempt.number == number and attempt.base:
                return attempt
        if number is not None:
            self.notice(f"{task_id}: attempt {number} has no kept work; it starts from the tip", task=task_id)
        return None

    def _order_note(self, task_id: str) -> str:
        """Why a task starts although a task it is ordered after did not merge: they only share files."""
        notes = []
        for earlier in self.state.tasks[task_id].after:
            outcome = self.state.tasks[earlier].state
            if outcome != "done":
                shared = ", ".join(self._shared_files(task_id, earlier)) or "files"
                notes.append(f"{earlier} {STUCK_WORDS.get(outcome, outcome)}; only ordered before it for {shared}")
        return "; ".join(notes)

    def _shared_files(self, a: str, b: str) -> list[str]:
        """The files the plan found both tasks would touch."""
        return [file for row in self.state.conflicts if {a, b} == set(row["tasks"]) for file in row["files"]]

    async def _release(self, task_id: str, worktree, attempt: int) -> None:
        """Free a worktree; the attempt's work, kept under its ref first, is journaled."""
        released = await asyncio.to_thread(self.pool.release, worktree, attempt)
        if released.kept:
            self.emit(AttemptKept(t=self.clock(), task=task_id, attempt=attempt, ref=released.ref,
                                  commit=released.kept, base=self.state.tasks[task_id].start_point))
        await self._note_own_refs()

    async def _guard_repository(self, task_id: str) -> None:
        """After a task's commands: revert hooks or config it planted; stop the run if it moved others' refs."""
        if self.guard is None:
            return
        report = await asyncio.to_thread(self.guard.check)
        for text in report.notices:
            self.notice(text, task=task_id)
        if report.stop:
            self._halt("; ".join(report.stop) + f" (noticed when {task_id} ended)")

    async def _note_own_refs(self) -> None:
        """waveui just wrote refs of its own: the guard learns them, and puts back any a task deleted."""
        if self.guard is not None:
            for text in await asyncio.to_thread(self.guard.check_owned):
                self.notice(text)

    def _halt(self, reason: str) -> None:
        """Stop the run for something that makes going on unsafe; running tasks go on, to be adopted."""
        if self._halted is None:
            self._halted = reason
            self.notice(reason, level="error")
            self.stop(leave_resumable=True)

    async def _setup(self, task: Task, worktree, attempt: int) -> bool:
        """Run the epic's setup in the worktree if its inputs changed; False when it failed."""
        env = self._env(task, attempt, worktree.path)
        began = self.clock()
        sandbox = await self._sandbox(task, self.epic.setup, worktree.path, env) if self.epic.setup else None
        try:
            setup = await asyncio.to_thread(self.pool.ensure_setup, worktree, env, None,
                                            sandbox and functools.partial(self.executor.run_to_end, sandbox=sandbox))
        finally:
            await self.sandboxing.discard(task.id)
        if self.epic.setup:
            self.emit(SetupRan(t=self.clock(), worktree=str(worktree.path), task=task.id,
                               seconds=setup.seconds if setup.ran else self.clock() - began,
                               skipped=not setup.ran, exit_code=setup.exit_code))
        if setup.exit_code != 0:
            await self._failed(task.id, f"setup failed (exit {setup.exit_code})", attempt)
            return False
        return True

    async def _sandbox(self, task: Task, command: str, workdir: Path, env: dict[str, str]):
        """The sandbox of the task's next step, or None when it runs unsandboxed."""
        return await self.sandboxing.prepare(task, command, workdir, env,
                                             self.integrator.repository if self.integrator else None)

    def _steps(self, task: Task) -> list[tuple[str, str | None]]:
        steps = [("running", task.command or self.epic.command)]
        verify = task.verify or self.epic.verify
        if verify:
            steps.append(("verifying", verify))
        return steps

    async def _run_commands(self, task: Task, attempt: int, slot: int, workdir: Path, start_point: str,
                            adopted: Adoption | None) -> tuple[str, int | None] | None:
        """Run the task's command, then its verify, each as a step of the executor.

        None on success, else why not and the exit code of the step that failed (None when none exited).
        """
        env = self._env(task, attempt, workdir)
        timeout = task.timeout or self.epic.timeout
        steps = self._steps(task)
        if adopted:
            steps = steps[[name for name, _ in steps].index(adopted.step):]
        for state, command in steps:
            if not command:
                return "no command: set one on the task or in [epic]", None
            if self._stopping or self.state.tasks[task.id].state == "cancelled":
                return "stopped", None
            if adopted and state == adopted.step:
                process, reason = adopted.process, "adopted: it went on while waveui was away"
                adopted = None
            else:
                # Its "preparing" (or retry) is written, not synced: the page cache outlives a killed waveui,
                # and a machine crash that loses the line ends the step too. The next run starts the task
                # again; work the step left in its worktree is kept when the slot is reused. What must reach
                # the disk before acting is a merge (see _merge_commit): the integration branch moves.
                sandbox = await self._sandbox(task, command, workdir, env)
                process = await self.executor.start(task.id, state, command, workdir, env, timeout,
                                                    self.options.grace, self._on_directive(task.id),
                                                    read_line=agents.line_reader(command), sandbox=sandbox)
                reason = ""
            self._processes[task.id] = process
            if task.id in self._over_budget:  # its cost passed max_cost before it was known to be running
                asyncio.get_running_loop().create_task(process.terminate(self.options.grace))
            self._set_state(task.id, "paused" if process.paused else state, attempt=attempt, worker=slot,
                            worktree=str(workdir) if self.pool else "", pid=process.pid,
                            pid_started=process.create_time, start_point=start_point, reason=reason,
                            sandboxed=self.sandboxing.wanted(task))
            try:
                result = await process.wait()
            finally:
                await self.sandboxing.discard(task.id)
            self._processes.pop(task.id, None)
            if task.id in self._over_budget:
                return self._over_budget[task.id], None
            if self.state.tasks[task.id].state == "cancelled" or self._stopping:
                return "stopped", None
            failure = step_failure(state, result, timeout)
            if failure:
                return failure, result.exit_code
            if state == "running":
                why = self._agent_outcome(task.id)
                if why:
                    return why, result.exit_code
        return None

    def _agent_outcome(self, task_id: str) -> str | None:
        """After a command that exited 0: why it failed all the same, if its agent said so; a word on denials."""
        view = self.state.tasks[task_id]
        if view.denied:
            tools = ", ".join(view.denied)
            self.notice(f"{task_id}: the agent was denied {tools}; allow them in the recipe if the task needs them",
                        task=task_id, kind="denied")
            self._notify(notify.TASK_DENIED, f"the agent was denied: {tools}", task_id)
        if view.failed:
            return f"agent failed: {view.failed}"
        return None

    async def _integrate(self, task: Task, worktree, start_point: str, attempt: int) -> None:
        """Commit the task's work on its branch, free its worktree, then merge (waiting if the merge must).

        Its commands have ended: the task is merging from now on, its worker taking the next task while
        git commits and merges (unless a resolver of a conflict may have to run for this one). Merging
        with no commit of its attempt yet, a task interrupted here is adopted by the next run and
        committed, not run again.
        """
        self._set_state(task.id, "merging", reason="committing its work")
        if self.epic.conflict_policy(task)[0] != "resolve":
            self._free_worker(task.id)
        commit = await asyncio.to_thread(self.pool.commit, worktree, start_point, self._merge_message(task.id),
                                         agents.keep_out(task.command or self.epic.command or ""), attempt)

        def free_worktree() -> Awaitable[None]:
            # The work is on its branch now: the worktree is cleaned for the next task while the merge runs.
            self._worktrees.pop(task.id, None)
            return asyncio.ensure_future(self._release(task.id, worktree, attempt))
        await self._merge_commit(task, commit, start_point, attempt, free_worktree)

    async def _merge_commit(self, task: Task, commit: str | None, start_point: str, attempt: int,
                            free_worktree: Callable[[], Awaitable[None]] | None = None) -> None:
        """Merge the commit an attempt left on the task's branch; None: it changed nothing, which may fail it.

        ``free_worktree`` starts releasing the attempt's worktree; the merge does not wait for it (it
        touches no worktree), so a dependent starts as soon as the merge is in, but the job ends only
        once both are done: a retry of the task waits until its worktree is free.
        """
        if commit is None:
            denied = self.state.tasks[task.id].denied
            if denied and task.expect_changes:  # what it was refused is likely why it did nothing
                await self._failed(task.id, f"the agent was denied: {', '.join(denied)}", attempt, retry=False)
            elif task.expect_changes:
                await self._failed(task.id, "changed nothing (set expect_changes = false if that is right)",
                                   attempt, retry=False)
            else:
                self._set_state(task.id, "done", reason="no changes, as expected")
            return
        changed = await asyncio.to_thread(self.integrator.changed_files, start_point, commit)
        undeclared = self.integrator.undeclared(changed, task.affected_files) if task.affected_files else []
        self._set_state(task.id, "merging", commit=commit, files=changed, undeclared=undeclared)
        await self.journal.durable()  # resume must know a merge may have happened
        releasing = free_worktree() if free_worktree is not None else None
        try:
            await self._merge(task.id, self._branch(task.id), self._merge_message(task.id), changed, undeclared)
        finally:
            if releasing is not None:
                await asyncio.shield(releasing)  # a run stopping meanwhile still leaves the slot cleaned

    async def _merge(self, task_id: str, branch: str, message: str, changed: list[str],
                     undeclared: list[str]) -> None:
        """Merge a committed task; a merge that cannot happen yet is tried again, never given up on.

        The command already ran to its end: failing the task here would make a
        retry run it again, so the task waits in "merging" (resume picks it up
        from there) until the merge goes through or the run stops.
        """
        delay, said = MERGE_RETRY_SECONDS[0], ""
        while True:
            if self._halted or self._journal_error:
                return  # committed (and journaled as merging, if the journal could): the next run merges it
            try:
                result = await asyncio.to_thread(self.integrator.merge, branch, message)
                break
            except RefMoved as error:
                self._halt(error.message)
                return
            except GitError as error:
                if error.message != said:
                    said = error.message
                    self._set_state(task_id, "merging", reason=f"waiting to merge: {error.message}")
                if await self._sleep_unless_stopping(delay):
                    return
                delay = min(delay * 2, MERGE_RETRY_SECONDS[1])
        self.locks.release(task_id)
        if result.ok:
            self.conflicts.merged(task_id)
            self._set_state(task_id, "done", commit=result.commit, files=changed, undeclared=undeclared,
                            reason="merged")
        else:
            await self.conflicts.handle(task_id, result.conflicted, self.state.tasks[task_id].attempt)

    def _say_idle(self) -> None:
        """Nothing is left to run but the user is still there: say so once; a retry goes on from here."""
        if self._idle_said:
            return
        self._idle_said = True
        left = self.state.total - self.state.done
        text = ("every task is done: quit to finish the run" if not left else
                f"nothing left to run ({left} not done): retry, un-cancel or quit to finish the run")
        self.notice(text, level="info", kind="idle")

    def close(self) -> None:
        """The user quit with nothing running: end the run as finished (done or not), not interrupted."""
        self._closing = True
        self._wake.set()

    @property
    def stopping(self) -> bool:
        """Told to end the session already (stopped, or left resumable)."""
        return self._stopping is not None

    @property
    def idle(self) -> bool:
        """Nothing runs or merges, and nothing is waiting that could start."""
        return not self._jobs and (self.ready.settled() or self._budget_reached)

    async def _sleep_unless_stopping(self, seconds: float) -> bool:
        """Sleep; True (at once) when the run is stopping meanwhile."""
        deadline = time.monotonic() + seconds
        while not self._stopping and time.monotonic() < deadline:
            await asyncio.sleep(min(0.2, deadline - time.monotonic()))
        return bool(self._stopping)

    async def _failed(self, task_id: str, reason: str, attempt: int, retry: bool = True,
                      exit_code: int | None = None) -> None:
        if reason == "stopped" or self.state.tasks[task_id].state == "cancelled":
            return
        task = self.tasks[task_id]
        allowed = task.retries if task.retries is not None else self.epic.retries
        if retry and attempt <= allowed and not self._stopping:
            delay = self.options.backoff * 2 ** (attempt - 1)
            self.ready.retry_at[task_id] = self.clock() + delay
            self._set_state(task_id, "pending", reason=f"attempt {attempt} {reason}; retrying in {delay:g}s",
                            attempt=attempt, exit_code=exit_code)
        else:
            self._set_state(task_id, "failed", reason=reason, attempt=attempt, exit_code=exit_code)

    # ------------------------------------------------------------ sampling

    async def _sample_loop(self) -> None:
        await asyncio.to_thread(sample_machine)  # primes cpu_percent's baseline
        while True:
            await asyncio.sleep(self.options.sample_seconds)
            if self.state.count("conflicted"):
                await self.conflicts.collect(merged_outside=False)  # what `waveui resolve` left meanwhile
            if self.idle:
                continue  # nothing runs: the machine's figures decide nothing, and the journal stays still
            sample = await asyncio.to_thread(sample_machine)
            now = self.clock()
            self.emit(MetricsSample(t=now, cpu=sample.cpu, memory_available=sample.memory_available,
                                    memory_percent=sample.memory_percent))
            if self._adaptive:
                reason = self._adaptive.decide(sample, now)
                if reason:
                    self.emit(LimitChanged(t=now, limit=self._adaptive.limit, reason=reason))
                    self._wake.set()

    # ------------------------------------------------------------ control (RunControl)

    def pause_task(self, task_id: str) -> None:
        process = self._processes.get(task_id)
        if process and not process.paused and self.state.tasks[task_id].state in ("running", "verifying"):
            process.pause()
            self._set_state(task_id, "paused", reason="paused by user")

    def resume_task(self, task_id: str) -> None:
        process = self._processes.get(task_id)
        if process and process.paused:
            process.resume()
            self._set_state(task_id, "running", reason="resumed by user")

    def pause_run(self) -> None:
        if not self.state.paused:
            self.emit(RunPaused(t=self.clock(), paused=True))

    def resume_run(self) -> None:
        if self.state.paused:
            self.emit(RunPaused(t=self.clock(), paused=False))
            self._wake.set()

    def retry(self, task_id: str, from_attempt: int | None = None) -> None:
        task = self.state.tasks.get(task_id)
        if task and task.state in ("failed", "conflicted", "cancelled", "blocked"):
            self.ready.retry_at.pop(task_id, None)
            reason = "retry requested"
            if from_attempt is not None:  # looked up as it starts: the attempt may still be being kept now
                self._start_from[task_id] = from_attempt
                reason += f", from attempt {from_attempt}"
            if task.state == "conflicted":
                self.conflicts.rerun_apart(task_id, task.files)
            self._set_state(task_id, "pending", reason=reason)
            self._unblock_dependents(task_id)

    def _unblock_dependents(self, task_id: str) -> None:
        """Blocked tasks waiting on ``task_id`` wait again: it is being retried, or it is done."""
        for dependent in self._all_dependents(task_id):
            if self.state.tasks[dependent].state == "blocked":
                self._set_state(dependent, "pending", reason=f"{task_id} is being retried"
                                if self.state.tasks[task_id].state != "done" else f"{task_id} is done")

    async def prepare_resolution(self, task_id: str) -> Path:
        return await self.conflicts.prepare_by_hand(task_id)

    async def accept_resolution(self, task_id: str) -> str:
        return await self.conflicts.accept_by_hand(task_id)

    def _all_dependents(self, task_id: str) -> list[str]:
        seen, stack = [], [task_id]
        while stack:
            for dependent in self.state.dependents[stack.pop()]:
                if dependent not in seen:
                    seen.append(dependent)
                    stack.append(dependent)
        return seen

    def cancel(self, task_id: str) -> None:
        task = self.state.tasks.get(task_id)
        if task is None or task.state in SETTLED or task.state == "merging":
            return
        self.ready.retry_at.pop(task_id, None)
        self._set_state(task_id, "cancelled", reason="cancelled by user")
        waiting = self._awaiting_worker.pop(task_id, None)
        if waiting is not None:  # prepared ahead of a worker: it needs none now
            waiting.set_result(None)
        process = self._processes.get(task_id)
        if process:
            asyncio.get_running_loop().create_task(process.terminate(self.options.grace))

    def set_priority(self, task_id: str, priority: int) -> None:
        if task_id in self.state.tasks:
            self.emit(PriorityChanged(t=self.clock(), task=task_id, priority=priority))
            self.ready.reprioritised(task_id)
            self._wake.set()

    def stop(self, *, leave_resumable: bool) -> None:
        """End the session.

        With ``leave_resumable`` running tasks go on under their supervisors
        and the next `waveui run` adopts them; otherwise every task is stopped
        and the run ends.
        """
        self._stopping = "interrupted" if leave_resumable else "stopped"
        self._detached = leave_resumable
        for waiting in self._awaiting_worker.values():
            if not waiting.done():
                waiting.set_result(None)  # prepared ahead of a worker that will not come now
        self._awaiting_worker.clear()
        if leave_resumable:
            current = asyncio.current_task()
            for job in self._jobs.values():
                if job is not current:  # a job that stops the run (a halt) finishes its own cleanup
                    job.cancel()  # stop following; the supervised processes are left alone
        else:
            for task_id, process in list(self._processes.items()):
                asyncio.get_running_loop().create_task(process.terminate(self.options.grace))
                self._set_state(task_id, "cancelled", reason="waveui stopped")
        self._wake.set()
