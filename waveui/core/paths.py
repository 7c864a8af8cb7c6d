"""Rules for the names and paths an epic gives: task ids, and the globs of ``affected_files``.

One place, so the planner, the loader, the merge and the app read a path or
an id exactly alike.
"""

from __future__ import annotations

import functools
import re

TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_GLOB_CHARS = re.compile(r"[*?\[]")


def name_problem(kind: str, name: str) -> str | None:
    """Why ``name`` cannot be an epic name or task id, or None when it can.

    Ids become branch names (``waveui/<epic>@<task>``) and file names under
    ``.waveui/``, so beyond :data:`TASK_ID` they must be what git accepts as a
    ref component: git refuses ``..`` anywhere and a trailing ``.`` or ``.lock``.
    """
    if not TASK_ID.match(name):
        return f"{kind} {name!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
    if ".." in name or name.endswith((".", ".lock")):
        return f"{kind} {name!r} cannot name a git branch: no '..', and no '.' or '.lock' at the end"
    return None


def check_name(kind: str, name: str) -> str:
    """``name`` if it is a valid epic name or task id; ValueError (the reason) otherwise."""
    problem = name_problem(kind, name) if isinstance(name, str) else f"{kind} {name!r} must be a string"
    if problem:
        raise ValueError(problem)
    return name


def normalise(path: str) -> str:
    if "\\" in path or "//" in path:  # rare: spare the regex for the common case
        path = re.sub(r"/{2,}", "/", path.replace("\\", "/"))
    while path.startswith("./"):
        path = path[2:]
    return path + "**" if path.endswith("/") else path


def is_glob(path: str) -> bool:
    return bool(_GLOB_CHARS.search(path))


def fixed_prefix(pattern: str) -> str:
    match = _GLOB_CHARS.search(pattern)
    return pattern[: match.start()] if match else pattern


@functools.lru_cache(maxsize=4096)
def glob_regex(pattern: str) -> re.Pattern:
    """``*`` and ``?`` stay inside one folder; ``**`` crosses folders; ``[...]`` is a class."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 2 :]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1 : end].replace("\\", "\\\\")  # a class is characters, not regex escapes
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def covers(patterns: list[str], path: str) -> bool:
    """Whether one of the declared paths or globs names ``path``, as the planner reads them.

    ``*`` ``?`` ``[..]`` stay within a folder, ``**`` crosses folders, a
    trailing ``/`` means the whole folder; a plain path covers that file only.
    """
    path = normalise(path)
    return any(path == p if not is_glob(p) else bool(glob_regex(p).match(path))
               for p in map(normalise, patterns))


def uncovered(paths: list[str], patterns: list[str]) -> list[str]:
    """The ``paths`` no declared path or glob covers (changed files a task did not declare)."""
    return [path for path in paths if not covers(patterns, path)]
