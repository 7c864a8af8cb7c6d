"""When a task's merge conflicts: who changed the files, then the epic's ``on_conflict``, or the user by hand.

- ``"stop"``: the task stays conflicted; its work is kept under its attempt's ref.
- ``"retry"``: it runs again from the new integration tip, told the files and
  where its previous attempt is (:mod:`waveui.engine.attempts`). Tasks rerun for
  a conflict in the same files never run side by side: they would only conflict
  again, each paying its agent's whole cost again.
- ``"resolve"``: the ``resolve`` command runs in a worktree at the tip with the
  task's commit merged and the markers in place (:mod:`waveui.git.resolution`);
  no marker may remain, the task's ``verify`` must pass, then the merge is published.
- By hand: the app (or ``waveui resolve``) asks for the same worktree, the
  user resolves and commits there, and the merge is published. ``waveui
  resolve`` beside a live run cannot move the integration branch itself (the
  run would take that for a foreign move and stop), so it leaves the merge
  under the task's ``resolved`` ref and the run collects it.

A task whose work the integration branch already holds (merged by hand outside
waveui) is done: it is never run again.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from waveui import agents
from waveui.engine.errors import EngineError
from waveui.engine.recovery import merge_message
from waveui.git.command import Repository
from waveui.git.merge import GitError, RefMoved
from waveui.git.names import resolved_ref
from waveui.git.resolution import Resolution, check_resolution, prepare_resolution, remove_resolution
from waveui.run.journal import read_events
from waveui.run.state import replay

if TYPE_CHECKING:
    from waveui.engine.engine import Engine

MAX_CONFLICT_RERUNS = 3  # a task that keeps conflicting after this many reruns is left for the user


class Conflicts:
    """The engine's handling of conflicted merges; one per run."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.reruns: dict[str, int] = defaultdict(int)
        self.files: dict[str, list[str]] = {}  # tasks rerun for a conflict, and its files, until they merge
        self.resolutions: dict[str, Resolution] = {}  # prepared for the user, by task

    # ------------------------------------------------------------ blame

    def blame(self, task_id: str, files: list[str]) -> str:
        """The conflict's reason: its files, every task that changed them, and which of them did not declare them."""
        engine = self.engine
        declared = engine.integrator.undeclared
        others, undeclared = [], []
        for other in engine.state.tasks.values():
            if other.id == task_id or other.state != "done":
                continue
            touched = [f for f in files if f in other.files]
            if touched:
                others.append(other.id)
                if other.affected_files and declared(touched, other.affected_files):
                    undeclared.append(other.id)  # a task that declares nothing promised nothing
        text = f"merge conflict in {', '.join(files)}"
        if others:
            text += f" with {', '.join(others)}"
        if undeclared:
            text += f" ({', '.join(undeclared)} did not declare {'it' if len(files) == 1 else 'them'})"
        mine = engine.state.tasks[task_id].affected_files
        if mine and declared(files, mine):
            text += f"; {task_id} did not declare {'it' if len(files) == 1 else 'all of them'} either"
        return text

    # ------------------------------------------------------------ on_conflict

    async def handle(self, task_id: str, conflicted: list[str], attempt: int) -> None:
        """A task's merge conflicted: keep it conflicted, rerun it or resolve it, as its epic says."""
        engine = self.engine
        policy, command = engine.epic.conflict_policy(engine.tasks[task_id])
        reason = self.blame(task_id, conflicted)
        kept = engine.state.tasks[task_id].kept_attempts()
        where = f"; attempt {kept[-1].number} kept at {kept[-1].ref}" if kept else ""
        if policy == "resolve" and command:
            why = await self._resolve_with(task_id, command, attempt)
            if not why:
                return
            reason += f"; the resolver did not settle it: {why}"
        elif policy == "retry" and self.reruns[task_id] < MAX_CONFLICT_RERUNS and not engine._stopping:
            self.reruns[task_id] += 1
            self.rerun_apart(task_id, conflicted)
            engine._set_state(task_id, "pending", reason=f"{reason}; rerunning from the new tip{where}")
            return
        elif policy == "retry":
            reason += f"; rerun {self.reruns[task_id]} times already"
        self.files.pop(task_id, None)
        engine._set_state(task_id, "conflicted", files=conflicted, reason=reason + where)

    def rerun_apart(self, task_id: str, files: list[str]) -> None:
        """A task reruns for a conflict in ``files``: told them, and never run beside others rerun for the same."""
        self.files[task_id] = files
        for other, theirs in self.files.items():
            if other != task_id and set(theirs) & set(files):
                self.engine.locks.exclude(task_id, other)

    def merged(self, task_id: str) -> None:
        self.files.pop(task_id, None)

    def conflict_files(self, task_id: str) -> list[str]:
        return self.files.get(task_id, [])

    async def _resolve_with(self, task_id: str, command: str, attempt: int) -> str:
        """Run the resolver on the conflicted merge, check it, verify it and publish it; "" once merged."""
        engine = self.engine
        task = engine.tasks[task_id]
        try:
            resolution = await self._prepare(task_id)
        except (EngineError, GitError) as error:
            return str(error)
        env = engine._env(task, attempt, resolution.path)
        env["WAVEUI_CONFLICT_FILES"] = "\n".join(resolution.conflicted)
        steps = [("resolving", command)]
        verify = task.verify or engine.epic.verify
        if verify:
            steps.append(("verifying", verify))
        for step, step_command in steps:
            if step == "verifying":
                # A resolver command edits the files; marking them resolved is waveui's to do.
                await asyncio.to_thread(_stage_all, engine.integrator.repository, resolution)
                merge, how = await asyncio.to_thread(check_resolution, engine.integrator.repository, resolution,
                                                     engine._merge_message(task_id))
                if merge is None:
                    return how
            engine._set_state(task_id, "merging", reason=f"{step} the conflict in "
                                                         f"{', '.join(resolution.conflicted)}")
            await engine.journal.durable()
            sandbox = await engine._sandbox(task, step_command, resolution.path, env)
            try:
                process = await engine.executor.start(task_id, step, step_command, resolution.path, env,
                                                      task.timeout or engine.epic.timeout, engine.options.grace,
                                                      engine._on_directive(task_id),
                                                      read_line=agents.line_reader(step_command), sandbox=sandbox)
                engine._processes[task_id] = process
                result = await process.wait()
            finally:
                engine._processes.pop(task_id, None)
                await engine.sandboxing.discard(task_id)
            if engine._stopping:
                return "waveui stopped"
            if result.timed_out or result.exit_code != 0:
                what = "the resolver" if step == "resolving" else "verify of the resolved merge"
                how = "timed out" if result.timed_out else f"exit {result.exit_code}"
                return f"{what} failed ({how}); its worktree {resolution.path} is left as it is"
        if not verify:
            await asyncio.to_thread(_stage_all, engine.integrator.repository, resolution)
        merge, how = await asyncio.to_thread(check_resolution, engine.integrator.repository, resolution,
                                             engine._merge_message(task_id))
        if merge is None:
            return how
        return await self.publish(task_id, merge, "resolved by `resolve`")

    # ------------------------------------------------------------ by hand

    async def _prepare(self, task_id: str) -> Resolution:
        engine = self.engine
        view = engine.state.tasks.get(task_id)
        if engine.integrator is None:
            raise EngineError("conflicts are resolved in git worktrees; this epic runs with isolation = \"none\"")
        if view is None:
            raise EngineError(f"no task {task_id!r} in this run")
        if not view.commit:
            raise EngineError(f"{task_id} has no commit to merge")
        tip = await asyncio.to_thread(engine.integrator.check_unmoved)
        resolution = await asyncio.to_thread(prepare_resolution, engine.integrator.repository, engine.epic.name,
                                             task_id, tip, view.commit)
        self.resolutions[task_id] = resolution
        return resolution

    async def prepare_by_hand(self, task_id: str) -> Path:
        view = self.engine.state.tasks.get(task_id)
        if view is None or view.state != "conflicted":
            raise EngineError(f"{task_id} is not in conflict" + (f" (it is {view.state})" if view else ""))
        try:
            return (await self._prepare(task_id)).path
        except GitError as error:
            raise EngineError(error.message) from None

    async def accept_by_hand(self, task_id: str) -> str:
        resolution = self.resolutions.get(task_id)
        if resolution is None:
            return f"no resolution of {task_id} was prepared"
        merge, how = await asyncio.to_thread(check_resolution, self.engine.integrator.repository, resolution,
                                             self.engine._merge_message(task_id))
        if merge is None:
            return how
        return await self.publish(task_id, merge, "resolved by hand")

    async def publish(self, task_id: str, merge: str, how: str) -> str:
        """Merge a resolved merge commit into the integration branch; "" once merged, else why not."""
        engine = self.engine
        try:
            result = await asyncio.to_thread(engine.integrator.merge_resolved, merge, engine._merge_message(task_id))
        except RefMoved as error:
            engine._halt(error.message)
            return error.message
        except GitError as error:
            return error.message
        if not result.ok:
            return f"merging the resolution conflicts again, with work merged meanwhile, in {', '.join(result.conflicted)}"
        self.files.pop(task_id, None)
        resolution = self.resolutions.pop(task_id, None)
        engine.locks.release(task_id)
        engine._set_state(task_id, "done", commit=result.commit, reason=f"merged: {how}")
        engine._unblock_dependents(task_id)
        if resolution is not None:
            try:
                await asyncio.to_thread(remove_resolution, engine.integrator.repository, resolution)
            except GitError:
                pass  # something left there (an untracked file): the folder stays for the user to look at
        return ""

    # ------------------------------------------------------------ found in git

    async def collect(self, merged_outside: bool) -> None:
        """Merge what ``waveui resolve`` left for conflicted tasks; with ``merged_outside``, also settle the
        tasks whose work the integration branch already holds (a check of its own per task: at resume only)."""
        engine = self.engine
        if engine.integrator is None:
            return
        repository = engine.integrator.repository
        for view in list(engine.state.tasks.values()):
            if view.state != "conflicted" or not view.commit:
                continue
            ref = resolved_ref(engine.epic.name, view.id)
            resolved = await asyncio.to_thread(repository.resolve, ref)
            if resolved and await asyncio.to_thread(repository.is_ancestor, view.commit, resolved):
                why = await self.publish(view.id, resolved, "resolved by hand with `waveui resolve`")
                if why:
                    engine.notice(f"{view.id}: the resolution left by `waveui resolve` was not merged: {why}",
                                  task=view.id, kind="conflict")
                else:  # merged: the integration branch points at it now
                    await asyncio.to_thread(repository.run, "update-ref", "-d", ref, resolved)
                continue
            if merged_outside and view.start_point and await asyncio.to_thread(
                    engine.integrator.already_applied, view.commit, view.start_point):
                engine._set_state(view.id, "done", reason=f"its work is already on {engine.integrator.branch} "
                                                          "(merged outside waveui)")
                engine._unblock_dependents(view.id)


def _stage_all(repository: Repository, resolution: Resolution) -> None:
    """Stage what a resolver left in the resolution's worktree (verified to be it) while the merge is under way."""
    checkout = repository.linked_worktree(resolution.path)
    merging = checkout.run("rev-parse", "--verify", "--quiet", "MERGE_HEAD", ok=(0, 1)) if checkout else None
    if merging is not None and merging.out.strip() == resolution.commit:
        checkout.run("add", "-A", "--", ".")


# ------------------------------------------------------------ `waveui resolve`, beside the run or after it


def open_resolution(repo_root: Path, run_dir: Path, task_id: str) -> tuple[Resolution, str]:
    """The resolution worktree of a conflicted task of the run in ``run_dir``, and the task's merge message.

    Raises EngineError (one line) when the task is not in conflict.
    """
    state = replay(read_events(run_dir / "events.jsonl"))
    view = state.tasks.get(task_id)
    if view is None:
        known = ", ".join(sorted(t.id for t in state.tasks.values() if t.state == "conflicted")) or "none"
        raise EngineError(f"no task {task_id!r} in run {run_dir.name} (tasks in conflict: {known})")
    if view.state != "conflicted" or not view.commit:
        raise EngineError(f"{task_id} is not in conflict (it is {view.state})")
    try:
        repository = Repository.open(repo_root)
        tip = repository.resolve(f"refs/heads/{state.branch}")
        if tip is None:
            raise EngineError(f"the integration branch {state.branch} is gone")
        resolution = prepare_resolution(repository, state.epic, task_id, tip, view.commit)
    except GitError as error:
        raise EngineError(error.message) from None
    return resolution, merge_message(task_id, view.title)


def hand_over(repo_root: Path, resolution: Resolution, message: str) -> tuple[str | None, str]:
    """Check what the user did in the worktree; a clean merge is left under the task's ``resolved`` ref.

    The run merges it: the live one within seconds, else the next ``waveui run``.
    Returns the merge commit (None when not resolved) and how, or why not.
    """
    repository = Repository.open(repo_root)
    merge, how = check_resolution(repository, resolution, message)
    if merge is not None:
        repository.run("update-ref", "-m", "waveui: resolved by hand", resolved_ref(resolution.epic,
                                                                                  resolution.task_id), merge)
    return merge, how
