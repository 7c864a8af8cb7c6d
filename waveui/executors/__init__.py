"""The executor protocol: where a task's steps run, as the engine sees it.

The engine decides *what* runs and when; an executor decides *where*. An
executor is built for one run (from the repository and the run id) and
starts a task's steps (``running``, then ``verifying``), adopts the steps an
earlier waveui of the same run left behind, and runs the epic's setup. Each
kind of executor is one module implementing :class:`Executor`; the local one,
which runs each step under a supervisor that outlives waveui, is
:class:`waveui.executors.local.LocalExecutor`.

Methods named blocking may wait on processes or files: the engine calls them
in a thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

OnProgress = Callable[[dict], None]  # given the values of each ``::waveui`` line a step prints
LineReader = Callable[[bytes], "dict | None"]  # one line of a step's output -> its progress values, if any


@dataclass(frozen=True)
class Sandbox:
    """How a step is confined: all it may write is its working folder and these paths; the rest is read-only."""

    network: bool = True
    writable: tuple[Path, ...] = ()  # besides the working folder: the agent's own folders, ``sandbox_writable``
    # (a private copy, the path where the step sees it): the task's git admin folder, so that its git commands
    # write to copies that waveui throws away, never to the repository's refs, config or objects
    private: tuple[tuple[Path, Path], ...] = ()
    visible: tuple[Path, ...] = ()  # read-only paths the step must see through its private /tmp (the repository)


class StepEnd(Protocol):
    """How a step ended."""

    exit_code: int  # the shell's exit status; 128 + N when killed by signal N
    timed_out: bool
    signal: int | None  # the signal that ended the shell, if one did
    seconds: float  # running time, paused time not counted
    error: str  # why the step could not run, when it could not; "" otherwise


class StepHandle(Protocol):
    """One step of a task, started or adopted: control it and wait for its end."""

    pid: int  # the step's shell, as journaled so that a later waveui can tell it from a reused pid
    create_time: float

    @property
    def paused(self) -> bool: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    async def terminate(self, grace: float) -> StepEnd:
        """Stop the step (``grace`` seconds to end before it is killed) and return how it ended."""

    async def wait(self) -> StepEnd:
        """Follow the step, reporting its progress, until it ends."""


class LiveStep(Protocol):
    """A step still running in some run of the repository."""

    run_id: str
    task_id: str
    step: str  # "running" or "verifying"
    cwd: Path | None  # the folder it runs in, when known


class Executor(Protocol):
    """Runs the steps of one run's tasks.

    A ``remote`` executor runs whole attempts elsewhere (see
    :mod:`waveui.executors.dask`): the engine hands it an attempt and gets a
    commit back instead of starting steps in worktrees of its own. Its other
    methods still run what the controller runs itself (a conflict's resolver).
    """

    remote: bool

    async def start(self, task_id: str, step: str, command: str, cwd: Path, env: dict[str, str],
                    timeout: float | None, grace: float, on_progress: OnProgress,
                    read_line: LineReader | None = None, sandbox: Sandbox | None = None) -> StepHandle:
        """Start ``command`` (``/bin/sh -c``) as the task's ``step``; ``read_line`` reads its output lines.

        With ``sandbox`` the step runs confined as it says, or not at all.
        """

    def adopt(self, task_id: str, step: str, on_progress: OnProgress,
              read_line: LineReader | None = None) -> StepHandle | None:
        """Follow a step an earlier waveui started in this run: if it still runs or has ended; else None."""

    def began(self, task_id: str, step: str) -> bool:
        """Whether the task's ``step`` was started in this run (by any waveui)."""

    def ended(self, task_id: str, step: str) -> StepEnd | None:
        """How the task's ``step`` ended in this run; None while it runs or if it never did."""

    def live_steps(self) -> list[LiveStep]:
        """The steps still running in every run of the repository; blocking."""

    def stop_leftover(self, pid: int, create_time: float) -> bool:
        """Stop what is left of a step whose shell was ``pid``, created at ``create_time``; blocking.

        Returns whether anything was found to stop.
        """

    def run_to_end(self, command: str, cwd: Path, env: dict[str, str], log_path: Path | None,
                   timeout: float | None = None, sandbox: Sandbox | None = None) -> int:
        """Run a command (the epic's setup) to its end, output to ``log_path``; its exit status; blocking."""


def step_failure(step: str, end: StepEnd, timeout: float | None) -> str | None:
    """Why a step that ended so fails its task, in the words a run shows; None when it succeeded."""
    if end.timed_out:
        return f"timed out after {timeout:g}s"
    if end.exit_code != 0:
        what = "verify" if step == "verifying" else "command"
        if end.error:  # it never ran, or was stopped for want of a pid file: the exit code says nothing
            return f"{what} failed: {end.error}"
        how = f"killed by signal {end.signal}" if end.signal else f"exit {end.exit_code}"
        return f"{what} failed ({how})"
    return None


ExecutorFactory = Callable[[Path, str], Executor]  # (repository root, run id) -> that run's executor
