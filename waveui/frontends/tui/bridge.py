"""The one bridge from run events to the screen: fold each event, remember what it touched.

Events arrive as fast as the engine makes them; the screen repaints ten times
a second. :class:`RunBridge` folds every event into a :class:`RunState` with
the shared reducer at once, and keeps a note of what changed until the next
flush takes it. Widgets then redraw only the rows of the tasks named there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from waveui.run.events import (ControllerGone, Event, LimitChanged, PriorityChanged, Notice, RunFinished, RunPaused,
                                  RunStarted, SetupRan, TaskProgress, TaskStateChanged)
from waveui.run.state import RunState, fold

# Notices that want the user (as [epic] notify does): an agent denied tool calls, the run's budget reached.
ATTENTION_NOTICES = frozenset({"denied", "budget"})
# Events about the whole run that the header shows at once (a task's cost, a load sample: at the next second).
RUN_EVENTS = (RunPaused, LimitChanged, Notice, RunFinished, ControllerGone)


@dataclass
class Changes:
    """What the events folded since the last flush touched."""

    rebuilt: bool = False  # a run started: the set of tasks itself may be new
    tasks: set[str] = field(default_factory=set)  # tasks whose row or box looks different
    states: bool = False  # a task changed state: counts, conflicts, the ETA
    run: bool = False  # the run paused or went on, its limit, notices, its end: the header
    notices: list[str] = field(default_factory=list)  # to show the user once each
    attention: bool = False  # something the user should turn round for: the app rings the bell
    events: int = 0

    def __bool__(self) -> bool:
        return self.events > 0


class RunBridge:
    """Holds the run's state and what changed in it since the last :meth:`take`."""

    def __init__(self, state: RunState | None = None):
        self.state = state or RunState()
        self._changes = Changes()

    def fold(self, event: Event) -> None:
        fold(self.state, event)
        changes = self._changes
        changes.events += 1
        changes.run |= isinstance(event, RUN_EVENTS)
        if isinstance(event, RunStarted):
            changes.rebuilt = changes.states = True
        elif isinstance(event, TaskStateChanged):
            changes.tasks.add(event.task)
            changes.states = True
            changes.attention |= event.state in ("failed", "conflicted")
        elif isinstance(event, Notice):
            changes.notices.append(event.text)
            changes.attention |= event.kind in ATTENTION_NOTICES
        elif isinstance(event, RunFinished):
            changes.attention = True
        elif isinstance(event, TaskProgress | PriorityChanged | SetupRan):
            changes.tasks.add(event.task)

    def take(self) -> Changes:
        """What changed since the last call; the record starts afresh."""
        changes, self._changes = self._changes, Changes()
        return changes
