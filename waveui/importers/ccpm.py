"""Reads a CCPM epic: ``.claude/epics/<name>/`` with task files ``NNN.md`` and analyses ``NNN-analysis.md``.

A task file starts with front matter between ``---`` lines (``name``,
``status``, ``depends_on``, ``parallel``, ``conflicts_with``, ...), as
CCPM's ``/pm:epic-decompose`` writes it (automazeio/ccpm
``ccpm/commands/pm/epic-decompose.md``), or keeps the same fields in a fenced
YAML block under ``## Metadata``, as task files written by hand or by other
prompts do. The Markdown body becomes the prompt. The size comes from its
``## Effort Estimate`` section, else an ``effort:`` field or an
``**Effort:**`` line, written ``M (8-12 hours)``. A file that cannot be read
is left out with a note; the rest of the epic is imported. An analysis splits
a task into streams, each naming the files it touches on a ``Files:`` line or
in a bullet list after one: together they are the task's ``affected_files``.
An epic that ``/pm:epic-close`` marked completed or moved to
``.claude/epics/.archived/`` is imported, and the header says so.

waveui's ``lock`` mode is epic-wide and works on overlapping files, so a
``conflicts_with`` pair becomes ``conflicts = "lock"`` plus one pseudo-file,
``.waveui-locks/<a>-<b>``, in both tasks' ``affected_files``: the planner sees
them overlap and never runs them at once.
"""

from __future__ import annotations

import re
from pathlib import Path

from waveui.importers.common import Draft, Imported, Notes, SourceError, finish

SIZES = {"XS": 1, "S": 2, "M": 3, "L": 5, "XL": 8}
TASK_FILE = re.compile(r"(\d+)\.md\Z")
ANALYSIS_FILE = re.compile(r"(\d+)-analysis\.md\Z")
LOCK_FOLDER = ".waveui-locks"
# Front matter keys this importer turns into waveui fields; any other is reported as not mapped.
MAPPED = ("name", "status", "depends_on", "conflicts_with", "parallel", "effort", "size")
ARCHIVE_FOLDERS = (".archived", "archived")  # /pm:epic-close and /pm:clean move finished epics here
FINISHED_EPIC = ("completed", "complete", "closed", "done")

_KEY_LINE = re.compile(r"([A-Za-z_][\w-]*)\s*:\s*(.*)\Z")
_ITEM_LINE = re.compile(r"\s*-\s+(.*)\Z|\s*-\Z")
_SIZE = re.compile(r"\bSize\W*:\W*(XS|XL|S|M|L)\b", re.I)
_HOURS = re.compile(r"\bHours\W*:\W*(\d+(?:\.\d+)?)(?:\s*(?:-|–|to)\s*(\d+(?:\.\d+)?))?", re.I)
_METADATA = re.compile(r"^#{2,3}[ \t]*Metadata[ \t]*\n\s*```[ \t]*(?:ya?ml)?[ \t]*\n(.*?)^```[ \t]*$\n?",
                       re.M | re.S | re.I)
_SIZE_FIRST = re.compile(r"\s*(XS|XL|S|M|L)\b", re.I)
_EFFORT_LINE = re.compile(r"^\s*(?:[-*+]\s+)?(?:\*\*|__)Effort:?(?:\*\*|__):?[ \t]*(.+)$", re.M | re.I)
_FILES = re.compile(r"(?:[-*+]\s+)?(?:\*\*|__)?Files\b[^:*_\n]{0,30}(?:\*\*|__)?\s*:\s*(?:\*\*|__)?\s*(.*)\Z", re.I)
_BULLET = re.compile(r"\s*[-*+]\s+(.*)\Z")


def is_epic_folder(path: Path) -> bool:
    return path.is_dir() and any(TASK_FILE.match(p.name) for p in path.iterdir())


def _scalar(text: str):
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    if text.lower() in ("true", "yes"):
        return True
    if text.lower() in ("false", "no"):
        return False
    return text


def _value(text: str):
    text = text.strip()
    if text[:1] not in "\"'" and " #" in text:
        text = text.split(" #", 1)[0].strip()  # a trailing YAML comment
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1].strip()
        return [_scalar(part) for part in inner.split(",")] if inner else []
    return _scalar(text)


def _fields(lines: list[str], path: Path, first: int, where: str) -> dict:
    """``key: value`` lines (and ``- item`` lists under a key) as a dict; ``first`` is the first line's number."""
    fields: dict = {}
    key = None
    for number, line in enumerate(lines, start=first):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        item = _ITEM_LINE.match(line)
        if item and key is not None and (fields[key] in ("", None) or isinstance(fields[key], list)):
            if not isinstance(fields[key], list):
                fields[key] = []
            fields[key].append(_scalar(item.group(1) or ""))
            continue
        match = _KEY_LINE.match(line)
        if not match or line[:1].isspace():
            raise SourceError(f"{path}:{number}: cannot read {where} line {line.strip()!r} (expected key: value)")
        key = match.group(1)
        fields[key] = _value(match.group(2))
    return fields


def front_matter(text: str, path: Path) -> tuple[dict, str]:
    """The task's fields and the body without them: front matter, or a fenced block under ``## Metadata``.

    Read by hand rather than with a YAML library: YAML would turn ``[001, 002]``
    into the numbers 1 and 2, and task ids here are the file names' digits.
    """
    text = text.replace("\r\n", "\n")
    lines = text.split("\n")
    if lines and lines[0].strip() == "---":
        end = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), None)
        if end is None:
            raise SourceError(f"{path}:1: the front matter has no closing --- line")
        return _fields(lines[1:end], path, 2, "front matter"), "\n".join(lines[end + 1:])
    block = _METADATA.search(text)
    if block is None:
        raise SourceError(f"{path}:1: no front matter: a task file starts with a --- line "
                          "or has a fenced ## Metadata block")
    first = text.count("\n", 0, block.start(1)) + 1
    fields = _fields(block.group(1).split("\n"), path, first, "## Metadata")
    return fields, text[:block.start()] + text[block.end():]


def _section(body: str, title: str) -> str:
    match = re.search(rf"^#{{2,3}}\s*{re.escape(title)}\s*$(.*?)(?=^#{{1,3}}\s|\Z)", body, re.M | re.S | re.I)
    return match.group(1) if match else ""


def _effort(text: str) -> float | None:
    """Points from an effort as written: a size first (``M (8-12 hours)``), else hours (a range's middle)."""
    size = _SIZE_FIRST.match(text) or _SIZE.search(text)
    if size:
        return SIZES[size.group(1).upper()]
    hours = _HOURS.search(text) or re.match(r"\s*(\d+(?:\.\d+)?)(?:\s*(?:-|–|to)\s*(\d+(?:\.\d+)?))?\s*h", text, re.I)
    if hours:
        low = float(hours.group(1))
        high = float(hours.group(2)) if hours.group(2) else low
        value = (low + high) / 2
        return int(value) if value == int(value) else value
    return None


def story_points(body: str, fields: dict | None = None) -> float | None:
    """Points from ``## Effort Estimate`` (Size XS..XL as 1/2/3/5/8, else Hours), else ``effort:``, else ``**Effort:**``.

    The size comes first in every form (``M (8-12 hours)`` is 3), hours only where no size is given.
    """
    section = _section(body, "Effort Estimate")
    if section and (_SIZE.search(section) or _HOURS.search(section)):
        return _effort(section)
    for key in ("effort", "size"):
        value = (fields or {}).get(key)
        if isinstance(value, str) and _effort(value) is not None:
            return _effort(value)
    line = _EFFORT_LINE.search(body)
    return _effort(line.group(1)) if line else None


def _path_of(entry: str) -> str:
    """The path in a list entry such as "`src/api/*.ts` - the handlers" or "src/db.py (new)"."""
    quoted = re.search(r"`([^`]+)`", entry)
    if quoted:
        return quoted.group(1).strip()
    entry = re.split(r"\s+(?:-|–|—)\s+|\s+\(|:\s", entry, maxsplit=1)[0]
    return entry.strip().strip("*_").rstrip(",.;")


def analysis_files(text: str) -> list[str]:
    """Every path named on a stream's ``Files:`` line or in the bullet list right after one."""
    files: list[str] = []
    lines = text.replace("\r\n", "\n").split("\n")
    i = 0
    while i < len(lines):
        match = _FILES.match(lines[i].strip())
        i += 1
        if not match:
            continue
        rest = match.group(1).strip()
        if rest:
            files.extend(_path_of(part) for part in rest.split(","))
            continue
        while i < len(lines):
            bullet = _BULLET.match(lines[i])
            if bullet:
                files.append(_path_of(bullet.group(1)))
            elif lines[i].strip():
                break
            elif files and i + 1 < len(lines) and not _BULLET.match(lines[i + 1]):
                break
            i += 1
    return [f for f in dict.fromkeys(files) if f]


def _ids(value) -> list[str]:
    """A list field as text ids: ``[001, 002]``, ``"001, 002"``, ``[#12]`` or one bare id."""
    if value in (None, "", False):
        return []
    items = value if isinstance(value, list) else str(value).split(",")
    return [str(v).strip().lstrip("#") for v in items if str(v).strip().lstrip("#")]


def _resolve(ref: str, ids: list[str]) -> str:
    """A reference to a task: its exact id, else the id with the same number ("1" is "001")."""
    if ref in ids or not ref.isdigit():
        return ref
    return next((i for i in ids if i.isdigit() and int(i) == int(ref)), ref)


def read(source: Path) -> Imported:
    folder = source
    task_files = sorted((p for p in folder.iterdir() if TASK_FILE.match(p.name)),
                        key=lambda p: (int(TASK_FILE.match(p.name).group(1)), p.name))
    notes = Notes()
    drafts: list[Draft] = []
    conflicts: dict[str, list[str]] = {}
    unreadable: list[SourceError] = []
    for path in task_files:
        try:
            fields, body = front_matter(_text(path), path)
        except SourceError as error:
            unreadable.append(error)  # one broken file costs its task, not the epic
            notes.add(f"left out, cannot be read: {str(error).replace(str(path), path.name)}")
            continue
        task_id = TASK_FILE.match(path.name).group(1)
        title = fields.get("name")
        if not isinstance(title, str) or not title:
            heading = re.search(r"^#\s+(?:Task:\s*)?(.+)$", body, re.M)
            title = heading.group(1).strip() if heading else ""
        draft = Draft(task_id, title=title, prompt=body.strip(), status=str(fields.get("status") or ""),
                      requires=_ids(fields.get("depends_on")))
        points = story_points(body, fields)
        if points is not None:
            draft.story_points = points
        conflicts[task_id] = _ids(fields.get("conflicts_with"))
        unmapped = [k for k in fields if k not in MAPPED]
        if fields.get("parallel") is False:
            # waveui runs a task as soon as its depends_on are done and no shared file stops it
            unmapped.insert(0, "parallel")
        notes.fields(task_id, unmapped)
        drafts.append(draft)
    if not drafts:
        if unreadable:
            raise unreadable[0]
        raise SourceError(f"{folder}: no task files (NNN.md) in this CCPM epic folder")

    ids = [d.id for d in drafts]
    by_id = {d.id: d for d in drafts}
    for draft in drafts:
        draft.requires = [_resolve(r, ids) for r in draft.requires]
    for path in sorted(folder.iterdir()):
        match = ANALYSIS_FILE.match(path.name)
        if not match:
            continue
        task_id = _resolve(match.group(1), ids)
        if task_id not in by_id:
            notes.add(f"{path.name}: no task {match.group(1)} to give its files to")
            continue
        try:
            by_id[task_id].affected_files.extend(analysis_files(_text(path)))
        except SourceError as error:
            notes.add(f"left out, cannot be read: {str(error).replace(str(path), path.name)}")
    for draft in drafts:
        kept = []
        for path in dict.fromkeys(draft.affected_files):
            if " " in path.strip():
                notes.add(f"task {draft.id}: analysis file entry {path!r} (not a path)", draft.id)
            else:
                kept.append(path)
        draft.affected_files = kept

    locks = _locks(drafts, conflicts, ids, notes)
    settings = {"conflicts": "lock"} if locks else {}
    finished = _finished(folder)
    try:
        imported = finish(folder.name, drafts, notes, "CCPM", folder, **settings)
    except SourceError as error:
        raise SourceError(f"{error} ({finished})" if finished else str(error)) from None
    if finished:
        imported.explanations.append(f"This epic is {finished}: its tasks still open are imported.")
    if locks:
        pairs = ", ".join(f"{a} and {b}" for a, b in locks)
        imported.explanations.append(
            f'conflicts_with: {pairs} must not run at once. waveui\'s lock mode is epic-wide, so this file sets '
            f'conflicts = "lock" and gives each pair a shared pseudo-file {LOCK_FOLDER}/<a>-<b> in affected_files: '
            "the planner sees them overlap and never runs them together (other overlaps are locked too).")
    return imported


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise SourceError(f"{path}: cannot read: {getattr(error, 'strerror', None) or error}") from None


def _finished(folder: Path) -> str | None:
    """How the epic is marked finished (archived, or completed in epic.md), or None."""
    if folder.parent.name in ARCHIVE_FOLDERS:
        return f"archived (it is in {folder.parent.name}/)"
    try:
        fields, _ = front_matter(_text(folder / "epic.md"), folder / "epic.md")
    except SourceError:
        return None  # no epic.md, or one that cannot be read: nothing says it is finished
    status = str(fields.get("status") or "").strip().lower()
    return f"marked {status} in epic.md" if status in FINISHED_EPIC else None


def _locks(drafts: list[Draft], conflicts: dict[str, list[str]], ids: list[str], notes: Notes) -> list[tuple[str, str]]:
    """Each conflicting pair of tasks still to run, once, with its pseudo-file added to both."""
    by_id = {d.id: d for d in drafts}
    order = {task_id: i for i, task_id in enumerate(ids)}
    pairs: list[tuple[str, str]] = []
    for draft in drafts:
        for ref in conflicts[draft.id]:
            other = _resolve(ref, ids)
            if other not in by_id:
                notes.add(f"task {draft.id}: conflicts_with {ref!r} (no such task)", draft.id)
                continue
            if other == draft.id or draft.done or by_id[other].done:
                continue  # a done task holds no lock
            pair = tuple(sorted((draft.id, other), key=order.__getitem__))
            if pair not in pairs:
                pairs.append(pair)
    for a, b in pairs:
        marker = f"{LOCK_FOLDER}/{a}-{b}"
        by_id[a].affected_files.append(marker)
        by_id[b].affected_files.append(marker)
    return pairs
