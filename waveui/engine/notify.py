"""The ``[epic] notify`` command: run through the shell, apart from the run, when something needs the user.

A notification is a side show: it runs in its own session with no input and
its output thrown away, the run never waits for it (except, at the very end,
up to its timeout, so the last one is not cut off), one that hangs is killed
after :data:`NOTIFY_TIMEOUT_SECONDS`, and one that fails is only a notice.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable

NOTIFY_TIMEOUT_SECONDS = 10.0

# What ``$WAVEUI_EVENT`` can be.
TASK_FAILED = "task_failed"
TASK_CONFLICTED = "task_conflicted"
TASK_DENIED = "task_denied"
BUDGET_REACHED = "budget_reached"
RUN_FINISHED = "run_finished"


class Notifier:
    """Runs ``command`` for each event handed to :meth:`send`; ``on_trouble`` hears of one that failed."""

    def __init__(self, command: str | None, on_trouble: Callable[[str], None],
                 timeout: float = NOTIFY_TIMEOUT_SECONDS):
        self.command = command
        self.on_trouble = on_trouble
        self.timeout = timeout
        self._pending: set[asyncio.Task] = set()

    def send(self, event: str, message: str, env: dict[str, str]) -> None:
        """Start the command for ``event`` (with the task's ``WAVEUI_*`` variables in ``env``); returns at once."""
        if not self.command:
            return
        env = dict(env, WAVEUI_EVENT=event, WAVEUI_MESSAGE=message)
        env.setdefault("WAVEUI_TASK_ID", "")
        job = asyncio.get_running_loop().create_task(self._run(event, env))
        self._pending.add(job)
        job.add_done_callback(self._pending.discard)

    async def _run(self, event: str, env: dict[str, str]) -> None:
        try:
            process = await asyncio.create_subprocess_shell(
                self.command, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL, start_new_session=True)  # its own group: killed as one
        except OSError as error:
            self.on_trouble(f"notify command for {event} could not start: {error.strerror or error}")
            return
        try:
            code = await asyncio.wait_for(process.wait(), self.timeout)
        except asyncio.TimeoutError:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            await process.wait()
            self.on_trouble(f"notify command for {event} still ran after {self.timeout:g}s and was killed")
            return
        if code != 0:
            self.on_trouble(f"notify command for {event} failed (exit {code})")

    async def drain(self) -> None:
        """Wait for the notifications still running: each ends by itself or by its timeout."""
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
