"""Taking over an interrupted run: what its journal may be trusted with, and the work it left in flight.

Everything here runs only when a run starts: :class:`Resume` finds the run
to resume (or refuses an edit it cannot follow), checks the journal against
git and the epic file, stops what earlier runs left running that must not go
on, adopts steps still running under their executor, and merges work that was
committed before waveui stopped. It acts through the engine it belongs to:
its states, its jobs, its executor. The pure checks it relies on are in
:mod:`waveui.engine.recovery`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from waveui import agents
from waveui.engine import recovery
from waveui.engine.errors import EngineError, RunAlreadyComplete
from waveui.engine.ready import STUCK_STATES
from waveui.engine.recovery import TASK_TRAILER, BranchWork, EpicEdits
from waveui.executors import StepHandle
from waveui.run.events import Event, RunFinished, RunStarted
from waveui.run.journal import UnreadableLine, list_runs, read_events, runs_dir
from waveui.run.state import SLOT_STATES

if TYPE_CHECKING:
    from waveui.engine.engine import Engine

UNREADABLE_SHOWN = 10  # unreadable journal lines reported one by one; past that, one line counts the rest


@dataclass
class Adoption:
    """A step an earlier waveui started, followed from where it is."""

    step: str  # "running" or "verifying"
    process: StepHandle | None  # None for an attempt a remote executor holds
    worktree: object | None
    start_point: str
    attempt: int


class Resume:
    """The engine's part that takes over the run an earlier waveui left."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.unreadable: list[UnreadableLine] = []  # lines of the resumed run's journal that gave no event
        self.edits = EpicEdits()  # how waveui.toml changed since that run last started
        self.branch_work: BranchWork | None = None  # the integration branch as git tells it, before this run
        self.journal_lost = False  # no journal, but merged work of this epic on its integration branch

    def resumable_run(self) -> tuple[Path, list[Event]] | None:
        """The latest run of this epic that did not complete, with its events; None when there is none."""
        engine = self.engine
        for run_dir in reversed(list_runs(engine.repo_root)):
            unreadable: list[UnreadableLine] = []
            events = read_events(run_dir / "events.jsonl", unreadable)
            started = next((e for e in events if isinstance(e, RunStarted)), None)
            if started is None or started.epic != engine.epic.name:
                continue  # another epic's run (a renamed epic is another epic)
            self.unreadable = unreadable
            # Every run that did not complete is picked up again: nothing done is redone.
            ends = [e for e in events if isinstance(e, (RunFinished, RunStarted))]
            last = ends[-1] if ends else None
            if isinstance(last, RunFinished) and last.ok:
                raise RunAlreadyComplete(f"every task of {engine.epic.name} is already done and merged "
                                         f"(run {run_dir.name}); use --fresh to run the epic again")
            return run_dir, events
        return None

    def read_branch(self) -> None:
        """Read the integration branch's merged work as git tells it, before anything is written."""
        engine = self.engine
        if not engine.git:
            return
        from waveui.git.worktrees import integration_branch

        try:
            self.branch_work = recovery.merged_on_branch(engine.repo_root, integration_branch(engine.epic.name),
                                                         engine.epic.base)
        except (recovery.GitError, ValueError):
            self.branch_work = None  # not a repository, or a name no branch may have: _open says which

    def check_edits(self, run_dir: Path, events: list[Event]) -> None:
        """Refuse an edit of waveui.toml the interrupted run cannot follow; note the ones it can."""
        engine = self.engine
        starts = [e for e in events if isinstance(e, RunStarted)]
        recorded = starts[-1]  # the task list as the run last knew it
        why = recovery.unhonourable_edit(recorded, engine.epic, self.branch_work is not None)
        if why:
            raise EngineError(f"cannot resume run {run_dir.name}: in waveui.toml, {why} since it was interrupted; "
                              "undo that edit to finish the run, or use --fresh to start over "
                              "(the integration branch is set aside, not deleted)")
        self.edits = recovery.compare_epic(recorded, engine.epic)

    def check_lost_journal(self) -> None:
        """A new run while the integration branch holds merged work: its journal was deleted."""
        engine = self.engine
        work = self.branch_work
        if work is None or work.commits == 0:
            return
        if not any(task_id in engine.tasks for task_id in work.merged):
            raise EngineError(f"waveui/{engine.epic.name} already has {work.commits} commit"
                              f"{'s' * (work.commits != 1)} that no run of this epic recorded (no "
                              f"{TASK_TRAILER} trailer names one of its tasks); use --fresh to start over "
                              "(that branch is set aside, not deleted)")
        self.journal_lost = True

    def accept_branch_since_last_run(self, tip: str) -> None:
        """Build on an integration branch moved forward since the last run (a merge by hand); refuse a rewrite.

        The last run left it at ``state.tip``. A tip that no longer contains
        that commit means history waveui merged was taken away: going on would
        build on it as if those tasks were still merged.
        """
        engine = self.engine
        left = engine.state.tip
        repository = engine.integrator.repository
        if not left or left == tip or repository.resolve(left) is None:
            return  # nothing recorded, unchanged, or a record git cannot check (the journal is checked apart)
        if repository.is_ancestor(left, tip):
            engine.notice(f"{engine.integrator.branch} moved forward since the last run "
                          f"({left[:12]} -> {tip[:12]}); building on it", level="info")
            return
        raise EngineError(f"{engine.integrator.branch} was rewritten since the last run: waveui left it at "
                          f"{left[:12]}, it is now at {tip[:12]}, which does not contain it; put it back with "
                          f"`git update-ref refs/heads/{engine.integrator.branch} {left}` or start over with "
                          "`waveui run --fresh` (the branch is set aside, not deleted)")

    async def _stop_leftover(self, task) -> None:
        """Stop whatever an earlier waveui left running for ``task``; its work is not merged."""
        engine = self.engine
        for step in ("running", "verifying"):
            process = engine.executor.adopt(task.id, step, lambda _values: None)
            if process is not None:
                await process.terminate(engine.options.grace)
        if task.pid and task.pid_started:
            await asyncio.to_thread(engine.executor.stop_leftover, task.pid, task.pid_started)

    async def stop_removed(self) -> None:
        """Stop the tasks removed from waveui.toml that an earlier waveui left running."""
        engine = self.engine
        for task_id in self.edits.removed:
            task = engine.state.tasks.get(task_id)
            if task is not None and task.state in SLOT_STATES | {"merging", "ready"}:
                await self._stop_leftover(task)

    def _notice(self, kind: str, message: str) -> None:
        self.engine.notice(message, kind=kind)

    async def reconcile(self, resumed: bool) -> None:
        """Believe the journal only as far as git and the epic file agree with it, and say where they did not."""
        engine = self.engine
        shown = self.unreadable[:UNREADABLE_SHOWN]
        for line in shown:
            self._notice("journal", line.describe(engine.repo_root))
        if len(self.unreadable) > len(shown):
            self._notice("journal", f"{len(self.unreadable) - len(shown)} more unreadable lines in "
                                    f"{self.unreadable[0].path.relative_to(engine.repo_root)}")
        proven = await self._check_against_git() if engine.git else set()
        if resumed and self.edits:
            await self._follow_edits()
        doubted = {task_id for line in self.unreadable for task_id in line.task_ids()}
        for task_id in sorted(doubted - proven):
            task = engine.state.tasks.get(task_id)
            if task is not None and task.state == "done":
                engine._set_state(task_id, "pending", reason="rerun: a journal line about it could not be read")
        engine.ready.index(engine.state)  # tasks set back to pending: their dependents' counts changed

    async def _check_against_git(self) -> set[str]:
        """Tasks recorded done must be merged on the integration branch, and tasks merged there are done.

        Returns the tasks git shows merged. A ``done`` whose merge is missing
        (a forged line, a journal from another clone, a branch the user moved
        back) is set back to pending with the reason.
        """
        engine = self.engine
        branch = engine.integrator.branch
        work = await asyncio.to_thread(recovery.merged_on_branch, engine.repo_root, branch, engine.epic.base)
        tip = work.tip if work else await asyncio.to_thread(engine.integrator.tip)
        merged = work.merged if work else {}
        claimed = {commit: task_id for task_id, commit in merged.items()}
        proven: set[str] = set()
        for task in list(engine.state.tasks.values()):
            if task.id in merged:
                proven.add(task.id)
                if task.state != "done":
                    await self._stop_leftover(task)
                    how = "journal lost" if self.journal_lost else "the journal did not record it"
                    engine._set_state(task.id, "done", commit=merged[task.id],
                                      reason=f"found merged on {branch} ({how})")
                continue
            if task.state != "done":
                continue
            if not task.commit:
                if not engine.tasks[task.id].expect_changes:
                    continue  # done with nothing to merge, as its definition allows
                await self._stop_leftover(task)
                engine._set_state(task.id, "pending",
                                  reason=f"rerun: recorded done, but no merge on {branch} holds it")
            elif claimed.get(task.commit, task.id) != task.id or not await asyncio.to_thread(
                    recovery.on_branch, engine.repo_root, task.commit, tip):
                await self._stop_leftover(task)
                engine._set_state(task.id, "pending",
                                  reason=f"rerun: its merge commit {task.commit[:12]} is not on {branch}")
                self._notice("git", f"{task.id} was recorded done, but its merge commit {task.commit[:12]} "
                                    f"is not on {branch}: it runs again")
            else:
                proven.add(task.id)
        if self.journal_lost:
            found = sum(1 for task_id in merged if task_id in engine.state.tasks)
            self._notice("git", f"journal lost: {found} task{'s' * (found != 1)} found merged on {branch}, "
                                f"the other {len(engine.state.tasks) - found} run")
        return proven

    async def _follow_edits(self) -> None:
        """Rerun tasks whose definition changed (unless merged already) and say what the edit did."""
        engine = self.engine
        edits = self.edits
        kept, rerun = [], []
        for task_id in edits.changed:
            task = engine.state.tasks[task_id]
            if task.state == "done":
                kept.append(task_id)
                continue
            rerun.append(task_id)
            if task.state in SLOT_STATES | {"merging", "ready"}:
                await self._stop_leftover(task)
            engine._set_state(task_id, "pending", reason="rerun: its definition in waveui.toml changed")
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

    async def recover_in_flight(self) -> None:
        """Adopt tasks still running under their supervisors, keep merged work, rerun the rest.

        Tasks that failed, conflicted or were cancelled get a new attempt too:
        running the epic again is how a user says "go on" after fixing things.
        """
        engine = self.engine
        for task in list(engine.state.tasks.values()):
            if task.state in STUCK_STATES:
                if task.state == "conflicted":  # rerun from the new tip, never beside its rivals
                    engine.conflicts.rerun_apart(task.id, task.files)
                engine._set_state(task.id, "pending", reason=f"resumed after it was {task.state}")
            elif task.state in ("preparing", "running", "verifying", "paused") and await self._adopt(task):
                continue
            elif task.state == "merging" and not task.commit and await self._adopt(task):
                continue  # its commands had ended, its work was not committed yet: committed now
            elif task.state in SLOT_STATES or task.state in ("merging", "ready"):
                if task.pid and task.pid_started:
                    await asyncio.to_thread(engine.executor.stop_leftover, task.pid, task.pid_started)
                # Without a commit of its attempt its branch is still where it started: merged, but of nothing.
                if task.state == "merging" and task.commit and engine.integrator and await asyncio.to_thread(
                        engine.integrator.is_merged, engine._branch(task.id)):
                    engine._set_state(task.id, "done", reason="merged before waveui stopped")
                    continue
                if task.state == "merging" and engine.integrator and await self._finish_merge(task):
                    continue
                engine._set_state(task.id, "pending", reason="rerun: it was in flight when waveui stopped")

    async def _finish_merge(self, task) -> bool:
        """Merge work committed before waveui stopped; False if its branch no longer holds that commit.

        Its command already ran to the end: running it again would do the work twice.
        """
        engine = self.engine
        branch = engine._branch(task.id)
        tip = await asyncio.to_thread(engine.integrator.branch_tip, branch)
        if not task.commit or tip != task.commit:
            return False
        engine.locks.acquire(task.id)
        # A job of its own, as a merge in a live run: it may have to wait (a checked-out branch) and retry.
        engine._jobs[task.id] = asyncio.create_task(self._merge_job(task.id, branch, list(task.files),
                                                                    list(task.undeclared)))
        return True

    async def _merge_job(self, task_id: str, branch: str, changed: list[str], undeclared: list[str]) -> None:
        """Merge a committed task, as a job of the engine's, then free its lock and wake the dispatch."""
        engine = self.engine
        try:
            await engine._merge(task_id, branch, engine._merge_message(task_id), changed, undeclared)
        finally:
            if engine.state.tasks[task_id].state != "merging":
                engine.locks.release(task_id)
            engine._jobs.pop(task_id, None)
            engine._wake.set()

    async def _merge_committed(self, task, step: str) -> bool:
        """Merge the commit a finished attempt left on its branch when its worktree is gone; False if there is none.

        The worktree is released as soon as the work is committed, so a waveui
        that stopped between committing and journaling it finds the step ended
        well, no worktree, and the commit on the task's branch: that commit is
        merged, and the command is not run again.
        """
        engine = self.engine
        if step != engine._steps(engine.tasks[task.id])[-1][0] or not task.start_point:
            return False
        status = engine.executor.ended(task.id, step)
        if not status or status.exit_code != 0 or status.timed_out:
            return False
        branch = engine._branch(task.id)
        tip = await asyncio.to_thread(engine.integrator.branch_tip, branch)
        if tip == task.start_point:  # never committed: another run may have kept its work when it reused the slot
            tip = await asyncio.to_thread(engine.pool.take_leftovers, task.id, task.start_point) or tip
        repository = engine.integrator.repository
        if (tip is None or tip == task.start_point
                or not await asyncio.to_thread(repository.is_ancestor, task.start_point, tip)):
            return False
        changed = await asyncio.to_thread(engine.integrator.changed_files, task.start_point, tip)
        undeclared = engine.integrator.undeclared(changed, engine.tasks[task.id].affected_files) \
            if engine.tasks[task.id].affected_files else []
        engine._set_state(task.id, "merging", commit=tip, files=changed, undeclared=undeclared,
                          reason="its commands had ended well before waveui stopped; merging the commit they left")
        return await self._finish_merge(engine.state.tasks[task.id])

    async def _adopt(self, task) -> bool:
        """Follow a task a killed waveui left running (or that finished meanwhile) instead of rerunning it."""
        engine = self.engine
        if engine.executor.remote:  # an attempt held on the cluster is followed there, by the name journaled
            return bool(task.remote) and self._follow(task, task.state, None, None)
        step = "running" if task.state == "preparing" else task.state  # it may have started unrecorded
        if step in ("paused", "merging"):  # merging: its last step ended, its work not yet committed
            step = "verifying" if engine.executor.began(task.id, "verifying") else "running"
        command = dict(engine._steps(engine.tasks[task.id])).get(step) or ""
        process = engine.executor.adopt(task.id, step, engine._on_directive(task.id),
                                        read_line=agents.line_reader(command))
        if process is None:
            return False
        worktree = await asyncio.to_thread(engine.pool.adopt, task.id) if engine.pool else None
        if engine.pool and worktree is None:
            if await self._merge_committed(task, step):
                return True
            await process.terminate(engine.options.grace)  # its worktree is gone: the work cannot be trusted
            return False
        if task.state == "paused":
            process.pause()  # still stopped from before; now this waveui can resume it
        return self._follow(task, step, process, worktree)

    def _follow(self, task, step: str, process: StepHandle | None, worktree) -> bool:
        """Take a slot and a job for a task adopted in flight; True."""
        engine = self.engine
        slot = engine._free_slots.pop(0)
        engine._holding[task.id] = slot
        engine.locks.acquire(task.id)
        adoption = Adoption(step, process, worktree, task.start_point, task.attempt)
        engine._jobs[task.id] = asyncio.create_task(engine._run_task(task.id, slot, adoption))
        return True

    async def settle_other_runs(self) -> None:
        """Tasks that other runs of this repository left running: stop them or leave them, and say which.

        Their worktrees are never reused while they run (the pool sees the
        supervisor's lock on the folder). ``--fresh`` abandons the earlier run
        of this epic, so its tasks are stopped (what they did stays in their
        slots and is kept under ``refs/waveui/`` before a slot is reused);
        another epic's run can be resumed later, so its tasks are left alone.
        """
        engine = self.engine
        if not engine.git:
            return
        steps = [step for step in await asyncio.to_thread(engine.executor.live_steps)
                 if step.run_id != engine.run_dir.name]
        if not steps:
            return
        mine, others = [], []
        for step in steps:
            events = await asyncio.to_thread(read_events, runs_dir(engine.repo_root) / step.run_id / "events.jsonl")
            started = next((e for e in events if isinstance(e, RunStarted)), None)
            (mine if started is not None and started.epic == engine.epic.name else others).append(step)
        for step in mine:
            their_executor = engine.options.executor(engine.repo_root, step.run_id)
            process = their_executor.adopt(step.task_id, step.step, lambda _values: None)
            if process is not None:
                await process.terminate(engine.options.grace)
        if mine:
            engine.notice(f"stopped {', '.join(sorted({s.task_id for s in mine}))}, left running by the earlier run "
                          f"{mine[0].run_id} of {engine.epic.name}; what they did is kept under refs/waveui/",
                          level="info")
        for run_id in sorted({s.run_id for s in others}):
            tasks = sorted({s.task_id for s in others if s.run_id == run_id})
            where = sorted({s.cwd.name for s in others if s.run_id == run_id and s.cwd is not None})
            engine.notice(f"{', '.join(tasks)} of run {run_id} still run"
                          + (f" in {', '.join(where)}" if where else "")
                          + ": left alone (`waveui run` of that epic adopts them); their worktrees are not reused",
                          level="info")
