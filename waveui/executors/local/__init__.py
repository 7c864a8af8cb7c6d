"""The local executor: each step runs on this machine under a supervisor that outlives waveui.

:class:`LocalExecutor` implements :class:`waveui.executors.Executor` with the
supervisors of :mod:`waveui.executors.local.supervision`; a step's log, pid
file and status live in the run's ``logs`` folder, which is how a later
waveui finds and adopts it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from waveui.executors import LineReader, OnProgress, Sandbox
from waveui.executors.local import proctable, runner
from waveui.executors.local.launcher import Launcher
from waveui.executors.local.sandbox import sandboxed_command
from waveui.executors.local.runner import ExitResult
from waveui.executors.local.supervision import LiveStep, SupervisedStep, live_steps
from waveui.executors.steps import StepFiles, heading, read_status
from waveui.run.directives import read_directive
from waveui.run.journal import runs_dir


class LocalExecutor:
    """Runs one run's steps under supervisors, keeping their files in the run's logs folder."""

    remote = False

    def __init__(self, repo_root: Path, run_id: str):
        self.repo_root = repo_root
        self.logs = runs_dir(repo_root) / run_id / "logs"

    def _files(self, task_id: str, step: str) -> StepFiles:
        return StepFiles.of(self.logs, task_id, step)

    async def start(self, task_id: str, step: str, command: str, cwd: Path, env: dict[str, str],
                    timeout: float | None, grace: float, on_progress: OnProgress,
                    read_line: LineReader | None = None, sandbox: Sandbox | None = None) -> SupervisedStep:
        if sandbox is not None:
            command = sandboxed_command(command, sandbox, cwd, env)
        # Started once per process, in a thread: it takes a new interpreter's start.
        launcher = Launcher.running() or await asyncio.to_thread(Launcher.shared)
        # Without a reader of its own a step's output is read for ``::waveui`` lines. Every attempt's steps
        # go to one log: each starts under a line saying which it is.
        return await SupervisedStep.start(command, cwd, env, self._files(task_id, step), on_progress, timeout, grace,
                                          read_line=read_line or read_directive,
                                          heading=heading(env.get("WAVEUI_ATTEMPT", "1"), step), launcher=launcher)

    def adopt(self, task_id: str, step: str, on_progress: OnProgress,
              read_line: LineReader | None = None) -> SupervisedStep | None:
        return SupervisedStep.adopt(self._files(task_id, step), on_progress, read_line=read_line or read_directive)

    def began(self, task_id: str, step: str) -> bool:
        return self._files(task_id, step).pidfile.exists()

    def ended(self, task_id: str, step: str) -> ExitResult | None:
        status = read_status(self._files(task_id, step))
        if not status:
            return None
        return ExitResult.of_status(status)

    def live_steps(self) -> list[LiveStep]:
        return live_steps(self.repo_root)

    def stop_leftover(self, pid: int, create_time: float) -> bool:
        return proctable.kill_leftover(pid, create_time)

    def run_to_end(self, command: str, cwd: Path, env: dict[str, str], log_path: Path | None,
                   timeout: float | None = None, sandbox: Sandbox | None = None) -> int:
        if sandbox is not None:
            command = sandboxed_command(command, sandbox, cwd, env)
        return runner.run_to_end(command, cwd, env, log_path, timeout)
