"""Shared pieces for the UI tests: a feed the test can push into, a recording control, a settled app.

Not a conftest.py: the suite's root already has one that tests import by name,
and a second file of that name would make ``import conftest`` ambiguous. A
test module that starts the app imports :func:`isolated_user_themes` (an
autouse fixture) from here.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from waveui.engine.errors import EngineError
from waveui.run.events import Event, PriorityChanged, RunFinished, RunPaused, TaskStateChanged
from waveui.run.state import RunState
from waveui.frontends.tui import themes
from waveui.frontends.tui.app import WaveApp
from waveui.frontends.tui.sample_run import NOW, sample_events, write_sample_logs

SIZE = (160, 48)


@pytest.fixture(autouse=True)
def isolated_user_themes(tmp_path, monkeypatch):
    """Keep a developer's own theme folder out of every test."""
    monkeypatch.setattr(themes, "user_theme_dir", lambda: tmp_path / "no-user-themes")


class PushFeed:
    """Emits the sample run, then stays open so a control can push the engine's answers."""

    def __init__(self, events: list[Event] | None = None):
        self.events = sample_events() if events is None else events
        self.emit = None

    async def run(self, emit) -> None:
        self.emit = emit
        for event in self.events:
            emit(event)
        await asyncio.Event().wait()  # a live engine never ends on its own

    def push(self, event: Event) -> None:
        assert self.emit is not None, "the feed has not started"
        self.emit(event)


class RecordingControl:
    """Records each command and answers with the events a real engine would send."""

    def __init__(self, feed: PushFeed, state: RunState | None = None):
        self.feed = feed
        self.calls: list[tuple] = []
        self.state = state
        self.idle = False  # the sample run has tasks running
        # A conflicted task resolved by hand: the worktree to hand out (None: refused, as the engine refuses)
        # and why the resolution is not merged ("": merged).
        self.resolution_folder: Path | None = None
        self.resolution_answer = ""
        self.remote_usage: dict = {}  # what workers on other machines reported

    def _task_event(self, task_id: str, state: str) -> TaskStateChanged:
        task = self.state.tasks[task_id]
        return TaskStateChanged(t=NOW, task=task_id, state=state, attempt=task.attempt, worker=task.worker)

    def pause_task(self, task_id: str) -> None:
        self.calls.append(("pause_task", task_id))
        self.feed.push(self._task_event(task_id, "paused"))

    def resume_task(self, task_id: str) -> None:
        self.calls.append(("resume_task", task_id))
        self.feed.push(self._task_event(task_id, "running"))

    def pause_run(self) -> None:
        self.calls.append(("pause_run",))
        self.feed.push(RunPaused(t=NOW, paused=True))

    def resume_run(self) -> None:
        self.calls.append(("resume_run",))
        self.feed.push(RunPaused(t=NOW, paused=False))

    def retry(self, task_id: str, from_attempt: int | None = None) -> None:
        self.calls.append(("retry", task_id, from_attempt))
        self.feed.push(TaskStateChanged(t=NOW, task=task_id, state="ready"))

    async def prepare_resolution(self, task_id: str) -> Path:
        self.calls.append(("prepare_resolution", task_id))
        if self.resolution_folder is None:
            raise EngineError(f"{task_id}'s work is not kept")
        return self.resolution_folder

    async def accept_resolution(self, task_id: str) -> str:
        self.calls.append(("accept_resolution", task_id))
        if not self.resolution_answer:
            attempt = self.state.tasks[task_id].attempt
            self.feed.push(TaskStateChanged(t=NOW, task=task_id, state="done", attempt=attempt))
        return self.resolution_answer

    def cancel(self, task_id: str) -> None:
        self.calls.append(("cancel", task_id))
        self.feed.push(TaskStateChanged(t=NOW, task=task_id, state="cancelled", reason="cancelled by the user"))

    def set_priority(self, task_id: str, priority: int) -> None:
        self.calls.append(("set_priority", task_id, priority))
        self.feed.push(PriorityChanged(t=NOW, task=task_id, priority=priority))

    def stop(self, *, leave_resumable: bool) -> None:
        self.calls.append(("stop", leave_resumable))
        if not leave_resumable:
            self.feed.push(RunFinished(t=NOW, ok=False, reason="stopped"))


def make_app(tmp_path: Path, *, read_only: bool = False, with_control: bool = True, feed=None, clock=lambda: NOW):
    """The app on the sample run, with a frozen clock (unless given one) and the sample logs; returns (app, control)."""
    feed = feed or PushFeed()
    write_sample_logs(tmp_path)
    control = RecordingControl(feed) if with_control else None
    app = WaveApp(feed, control, log_dir=tmp_path, read_only=read_only, clock=clock)
    if control is not None:
        control.state = app.state
    return app, control


async def settle(pilot, app: WaveApp, events: int | None = None) -> None:
    """Wait until the feed's events are folded, then flush them to the screen."""
    expected = len(sample_events()) if events is None else events
    for _ in range(200):
        if app.state.events >= expected:
            break
        await pilot.pause(0.01)
    app.flush()
    await pilot.pause()


async def press(pilot, app: WaveApp, *keys: str) -> None:
    """Press keys as a user would, then let the engine's answers reach the screen."""
    await pilot.press(*keys)
    await pilot.pause()
    app.flush()
    await pilot.pause()
