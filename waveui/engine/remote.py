"""Attempts that run on another machine (a remote executor, Dask's): the engine's side of them.

The engine hands such an executor a whole attempt instead of running steps
in worktrees of its own; what comes back is a commit in a bundle (or, with
``[epic] dask_remote``, on a git remote both sides reach). Here the attempt
is described (the start point's history as a bundle, or pushed to the
remote; the task's variables), followed (the states, progress, setup and
log lines the worker posts become the run's events and log, as a local
attempt's would, and its CPU and memory the app's figures), and taken in:
the bundle is verified and fetched (or the remote's ref fetched) into the
attempt's ref and the task's branch, and the commit is merged as any other. The executor is built
only for a run that asks for it, so ``distributed`` is imported then only.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from waveui import agents
from waveui.engine.resume import Adoption
from waveui.executors import ExecutorFactory
from waveui.git.bundles import BundleRefused, WorkerClone, bundle_bytes, fetch_bundle, fetch_ref, push_commit
from waveui.git.command import GitError
from waveui.git.names import attempt_ref
from waveui.git.worktrees import keep_branch_tip
from waveui.run.events import AttemptKept, LimitChanged, SetupRan
from waveui.run.journal import ensure_private_dir
from waveui.run.usage import Usage

if TYPE_CHECKING:
    from waveui.engine.engine import Engine

# Variables that name places on the controller: a worker has its own worktree, and no access to the brief file.
CONTROLLER_ONLY = ("WAVEUI_WORKTREE", "WAVEUI_PREVIOUS_ATTEMPT_FILE")


def dask_executor(address: str) -> ExecutorFactory:
    """Builds a run's executor on the Dask cluster at ``address`` (``tcp://HOST:PORT``, or ``local:N``)."""

    def build(repo_root: Path, run_id: str):
        from waveui.executors.dask import DaskExecutor  # distributed is imported by runs on a cluster only

        return DaskExecutor(repo_root, run_id, address)
    return build


async def connect(engine: Engine) -> None:
    """Connect the run's remote executor; its capacity becomes the run's limit. EngineError if it cannot."""
    from waveui.engine.errors import EngineError
    from waveui.executors.dask import SchedulerGone

    executor = engine.executor
    cap = engine.options.max_parallel  # `--max-parallel`: the user's cap, below whatever the cluster offers
    try:
        await executor.open(lambda total, why: _capacity(engine, min(total, cap or total), why), engine._halt)
    except SchedulerGone as error:
        raise EngineError(str(error)) from None
    # The first limit, before the run's first event; attempts a resumed run left on the cluster each keep a slot.
    in_flight = sum(1 for task in engine.state.tasks.values() if task.remote)
    engine.options.max_parallel = max(min(executor.capacity, cap or executor.capacity), in_flight, 1)
    if engine.epic.adaptive:  # a rule for this machine says nothing of the cluster: it applies per worker host
        executor.host_limits = (engine.epic.cpu_high, engine.epic.min_free_memory)
        engine.epic = dataclasses.replace(engine.epic, adaptive=False)
        engine.notice("adaptive applies per worker host on a cluster: a worker whose host is over cpu_high, or has "
                      "less than min_free_memory free, gets no new task until it is not", level="info")


def _capacity(engine: Engine, total: int, why: str) -> None:
    """The cluster's capacity changed: it is the run's limit now, with slot numbers enough for it."""
    if engine.journal is None or total == engine.state.limit:
        return  # the first reading (the run starts with it as its limit), or a change the cap hides
    highest = max(engine._free_slots + [slot for slot in _slots_in_use(engine)], default=-1)
    engine._free_slots.extend(range(highest + 1, total))  # numbers for the slots of workers that joined
    engine.emit(LimitChanged(t=engine.clock(), limit=total, reason=why))
    engine._wake.set()


def _slots_in_use(engine: Engine) -> list[int]:
    return [task.worker for task in engine.state.tasks.values() if task.worker is not None]


class RemoteStep:
    """An attempt running on a worker, controlled as the engine controls a step: paused, resumed, stopped."""

    pid = None  # none of this machine's: nothing here may be signalled or sampled for it
    create_time = None

    def __init__(self, engine: Engine):
        self.engine = engine
        self.key = ""  # the cluster's name for the attempt, once submitted
        self.paused = False

    def pause(self) -> None:
        self._set_paused(True)

    def resume(self) -> None:
        self._set_paused(False)

    def _set_paused(self, paused: bool) -> None:
        if self.key:
            self.paused = paused
            asyncio.get_running_loop().create_task(self.engine.executor.pause(self.key, paused))

    async def terminate(self, grace: float) -> None:
        if self.key:
            await self.engine.executor.stop(self.key)


async def run_attempt(engine: Engine, task_id: str, slot: int, attempt: int, adopted: Adoption | None) -> None:
    """Run (or, after a restart, follow) one attempt on the remote executor, then take its work in and merge it."""
    from waveui.executors.dask import SchedulerGone
    from waveui.executors.dask.attempt import RemoteAttempt

    task = engine.tasks[task_id]
    handle = RemoteStep(engine)
    engine._processes[task_id] = handle
    follower = _Follower(engine, task_id, attempt, slot)
    try:
        if adopted:
            start_point = adopted.start_point
            handle.key = follower.key = engine.state.tasks[task_id].remote
            outcome = await engine.executor.follow(handle.key, task_id, attempt, follower)
        else:
            engine._set_state(task_id, "preparing", attempt=attempt, worker=slot, reason=engine._order_note(task_id))
            start_point = await asyncio.to_thread(engine.integrator.check_unmoved)
            follower.start_point = start_point
            await asyncio.to_thread(engine._brief_previous, task_id, attempt)
            variables = {key: value for key, value in engine._env(task, attempt, Path(".")).items()
                         if key.startswith("WAVEUI_") and key not in CONTROLLER_ONLY}
            git_remote = engine.epic.dask_remote or ""
            job = RemoteAttempt(
                topic=engine.executor.topic, repo_id=engine.executor.repo_id, epic=engine.epic.name,
                task_id=task_id, attempt=attempt, start_point=start_point, git_remote=git_remote,
                bundle_ref=attempt_ref(engine.epic.name, task_id, attempt) if git_remote else engine.integrator.ref,
                steps=tuple((step, command) for step, command in engine._steps(task) if command),
                variables=variables, timeout=task.timeout or engine.epic.timeout, grace=engine.options.grace,
                message=engine._merge_message(task_id),
                keep_out=agents.keep_out(task.command or engine.epic.command or ""),
                setup=engine.epic.setup, setup_inputs=tuple(engine.epic.setup_inputs), workspace=WorkerClone,
                line_reader=agents.line_reader)
            if not job.steps:
                await engine._failed(task_id, "no command: set one on the task or in [epic]", attempt)
                return
            repository = engine.integrator.repository

            def submitted(key: str) -> None:
                handle.key = follower.key = key
                engine._set_state(task_id, "preparing", attempt=attempt, worker=slot, start_point=start_point,
                                  remote=key, reason="sent to the cluster")

            def start_history(known: list[str]) -> bytes | None:
                """The bundle the worker is sent; with a remote, nothing: the start point waits there for it."""
                if git_remote:
                    push_commit(repository, git_remote, start_point, job.bundle_ref)
                    return None
                return bundle_bytes(repository, job.bundle_ref, known)

            await engine.journal.durable()  # its "preparing" is on disk before anything starts
            outcome = await engine.executor.run_attempt(job, start_history, follower, submitted)
    except SchedulerGone as gone:
        engine._halt(str(gone))
        return
    except GitError as error:  # the start point could not be pushed to the remote
        await engine._failed(task_id, f"cannot send its start point through dask_remote: {error.message}", attempt)
        return
    finally:
        engine._processes.pop(task_id, None)
        engine.remote_usage.pop(task_id, None)
    await _take_in(engine, task_id, attempt, start_point, outcome)


async def _take_in(engine: Engine, task_id: str, attempt: int, start_point: str, outcome) -> None:
    """Fetch the attempt's work from its bundle, then fail, rerun or merge the task as the outcome says."""
    task = engine.tasks[task_id]
    if outcome.kept and (outcome.bundle is not None or engine.epic.dask_remote):
        ref = attempt_ref(engine.epic.name, task_id, attempt)
        try:
            await asyncio.to_thread(_fetch_work, engine, outcome, ref)
        except GitError as refused:
            await engine._failed(task_id, f"its work cannot be taken in: {refused.message}", attempt)
            return
        engine.emit(AttemptKept(t=engine.clock(), task=task_id, attempt=attempt, ref=ref, commit=outcome.kept,
                                base=start_point))
        if outcome.commit:
            branch = engine._branch(task_id)
            await asyncio.to_thread(_point_branch, engine, task_id, branch, outcome.commit)
        await engine._note_own_refs()
    view = engine.state.tasks[task_id]
    if view.state == "cancelled" or engine._stopping:
        return
    if outcome.lost:
        where = f" on {view.host}" if view.host else ""
        engine._set_state(task_id, "pending", attempt=attempt,
                          reason=f"attempt {attempt} lost{where}: {outcome.reason}; it runs again elsewhere")
        return
    why = engine._over_budget.get(task_id) or outcome.reason or engine._agent_outcome(task_id)
    if why is not None:
        await engine._failed(task_id, why, attempt, retry=task_id not in engine._over_budget)
        return
    await engine._merge_commit(task, outcome.commit, start_point, attempt)


def _fetch_work(engine: Engine, outcome, ref: str) -> None:
    """Fetch the attempt's work into ``ref``, from its bundle or from the remote; GitError if it does not apply."""
    repository = engine.integrator.repository
    if outcome.bundle is not None:
        try:
            fetch_bundle(repository, outcome.bundle, {ref: ref})
        except BundleRefused as refused:
            raise BundleRefused(f"it came back in a bundle that does not apply: {refused.message}") from None
        outcome.bundle.unlink(missing_ok=True)
        return
    fetch_ref(repository, engine.epic.dask_remote, {ref: ref})
    if repository.resolve(ref) != outcome.kept:  # the remote's ref moved since the worker pushed it
        raise GitError(f"{ref} on {engine.epic.dask_remote} is not the commit its worker pushed")


def _point_branch(engine: Engine, task_id: str, branch: str, commit: str) -> None:
    """Move the task's branch to the commit that came back, keeping what it held before."""
    repository = engine.integrator.repository
    keep_branch_tip(repository, engine.epic.name, task_id, branch, commit)
    repository.run("update-ref", "-m", "waveui: task commit from the cluster", f"refs/heads/{branch}", commit)


class _Follower:
    """Turns what a worker posts about one attempt into the run's events and log."""

    def __init__(self, engine: Engine, task_id: str, attempt: int, slot: int):
        self.engine = engine
        self.task_id = task_id
        self.attempt = attempt
        self.slot = slot
        self.key = ""
        self.start_point = engine.state.tasks[task_id].start_point
        self.host = ""
        self.on_progress = engine._on_directive(task_id)
        self.log = ensure_private_dir(engine.run_dir / "logs") / f"{task_id}.log"

    def __call__(self, message: dict) -> None:
        from waveui.executors.dask.attempt import LOG, PROGRESS, SETUP, STARTED, STEP, USAGE

        engine, kind = self.engine, message.get("kind")
        view = engine.state.tasks[self.task_id]
        if view.attempt != self.attempt or view.state not in ("preparing", "running", "verifying", "paused"):
            return  # a late event of an attempt that has ended
        if kind == STARTED:
            self.host = str(message.get("host", ""))
            engine._set_state(self.task_id, "preparing", attempt=self.attempt, worker=self.slot, host=self.host,
                              start_point=self.start_point, remote=self.key, reason=f"on {self.host}")
        elif kind == STEP:
            engine._set_state(self.task_id, str(message.get("step")), attempt=self.attempt, worker=self.slot,
                              host=self.host or view.host,
                              start_point=self.start_point, remote=self.key)
        elif kind == PROGRESS and isinstance(message.get("values"), dict):
            self.on_progress(message["values"])
        elif kind == SETUP:
            engine.emit(SetupRan(t=engine.clock(), worktree=self.host, task=self.task_id,
                                 seconds=float(message.get("seconds", 0.0)), skipped=not message.get("ran"),
                                 exit_code=int(message.get("exit_code", 0))))
        elif kind == USAGE:
            engine.remote_usage[self.task_id] = Usage(float(message.get("cpu", 0.0)), int(message.get("memory", 0)))
        elif kind == LOG and isinstance(message.get("data"), bytes):
            with self.log.open("ab") as f:
                f.write(message["data"])
