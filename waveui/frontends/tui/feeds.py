"""Event sources for the app: a scripted list of events, or a run's journal tailed read-only.

A feed calls ``emit`` for each event, from the app's own asyncio loop. The
engine's live feed (added with the engine) follows the same protocol.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

from waveui.run.events import Event
from waveui.run.journal import JournalTail

# Hand the loop back after this many events so a long backlog never freezes the screen.
EMIT_BATCH = 500


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


class JournalFeed:
    """Tails a run's journal forever, read-only (``waveui watch``).

    The journal may not exist yet (the run is starting), may stop growing (the
    run ended, or crashed: a torn last line is kept until it is completed), and
    may grow again (the run was resumed). None of these ends the feed.
    """

    def __init__(self, path: Path, poll: float = 0.2):
        self.path = Path(path)
        self.poll = poll

    async def run(self, emit: Callable[[Event], None]) -> None:
        tail = JournalTail(self.path)
        while True:
            events = await asyncio.to_thread(self._read, tail)
            for count, event in enumerate(events, 1):
                emit(event)
                if count % EMIT_BATCH == 0:
                    await asyncio.sleep(0)
            await asyncio.sleep(self.poll)

    @staticmethod
    def _read(tail: JournalTail) -> list[Event]:
        try:
            return tail.read_new()
        except OSError:  # unreadable for a moment (permissions, a network disk): try again next poll
            return []
