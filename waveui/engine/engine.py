"""The engine: dispatch an epic's tasks to workers, merge their work, journal every change.

One asyncio loop runs everything. Blocking git and psutil calls go to threads
(``asyncio.to_thread``) so a user interface sharing the loop never stalls.
Every change is emitted as an event: appended to the journal (and on disk)
first, folded into :attr:`Engine.state` next, then passed to listeners.
"""

from __future__ import annotations

import asyncio
import heapq
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from waveui import agents
from waveui.executors.local import proctable, runner
from waveui.engine.adaptive import AdaptiveLimit, sample_machine
from waveui.run.events import (
    Event,
    LimitChanged,
    MetricsSample,
    Notice,
    PriorityChanged,
    RunFinished,
    RunPaused,
    RunStarted,
    SetupRan,
    TaskInfo,
    TaskProgress,
    TaskStateChanged,
)
from waveui.engine import recovery
from waveui.git.guard import RepositoryGuard
from waveui.run.journal import (Journal, UnreadableLine, ensure_private_dir, list_runs, new_run_id, read_events,
                                   runs_dir, waveui_dir)
from waveui.engine.locks import ControllerBusy, ControllerLock, FileLocks
from waveui.core.errors import describe
from waveui.git.preflight import PreflightError, check_waveui_folder, ensure_waveui_ignored
from waveui.engine.recovery import TASK_TRAILER, BranchWork, EpicEdits
from waveui.executors.local.supervision import StepFiles, SupervisedStep, live_steps, read_status
from waveui.git.merge import GitError, Integrator, MergeBlocked, RefMoved
from waveui.git.worktrees import BrokenSlot, WorktreePool, attempt_ref
from waveui.git.command import clean_env
from waveui.run.state import FINAL_STATES, SLOT_STATES, TROUBLE_STATES, RunState, fold, replay
from waveui.plan import Plan, default_workers, make_plan
from waveui.core.spec import Epic, Task

SAMPLE_SECONDS = 2.0
TERM_GRACE_SECONDS = 5.0
RETRY_BACKOFF_SECONDS = 2.0  # doubled for every further attempt
MERGE_RETRY_SECONDS = (1.0, 30.0)  # a merge that cannot happen yet is tried again, backing off to the second
SETTLED = FINAL_STATES | TROUBLE_STATES
STUCK_STATES = TROUBLE_STATES | {"cancelled"}  # their dependents cannot run
WAITING = frozenset({"pending", "ready"})
UNREADABLE_SHOWN = 10  # unreadable journal lines reported one by one; past that, one line counts the rest


@dataclass
class Adoption:
    """A step an earlier waveui started, followed from where it is."""

    step: str  # "running" or "verifying"
    process: SupervisedStep
    worktree: object | None
    start_point: str
    attempt: int


class EngineError(Exception):
    """A run that cannot start: one line for the user."""


class RunAlreadyComplete(EngineError):
    """The epic's latest run merged every task: nothing to do without --fresh."""


@dataclass
class RunOptions:
    max_parallel: int | None = None
    fresh: bool = False
    grace: float = TERM_GRACE_SECONDS
    sample_seconds: float = SAMPLE_SECONDS
    backoff: float = RETRY_BACKOFF_SECONDS
    listeners: list[Callable[[Event], None]] = field(default_factory=list)


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
        self.requires = {self.plan.graph.ids[i]: [self.plan.graph.ids[d] for d in deps]
                         for i, deps in enumerate(self.plan.graph.pred)}
        partners = {self.plan.graph.ids[i]: [self.plan.graph.ids[j] for j in others]
                    for i, others in enumerate(self.plan.exclusive)}
        self.locks = FileLocks(partners if epic.conflicts == "lock" else {})
        self.git = epic.isolation == "worktree"
        self.run_dir: Path | None = None
        self.set_aside: str | None = None  # where --fresh moved an earlier integration branch
        self.previous_events: list[Event] | None = None  # the journal of the run being resumed
        self.unreadable: list[UnreadableLine] = []  # its lines that gave no event
        self.edits = EpicEdits()  # how waveui.toml changed since that run last started
        self.branch_work: BranchWork | None = None  # the integration branch as git tells it, before this run
        self.journal_lost = False  # no journal, but merged work of this epic on its integration branch
        self.journal: Journal | None = None
        self.pool: WorktreePool | None = None
        self.integrator: Integrator | None = None
        self.guard: RepositoryGuard | None = None
        self._early_notices: list[Notice] = []  # said before the journal was open
        self._halted: str | None = None  # why the run stopped itself (a ref moved behind waveui's back)
        self._processes: dict[str, SupervisedStep] = {}
        self._worktrees: dict[str, object | None] = {}  # the worktree each running job holds until it frees it
        self._jobs: dict[str, asyncio.Task] = {}
        self._retry_at: dict[str, float] = {}
        self._free_slots: list[int] = []
        self._unmet: dict[str, int] = {}  # dependencies not yet done, per task
        self._candidates: set[str] = set()  # waiting tasks with every dependency done
        self._queue: list[tuple[int, int, str]] = []  # candidates by (-priority, rank); may hold stale entries
        self._unsettled = 0
        self._wake = asyncio.Event()
        self._stopping: str | None = None
        self._detached = False  # stopped with tasks left running for the next waveui to adopt
        self._adaptive: AdaptiveLimit | None = None
        self._controller = ControllerLock(self.repo_root)  # nothing is written before the run is checked
        self._journal_error: OSError | None = None
        self._claimed = False  # the repository checked and its controller lock held
        self._loop: asyncio.AbstractEventLoop | None = None

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
        self._track(task_id, before, state)
        self._wake.set()

    def _index_readiness(self) -> None:
        """Count each task's dependencies not yet done; the ones with none are candidates to start."""
        tasks = self.state.tasks
        self._unmet = {t: sum(tasks[d].state != "done" for d in self.requires[t]) for t in tasks}
        self._candidates = {t for t, n in self._unmet.items() if n == 0 and tasks[t].state in WAITING}
        self._queue = []
        for task_id in self._candidates:
            self._enqueue(task_id)
        self._unsettled = sum(task.state not in SETTLED for task in tasks.values())

    def _track(self, task_id: str, before: str, state: str) -> None:
        """Keep the readiness index current, and block whatever waits on a task in trouble.

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
            for dependent in self.state.dependents[task_id]:
                self._unmet[dependent] -= 1
                if self._unmet[dependent] == 0 and self.state.tasks[dependent].state in WAITING:
                    self._candidates.add(dependent)
                    self._enqueue(dependent)
        elif state in STUCK_STATES:
            for dependent in self.state.dependents[task_id]:
                if self.state.tasks[dependent].state in WAITING:
                    self._set_state(dependent, "blocked", reason=f"waiting on {task_id}")

    # ------------------------------------------------------------ starting

    def _limits(self) -> tuple[int, int]:
        maximum = self.options.max_parallel or default_workers(self.epic)
        minimum = min(self.epic.min_parallel, maximum)
        return minimum, maximum

    def _task_infos(self) -> list[TaskInfo]:
        plan = self.plan
        level = {task: number for number, wave in enumerate(plan.waves) for task in wave}
        rank = plan.dispatch_rank
        on_path = plan.critical.members
        return [
            TaskInfo(task_id, self.tasks[task_id].title, self.requires[task_id], plan.graph.weight[i],
                     list(self.tasks[task_id].affected_files), level[i], rank[task_id], i in on_path,
                     self.tasks[task_id].priority, recovery.fingerprint(self.epic, self.tasks[task_id]))
            for i, task_id in enumerate(plan.graph.ids)
        ]

    def _conflict_rows(self) -> list[dict]:
        ids = self.plan.graph.ids
        handling = {"serialise": "serialised", "lock": "locked", "defer": "deferred"}[self.epic.conflicts]
        return [{"tasks": [ids[c.a], ids[c.b]], "files": list(c.files), "handling": handling}
                for c in self.plan.conflicts]

    def _resumable_run(self) -> tuple[Path, list[Event]] | None:
        for run_dir in reversed(list_runs(self.repo_root)):
            unreadable: list[UnreadableLine] = []
            events = read_events(run_dir / "events.jsonl", unreadable)
            started = next((e for e in events if isinstance(e, RunStarted)), None)
            if started is None or started.epic != self.epic.name:
                continue  # another epic's run (a renamed epic is another epic)
            self.unreadable = unreadable
            # Every run that did not complete is picked up again: nothing done is redone.
            ends = [e for e in events if isinstance(e, (RunFinished, RunStarted))]
            last = ends[-1] if ends else None
            if isinstance(last, RunFinished) and last.ok:
                raise RunAlreadyComplete(f"every task of {self.epic.name} is already done and merged "
                                         f"(run {run_dir.name}); use --fresh to run the epic again")
            return run_dir, events
        return None

    def choose_run(self) -> Path:
        """The run folder: the unfinished run to resume, or a new one (decided once).

        Raises EngineError, before anything is written, for an edit of the
        epic the run cannot follow or an integration branch no journal explains.
        """
        if self.run_dir is None:
            previous = None if self.options.fresh else self._resumable_run()
            if not self.options.fresh:
                self._read_branch()
            if previous:
                self._check_edits(*previous)
                self.run_dir, self.previous_events = previous
            else:
                self._check_lost_journal()
                self.run_dir = runs_dir(self.repo_root) / new_run_id(self.epic.name)
        return self.run_dir

    def _read_branch(self) -> None:
        if not self.git:
            return
        from waveui.git.worktrees import integration_branch

        try:
            self.branch_work = recovery.merged_on_branch(self.repo_root, integration_branch(self.epic.name),
                                                         self.epic.base)
        except (recovery.GitError, ValueError):
            self.branch_work = None  # not a repository, or a name no branch may have: _open says which

    def _check_edits(self, run_dir: Path, events: list[Event]) -> None:
        """Refuse an edit of waveui.toml the interrupted run cannot follow; note the ones it can."""
        starts = [e for e in events if isinstance(e, RunStarted)]
        recorded = starts[-1]  # the task list as the run last knew it
        why = recovery.unhonourable_edit(recorded, self.epic, self.branch_work is not None)
        if why:
            raise EngineError(f"cannot resume run {run_dir.name}: in waveui.toml, {why} since it was interrupted; "
                              "undo that edit to finish the run, or use --fresh to start over "
                              "(the integration branch is set aside, not deleted)")
        self.edits = recovery.compare_epic(recorded, self.epic)

    def _check_lost_journal(self) -> None:
        """A new run while the integration branch holds merged work: its journal was deleted."""
        work = self.branch_work
        if work is None or work.commits == 0:
            return
        if not any(task_id in self.tasks for task_id in work.merged):
            raise EngineError(f"waveui/{self.epic.name} already has {work.commits} commit"
                              f"{'s' * (work.commits != 1)} that no run of this epic recorded (no "
                              f"{TASK_TRAILER} trailer names one of its tasks); use --fresh to start over "
                              "(that branch is set aside, not deleted)")
        self.journal_lost = True

    async def _open(self) -> bool:
        """Set up the run folder, git and the journal; True when resuming."""
        self.choose_run()
        previous = self.previous_events
        if previous is not None:
            self.state = replay(previous)
        ensure_private_dir(self.run_dir / "logs")
        if self.git:
            try:
                self.integrator = Integrator(self.repo_root, self.epic.name, self.epic.base)
                if self.options.fresh:
                    self.set_aside = await asyncio.to_thread(self.integrator.set_aside, self.run_dir.name)
                tip = await asyncio.to_thread(self.integrator.ensure_branch)
                if previous is not None:
                    await asyncio.to_thread(self._accept_branch_since_last_run, tip)
                self.pool = WorktreePool(self.repo_root, self.epic.name, self.epic.setup, self.epic.setup_inputs,
                                         self.run_dir / "logs", on_notice=self._notice_from_thread,
                                         run_setup=runner.run_to_end)
                self.guard = await asyncio.to_thread(RepositoryGuard, self.integrator.repository, self.epic.name)
            except (GitError, ValueError) as error:  # ValueError: a name no branch may have
                raise EngineError(str(error)) from None
        try:
            self.journal = Journal(self.run_dir)
        except OSError as error:
            raise EngineError(f"cannot write the journal in {self.run_dir}: {error.strerror or error}") from None
        return previous is not None

    def _accept_branch_since_last_run(self, tip: str) -> None:
        """Build on an integration branch moved forward since the last run (a merge by hand); refuse a rewrite.

        The last run left it at ``state.tip``. A tip that no longer contains
        that commit means history waveui merged was taken away: going on would
        build on it as if those tasks were still merged.
        """
        left = self.state.tip
        repository = self.integrator.repository
        if not left or left == tip or repository.resolve(left) is None:
            return  # nothing recorded, unchanged, or a record git cannot check (the journal is checked apart)
        if repository.is_ancestor(left, tip):
            self.notice(f"{self.integrator.branch} moved forward since the last run "
                        f"({left[:12]} -> {tip[:12]}); building on it", level="info")
            return
        raise EngineError(f"{self.integrator.branch} was rewritten since the last run: waveui left it at {left[:12]}, "
                          f"it is now at {tip[:12]}, which does not contain it; put it back with "
                          f"`git update-ref refs/heads/{self.integrator.branch} {left}` or start over with "
                          "`waveui run --fresh` (the branch is set aside, not deleted)")

    def claim(self) -> None:
        """Check the repository and take its controller lock, or raise EngineError; nothing is written when refused.

        :meth:`run` claims when this was not done first; a front end claims
        before it shows anything, so a refused run prints only its reason.
        """
        if self._claimed:
            return
        self._check_repository()
        try:
            self._controller.acquire()
        except ControllerBusy as error:
            raise EngineError(str(error)) from None
        self._claimed = True

    def _check_repository(self) -> None:
        """Refuse, before anything is written, a repository whose ``.waveui`` git would track or that leads elsewhere."""
        try:
            check_waveui_folder(self.repo_root)
            if self.git:
                from waveui.git.command import GitError, Repository

                try:
                    ensure_waveui_ignored(Repository.open(self.repo_root))
                except GitError as error:
                    raise EngineError(error.message) from None
        except PreflightError as error:
            raise EngineError(str(error)) from None

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
            tasks=self._task_infos(), conflicts=self._conflict_rows(), critical_length=self.plan.critical.length,
            resumed=resumed, tip=(self.integrator.expected or "") if self.integrator else "",
        ))
        for notice in self._early_notices:
            self.emit(notice)
        self._early_notices.clear()

    # ------------------------------------------------------------ what the journal may be trusted with

    async def _stop_leftover(self, task) -> None:
        """Stop whatever an earlier waveui left running for ``task``; its work is not merged."""
        logs = self.run_dir / "logs"
        for step in ("running", "verifying"):
            process = SupervisedStep.adopt(StepFiles.of(logs, task.id, step), lambda _values: None)
            if process is not None:
                await process.terminate(self.options.grace)
        if task.pid and task.pid_started:
            await asyncio.to_thread(proctable.kill_leftover, task.pid, task.pid_started)

    async def _stop_removed(self) -> None:
        """Stop the tasks removed from waveui.toml that an earlier waveui left running."""
        for task_id in self.edits.removed:
            task = self.state.tasks.get(task_id)
            if task is not None and task.state in SLOT_STATES | {"merging", "ready"}:
                await self._stop_leftover(task)

    def _notice(self, kind: str, message: str) -> None:
        self.notice(message, kind=kind)

    async def _reconcile(self, resumed: bool) -> None:
        """Believe the journal only as far as git and the epic file agree with it, and say where they did not."""
        shown = self.unreadable[:UNREADABLE_SHOWN]
        for line in shown:
            self._notice("journal", line.describe(self.repo_root))
        if len(self.unreadable) > len(shown):
            self._notice("journal", f"{len(self.unreadable) - len(shown)} more unreadable lines in "
                                    f"{self.unreadable[0].path.relative_to(self.repo_root)}")
        proven = await self._check_against_git() if self.git else set()
        if resumed and self.edits:
            await self._follow_edits()
        doubted = {task_id for line in self.unreadable for task_id in line.task_ids()}
        for task_id in sorted(doubted - proven):
            task = self.state.tasks.get(task_id)
            if task is not None and task.state == "done":
                self._set_state(task_id, "pending", reason="rerun: a journal line about it could not be read")
        self._index_readiness()  # tasks set back to pending: their dependents' counts changed

    async def _check_against_git(self) -> set[str]:
        """Tasks recorded done must be merged on the integration branch, and tasks merged there are done.

        Returns the tasks git shows merged. A ``done`` whose merge is missing
        (a forged line, a journal from another clone, a branch the user moved
        back) is set back to pending with the reason.
        """
        branch = self.integrator.branch
        work = await asyncio.to_thread(recovery.merged_on_branch, self.repo_root, branch, self.epic.base)
        tip = work.tip if work else await asyncio.to_thread(self.integrator.tip)
        merged = work.merged if work else {}
        claimed = {commit: task_id for task_id, commit in merged.items()}
        proven: set[str] = set()
        for task in list(self.state.tasks.values()):
            if task.id in merged:
                proven.add(task.id)
                if task.state != "done":
                    await self._stop_leftover(task)
                    how = "journal lost" if self.journal_lost else "the journal did not record it"
                    self._set_state(task.id, "done", commit=merged[task.id],
                                    reason=f"found merged on {branch} ({how})")
                continue
            if task.state != "done":
                continue
            if not task.commit:
                if not self.tasks[task.id].expect_changes:
                    continue  # done with nothing to merge, as its definition allows
                await self._stop_leftover(task)
                self._set_state(task.id, "pending", reason=f"rerun: recorded done, but no merge on {branch} holds it")
            elif claimed.get(task.commit, task.id) != task.id or not await asyncio.to_thread(
                    recovery.on_branch, self.repo_root, task.commit, tip):
                await self._stop_leftover(task)
                self._set_state(task.id, "pending",
                                reason=f"rerun: its merge commit {task.commit[:12]} is not on {branch}")
                self._notice("git", f"{task.id} was recorded done, but its merge commit {task.commit[:12]} "
                                    f"is not on {branch}: it runs again")
            else:
                proven.add(task.id)
        if self.journal_lost:
            found = sum(1 for task_id in merged if task_id in self.state.tasks)
            self._notice("git", f"journal lost: {found} task{'s' * (found != 1)} found merged on {branch}, "
                                f"the other {len(self.state.tasks) - found} run")
        return proven

    async def _follow_edits(self) -> None:
        """Rerun tasks whose definition changed (unless merged already) and say what the edit did."""
        edits = self.edits
        kept, rerun = [], []
        for task_id in edits.changed:
            task = self.state.tasks[task_id]
            if task.state == "done":
                kept.append(task_id)
                continue
            rerun.append(task_id)
            if task.state in SLOT_STATES | {"merging", "ready"}:
                await self._stop_leftover(task)
            self._set_state(task_id, "pending", reason="rerun: its definition in waveui.toml changed")
        parts = []
        if edits.removed:
            parts.append("removed " + ", ".join(edits.removed) + " (dropped from the run)")
        if edits.added:
            parts.append("added " + ", ".join(edits.added))
        if rerun:
            parts.append("changed " + ", ".join(rerun) + " (run again)")
        if kept:
            parts.append("changed " + ", ".join(kept) + " (already merged: stays done)")
        self._notice("epic", "waveui.toml was edited since the run was interrupted: " + "; ".join(parts))

    async def _recover_in_flight(self) -> None:
        """Adopt tasks still running under their supervisors, keep merged work, rerun the rest.

        Tasks that failed, conflicted or were cancelled get a new attempt too:
        running the epic again is how a user says "go on" after fixing things.
        """
        for task in list(self.state.tasks.values()):
            if task.state in STUCK_STATES:
                self._set_state(task.id, "pending", reason=f"resumed after it was {task.state}")
            elif task.state in ("preparing", "running", "verifying", "paused") and await self._adopt(task):
                continue
            elif task.state in SLOT_STATES or task.state in ("merging", "ready"):
                if task.pid and task.pid_started:
                    await asyncio.to_thread(proctable.kill_leftover, task.pid, task.pid_started)
                if task.state == "merging" and self.integrator and await asyncio.to_thread(
                        self.integrator.is_merged, self._branch(task.id)):
                    self._set_state(task.id, "done", reason="merged before waveui stopped")
                    continue
                if task.state == "merging" and self.integrator and await self._finish_merge(task):
                    continue
                self._set_state(task.id, "pending", reason="rerun: it was in flight when waveui stopped")

    async def _finish_merge(self, task) -> bool:
        """Merge work committed before waveui stopped; False if its branch no longer holds that commit.

        Its command already ran to the end: running it again would do the work twice.
        """
        branch = self._branch(task.id)
        tip = await asyncio.to_thread(self.integrator.branch_tip, branch)
        if not task.commit or tip != task.commit:
            return False
        self.locks.acquire(task.id)
        # A job of its own, as a merge in a live run: it may have to wait (a checked-out branch) and retry.
        self._jobs[task.id] = asyncio.create_task(self._merge_job(task.id, branch, list(task.files),
                                                                  list(task.undeclared)))
        return True

    async def _merge_job(self, task_id: str, branch: str, changed: list[str], undeclared: list[str]) -> None:
        try:
            await self._merge(task_id, branch, self._merge_message(task_id), changed, undeclared)
        finally:
            if self.state.tasks[task_id].state != "merging":
                self.locks.release(task_id)
            self._jobs.pop(task_id, None)
            self._wake.set()

    async def _merge_committed(self, task, step: str) -> bool:
        """Merge the commit a finished attempt left on its branch when its worktree is gone; False if there is none.

        The worktree is released as soon as the work is committed, so a waveui
        that stopped between committing and journaling it finds the step ended
        well, no worktree, and the commit on the task's branch: that commit is
        merged, and the command is not run again.
        """
        if step != self._steps(self.tasks[task.id])[-1][0] or not task.start_point:
            return False
        status = read_status(StepFiles.of(self.run_dir / "logs", task.id, step))
        if not status or status.get("exit_code") != 0 or status.get("timed_out"):
            return False
        branch = self._branch(task.id)
        tip = await asyncio.to_thread(self.integrator.branch_tip, branch)
        repository = self.integrator.repository
        if (tip is None or tip == task.start_point
                or not await asyncio.to_thread(repository.is_ancestor, task.start_point, tip)):
            return False
        changed = await asyncio.to_thread(self.integrator.changed_files, task.start_point, tip)
        undeclared = self.integrator.undeclared(changed, self.tasks[task.id].affected_files) \
            if self.tasks[task.id].affected_files else []
        self._set_state(task.id, "merging", commit=tip, files=changed, undeclared=undeclared,
                        reason="its commands had ended well before waveui stopped; merging the commit they left")
        return await self._finish_merge(self.state.tasks[task.id])

    async def _adopt(self, task) -> bool:
        """Follow a task a killed waveui left running (or that finished meanwhile) instead of rerunning it."""
        logs = self.run_dir / "logs"
        step = "running" if task.state == "preparing" else task.state  # it may have started unrecorded
        if step == "paused":
            step = "verifying" if StepFiles.of(logs, task.id, "verifying").pidfile.exists() else "running"
        command = dict(self._steps(self.tasks[task.id])).get(step) or ""
        process = SupervisedStep.adopt(StepFiles.of(logs, task.id, step), self._on_directive(task.id),
                                       read_line=agents.line_reader(command))
        if process is None:
            return False
        worktree = await asyncio.to_thread(self.pool.adopt, task.id) if self.pool else None
        if self.pool and worktree is None:
            if await self._merge_committed(task, step):
                return True
            await process.terminate(self.options.grace)  # its worktree is gone: the work cannot be trusted
            return False
        if task.state == "paused":
            process.pause()  # still stopped from before; now this waveui can resume it
        slot = self._free_slots.pop(0)
        self.locks.acquire(task.id)
        adoption = Adoption(step, process, worktree, task.start_point, task.attempt)
        self._jobs[task.id] = asyncio.create_task(self._run_task(task.id, slot, adoption))
        return True

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
                await self._stop_removed()  # before the new task list drops them from the state
            self._start_events(resumed)
            await self._settle_other_runs()
            self._index_readiness()
            await self._reconcile(resumed)
            if resumed:
                await self._recover_in_flight()
                if self.state.paused:  # a new session dispatches again
                    self.emit(RunPaused(t=self.clock(), paused=False))
            sampler = asyncio.create_task(self._sample_loop())
            await self._dispatch_loop()
            if self._jobs:
                await asyncio.gather(*self._jobs.values(), return_exceptions=True)
            self._finish()
        except OSError as error:
            # A folder made read-only, a file where a folder belongs, a full disk outside the journal:
            # one line naming the path and the cause; the journal so far keeps the run resumable.
            raise EngineError(describe(error, resumable=self.journal is not None)) from None
        finally:
            if sampler:
                sampler.cancel()
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
        if self._stopping:
            reason, ok = self._stopping, False
        else:
            ok = all(t.state == "done" for t in self.state.tasks.values())
            reason = "complete" if ok else "finished with tasks not done"
        self.emit(RunFinished(t=self.clock(), ok=ok, reason=reason))

    def _next_ready(self, wanted: int) -> list[str]:
        """Up to ``wanted`` tasks that may start now, best first (user priority, then plan rank).

        Candidates wait in a heap; entries left stale by a start or a
        priority change are dropped as they surface, so picking costs a few
        heap operations, not a sort of every waiting task.
        """
        tasks = self.state.tasks
        current_wave = None
        if self.epic.strategy == "waves":
            current_wave = min((t.wave for t in tasks.values() if t.state not in SETTLED), default=None)
        now = self.clock()
        picked, held_back = [], []
        while self._queue and len(picked) < wanted:
            entry = heapq.heappop(self._queue)
            neg_priority, _, task_id = entry
            if task_id not in self._candidates or -neg_priority != tasks[task_id].priority or task_id in picked:
                continue
            if ((current_wave is not None and tasks[task_id].wave != current_wave)
                    or self._retry_at.get(task_id, 0) > now or not self.locks.free_for(task_id)):
                held_back.append(entry)
                continue
            picked.append(task_id)
            held_back.append(entry)  # stays queued until it really starts
        for entry in held_back:
            heapq.heappush(self._queue, entry)
        return picked

    def _enqueue(self, task_id: str) -> None:
        task = self.state.tasks[task_id]
        heapq.heappush(self._queue, (-task.priority, task.rank, task_id))

    async def _dispatch_loop(self) -> None:
        while True:
            self._wake.clear()
            if self._stopping:
                return
            # jobs, not states: a job just created has not emitted its first state yet
            room = min(self.state.limit - len(self._jobs), len(self._free_slots))
            if not self.state.paused and room > 0:
                for task_id in self._next_ready(room):
                    if not self.locks.free_for(task_id):  # a task picked just before holds its file
                        continue
                    self.locks.acquire(task_id)
                    slot = self._free_slots.pop(0)
                    self._jobs[task_id] = asyncio.create_task(self._run_task(task_id, slot))
            if not self._jobs and self._settled():
                return
            timeout = self._next_retry_in()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except asyncio.TimeoutError:
                pass

    def _settled(self) -> bool:
        """Nothing left that could still run (whatever waits on a stuck task is blocked)."""
        return not self._retry_at and self._unsettled == 0

    def _next_retry_in(self) -> float | None:
        if not self._retry_at:
            return None
        return max(0.01, min(self._retry_at.values()) - self.clock())

    # ------------------------------------------------------------ one task

    def _merge_message(self, task_id: str) -> str:
        """The message of a task's commit and merge; the trailer lets a lost journal be rebuilt from git."""
        title = self.tasks[task_id].title
        return f"waveui: {task_id}" + (f" {title}" if title else "") + f"\n\n{TASK_TRAILER}: {task_id}\n"

    def _branch(self, task_id: str) -> str:
        return self.pool.branch_for(task_id) if self.pool else ""

    def _env(self, task: Task, attempt: int, workdir: Path) -> dict[str, str]:
        env = clean_env(os.environ)  # a GIT_DIR or GIT_INDEX_FILE of the caller's would aim the task's git elsewhere
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
        return env

    def _on_directive(self, task_id: str) -> Callable[[dict], None]:
        def record(values: dict) -> None:
            self.emit(TaskProgress(t=self.clock(), task=task_id, **values))
        return record

    async def _run_task(self, task_id: str, slot: int, adopted: Adoption | None = None) -> None:
        task = self.tasks[task_id]
        attempt = adopted.attempt if adopted else self.state.tasks[task_id].attempt + 1
        self._retry_at.pop(task_id, None)
        self._worktrees[task_id] = adopted.worktree if adopted else None
        try:
            start_point = adopted.start_point if adopted else ""
            if not adopted:
                self._set_state(task_id, "preparing", attempt=attempt, worker=slot)
                if self.pool:
                    start_point = await asyncio.to_thread(self.integrator.check_unmoved)
                    worktree = await asyncio.to_thread(self.pool.acquire, task_id, start_point)
                    self._worktrees[task_id] = worktree
                    # journaled before the command starts, so a task adopted after a crash knows its base
                    self._set_state(task_id, "preparing", attempt=attempt, worker=slot, worktree=str(worktree.path),
                                    start_point=start_point)
                    if not await self._setup(task, worktree, attempt):
                        return
            worktree = self._worktrees[task_id]
            workdir = worktree.path if worktree else self.repo_root
            outcome = await self._run_commands(task, attempt, slot, workdir, start_point, adopted)
            await self._guard_repository(task_id)
            if outcome is not None:
                await self._failed(task_id, outcome, attempt)
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
            left_running = self._detached and task_id in self._processes
            self._processes.pop(task_id, None)
            worktree = self._worktrees.pop(task_id, None)
            if worktree is not None and not left_running:  # a task left running keeps its worktree
                await asyncio.to_thread(self.pool.release, worktree, attempt)
                await self._note_own_refs()
            self._free_slots.append(slot)
            self._free_slots.sort()
            if self.state.tasks[task_id].state != "merging":
                self.locks.release(task_id)
            self._jobs.pop(task_id, None)
            self._wake.set()

    async def _settle_other_runs(self) -> None:
        """Tasks that other runs of this repository left running: stop them or leave them, and say which.

        Their worktrees are never reused while they run (the pool sees the
        supervisor's lock on the folder). ``--fresh`` abandons the earlier run
        of this epic, so its tasks are stopped (what they did stays in their
        slots and is kept under ``refs/waveui/`` before a slot is reused);
        another epic's run can be resumed later, so its tasks are left alone.
        """
        if not self.git:
            return
        steps = [step for step in await asyncio.to_thread(live_steps, self.repo_root)
                 if step.run_id != self.run_dir.name]
        if not steps:
            return
        mine, others = [], []
        for step in steps:
            events = await asyncio.to_thread(read_events, runs_dir(self.repo_root) / step.run_id / "events.jsonl")
            started = next((e for e in events if isinstance(e, RunStarted)), None)
            (mine if started is not None and started.epic == self.epic.name else others).append(step)
        for step in mine:
            process = SupervisedStep.adopt(StepFiles.of(runs_dir(self.repo_root) / step.run_id / "logs",
                                                        step.task_id, step.step), lambda _values: None)
            if process is not None:
                await process.terminate(self.options.grace)
        if mine:
            self.notice(f"stopped {', '.join(sorted({s.task_id for s in mine}))}, left running by the earlier run "
                        f"{mine[0].run_id} of {self.epic.name}; what they did is kept under refs/waveui/", level="info")
        for run_id in sorted({s.run_id for s in others}):
            tasks = sorted({s.task_id for s in others if s.run_id == run_id})
            where = sorted({s.cwd.name for s in others if s.run_id == run_id and s.cwd is not None})
            self.notice(f"{', '.join(tasks)} of run {run_id} still run" + (f" in {', '.join(where)}" if where else "")
                        + ": left alone (`waveui run` of that epic adopts them); their worktrees are not reused",
                        level="info")

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
        setup = await asyncio.to_thread(self.pool.ensure_setup, worktree, env)
        if self.epic.setup:
            self.emit(SetupRan(t=self.clock(), worktree=str(worktree.path), task=task.id,
                               seconds=setup.seconds if setup.ran else self.clock() - began,
                               skipped=not setup.ran, exit_code=setup.exit_code))
        if setup.exit_code != 0:
            await self._failed(task.id, f"setup failed (exit {setup.exit_code})", attempt)
            return False
        return True

    def _steps(self, task: Task) -> list[tuple[str, str | None]]:
        steps = [("running", task.command or self.epic.command)]
        verify = task.verify or self.epic.verify
        if verify:
            steps.append(("verifying", verify))
        return steps

    async def _run_commands(self, task: Task, attempt: int, slot: int, workdir: Path, start_point: str,
                            adopted: Adoption | None) -> str | None:
        """Run the task's command, then its verify, each under a supervisor; None on success, else why not."""
        env = self._env(task, attempt, workdir)
        logs = self.run_dir / "logs"
        timeout = task.timeout or self.epic.timeout
        steps = self._steps(task)
        if adopted:
            steps = steps[[name for name, _ in steps].index(adopted.step):]
        for state, command in steps:
            if not command:
                return "no command: set one on the task or in [epic]"
            if self._stopping or self.state.tasks[task.id].state == "cancelled":
                return "stopped"
            if adopted and state == adopted.step:
                process, reason = adopted.process, "adopted: it went on while waveui was away"
                adopted = None
            else:
                await self.journal.durable()  # its "preparing" (or retry) is on disk before anything starts
                process = await SupervisedStep.start(command, workdir, env, StepFiles.of(logs, task.id, state),
                                                     self._on_directive(task.id), timeout, self.options.grace,
                                                     read_line=agents.line_reader(command))
                reason = ""
            self._processes[task.id] = process
            self._set_state(task.id, "paused" if process.paused else state, attempt=attempt, worker=slot,
                            worktree=str(workdir) if self.pool else "", pid=process.pid,
                            pid_started=process.create_time, start_point=start_point, reason=reason)
            result = await process.wait()
            self._processes.pop(task.id, None)
            if self.state.tasks[task.id].state == "cancelled" or self._stopping:
                return "stopped"
            if result.timed_out:
                return f"timed out after {timeout:g}s"
            if result.exit_code != 0:
                what = "verify" if state == "verifying" else "command"
                how = f"killed by signal {result.signal}" if result.signal else f"exit {result.exit_code}"
                return f"{what} failed ({how})"
        return None

    async def _integrate(self, task: Task, worktree, start_point: str, attempt: int) -> None:
        """Commit the task's work on its branch, free its worktree, then merge (waiting if the merge must)."""
        message = self._merge_message(task.id)
        commit = await asyncio.to_thread(self.pool.commit, worktree, start_point, message)
        if commit is None:
            if task.expect_changes:
                await self._failed(task.id, "changed nothing (set expect_changes = false if that is right)",
                                   attempt, retry=False)
            else:
                self._set_state(task.id, "done", reason="no changes, as expected")
            return
        changed = await asyncio.to_thread(self.integrator.changed_files, start_point, commit)
        undeclared = self.integrator.undeclared(changed, task.affected_files) if task.affected_files else []
        self._set_state(task.id, "merging", commit=commit, files=changed, undeclared=undeclared)
        await self.journal.durable()  # resume must know a merge may have happened
        # The work is on its branch now: the worktree can go to the next task while the merge waits.
        self._worktrees.pop(task.id, None)
        await asyncio.to_thread(self.pool.release, worktree, attempt)
        await self._note_own_refs()
        await self._merge(task.id, worktree.branch, message, changed, undeclared)

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
            self._set_state(task_id, "done", commit=result.commit, files=changed, undeclared=undeclared,
                            reason="merged")
        else:
            self._set_state(task_id, "conflicted", files=result.conflicted,
                            reason=f"merge conflict in {', '.join(result.conflicted)}; branch {branch} kept")

    async def _sleep_unless_stopping(self, seconds: float) -> bool:
        """Sleep; True (at once) when the run is stopping meanwhile."""
        deadline = time.monotonic() + seconds
        while not self._stopping and time.monotonic() < deadline:
            await asyncio.sleep(min(0.2, deadline - time.monotonic()))
        return bool(self._stopping)

    async def _failed(self, task_id: str, reason: str, attempt: int, retry: bool = True) -> None:
        if reason == "stopped" or self.state.tasks[task_id].state == "cancelled":
            return
        task = self.tasks[task_id]
        allowed = task.retries if task.retries is not None else self.epic.retries
        if retry and attempt <= allowed and not self._stopping:
            delay = self.options.backoff * 2 ** (attempt - 1)
            self._retry_at[task_id] = self.clock() + delay
            self._set_state(task_id, "pending", reason=f"attempt {attempt} {reason}; retrying in {delay:g}s",
                            attempt=attempt)
        else:
            self._set_state(task_id, "failed", reason=reason, attempt=attempt)

    # ------------------------------------------------------------ sampling

    async def _sample_loop(self) -> None:
        await asyncio.to_thread(sample_machine)  # primes cpu_percent's baseline
        while True:
            await asyncio.sleep(self.options.sample_seconds)
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

    def retry(self, task_id: str) -> None:
        task = self.state.tasks.get(task_id)
        if task and task.state in ("failed", "conflicted", "cancelled", "blocked"):
            self._retry_at.pop(task_id, None)
            self._set_state(task_id, "pending", reason="retry requested")
            for dependent in self._all_dependents(task_id):
                if self.state.tasks[dependent].state == "blocked":
                    self._set_state(dependent, "pending", reason=f"{task_id} is being retried")

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
        self._retry_at.pop(task_id, None)
        self._set_state(task_id, "cancelled", reason="cancelled by user")
        process = self._processes.get(task_id)
        if process:
            asyncio.get_running_loop().create_task(process.terminate(self.options.grace))

    def set_priority(self, task_id: str, priority: int) -> None:
        if task_id in self.state.tasks:
            self.emit(PriorityChanged(t=self.clock(), task=task_id, priority=priority))
            if task_id in self._candidates:
                self._enqueue(task_id)  # the entry under the old priority is now stale
            self._wake.set()

    def stop(self, *, leave_resumable: bool) -> None:
        """End the session.

        With ``leave_resumable`` running tasks go on under their supervisors
        and the next `waveui run` adopts them; otherwise every task is stopped
        and the run ends.
        """
        self._stopping = "interrupted" if leave_resumable else "stopped"
        self._detached = leave_resumable
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
