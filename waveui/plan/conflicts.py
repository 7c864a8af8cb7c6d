"""Tasks that would touch the same files, and how to keep them apart.

Overlaps are found through indexes, never by comparing every pair of tasks:
literal paths meet in a dictionary, a glob meets the literal paths that share
its fixed prefix (a range of a sorted list), and two globs are compared only
when one's fixed prefix starts the other's. Whether a dependency path already
orders an overlapping pair is answered by :class:`~waveui.plan.graph.Reachability`,
mostly in O(1) a pair. The work is proportional to the files, the graph and
the overlapping pairs, not to n².

A trailing ``/`` names a whole folder (``src/api/`` is ``src/api/**``).
"""

from __future__ import annotations

import bisect
import functools
import itertools
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from waveui.core.paths import fixed_prefix, glob_regex, is_glob, normalise
from waveui.plan.graph import Reachability, TaskGraph

SPLIT_SUGGESTION_MIN_TASKS = 3


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


_SIMPLE_GLOB = re.compile(r"([^*?\[]*)(\*\*/\*|\*\*/|\*\*|\*)([^*?\[]*)\Z")


@functools.lru_cache(maxsize=4096)
def glob_matcher(pattern: str) -> Callable[[str], bool]:
    """A test of whether a path matches ``pattern``, as ``glob_regex(pattern).match`` but quicker to make.

    Compiling a regex costs far more than matching the few paths a glob meets,
    and an epic may hold thousands of globs; the common forms (a folder,
    ``src/api/*.py``, ``tests/**/test_x.py``) are tested with string methods.
    """
    simple = _SIMPLE_GLOB.match(pattern)
    if simple is None:
        return glob_regex(pattern).match
    start, star, end = simple.groups()
    least = len(start) + len(end)

    def around(path: str) -> str | None:
        """What the wildcard must match, or None when the fixed parts do not fit."""
        if len(path) < least or not path.startswith(start) or not path.endswith(end):
            return None
        return path[len(start) : len(path) - len(end)]

    if star == "*":  # [^/]*
        return lambda path: (middle := around(path)) is not None and "/" not in middle
    if star == "**/":  # (?:.*/)?
        return lambda path: (middle := around(path)) is not None and (
            not middle or (middle[-1] == "/" and "\n" not in middle))
    if star == "**/*":  # (?:.*/)?[^/]*: folders of any depth, then any name
        return lambda path: (middle := around(path)) is not None and "\n" not in middle[: middle.rfind("/") + 1]
    return lambda path: (middle := around(path)) is not None and "\n" not in middle  # "**" is .*


def _tokens(pattern: str) -> tuple[str, ...]:
    """A glob as tokens: "**", "*", "?", "[...]" or one literal character."""
    tokens, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            tokens += ["**/", "**", "/"]  # optional: no folder at all, or "**" then "/"
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
        if x == "**/":  # skip the optional group, or enter it
            return meet(i + 3, j) or meet(i + 1, j)
        if y == "**/":
            return meet(i, j + 3) or meet(i, j + 1)
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


# One way some tasks' files overlap: every task of the first group shares
# ``file`` with every other task of the second. The two groups are the same
# list object when all the tasks share the one path.
_Meeting = tuple[str, list[int], list[int]]


def _meetings(files_of: list[list[str]]) -> list[_Meeting]:
    """Every way the tasks' declared files overlap, found through the indexes described above."""
    tasks_of: dict[str, list[int]] = defaultdict(list)
    for task, files in enumerate(files_of):
        for raw in files:
            tasks_of[raw].append(task)  # in task order: each list is sorted
    literal_list: dict[str, list[int]] = {}  # normalised path: its tasks, sorted, each once
    glob_list: dict[str, list[int]] = {}
    for raw, tasks in tasks_of.items():  # each distinct spelling normalised once
        # most paths need no normalising: test for that without a call, this loop is hot
        tidy = "\\" in raw or "//" in raw or raw[:2] == "./" or raw[-1:] == "/"
        path = normalise(raw) if tidy else raw
        index = glob_list if "*" in path or "?" in path or "[" in path else literal_list  # is_glob
        if path in index:  # another spelling of the same path
            index[path] = sorted({*index[path], *tasks})
        elif len(tasks) > 1 and len(set(tasks)) < len(tasks):  # a task naming the file twice
            index[path] = sorted(set(tasks))
        else:
            index[path] = tasks

    out: list[_Meeting] = []
    for path, tasks in literal_list.items():
        if len(tasks) > 1:
            out.append((path, tasks, tasks))
    literals = sorted(literal_list)
    prefix_of = {pattern: fixed_prefix(pattern) for pattern in glob_list}
    for pattern, tasks in glob_list.items():
        if len(tasks) > 1:
            out.append((pattern, tasks, tasks))
        prefix = prefix_of[pattern]
        matches = glob_matcher(pattern)
        # the literal paths starting with the glob's fixed part are a range of the sorted list
        for index in range(bisect.bisect_left(literals, prefix), len(literals)):
            path = literals[index]
            if not path.startswith(prefix):
                break
            if matches(path):
                out.append((path, tasks, literal_list[path]))
    by_prefix: dict[str, list[str]] = defaultdict(list)
    for pattern, prefix in prefix_of.items():
        by_prefix[prefix].append(pattern)
    cuts = sorted({len(prefix) for prefix in by_prefix})  # only these lengths can name a prefix
    for pattern, tasks in glob_list.items():
        prefix = prefix_of[pattern]
        for cut in cuts[: bisect.bisect_right(cuts, len(prefix))]:
            for other in by_prefix.get(prefix[:cut], ()):
                # equal prefixes meet from both sides: take each such pair once
                if other != pattern and (cut < len(prefix) or other < pattern) and globs_overlap(pattern, other):
                    out.append((pattern, tasks, glob_list[other]))
                    out.append((other, tasks, glob_list[other]))
    return out


def _pairs(meeting: _Meeting) -> Iterable[tuple[int, int]]:
    """The pairs of tasks, lower number first, that share the meeting's file."""
    _, tasks, others = meeting
    if tasks is others:
        return itertools.combinations(tasks, 2)  # the lists are sorted
    return [(x, y) if x < y else (y, x) for x in tasks for y in others if x != y]


def overlapping_pairs(files_of: list[list[str]]) -> dict[tuple[int, int], set[str]]:
    """Every pair of tasks whose declared files overlap, with the files they share."""
    shared: dict[tuple[int, int], set[str]] = defaultdict(set)
    for meeting in _meetings(files_of):
        for pair in _pairs(meeting):
            shared[pair].add(meeting[0])
    return shared


def find_conflicts(graph: TaskGraph, files_of: list[list[str]], level: list[int],
                   order: list[int] | None = None) -> list[Conflict]:
    """Overlapping pairs not already ordered by a path of dependencies.

    ``level`` is each task's wave (:meth:`TaskGraph.levels`) and ``order`` a
    topological order, computed here when not given.
    """
    meetings = _meetings(files_of)
    pairs: set[tuple[int, int]] = set()
    for meeting in meetings:
        pairs.update(_pairs(meeting))
    if pairs:
        reachability = Reachability(graph, graph.topological_order() if order is None else order, level)
        pairs = set(reachability.unrelated(pairs))
    # Most overlapping pairs are ordered: collect the shared files only for the rest.
    files: dict[tuple[int, int], set[str]] = {pair: set() for pair in pairs}
    for meeting in meetings:
        for pair in pairs.intersection(_pairs(meeting)):
            files[pair].add(meeting[0])
    return [Conflict(a, b, tuple(sorted(files[a, b]))) for a, b in sorted(pairs)]


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


def _tasks_of_files(conflicts: list[Conflict]) -> dict[str, set[int]]:
    """Each file the conflicts name, with the tasks in conflict over it."""
    tasks_of: dict[str, set[int]] = defaultdict(set)
    for c in conflicts:
        for f in c.files:
            tasks_of[f].update((c.a, c.b))
    return tasks_of


def split_suggestions(conflicts: list[Conflict]) -> list[SplitSuggestion]:
    """Files shared by so many tasks that splitting them would free the most parallelism."""
    tasks_of = _tasks_of_files(conflicts)
    busy = [(f, tuple(sorted(t))) for f, t in tasks_of.items() if len(t) >= SPLIT_SUGGESTION_MIN_TASKS]
    return [SplitSuggestion(f, t) for f, t in sorted(busy, key=lambda item: (-len(item[1]), item[0]))]


def exclusive_sets(n: int, conflicts: list[Conflict]) -> list[list[int]]:
    """For lock mode: the tasks each task may never run beside."""
    partners: list[list[int]] = [[] for _ in range(n)]
    for c in conflicts:
        partners[c.a].append(c.b)
        partners[c.b].append(c.a)
    return partners


def exclusive_groups(conflicts: list[Conflict], exclusive: Sequence[Sequence[int]],
                     weight: Sequence[float]) -> list[tuple[int, ...]]:
    """For lock mode: groups of three tasks or more locked apart pairwise, which therefore run one at a time.

    ``exclusive`` is :func:`exclusive_sets` of the conflicts. Each file the
    conflicts name gives at most one group: its tasks heaviest first, each
    taken when it is locked against all those taken before. Not all of a
    file's tasks need be: two globs may each meet a third task's file and not
    each other. (Every locked pair is such a group of two; callers have them
    in ``exclusive``.)
    """
    partners: dict[int, set[int]] = {}
    groups: list[tuple[int, ...]] = []
    for tasks in _tasks_of_files(conflicts).values():
        if len(tasks) < 3:
            continue
        group: list[int] = []
        for task in sorted(tasks, key=lambda t: (-weight[t], t)):
            if task not in partners:
                partners[task] = set(exclusive[task])
            if partners[task].issuperset(group):
                group.append(task)
        if len(group) >= 3:
            groups.append(tuple(group))
    return groups
