"""Which of a run's steps are sandboxed, and what each may write: the engine's side of ``sandbox``.

A task runs sandboxed with ``sandbox = true`` (its own, else the epic's), or
with ``"auto"`` where bubblewrap can run. Each of its steps (setup, command,
verify, resolver) then gets a :class:`~waveui.executors.Sandbox`: writable
are its worktree, private copies of the worktree's git data
(:mod:`waveui.git.sandbox`, deleted when the step ends), the folders its
agent writes for itself (``SANDBOX_WRITABLE`` of its module) and
``sandbox_writable``; the repository and the home folder stay visible
through the step's private ``/tmp``.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from waveui import agents
from waveui.core.spec import Epic, Task
from waveui.executors import Sandbox
from waveui.executors.local.sandbox import INSTALL, unavailable, writable_paths
from waveui.git import sandbox as private
from waveui.git.command import Repository
from waveui.run.journal import ensure_private_dir

SCRATCH = Path(".waveui") / "sandbox"  # under the repository: each step's private git data while it runs


def refusal(epic: Epic) -> str | None:
    """Why the epic cannot run, one line naming the file and line: a task needs a sandbox bubblewrap cannot give."""
    if not epic.sandbox_line:
        return None
    why = unavailable()
    if why is None:
        return None
    return (f"{epic.path}:{epic.sandbox_line}: sandbox = true, but {why}; {INSTALL}, "
            "or set sandbox = \"auto\" to run unsandboxed where it cannot run")


class Sandboxing:
    """The sandbox of each step of a run, and the private git data made for it."""

    def __init__(self, epic: Epic, repo_root: Path):
        self.epic = epic
        self.repo_root = repo_root
        self.scratch = repo_root / SCRATCH
        self._cannot: str | None = None
        self._private: dict[str, private.PrivateGit] = {}  # by task id, while a step of it runs

    def check(self) -> str | None:
        """Probe bubblewrap once, if any task asks for a sandbox; the warning to give when "auto" falls back."""
        modes = {self.epic.sandbox_of(task)[0] for task in self.epic.tasks}
        if not modes & {True, "auto"}:
            return None
        self._cannot = unavailable()
        if self._cannot is None or "auto" not in modes:
            return None
        return f"tasks with sandbox = \"auto\" run unsandboxed: {self._cannot}; {INSTALL}"

    def wanted(self, task: Task) -> bool:
        mode = self.epic.sandbox_of(task)[0]
        return mode is True or (mode == "auto" and self._cannot is None)

    async def prepare(self, task: Task, command: str, workdir: Path, env: dict[str, str],
                      repository: Repository | None) -> Sandbox | None:
        """The sandbox of the task's next step in ``workdir``, its private git data made; None if unsandboxed."""
        if not self.wanted(task):
            return None
        _mode, network, extra = self.epic.sandbox_of(task)
        home = Path(env.get("HOME") or os.path.expanduser("~"))
        writable = await asyncio.to_thread(writable_paths, (*agents.sandbox_writable(command), *extra), home)
        binds: tuple[tuple[Path, Path], ...] = ()
        if repository is not None:
            await asyncio.to_thread(ensure_private_dir, self.scratch)
            made = await asyncio.to_thread(private.private_git, repository, workdir, self.scratch)
            if made is not None:
                self._private[task.id] = made
                binds = made.binds
        shown = [self.repo_root, home] if repository is None else [self.repo_root, repository.common_dir, home]
        # The programs the step may run: a virtualenv or a tool folder under /tmp on its PATH would be
        # hidden by the private /tmp (a command "not found" in the sandbox only).
        # A .../bin folder is shown with its parent: a virtualenv's programs need its lib/ too.
        shown += [Path(folder).parent if Path(folder).name == "bin" else Path(folder)
                  for folder in env.get("PATH", "").split(os.pathsep) if _under_tmp(folder)]
        return Sandbox(network=network, writable=writable, private=binds, visible=tuple(dict.fromkeys(shown)))

    async def discard(self, task_id: str) -> None:
        """The step of the task ended: delete its private git data."""
        made = self._private.pop(task_id, None)
        if made is not None:
            await asyncio.to_thread(private.discard, made.folder)


def _under_tmp(folder: str) -> bool:
    """Whether a PATH entry lies in /tmp, which a sandboxed step sees as a fresh, empty folder."""
    path = Path(folder)
    return path.is_absolute() and path.parts[1:2] == ("tmp",)
