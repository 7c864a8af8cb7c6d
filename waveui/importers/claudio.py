"""Reads a Claudio ultraplan plan: ``.claudio-plan.json``, a ``PlanSpec`` whose ``tasks`` are ``PlannedTask``s.

The format is Claudio's own (Iron-Ham/claudio): ``PlannedTask`` in
``internal/orchestrator/ultraplan.go`` and ``internal/ultraplan/types.go`` has
``id``, ``title``, ``description``, ``files``, ``depends_on``, ``priority``,
``est_complexity``, ``issue_url`` and ``no_code``; ``ParsePlanFromFile`` in
``internal/orchestrator/ultraplan/`` also takes the plan nested as
``{"plan": {...}}`` and the names ``depends`` and ``complexity`` that planning
agents write, used when the usual field is empty.

``priority`` is an integer where *lower runs earlier* (Claudio sorts each
group ascending), so it is negated for waveui, where higher runs earlier;
the words low/medium/high/critical are read as in Taskmaster. Complexity
low/medium/high becomes 2/3/5 story points (a number is taken as it is). A
``no_code`` task (checking, testing) is not failed for changing nothing. The
epic is named after the plan's ``id``, else its ``objective`` or ``summary``,
else the file.
"""

from __future__ import annotations

from pathlib import Path

from waveui.importers.common import (PRIORITIES, Draft, Imported, Notes, SourceError, finish, priority, read_json,
                                     slug, text)

PLAN_FILE = ".claudio-plan.json"  # where `claudio plan` and ultraplan write it
COMPLEXITY = {"trivial": 1, "low": 2, "medium": 3, "high": 5, "very high": 8, "very_high": 8}
TASK_FIELDS = ("id", "title", "description", "files", "depends_on", "depends", "priority", "est_complexity",
               "complexity", "no_code", "status")
# Plan fields waveui needs no place for: both are worked out again from the tasks' depends_on.
DERIVED_FIELDS = ("dependency_graph", "execution_order")
NAME_FIELDS = ("name", "id", "objective", "summary")
_CLAUDIO_ONLY = {"depends_on", "depends", "est_complexity", "no_code", "files"}
_TASKMASTER_ONLY = {"dependencies", "details", "testStrategy", "subtasks", "relevantFiles"}


def _plan(data):
    """The plan object: the file itself, or what its ``{"plan": {...}}`` wrapper holds."""
    if isinstance(data, dict) and not isinstance(data.get("tasks"), list) and isinstance(data.get("plan"), dict):
        return data["plan"]
    return data


def looks_like(data) -> bool:
    """Whether parsed JSON is a Claudio plan: a ``tasks`` list (maybe under ``plan``) using Claudio's field names."""
    plan = _plan(data)
    tasks = plan.get("tasks") if isinstance(plan, dict) else None
    if not isinstance(tasks, list):
        return False
    fields = set().union(*(t.keys() for t in tasks if isinstance(t, dict)))
    return bool(fields & _CLAUDIO_ONLY) and not fields & _TASKMASTER_ONLY


def _points(value, task: str, notes: Notes) -> float:
    if value is None or value == "":
        return 1
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.strip().lower() in COMPLEXITY:
        return COMPLEXITY[value.strip().lower()]
    notes.add(f"task {task}: est_complexity {value!r} (not low, medium, high or a number)", task)
    return 1


def _priority(value, task: str, notes: Notes) -> int:
    """Claudio's integer (lower earlier) as waveui's (higher earlier); Taskmaster's words keep their meaning."""
    if isinstance(value, str) and value.strip().lower() in PRIORITIES:
        return PRIORITIES[value.strip().lower()]
    return -priority(value, task, notes) or 0  # `or 0`: no -0 in the written file


def _strings(value, what: str, source: Path) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        value = [value]  # one dependency or file given bare
    if not isinstance(value, list) or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
        raise SourceError(f"{source}: {what} must be a list of ids or paths")
    return [str(v).strip() for v in value if str(v).strip()]


def _either(raw: dict, field: str, alias: str):
    """``field``, or ``alias`` when ``field`` is missing or empty, as ParsePlanFromFile does."""
    return raw.get(field) if raw.get(field) not in (None, "", []) else raw.get(alias)


def _name(plan: dict, path: Path) -> tuple[str, str | None]:
    """The epic's name and the plan field it came from (None: the file's name)."""
    for field in NAME_FIELDS:
        value = plan.get(field)
        if isinstance(value, str) and slug(value):
            # an objective is a sentence: its first words name the epic well enough
            return (" ".join(value.split()[:6]).lower() if field in ("objective", "summary") else value), field
    return path.name.lstrip(".").removesuffix(".json"), None


def read(path: Path) -> Imported:
    return from_data(read_json(path), path)


def from_data(data, path: Path) -> Imported:
    plan = _plan(data)
    if not isinstance(plan, dict) or not isinstance(plan.get("tasks"), list):
        raise SourceError(f"{path}: a Claudio plan is a JSON object with a \"tasks\" list")
    notes = Notes()
    name, named_by = _name(plan, path)
    used = set(DERIVED_FIELDS) | {"tasks", named_by}
    notes.fields("plan", [k for k in plan if k not in used])
    drafts = []
    for raw in plan["tasks"]:
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
            requires=_strings(_either(raw, "depends_on", "depends"), f"{where}: depends_on", path),
            affected_files=_strings(raw.get("files"), f"{where}: files", path),
            story_points=_points(_either(raw, "est_complexity", "complexity"), task_id, notes),
            priority=_priority(raw.get("priority"), task_id, notes),
            status=text(raw.get("status"), f"{where}: status", path),
            expect_changes=raw.get("no_code") is not True,
        ))
        notes.fields(task_id, [k for k in raw if k not in TASK_FIELDS])
    return finish(name, drafts, notes, "Claudio", path)
