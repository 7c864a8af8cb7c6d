"""What every importer shares: the draft task, id and priority rules, and finishing drafts into an epic.

An importer reads its source into :class:`Draft` tasks, one per source task,
keeping the source's own ids as text and noting every field it could not map.
:func:`finish` then does what is the same for every source: done tasks are
left out and dependencies on them dropped, ids are made valid for waveui,
dependencies on tasks the source does not have and paths outside the
repository are reported rather than guessed at.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from waveui.core.spec import TASK_ID, Epic, Task

# Statuses meaning the work is already in the repository: such tasks are not run again.
DONE_STATUSES = frozenset({"done", "completed", "complete", "closed", "cancelled", "canceled"})
# Statuses of work someone chose not to run now: left out and listed in the header, each with why.
HELD_STATUSES = {"deferred": "deferred", "review": "awaiting review"}
# Of those, work that is written already (only not reviewed): waiting for it is as waiting for a done task.
WRITTEN = frozenset({HELD_STATUSES["review"]})
PRIORITIES = {"lowest": -2, "low": -1, "medium": 0, "normal": 0, "high": 1, "critical": 2, "urgent": 2}


class SourceError(Exception):
    """A source that cannot be imported: one line saying where and why."""


@dataclass
class Draft:
    """One source task on its way to a waveui task; ids are still the source's."""

    id: str
    title: str = ""
    prompt: str = ""
    requires: list[str] = field(default_factory=list)
    story_points: float = 1
    affected_files: list[str] = field(default_factory=list)
    priority: int = 0
    status: str = ""
    expect_changes: bool = True

    @property
    def done(self) -> bool:
        return self.status.strip().lower() in DONE_STATUSES

    @property
    def held(self) -> str | None:
        """Why the task is left out though not done (``"deferred"``), or None."""
        return HELD_STATUSES.get(self.status.strip().lower())


@dataclass
class Imported:
    """An imported epic and what the header of the written file must say about it."""

    epic: Epic
    kind: str  # "CCPM", "Taskmaster", "Claudio"
    source: Path
    not_mapped: list[str] = field(default_factory=list)  # "task 3: field \"testStrategy\""
    skipped: list[str] = field(default_factory=list)  # source ids of done tasks
    renamed: dict[str, str] = field(default_factory=dict)  # source id -> waveui id
    explanations: list[str] = field(default_factory=list)  # extra header lines, e.g. how locks were made
    held: dict[str, list[str]] = field(default_factory=dict)  # "deferred" -> source ids left out for that reason


class Notes:
    """Collects "not mapped" notes in source order: one line per task naming all its fields, then the rest.

    Notes about a task that turns out to be done are dropped with it: nothing of it is imported.
    """

    def __init__(self) -> None:
        self._fields: dict[str, list[str]] = {}
        self._other: list[tuple[str | None, str]] = []

    def fields(self, task: str, names) -> None:
        """Fields of ``task`` (``"plan"`` for the source as a whole) that have no place in waveui."""
        known = self._fields.setdefault(task, [])
        known.extend(n for n in dict.fromkeys(names) if n not in known)
        if not known:
            del self._fields[task]

    def add(self, line: str, task: str | None = None) -> None:
        self._other.append((task, line))

    def lines(self, skip: set[str] = frozenset()) -> list[str]:
        out = []
        for task, names in self._fields.items():
            if task in skip:
                continue
            word = "field" if len(names) == 1 else "fields"
            where = task if task == "plan" else f"task {task}"
            out.append(f"{where}: {word} " + ", ".join(f'"{n}"' for n in names))
        return out + [line for task, line in self._other if task not in skip]


def read_json(path: Path):
    """A source's JSON, or SourceError in one line."""
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError) as error:
        raise SourceError(f"{path}: cannot read: {getattr(error, 'strerror', None) or error}") from None
    except ValueError as error:
        raise SourceError(f"{path}: not valid JSON: {error}") from None


def valid_id(name: str) -> bool:
    """Whether ``name`` can be a task id or epic name: ids become git branch names, so no '..' or '.lock' end."""
    return bool(TASK_ID.match(name)) and ".." not in name and not name.endswith((".", ".lock"))


def slug(text: str) -> str:
    """``text`` as a valid waveui id or epic name (may be empty)."""
    text = re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9._-]+", "-", text))
    text = text.strip("-._")[:64].rstrip("-._")
    return text[:-5] + "-lock" if text.endswith(".lock") else text


def priority(value, task: str, notes: Notes) -> int:
    """A source priority as waveui's integer: low/medium/high/critical are -1/0/1/2, integers stay."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in PRIORITIES:
        return PRIORITIES[value.strip().lower()]
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    if value is not None:
        notes.add(f"task {task}: priority {value!r} (not low, medium, high, critical or a whole number)", task)
    return 0


def text(value, what: str, source: Path) -> str:
    """A string field of the source; anything else is a malformed source."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    raise SourceError(f"{source}: {what} must be a string, not {type(value).__name__}")


def _bad_path(path: str) -> str | None:
    if not path.strip():
        return "empty"
    if path.startswith(("/", "\\")) or re.match(r"[A-Za-z]:[\\/]", path):
        return "absolute"
    if ".." in PurePosixPath(path.replace("\\", "/")).parts:
        return "outside the repository"
    return None


def finish(name: str, drafts: list[Draft], notes: Notes, kind: str, source: Path, **settings) -> Imported:
    """The epic made of ``drafts`` (done and held ones left out), with the notes for the file's header.

    ``settings`` are further [epic] values (e.g. ``conflicts="lock"``).
    """
    seen: set[str] = set()
    for draft in drafts:
        if draft.id in seen:
            raise SourceError(f"{source}: task id {draft.id!r} appears twice")
        seen.add(draft.id)
    done = {d.id for d in drafts if d.done}
    held = {d.id: d.held for d in drafts if d.held and not d.done}
    kept = [d for d in drafts if d.id not in done and d.id not in held]
    if not drafts:
        raise SourceError(f"{source}: no tasks found")
    if not kept:
        raise SourceError(f"{source}: every task is done already: nothing to import" if not held else
                          f"{source}: no task to import: the rest are done, " + ", ".join(sorted(set(held.values()))))

    renamed: dict[str, str] = {}
    taken: set[str] = set()
    for draft in kept:
        new = draft.id if valid_id(draft.id) else slug(draft.id)
        if not new or new in taken:
            raise SourceError(f"{source}: task id {draft.id!r} cannot be made a waveui id "
                              "(1-64 letters, digits, '.', '_' or '-') without clashing")
        taken.add(new)
        if new != draft.id:
            renamed[draft.id] = new
    ids = {d.id: renamed.get(d.id, d.id) for d in kept}

    tasks = []
    for draft in kept:
        task_id = ids[draft.id]
        requires: list[str] = []
        for dep in draft.requires:
            if dep in done or held.get(dep) in WRITTEN:
                continue  # already in the repository: nothing to wait for
            if dep in held:
                notes.add(f"task {draft.id}: dependency {dep!r} ({held[dep]}, so not imported: "
                          "this task may start before that work exists)", draft.id)
            elif dep == draft.id:
                notes.add(f"task {draft.id}: dependency on itself", draft.id)
            elif dep not in ids:
                notes.add(f"task {draft.id}: dependency {dep!r} (no such task)", draft.id)
            elif ids[dep] not in requires:
                requires.append(ids[dep])
        files: list[str] = []
        for path in draft.affected_files:
            problem = _bad_path(path)
            if problem:
                notes.add(f"task {draft.id}: file {path!r} ({problem})", draft.id)
            elif path not in files:
                files.append(path)
        tasks.append(Task(id=task_id, title=draft.title.strip(), prompt=draft.prompt.strip(), requires=requires,
                          story_points=draft.story_points, affected_files=files, priority=draft.priority,
                          expect_changes=draft.expect_changes))
    epic_name = slug(name) or "imported"
    epic = Epic(name=epic_name, tasks=tasks, **settings)
    by_reason: dict[str, list[str]] = {}
    for task_id, reason in held.items():
        by_reason.setdefault(reason, []).append(task_id)
    return Imported(epic, kind, source, notes.lines(skip=done | set(held)), [d.id for d in drafts if d.done],
                    renamed, held=by_reason)


def names_no_files(imported: Imported) -> bool:
    """Whether no imported task names a file: the planner then sees no overlap, whatever the tasks touch."""
    return not any(task.affected_files for task in imported.epic.tasks)
