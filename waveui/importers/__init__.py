"""`waveui import`: turn another tool's task list (CCPM, Taskmaster, Claudio) into a waveui epic file.

:func:`read_source` tells the kind of source from the path it is given and
reads it into an :class:`Imported` epic; :func:`render` writes that as the
text of a ``waveui.toml``, with a comment at the top listing every source
field that has no place in waveui, and checks the text loads back.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from waveui.core import spec
from waveui.importers import ccpm, claudio, taskmaster
from waveui.importers.common import Imported, SourceError, names_no_files

__all__ = ["Imported", "SourceError", "read_source", "render", "convert"]

# Where each kind of source names the files a task changes: what the header suggests when none does.
FILES_IN_SOURCE = {
    "CCPM": "a Files: line for each stream in NNN-analysis.md",
    "Taskmaster": 'relevantFiles entries with action "create" or "modify"',
    "Claudio": 'a "files" list in each task',
}


def _epic_folders(folder: Path) -> list[Path]:
    """CCPM epic folders under ``folder`` (a project, its ``.claude``, or ``.claude/epics``)."""
    for epics in (folder / ".claude" / "epics", folder / "epics", folder):
        if epics.is_dir():
            found = sorted(p for p in epics.iterdir() if ccpm.is_epic_folder(p))
            if found:
                return found
    return []


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError) as error:
        raise SourceError(f"{path}: cannot read: {getattr(error, 'strerror', None) or error}") from None
    except ValueError as error:
        raise SourceError(f"{path}: not valid JSON: {error}") from None


def read_source(source: str | Path, tag: str | None = None) -> Imported:
    """The epic in ``source``: a CCPM epic folder, a folder holding ``.taskmaster/`` or ``.claude/epics/``, or a JSON file.

    ``tag`` chooses a Taskmaster tag (else the current one); it is an error for other sources.
    """
    imported = _read(Path(source), source, tag)
    if tag is not None and imported.kind != "Taskmaster":
        raise SourceError(f"{source}: --tag chooses a Taskmaster tag, and this is a {imported.kind} source")
    return imported


def _read(path: Path, source, tag: str | None) -> Imported:
    if not path.exists():
        raise SourceError(f"{source}: no such file or folder")
    if path.is_dir():
        if ccpm.is_epic_folder(path):
            return ccpm.read(path)
        tasks = taskmaster.tasks_file(path)
        epics = _epic_folders(path)
        plan = path / claudio.PLAN_FILE
        if not tasks and not epics and plan.is_file():
            return claudio.read(plan)
        if tasks and epics:
            raise SourceError(f"{source}: holds both Taskmaster tasks and CCPM epics: "
                              f"give one, e.g. `waveui import {tasks}` or `waveui import {epics[0]}`")
        if tasks:
            return taskmaster.read(tasks, tag)
        if len(epics) == 1:
            return ccpm.read(epics[0])
        if epics:
            names = ", ".join(p.name for p in epics)
            raise SourceError(f"{source}: {len(epics)} CCPM epics ({names}): give one, e.g. `waveui import {epics[0]}`")
        raise SourceError(f"{source}: found no CCPM epic (.claude/epics/<name>/NNN.md), Taskmaster tasks "
                          f"(.taskmaster/tasks/tasks.json) or Claudio plan ({claudio.PLAN_FILE}) here")
    if path.suffix.lower() == ".md" and ccpm.is_epic_folder(path.parent):
        return ccpm.read(path.parent)  # e.g. .claude/epics/<name>/epic.md
    data = _read_json(path)
    # Claudio first: its {"plan": {"tasks": [...]}} wrapper would otherwise pass for a Taskmaster tag named "plan"
    if claudio.looks_like(data):
        return claudio.from_data(data, path)
    if taskmaster.looks_like(data):
        return taskmaster.from_data(data, path, tag)
    if isinstance(data, dict) and isinstance(data.get("tasks"), list):
        # fields tell nothing (no tasks, or only id and title): Taskmaster's file is always tasks.json
        if path.name == "tasks.json":
            return taskmaster.from_data(data, path, tag)
        return claudio.from_data(data, path)
    raise SourceError(f"{source}: neither Taskmaster tasks nor a Claudio plan (no \"tasks\" list)")


def _comment(line: str) -> str:
    return "# " + " ".join(line.split())  # a comment is one line, whatever the source held


def _wrapped(text: str) -> list[str]:
    return textwrap.wrap(" ".join(text.split()), 98, initial_indent="# ", subsequent_indent="#   ",
                         break_on_hyphens=False, break_long_words=False)


def render(imported: Imported, command: list[str], path: str | Path = "waveui.toml") -> str:
    """The epic file's text: a header saying where it came from and what was left out, then the epic.

    ``command`` is the lines to put in ``[epic]`` for the command (an agent's
    recipe, or comments suggesting one): agents are the caller's to know.

    Raises SourceError if the result is not a valid epic (a dependency cycle in the source, say).
    """
    what = {"CCPM": "CCPM epic", "Taskmaster": "Taskmaster tasks file", "Claudio": "Claudio plan"}[imported.kind]
    header = [_comment(f"waveui epic made by `waveui import` from the {what} {imported.source}"),
              "# Check it with `waveui plan`, then run it with `waveui run`."]
    for line in imported.explanations:
        header += _wrapped(line)
    if imported.skipped:
        header.append(_comment("skipped, done already: " + ", ".join(imported.skipped)))
    header += [_comment(f"skipped, {reason}: " + ", ".join(ids)) for reason, ids in imported.held.items()]
    if names_no_files(imported):
        header += _wrapped(
            "No task names the files it changes, so waveui cannot see which tasks would conflict and may run "
            "them at once. Add affected_files = [...] to the tasks below (globs allowed), or "
            f"{FILES_IN_SOURCE[imported.kind]} in the source, and import again.")
    header += [_comment(f"renamed: task {old!r} is {new!r}") for old, new in imported.renamed.items()]
    header += [_comment(f"not mapped: {line}") for line in imported.not_mapped]

    body = spec.dumps(imported.epic).split("\n")
    at = body.index("[epic]") + 2  # after the name, which to_dict writes first
    text = "\n".join(header) + "\n\n" + "\n".join(body[:at] + command + body[at:])
    try:
        spec.loads(text, path)
    except spec.SpecError as error:
        first = error.problems[0].message
        more = len(error.problems) - 1
        raise SourceError(f"{imported.source}: cannot be made a valid epic: {first}"
                          + (f" (and {more} more problems)" if more else "")) from None
    return text


def convert(source: str | Path, command: list[str], path: str | Path = "waveui.toml",
            tag: str | None = None) -> tuple[str, Imported]:
    """Read ``source`` (``tag``: the Taskmaster tag to take) and render it: the epic file's text and what came in."""
    imported = read_source(source, tag)
    return render(imported, command, path), imported
