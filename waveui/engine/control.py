"""The control API a user interface calls to steer a run.

The engine implements it; the read-only watcher implements nothing (every
action there is refused before it gets here). Each call returns at once: its
effect arrives later as events, like everything else a reader sees.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from waveui.run.usage import Usage


class RunControl(Protocol):
    # CPU and memory of each task running on another machine (a Dask worker), by task id, as last reported.
    remote_usage: dict[str, Usage]

    def pause_task(self, task_id: str) -> None:
        """Stop a running task's processes (SIGSTOP); its clock stops too."""

    def resume_task(self, task_id: str) -> None:
        """Continue a paused task (SIGCONT)."""

    def pause_run(self) -> None:
        """Start no new task; running ones go on."""

    def resume_run(self) -> None:
        """Dispatch again."""

    def retry(self, task_id: str, from_attempt: int | None = None) -> None:
        """Run a failed, conflicted or cancelled task again; its blocked dependents wait for it.

        With ``from_attempt`` the new attempt starts from that attempt's kept
        work instead of the integration tip.
        """

    async def prepare_resolution(self, task_id: str) -> Path:
        """A worktree at the integration tip with a conflicted task's work merged, markers in place.

        Raises EngineError (one line) when the task is not conflicted or its work is not kept.
        """

    async def accept_resolution(self, task_id: str) -> str:
        """Merge what the user resolved in that worktree; "" once merged, else why it stays conflicted."""

    def cancel(self, task_id: str) -> None:
        """Stop a task for good (its dependents become blocked)."""

    def set_priority(self, task_id: str, priority: int) -> None:
        """Reorder the ready queue at once: higher priority starts sooner."""

    @property
    def idle(self) -> bool:
        """Nothing runs or merges and nothing waiting could start: quitting now loses nothing."""

    def stop(self, *, leave_resumable: bool) -> None:
        """End the session: stop every task, or leave the run for `waveui run` to resume."""
