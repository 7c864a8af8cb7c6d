"""The worker's side of an attempt: the task run in a worktree of this machine's own clone, its work sent back.

:func:`run_attempt` is what the controller submits to the cluster. It takes
the start point's history in from the bundle it was sent, borrows a worktree
of the clone kept under the worker's local directory, runs the epic's setup
(cached per worktree as on the controller), the command and its verify as
the local executor runs them (the same timeout, grace, ``::waveui`` lines
and agent readers), commits the work and returns the attempt's ref as a
bundle. States, progress, the log and the step's CPU and memory (with the
host's, for the adaptive rule) go to the controller as they happen, as Dask
events on the run's topic. The controller's repository and files
are never touched: everything arrives in the job and leaves in the result.

A worker that shuts down gracefully (SIGTERM to ``dask worker``, a cluster
scaling down) first stops its attempts and posts each one's work, as a
bundle, on the topic (:class:`SendWorkBack`): its result would leave with it.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path

import distributed

from waveui.executors import step_failure
from waveui.executors.dask.attempt import (KEPT, LEAVING, LOG, PROGRESS, SETUP, STARTED, STEP, USAGE, RemoteAttempt,
                                          Workspace)
from waveui.executors.local import runner
from waveui.executors.local.processes import ProcessSampler, sample_machine
from waveui.run.usage import Target

LOG_CHUNK = 64 * 1024  # the most of a log one event carries
LOG_SECONDS = 0.3  # how often a step's new output is sent
CONTROL_POLL_SECONDS = 1.0  # how often a step asks whether the controller wants it paused or stopped
USAGE_SECONDS = 2.0  # how often a step's CPU and memory, and its host's, are sent

LEAVE_SECONDS = 30.0  # the most a worker shutting down waits for its attempts to send their work back

_workspaces: dict[Path, Workspace] = {}  # one per clone in this worker process: its pool lends each worktree once
_workspaces_lock = threading.Lock()
_leaving = threading.Event()  # this worker is shutting down: its attempts stop and send back what they did
_running: set[Channel] = set()  # the attempts running in this worker process, until their work is posted
_running_changed = threading.Condition()


class SendWorkBack(distributed.WorkerPlugin):
    """Registered by the controller: a worker shutting down gracefully sends its attempts' work first.

    A plugin's teardown runs before the worker's connection to the scheduler
    closes, so what the attempts post still reaches the controller.
    """

    name = "waveui-send-work-back"

    async def teardown(self, worker: distributed.Worker) -> None:
        _leaving.set()
        with _running_changed:
            for channel in _running:
                channel.post(LEAVING)  # the controller waits for the work before it reruns the attempt
        await asyncio.to_thread(_wait_for_attempts, LEAVE_SECONDS)


def _wait_for_attempts(timeout: float) -> None:
    with _running_changed:
        _running_changed.wait_for(lambda: not _running, timeout)


class Channel:
    """The attempt's events to the controller, through the worker's connection to the scheduler."""

    def __init__(self, worker: distributed.Worker, job: RemoteAttempt):
        self.worker = worker
        self.job = job

    def post(self, kind: str, **fields) -> None:
        self.worker.log_event(self.job.topic, {"task": self.job.task_id, "attempt": self.job.attempt,
                                               "kind": kind, "worker": self.worker.address, **fields})


def run_attempt(job: RemoteAttempt, bundle: bytes | None) -> dict:
    """Run one attempt on this worker; how it ended, as a dict of plain values (see RemoteOutcome).

    ``bundle`` holds the start point's history this worker's clone lacks (None: it has it all).
    """
    worker = distributed.get_worker()
    channel = Channel(worker, job)
    host = socket.gethostname()
    channel.post(STARTED, host=host)
    with _running_changed:
        _running.add(channel)
    try:
        ended = asyncio.run(_attempt(job, bundle, worker, channel))
    except Exception as error:  # reported as the attempt's failure, never as a task error the controller cannot read
        ended = {"reason": f"internal error on {host}: {type(error).__name__}: {getattr(error, 'message', error)}"}
    with _running_changed:
        if _leaving.is_set():  # the result would leave with this worker: post the work now
            channel.post(KEPT, kept=ended.get("kept"), bundle=ended.get("bundle"))
        _running.discard(channel)
        _running_changed.notify_all()
    return {"host": host, **ended}


def _workspace(folder: Path, job: RemoteAttempt) -> Workspace:
    with _workspaces_lock:
        if folder not in _workspaces:
            _workspaces[folder] = job.workspace(folder, job.epic, job.setup, list(job.setup_inputs),
                                                runner.run_to_end)
        return _workspaces[folder]


async def _attempt(job: RemoteAttempt, bundle: bytes | None, worker: distributed.Worker, channel: Channel) -> dict:
    folder = Path(worker.local_directory) / "waveui" / job.repo_id
    workspace = await asyncio.to_thread(_workspace, folder, job)
    missing = await asyncio.to_thread(workspace.receive, bundle, job.bundle_ref, job.start_point, job.git_remote)
    if missing:
        return {"reason": missing, "stale": True, "tips": await asyncio.to_thread(workspace.tips)}
    worktree = await asyncio.to_thread(workspace.acquire, job.task_id, job.start_point)
    commit, reason = None, None
    try:
        env = workspace.task_env(job.variables, worktree)
        setup = await asyncio.to_thread(workspace.ensure_setup, worktree, env)
        if job.setup:
            channel.post(SETUP, ran=setup.ran, seconds=setup.seconds, exit_code=setup.exit_code)
        if setup.exit_code != 0:
            reason = f"setup failed (exit {setup.exit_code})"
        else:
            log = folder.parent / "logs" / f"{job.topic}.{job.task_id}.{job.attempt}.log"
            reason = await _steps(job, worktree.path, env, log, channel)
        if reason is None:
            commit = await asyncio.to_thread(workspace.commit, worktree, job.start_point, job.message, job.keep_out)
    except Exception as error:  # a git failure committing (a task that left its worktree elsewhere, say)
        reason = str(getattr(error, "message", error))
    finally:
        kept, bundle = await asyncio.to_thread(workspace.release, worktree, job.attempt, job.start_point,
                                               job.git_remote)
    return {"commit": commit, "reason": reason, "kept": kept, "bundle": bundle,
            "tips": await asyncio.to_thread(workspace.tips)}


async def _steps(job: RemoteAttempt, cwd: Path, env: dict[str, str], log: Path, channel: Channel) -> str | None:
    """Run the command, then its verify; None when both succeeded, else why not."""
    log.parent.mkdir(parents=True, exist_ok=True)
    log.touch()
    for step, command in job.steps:
        offset = log.stat().st_size
        process = await runner.start_task(command, cwd, env, log,
                                          lambda values: channel.post(PROGRESS, values=values),
                                          read_line=job.line_reader(command))
        channel.post(STEP, step=step)
        following = [asyncio.create_task(_send_log(log, offset, channel)),
                     asyncio.create_task(_follow_controls(job, process)),
                     asyncio.create_task(_send_usage(process, channel))]
        try:
            end = await process.wait(timeout=job.timeout, grace=job.grace)
        finally:
            for task in following:
                task.cancel()
        await _send_log(log, offset, channel, once=True)
        if following[1].done() and not following[1].cancelled():
            return "stopped"
        failure = step_failure(step, end, job.timeout)
        if failure:
            return failure
    return None


async def _send_log(log: Path, offset: int, channel: Channel, once: bool = False) -> None:
    """Post what the step writes to its log from ``offset`` on, as it grows; ``once``: what is there now."""
    sent = offset
    while True:
        with log.open("rb") as f:
            f.seek(sent)
            while chunk := f.read(LOG_CHUNK):
                channel.post(LOG, data=chunk, offset=sent)
                sent += len(chunk)
        if once:
            return
        await asyncio.sleep(LOG_SECONDS)


async def _send_usage(process: runner.TaskProcess, channel: Channel) -> None:
    """Post the step's CPU and memory (its process tree's, as the app shows a local task's) and its host's."""
    sampler, step = ProcessSampler(), [Target(channel.job.task_id, process.pid, None)]
    await asyncio.to_thread(sampler.sample, step)  # the first CPU figure is measured from here
    while True:
        await asyncio.sleep(USAGE_SECONDS)
        used = (await asyncio.to_thread(sampler.sample, step)).get(channel.job.task_id)
        host = await asyncio.to_thread(sample_machine)
        if used is not None:
            channel.post(USAGE, cpu=used.cpu, memory=used.memory, host_cpu=host.cpu,
                         host_memory_available=host.memory_available)


async def _follow_controls(job: RemoteAttempt, process: runner.TaskProcess) -> None:
    """Pause, resume or stop the step as the controller asks (a user's pause or cancel, the run stopping).

    The step stops too when this worker shuts down. Returns only once the step was stopped.
    """
    stop, pause = distributed.Event(job.control + "-stop"), distributed.Event(job.control + "-pause")
    while not _leaving.is_set() and not await asyncio.to_thread(stop.is_set):
        paused = await asyncio.to_thread(pause.is_set)
        if paused and not process.paused:
            process.pause()  # its timeout's clock stops with it, as on the controller
        elif process.paused and not paused:
            process.resume()
        await asyncio.sleep(CONTROL_POLL_SECONDS)
    if process.paused:
        process.resume()
    await process.terminate(grace=job.grace)
