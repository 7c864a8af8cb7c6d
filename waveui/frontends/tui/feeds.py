"""Event sources for the app: a scripted list of events, or a run's journal tailed read-only.

A feed calls ``emit`` for each event, from the app's own asyncio loop. The
engine's live feed (added with the engine) follows the same protocol.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

from waveui.engine.locks import controller_holder
from waveui.executors.steps import HEADING_START, StepFiles, read_status
from waveui.run.directives import read_directive
from waveui.run.events import ControllerGone, Event, RunFinished, RunStarted, StepEnded, TaskProgress, TaskStateChanged
from waveui.run.journal import JournalTail

# Hand the loop back after this many events so a long backlog never freezes the screen.
EMIT_BATCH = 500
CONTROLLER_CHECK_SECONDS = 1.0  # how often a watcher asks whether the run's controller is still there
SUPERVISED_STEPS = frozenset({"running", "verifying"})


class EventFeed(Protocol):
    async def run(self, emit: Callable[[Event], None]) -> None:
        """Call ``emit`` for every event, in order; return when there will be no more."""


class ScriptedFeed:
    """Emits a fixed list of events (tests, snapshots, previews), ``delay`` seconds apart."""

    def __init__(self, events: Iterable[Event], delay: float = 0.0):
        self.events = list(events)
        self.delay = delay

    async def run(self, emit: Callable[[Event], None]) -> None:
        for count, event in enumerate(self.events, 1):
            emit(event)
            if self.delay:
                await asyncio.sleep(self.delay)
            elif count % EMIT_BATCH == 0:
                await asyncio.sleep(0)


class Unattended:
    """What a watcher sees of a run whose controller went away before its end: that it is gone, and its steps' ends.

    The steps run on under their supervisors, which append their output to
    the task's log (its ``::waveui`` lines say how far they got) and leave the
    step's status in the run's logs folder when it ends: read here, never written.
    """

    def __init__(self, repo_root: Path, logs: Path):
        self.repo_root = repo_root
        self.logs = logs
        self.open = False  # a run started and did not finish
        self.gone = False
        self.last_event = 0.0
        self.steps: dict[str, str] = {}  # task -> the supervised step its last state says runs
        self.ended: set[tuple[str, str]] = set()  # steps whose end was told already
        self.read_to: dict[str, int] = {}  # task -> how far its log has been read for progress

    def note(self, event: Event) -> None:
        """Follow the journal: whether the run is open, which steps run."""
        self.last_event = max(self.last_event, event.t)
        if isinstance(event, RunStarted):
            self.open, self.gone = True, False
        elif isinstance(event, RunFinished):
            self.open = False
        elif isinstance(event, TaskStateChanged):
            self.ended = {(task, step) for task, step in self.ended if task != event.task}
            self.read_to.pop(event.task, None)
            if event.state in SUPERVISED_STEPS:
                self.steps[event.task] = event.state
            else:
                self.steps.pop(event.task, None)

    def controller_missing(self) -> bool:
        """Whether the run is open and no waveui holds the repository; blocking (the lock table)."""
        if not self.open or controller_holder(self.repo_root) is not None:
            self.gone = False
            return False
        return True

    def look(self) -> list[Event]:
        """Once the controller is missing: its absence, once, and each step that ended since; blocking (files)."""
        if not self.open:  # its last events, read after it left, ended the run
            return []
        seen: list[Event] = [] if self.gone else [ControllerGone(t=self.last_event)]
        self.gone = True
        for task, step in self.steps.items():
            seen += self._reported(task, StepFiles.of(self.logs, task, step).log)
            status = None if (task, step) in self.ended else read_status(StepFiles.of(self.logs, task, step))
            if status is not None:
                self.ended.add((task, step))
                seen.append(StepEnded(t=float(status.get("ended") or self.last_event), task=task, step=step,
                                      exit_code=status.get("exit_code"), timed_out=bool(status.get("timed_out"))))
        return seen

    def _reported(self, task: str, log: Path) -> list[Event]:
        """What the task's ``::waveui`` lines reported since the last look; at first, all its current attempt's.

        Reading the attempt's lines again from its heading repeats nothing that
        matters: each reports the figures so far, not an increment.
        """
        try:
            with log.open("rb") as stream:
                if task not in self.read_to:  # from the last heading's line on (none: from the top)
                    self.read_to[task] = stream.read().rfind(b"\n" + HEADING_START.encode()) + 1
                stream.seek(self.read_to[task])
                data = stream.read()
        except OSError:
            return []
        complete = data[:data.rfind(b"\n") + 1]  # a line still being written is read whole next time
        self.read_to[task] += len(complete)
        now = time.time()
        return [TaskProgress.reported(now, task, values)
                for values in map(read_directive, complete.splitlines()) if values]


class JournalFeed:
    """Tails a run's journal forever, read-only (``waveui watch``).

    The journal may not exist yet (the run is starting), may stop growing (the
    run ended, or crashed: a torn last line is kept until it is completed), and
    may grow again (the run was resumed). None of these ends the feed. Given
    the repository's root, it also says when the run's controller is gone
    (:class:`Unattended`).
    """

    def __init__(self, path: Path, poll: float = 0.2, repo_root: Path | None = None):
        self.path = Path(path)
        self.poll = poll
        self.unattended = Unattended(repo_root, self.path.parent / "logs") if repo_root is not None else None

    async def run(self, emit: Callable[[Event], None]) -> None:
        tail = JournalTail(self.path)
        checked = 0.0
        while True:
            await self._emit(emit, await asyncio.to_thread(self._read, tail))
            if self.unattended is not None and time.monotonic() - checked >= CONTROLLER_CHECK_SECONDS:
                checked = time.monotonic()
                if await asyncio.to_thread(self.unattended.controller_missing):
                    # What it wrote before it let go of the lock (the run's end, say) comes first.
                    await self._emit(emit, await asyncio.to_thread(self._read, tail))
                    await self._emit(emit, await asyncio.to_thread(self.unattended.look))
            await asyncio.sleep(self.poll)

    async def _emit(self, emit: Callable[[Event], None], events: list[Event]) -> None:
        for count, event in enumerate(events, 1):
            if self.unattended is not None:
                self.unattended.note(event)
            emit(event)
            if count % EMIT_BATCH == 0:
                await asyncio.sleep(0)

    @staticmethod
    def _read(tail: JournalTail) -> list[Event]:
        try:
            return tail.read_new()
        except OSError:  # unreadable for a moment (permissions, a network disk): try again next poll
            return []
