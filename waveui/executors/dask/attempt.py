"""What travels between the controller and a Dask worker for one attempt: the job, and how it ended.

Both are plain data. The job names the code the worker runs with it (its
workspace, the agents' line readers) by reference, so the worker needs
waveui installed, never the controller's files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from waveui.executors import LineReader


class Worktree(Protocol):
    path: Path
    task_id: str


class SetupEnd(Protocol):
    ran: bool
    seconds: float
    exit_code: int


class Workspace(Protocol):
    """A worker's clone of the controller's repository and its worktrees (:class:`waveui.git.bundles.WorkerClone`)."""

    def tips(self) -> list[str]:
        """The newest commits the clone was sent: what the next bundle may leave out."""

    def receive(self, bundle: bytes | None, ref: str, start_point: str, remote: str = "") -> str | None:
        """Take in a bundle of ``ref`` (or fetch ``ref`` from ``remote``); why the start point is still missing."""

    def acquire(self, task_id: str, start_point: str) -> Worktree: ...

    def task_env(self, variables: dict[str, str], worktree: Worktree) -> dict[str, str]:
        """This machine's environment, cleaned as for any task, with the task's ``variables``."""

    def ensure_setup(self, worktree: Worktree, env: dict) -> SetupEnd: ...

    def commit(self, worktree: Worktree, start_point: str, message: str, keep_out: tuple[str, ...]) -> str | None: ...

    def release(self, worktree: Worktree, attempt: int, start_point: str,
                remote: str = "") -> tuple[str | None, bytes | None]:
        """Keep the attempt's work and free the worktree: the commit kept and a bundle of its ref (or Nones).

        With a ``remote`` the ref is pushed there, and no bundle comes back.
        """


# Runs the epic's setup to its end: (command, folder, env, log file, timeout) -> exit status.
SetupRunner = Callable[[str, Path, dict, "Path | None", "float | None"], int]
# (clone folder, epic, setup, setup inputs, setup runner) -> the workspace there
WorkspaceFactory = Callable[[Path, str, "str | None", list[str], SetupRunner], Workspace]


@dataclass(frozen=True)
class RemoteAttempt:
    """One attempt of a task, as a worker is sent it."""

    topic: str  # the Dask event topic its progress, logs and states are posted on
    repo_id: str  # names the worker's clone of this repository
    epic: str
    task_id: str
    attempt: int
    start_point: str
    bundle_ref: str  # the ref the bundle holds (the integration branch), or on ``git_remote``, the attempt's ref
    steps: tuple[tuple[str, str], ...]  # ("running", command), then ("verifying", command) if any
    variables: dict[str, str]  # the task's WAVEUI_* variables
    timeout: float | None
    grace: float
    message: str  # of the task's commit
    keep_out: tuple[str, ...]  # files the agent writes for itself, left out of the commit
    setup: str | None
    setup_inputs: tuple[str, ...]
    workspace: WorkspaceFactory
    line_reader: Callable[[str], LineReader]  # a step's command -> how to read its output lines
    control: str = ""  # the Dask Events "<control>-pause" and "<control>-stop" ask it to pause or stop
    git_remote: str = ""  # a git URL both sides reach: history goes through it instead of bundles


@dataclass
class RemoteOutcome:
    """How an attempt on a remote executor ended, as the engine takes it."""

    commit: str | None = None  # the task's commit, when its steps succeeded and it changed something
    reason: str | None = None  # why it failed; None when it succeeded
    bundle: Path | None = None  # a bundle holding ``kept`` under ``kept_ref``, on the controller's disk
    kept: str | None = None  # the attempt's work, whatever its outcome
    kept_ref: str = ""
    host: str = ""
    lost: bool = False  # its worker went away: nothing came back, the task runs again elsewhere
    stale: bool = False  # the worker's clone lacked what the bundle was built on
    tips: list[str] = field(default_factory=list)  # what the worker's clone holds now


# The kinds of event a worker posts on the attempt's topic, each a dict with "task", "attempt", "kind" and
# "worker" (the worker's address).
STARTED, SETUP, STEP, PROGRESS, LOG, USAGE = "started", "setup", "step", "progress", "log", "usage"
# A worker shutting down: it stops its attempts (LEAVING), then posts each one's work as a bundle (KEPT).
LEAVING, KEPT = "leaving", "kept"
