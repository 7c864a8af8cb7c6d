"""The events a run emits: plain dataclasses, one JSON line each in the journal.

Every reader (the live app, ``waveui watch``, the headless reporter and
resume after a crash) sees a run only through these. Times are wall-clock
seconds (``time.time()``) stamped by the engine, so folding a journal later
gives exactly the state the live app showed.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass
class Event:
    t: float
    type: ClassVar[str] = "event"


@dataclass
class TaskInfo:
    """What readers need to know of a task, fixed for the whole run."""

    id: str
    title: str
    requires: list[str]  # dependencies: it starts once they are done, and is blocked if one cannot be
    story_points: float
    affected_files: list[str]
    wave: int
    rank: int  # place in the plan's dispatch order
    critical: bool
    priority: int = 0
    # A hash of what the task runs (see waveui.engine.recovery.fingerprint): a resume compares it with
    # the epic file to rerun tasks whose definition changed. "" in journals written before it existed.
    fingerprint: str = ""
    # Tasks it is only ordered after (``conflicts = "serialise"``: they share files): it starts once
    # they have finished, whatever their outcome, and is never blocked by them.
    after: list[str] = field(default_factory=list)


@dataclass
class RunStarted(Event):
    type: ClassVar[str] = "run_started"
    run_id: str = ""
    epic: str = ""
    branch: str = ""  # the integration branch
    base: str = ""
    strategy: str = "eager"
    conflict_mode: str = "serialise"
    max_parallel: int = 1
    limit: int = 1
    tasks: list[TaskInfo] = field(default_factory=list)
    conflicts: list[dict] = field(default_factory=list)  # {"tasks": [a, b], "files": [...], "handling": str}
    critical_length: float = 0.0
    resumed: bool = False
    tip: str = ""  # the integration branch's commit as the run (or this session of it) began
    max_cost: float | None = None  # the run's budget in dollars ([epic] max_cost), as this session set it


@dataclass
class TaskStateChanged(Event):
    """A task moved to another state.

    States: pending (dependencies not done), ready, running, paused, verifying,
    merging, done, failed, blocked (a dependency failed), conflicted (merge
    conflict), cancelled.
    """

    type: ClassVar[str] = "task_state"
    task: str = ""
    state: str = ""
    attempt: int = 0
    reason: str = ""
    worker: int | None = None  # slot number while it holds one
    worktree: str = ""
    pid: int | None = None
    pid_started: float | None = None  # process create time, so a reused pid is never mistaken for it
    exit_code: int | None = None
    files: list[str] = field(default_factory=list)  # conflicted files, or changed files when done
    undeclared: list[str] = field(default_factory=list)  # changed but not in affected_files
    commit: str = ""
    start_point: str = ""  # the integration tip the attempt started from
    sandboxed: bool = False  # the step starting now runs in a sandbox
    host: str = ""  # the machine it runs on, when that is not this one (a Dask worker)
    remote: str = ""  # the name a cluster holds the attempt under, so that a later waveui can collect it


@dataclass
class AttemptKept(Event):
    """An attempt's work, whatever its outcome, committed under a ref of its own (``refs/waveui/...``).

    ``base`` is the commit it started from, so ``git diff base commit`` is the attempt's work.
    """

    type: ClassVar[str] = "attempt_kept"
    task: str = ""
    attempt: int = 0
    ref: str = ""
    commit: str = ""
    base: str = ""


@dataclass
class TaskProgress(Event):
    """What the task (a ``::waveui`` line) or its agent (a line of its own output) reported.

    Any field left None is unchanged. Cost and tokens are the attempt's totals
    so far, as the agent reports them. ``failed`` holds the agent's own words
    when its result says it failed; ``denied`` the tool calls it was refused.
    """

    type: ClassVar[str] = "task_progress"
    task: str = ""
    progress: float | None = None
    cost: float | None = None
    iterations: int | None = None
    message: str | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    tokens_cached: int | None = None
    failed: str | None = None
    denied: list[str] | None = None

    @classmethod
    def reported(cls, t: float, task: str, values: dict) -> TaskProgress:
        """The progress a line of output reported (``values`` from a line reader; keys it does not know are left)."""
        return cls(t=t, task=task, **{key: value for key, value in values.items() if key in _PROGRESS_FIELDS})


_PROGRESS_FIELDS = frozenset(f.name for f in dataclasses.fields(TaskProgress)) - {"t", "task"}


@dataclass
class SetupRan(Event):
    type: ClassVar[str] = "setup"
    worktree: str = ""
    task: str = ""
    seconds: float = 0.0
    skipped: bool = False
    exit_code: int = 0


@dataclass
class LimitChanged(Event):
    type: ClassVar[str] = "limit"
    limit: int = 1
    reason: str = ""


@dataclass
class MetricsSample(Event):
    type: ClassVar[str] = "sample"
    cpu: float = 0.0  # percent of all cores
    memory_available: float = 0.0  # bytes
    memory_percent: float = 0.0


@dataclass
class RunPaused(Event):
    """Dispatching stopped (``paused``) or went on; running tasks are left alone."""

    type: ClassVar[str] = "run_paused"
    paused: bool = True


@dataclass
class PriorityChanged(Event):
    type: ClassVar[str] = "priority"
    task: str = ""
    priority: int = 0


@dataclass
class RunFinished(Event):
    type: ClassVar[str] = "run_finished"
    ok: bool = False
    reason: str = ""  # "complete", "stopped", "failed tasks", ...


@dataclass
class Notice(Event):
    """Something the user must know that is no task's state: a slot rebuilt, a ref or hook a task changed,
    an unreadable journal line, an epic edited since the run was interrupted, work found on (or missing
    from) the integration branch."""

    type: ClassVar[str] = "notice"
    level: str = "warning"  # info | warning | error
    text: str = ""
    task: str = ""
    kind: str = ""  # what it is about: "journal", "epic", "git", "refs", "worktree"


# What a read-only watcher sees for itself, of a run whose controller is gone. Never journaled (a watcher
# writes nothing to a run), so not in EVENT_TYPES: a journal line claiming one is not believed.


@dataclass
class ControllerGone(Event):
    """No waveui holds the run any more, though its journal has no end; ``t`` is the journal's last event."""

    type: ClassVar[str] = "controller_gone"


@dataclass
class StepEnded(Event):
    """A task's step ended under its supervisor with no controller to journal it (from the step's status file)."""

    type: ClassVar[str] = "step_ended"
    task: str = ""
    step: str = ""  # running | verifying
    exit_code: int | None = None
    timed_out: bool = False


EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls
    for cls in (RunStarted, TaskStateChanged, AttemptKept, TaskProgress, SetupRan, LimitChanged, MetricsSample,
                RunPaused, PriorityChanged, RunFinished, Notice)
}


def to_dict(event: Event) -> dict[str, Any]:
    # Shallow on purpose: dataclasses.asdict deep-copies every list, a third of
    # the engine's time per event; json.dumps only reads them.
    data = {name: getattr(event, name) for name in _field_names(type(event))}
    if isinstance(event, RunStarted):
        data["tasks"] = [{name: getattr(t, name) for name in _field_names(TaskInfo)} for t in event.tasks]
    elif isinstance(event, TaskProgress):  # the commonest event: what it leaves unchanged is left out
        data = {name: value for name, value in data.items() if value is not None}
    data["type"] = event.type
    return data


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


# One encoder for every line: json.dumps with separators builds a new one per call, a third of its cost.
# ASCII only (its default): a raw U+2028 in a title would split the line for some readers of the journal.
_ENCODER = json.JSONEncoder(separators=(",", ":"))


def to_json(event: Event) -> str:
    return _ENCODER.encode(to_dict(event))


def from_dict(data: dict[str, Any]) -> Event:
    """The event a journal line holds; unknown fields (from newer versions) are ignored."""
    cls = EVENT_TYPES[data["type"]]
    names = _field_names(cls)
    values = {k: v for k, v in data.items() if k in names}
    if cls is RunStarted:
        known = _field_names(TaskInfo)
        values["tasks"] = [TaskInfo(**{k: v for k, v in t.items() if k in known}) for t in values.get("tasks", [])]
    return cls(**values)


def from_json(line: str) -> Event:
    return from_dict(json.loads(line))
