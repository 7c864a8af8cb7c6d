"""Tasks that would touch the same files, and how to keep them apart.

Overlaps are found through indexes, never by comparing every pair of tasks:
literal paths meet in a dictionary, a glob meets the literal paths that share
its fixed prefix (a range of a sorted list), and two globs are compared only
when one's fixed prefix starts the other's. The work is proportional to the
files and the overlapping pairs, not to n².

A trailing ``/`` names a whole folder (``src/api/`` is ``src/api/**``).
"""

from __future__ import annotations

import bisect
import functools
import re
from collections import defaultdict
from dataclasses import dataclass

from waveui.plan.graph import TaskGraph

SPLIT_SUGGESTION_MIN_TASKS = 3
_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class Conflict:
    a: int  # task numbers, a < b
    b: int
    files: tuple[str, ...]


@dataclass(frozen=True)
class Serialisation:
    """An edge added so two conflicting tasks run one after the other."""

    before: int
    after: int
    growth: float  # how much longer the critical path gets, by this edge alone


@dataclass(frozen=True)
class SplitSuggestion:
    file: str
    tasks: tuple[int, ...]


def normalise(path: str) -> str:
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
            body = pattern[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def _tokens(pattern: str) -> tuple[str, ...]:
    """A glob as tokens: "**", "*", "?", "[...]" or one literal character."""
    tokens, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            tokens.append("**")
            i += 3
        elif pattern.startswith("**", i):
            tokens.append("**")
            i += 2
        elif pattern[i] in "*?":
            tokens.append(pattern[i])
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 2 :]:
            end = pattern.index("]", i + 2)
            tokens.append(pattern[i : end + 1])
            i = end + 1
        else:
            tokens.append(pattern[i])
            i += 1
    return tuple(tokens)


def _one_char_overlap(x: str, y: str) -> bool:
    if len(x) == 1 and len(y) == 1 and x not in "?" and y not in "?":
        return x == y
    literal = x if len(x) == 1 and x != "?" else y if len(y) == 1 and y != "?" else None
    other = y if literal is x else x
    if literal is None:
        return True  # two wildcards of one character: assume they can meet
    if other == "?":
        return literal != "/"
    return bool(glob_regex(other).match(literal))


def globs_overlap(p: str, q: str) -> bool:
    """Whether some path matches both globs (conservative for two character classes)."""
    a, b = _tokens(p), _tokens(q)

    @functools.cache
    def meet(i: int, j: int) -> bool:
        if i == len(a) and j == len(b):
            return True
        x = a[i] if i < len(a) else None
        y = b[j] if j < len(b) else None
        if x in ("*", "**") or y in ("*", "**"):
            if x in ("*", "**") and meet(i + 1, j):
                return True
            if y in ("*", "**") and meet(i, j + 1):
                return True
            # a star swallows one character the other side offers
            if x in ("*", "**") and y is not None and y not in ("*", "**"):
                return (x == "**" or y != "/") and meet(i, j + 1)
            if y in ("*", "**") and x is not None and x not in ("*", "**"):
                return (y == "**" or x != "/") and meet(i + 1, j)
            if x is not None and y is not None:
                return meet(i + 1, j + 1) if (x == "**" or y == "**") else meet(i + 1, j) or meet(i, j + 1)
            return False
        if x is None or y is None:
            return False
        return _one_char_overlap(x, y) and meet(i + 1, j + 1)

    return meet(0, 0)


def overlapping_pairs(files_of: list[list[str]]) -> dict[tuple[int, int], set[str]]:
    """Every pair of tasks whose declared files overlap, with the files they share."""
    literal_tasks: dict[str, set[int]] = defaultdict(set)
    glob_tasks: dict[str, set[int]] = defaultdict(set)
    for task, files in enumerate(files_of):
        for raw in files:
            path = normalise(raw)
            (glob_tasks if is_glob(path) else literal_tasks)[path].add(task)

    shared: dict[tuple[int, int], set[str]] = defaultdict(set)

    def meet(tasks_x: set[int], tasks_y: set[int], file: str) -> None:
        for x in tasks_x:
            for y in tasks_y:
                if x != y:
                    shared[(x, y) if x < y else (y, x)].add(file)

    for path, tasks in literal_tasks.items():
        if len(tasks) > 1:
            meet(tasks, tasks, path)
    literals = sorted(literal_tasks)
    for pattern, tasks in glob_tasks.items():
        meet(tasks, tasks, pattern)
        prefix = fixed_prefix(pattern)
        regex = glob_regex(pattern)
        first = bisect.bisect_left(literals, prefix)
        for path in literals[first:]:
            if not path.startswith(prefix):
                break
            if regex.match(path):
                meet(tasks, literal_tasks[path], path)
    by_prefix: dict[str, list[str]] = defaultdict(list)
    for pattern in glob_tasks:
        by_prefix[fixed_prefix(pattern)].append(pattern)
    for pattern, tasks in glob_tasks.items():
        prefix = fixed_prefix(pattern)
        for cut in range(len(prefix) + 1):
            for other in by_prefix.get(prefix[:cut], ()):
                # equal prefixes meet from both sides: take each such pair once
                if other != pattern and (cut < len(prefix) or other < pattern) and globs_overlap(pattern, other):
                    meet(tasks, glob_tasks[other], pattern)
                    meet(tasks, glob_tasks[other], other)
    return shared


def find_conflicts(graph: TaskGraph, files_of: list[list[str]], level: list[int]) -> list[Conflict]:
    """Overlapping pairs not already ordered by a path of dependencies."""
    shared = overlapping_pairs(files_of)
    later_partners: dict[int, set[int]] = defaultdict(set)
    for a, b in shared:
        if level[a] != level[b]:  # tasks of one wave are never ordered
            early, late = (a, b) if level[a] < level[b] else (b, a)
            later_partners[early].add(late)
    ordered = set()
    for early, partners in later_partners.items():
        for late in graph.reaches(early, partners, level):
            ordered.add((min(early, late), max(early, late)))
    return [Conflict(a, b, tuple(sorted(files))) for (a, b), files in sorted(shared.items()) if (a, b) not in ordered]


def serialisations(conflicts: list[Conflict], head: list[float], tail: list[float],
                   topo_position: list[int]) -> list[Serialisation]:
    """For each conflict, the edge that lengthens the critical path least.

    Putting ``a`` before ``b`` makes a path of ``head[a] + tail[b]``; so ``a``
    goes first exactly when ``head[a] - tail[a] < head[b] - tail[b]``. That
    difference never decreases along a dependency edge, so ordering by it (ties
    by topological position) is a linear extension of the graph: all the edges
    chosen together can never form a cycle.
    """
    length = max(head, default=0.0)

    def rank(task: int) -> tuple[float, int]:
        return head[task] - tail[task], topo_position[task]

    out = []
    for c in conflicts:
        before, after = (c.a, c.b) if rank(c.a) < rank(c.b) else (c.b, c.a)
        out.append(Serialisation(before, after, max(0.0, head[before] + tail[after] - length)))
    return out


def split_suggestions(conflicts: list[Conflict]) -> list[SplitSuggestion]:
    """Files shared by so many tasks that splitting them would free the most parallelism."""
    tasks_of: dict[str, set[int]] = defaultdict(set)
    for c in conflicts:
        for f in c.files:
            tasks_of[f].update((c.a, c.b))
    busy = [(f, tuple(sorted(t))) for f, t in tasks_of.items() if len(t) >= SPLIT_SUGGESTION_MIN_TASKS]
    return [SplitSuggestion(f, t) for f, t in sorted(busy, key=lambda item: (-len(item[1]), item[0]))]


def exclusive_sets(n: int, conflicts: list[Conflict]) -> list[list[int]]:
    """For lock mode: the tasks each task may never run beside."""
    partners: list[list[int]] = [[] for _ in range(n)]
    for c in conflicts:
        partners[c.a].append(c.b)
        partners[c.b].append(c.a)
    return partners
