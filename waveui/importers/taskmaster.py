"""Reads Taskmaster's ``.taskmaster/tasks/tasks.json``: tagged (``{"master": {"tasks": [...]}}``) or bare.

The tag is the one asked for (``waveui import --tag NAME``), else the one
``.taskmaster/state.json`` names as ``currentTag``, else ``master``. Subtasks
become tasks with dotted ids, ``"<parent>.<sub>"``; a subtask's dependencies
name siblings by bare number and other tasks by a dotted string, and a subtask
without a priority takes its parent's, as Taskmaster's own next-task choice
does. A parent with subtasks becomes the step after all of them (it requires
each, and they inherit its dependencies), told that its subtasks are done, and
is not failed for changing nothing.

The format is Taskmaster's own (eyaltoledano/claude-task-master,
``packages/tm-core/src/common/types/index.ts``): statuses ``pending,
in-progress, done, deferred, cancelled, blocked, review, completed`` and
``relevantFiles`` entries ``{path, description, action}`` where ``action`` is
``create``, ``modify`` or ``reference``; a file only referenced is read, not
changed, so it is no conflict and not an affected file.
"""

from __future__ import annotations

import json
from pathlib import Path

from waveui.importers.common import Draft, Imported, Notes, SourceError, finish, priority, slug, text, read_json

TASK_FIELDS = ("id", "title", "description", "details", "status", "dependencies", "priority", "subtasks",
               "relevantFiles", "parentTaskId", "parentId")  # a subtask's parent ids say what nesting says


def tasks_file(folder: Path) -> Path | None:
    """The tasks.json of a project folder or of its ``.taskmaster`` folder, if there is one."""
    for candidate in (folder / ".taskmaster" / "tasks" / "tasks.json", folder / "tasks" / "tasks.json"):
        if candidate.is_file() and (candidate.parent.parent.name == ".taskmaster" or folder.name == ".taskmaster"):
            return candidate
    return None


def looks_like(data) -> bool:
    """Whether parsed JSON is a Taskmaster tasks file (tagged, or bare with Taskmaster's field names)."""
    if not isinstance(data, dict):
        return False
    if _tags(data):
        return True
    tasks = data.get("tasks")
    return isinstance(tasks, list) and any(
        isinstance(t, dict) and ({"dependencies", "details", "testStrategy", "subtasks"} & t.keys()) for t in tasks)


def _tags(data: dict) -> list[str]:
    return [k for k, v in data.items() if isinstance(v, dict) and isinstance(v.get("tasks"), list)]


def _current_tag(path: Path) -> str:
    state = path.parent.parent / "state.json"
    try:
        tag = json.loads(state.read_text(encoding="utf-8")).get("currentTag")
    except (OSError, ValueError, AttributeError):
        return "master"  # no state file (or an unreadable one): Taskmaster's own default
    return tag if isinstance(tag, str) and tag else "master"


def _ref(value, parent: str | None, source: Path, where: str) -> str:
    """A dependency as a task id. In a subtask, an id without a dot (``2`` or ``"2"``) is a sibling, as in
    Taskmaster's own next-task choice (``toFullSubId``); ``"2.1"`` names subtask 1 of task 2."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise SourceError(f"{source}: {where}: a dependency must be a number or a string, not {value!r}")
    value = str(value).strip()
    return f"{parent}.{value}" if parent is not None and "." not in value else value


def _sibling_or_task(ref: str, parent: str, ids: set[str]) -> str:
    """A subtask's bare dependency that names no sibling but a top-level task: hand-written files mean that task."""
    bare = ref.removeprefix(parent + ".")
    return bare if ref not in ids and bare != ref and bare in ids else ref


def _files(value, source: Path, where: str) -> list[str]:
    """The paths a task creates or modifies; those it only references are read and cannot conflict."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise SourceError(f"{source}: {where}: relevantFiles must be a list")
    paths = []
    for item in value:
        if isinstance(item, dict) and str(item.get("action", "")).strip().lower() == "reference":
            continue
        path = item.get("path") if isinstance(item, dict) else item
        if isinstance(path, str) and path.strip():
            paths.append(path.strip())
    return paths


def _draft(raw, parent: Draft | None, source: Path, notes: Notes) -> Draft:
    kind = "subtask" if parent else "task"
    if not isinstance(raw, dict):
        raise SourceError(f"{source}: each {kind} must be an object, not {type(raw).__name__}")
    if "id" not in raw or isinstance(raw["id"], bool) or not isinstance(raw["id"], (int, str)):
        raise SourceError(f"{source}: a {kind} has no id (or one that is not a number or string)"
                          + (f" in task {parent.id}" if parent else ""))
    task_id = f"{parent.id}.{raw['id']}" if parent else str(raw["id"]).strip()
    where = f"task {task_id}"
    deps = raw.get("dependencies") or []
    if not isinstance(deps, list):
        raise SourceError(f"{source}: {where}: dependencies must be a list")
    parts = [text(raw.get(k), f"{where}: {k}", source).strip() for k in ("description", "details")]
    draft = Draft(task_id, title=text(raw.get("title"), f"{where}: title", source),
                  prompt="\n\n".join(p for p in parts if p), status=text(raw.get("status"), f"{where}: status", source),
                  requires=[_ref(d, parent and parent.id, source, where) for d in deps],
                  affected_files=_files(raw.get("relevantFiles"), source, where),
                  priority=priority(raw.get("priority"), task_id, notes))
    if parent and not raw.get("priority"):
        draft.priority = parent.priority  # as Taskmaster's next-task choice: st.priority || parent.priority
    notes.fields(task_id, [k for k in raw if k not in TASK_FIELDS])
    return draft


def _project_name(data: dict, path: Path) -> str:
    """The project's name: the legacy file's ``meta.projectName``, else the folder holding the tasks."""
    meta = data.get("meta")
    if isinstance(meta, dict) and isinstance(meta.get("projectName"), str) and meta["projectName"].strip():
        return meta["projectName"]
    folder = path.resolve().parent
    if folder.name == "tasks":
        folder = folder.parent
    if folder.name == ".taskmaster":
        folder = folder.parent
    return folder.name


def read(path: Path, tag: str | None = None) -> Imported:
    return from_data(read_json(path), path, tag)


def _children(raw: dict, parent: Draft, path: Path, notes: Notes) -> list[Draft]:
    """A task's subtasks as drafts; a second subtask with an id already taken is left out and reported."""
    subtasks = raw.get("subtasks") or []
    if not isinstance(subtasks, list):
        raise SourceError(f"{path}: task {parent.id}: subtasks must be a list")
    children: list[Draft] = []
    for sub in subtasks:
        child = _draft(sub, parent, path, notes)
        if any(c.id == child.id for c in children):
            # real files have these (a subtask added by hand next to expanded ones); Taskmaster shows both
            title = f" ({child.title.strip()!r})" if child.title.strip() else ""
            notes.add(f"task {parent.id}: a second subtask {child.id}{title} (id taken by an earlier one: "
                      "left out; give it a new id and import again)", parent.id)
            continue
        children.append(child)
    return children


def from_data(data, path: Path, tag: str | None = None) -> Imported:
    if not isinstance(data, dict):
        raise SourceError(f"{path}: a Taskmaster tasks file is a JSON object, not {type(data).__name__}")
    notes = Notes()
    tags = _tags(data)
    chosen = tag is not None
    if isinstance(data.get("tasks"), list):
        if chosen:
            raise SourceError(f"{path}: --tag {tag}: this tasks file has no tags (it is the older, untagged format)")
        tasks = data["tasks"]
    elif tags:
        tag = tag if chosen else _current_tag(path)
        if tag not in tags:
            where = "asked for with --tag" if chosen else "the current tag in state.json"
            raise SourceError(f"{path}: no tag {tag!r} ({where}); it has " + ", ".join(tags))
        tasks = data[tag]["tasks"]
    else:
        raise SourceError(f"{path}: no tasks: expected {{\"tasks\": [...]}} or tags like {{\"master\": {{\"tasks\": [...]}}}}")

    drafts: list[Draft] = []
    for raw in tasks:
        parent = _draft(raw, None, path, notes)
        children = _children(raw, parent, path, notes)
        for child in children:
            if parent.done:
                child.status = child.status if child.done else "done"  # a done task's subtasks are done too
            elif parent.held and not child.done:
                child.status = parent.status  # a deferred task's subtasks wait with it
            # what the parent waits for, its subtasks wait for (subtasks of the same parent come via bare numbers)
            child.requires = list(dict.fromkeys(parent.requires + child.requires))
        if children:
            parent.requires = list(dict.fromkeys(parent.requires + [c.id for c in children]))
            parent.prompt = (parent.prompt + "\n\n" if parent.prompt else "") + (
                "Its subtasks (" + ", ".join(c.id for c in children) + ") are done already: "
                "finish what is left of this task and check the whole.")
            parent.expect_changes = False
        drafts.append(parent)
        drafts.extend(children)
    ids = {d.id for d in drafts}
    for draft in drafts:
        if "." in draft.id:
            parent_id = draft.id.rsplit(".", 1)[0]
            draft.requires = list(dict.fromkeys(_sibling_or_task(r, parent_id, ids) for r in draft.requires))

    name = _project_name(data, path)
    if tag and tag != "master":
        name = f"{slug(name)}-{tag}" if slug(name) else tag
    imported = finish(name, drafts, notes, "Taskmaster", path)
    if tag:
        others = [t for t in tags if t != tag]
        how = " (asked for with --tag)" if chosen else " (the current one)"
        imported.explanations.append(f"Taskmaster tag: {tag}{how}" + (
            f"; the file also has {', '.join(others)}: import one with --tag NAME" if others else ""))
    return imported
