"""Reads a Claudio plan: a JSON file whose ``tasks`` hold ``id``, ``title``, ``description``, ``files``, ``depends_on``...

``priority`` is low/medium/high/critical (or a number) as in Taskmaster, and
``est_complexity`` low/medium/high becomes 2/3/5 story points (a number is
taken as it is).
"""

from __future__ import annotations

from pathlib import Path

from waveui.importers.common import Draft, Imported, Notes, SourceError, finish, priority, text, read_json

COMPLEXITY = {"trivial": 1, "low": 2, "medium": 3, "high": 5, "very high": 8, "very_high": 8}
TASK_FIELDS = ("id", "title", "description", "files", "depends_on", "priority", "est_complexity", "status")
PLAN_FIELDS = ("tasks", "name")


def looks_like(data) -> bool:
    """Whether parsed JSON is a Claudio plan: a ``tasks`` list using Claudio's field names."""
    tasks = data.get("tasks") if isinstance(data, dict) else None
    return isinstance(tasks, list) and any(
        isinstance(t, dict) and ({"depends_on", "est_complexity", "files"} & t.keys()) for t in tasks)


def _points(value, task: str, notes: Notes) -> float:
    if value is None:
        return 1
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.strip().lower() in COMPLEXITY:
        return COMPLEXITY[value.strip().lower()]
    notes.add(f"task {task}: est_complexity {value!r} (not low, medium, high or a number)", task)
    return 1


def _strings(value, what: str, source: Path) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        value = [value]  # one dependency or file given bare
    if not isinstance(value, list) or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
        raise SourceError(f"{source}: {what} must be a list of ids or paths")
    return [str(v).strip() for v in value if str(v).strip()]


def read(path: Path) -> Imported:
    return from_data(read_json(path), path)


def from_data(data, path: Path) -> Imported:
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), list):
        raise SourceError(f"{path}: a Claudio plan is a JSON object with a \"tasks\" list")
    notes = Notes()
    notes.fields("plan", [k for k in data if k not in PLAN_FIELDS])
    drafts = []
    for raw in data["tasks"]:
        if not isinstance(raw, dict):
            raise SourceError(f"{path}: each task must be an object, not {type(raw).__name__}")
        if isinstance(raw.get("id"), bool) or not isinstance(raw.get("id"), (int, str)) or not str(raw["id"]).strip():
            raise SourceError(f"{path}: a task has no id" + (f" (title {raw['title']!r})" if raw.get("title") else ""))
        task_id = str(raw["id"]).strip()
        where = f"task {task_id}"
        drafts.append(Draft(
            task_id,
            title=text(raw.get("title"), f"{where}: title", path),
            prompt=text(raw.get("description"), f"{where}: description", path),
            requires=_strings(raw.get("depends_on"), f"{where}: depends_on", path),
            affected_files=_strings(raw.get("files"), f"{where}: files", path),
            story_points=_points(raw.get("est_complexity"), task_id, notes),
            priority=priority(raw.get("priority"), task_id, notes),
            status=text(raw.get("status"), f"{where}: status", path),
        ))
        notes.fields(task_id, [k for k in raw if k not in TASK_FIELDS])
    name = data.get("name") if isinstance(data.get("name"), str) and data.get("name").strip() else path.stem
    return finish(name, drafts, notes, "Claudio", path)
