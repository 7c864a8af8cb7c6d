"""The task graph as index arrays, with waves and critical-path lengths in O(V+E).

Tasks are numbered in file order; ``succ[i]``/``pred[i]`` hold numbers, and
``weight[i]`` is a task's story points. Every analysis in ``waveui.plan`` works
on these arrays: for 100k tasks, plain lists are several times faster than a
networkx graph, which :meth:`TaskGraph.to_networkx` still gives for exports.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from waveui.core.spec import Epic

if TYPE_CHECKING:  # networkx takes longer to import than most plans take to make
    import networkx as nx

# Story points are often fractions (0.5); sums of them are compared with this.
EPSILON = 1e-9


@dataclass
class TaskGraph:
    ids: list[str]
    weight: list[float]
    succ: list[list[int]]
    pred: list[list[int]]
    priority: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.priority:
            self.priority = [0] * len(self.ids)
        self.index = {task_id: i for i, task_id in enumerate(self.ids)}

    @classmethod
    def from_epic(cls, epic: Epic) -> TaskGraph:
        ids = [t.id for t in epic.tasks]
        index = {task_id: i for i, task_id in enumerate(ids)}
        pred = [[index[d] for d in dict.fromkeys(t.requires)] for t in epic.tasks]
        return cls.from_edges(ids, [t.story_points for t in epic.tasks], pred, [t.priority for t in epic.tasks])

    @classmethod
    def from_edges(cls, ids: Sequence[str], weight: Sequence[float], pred: list[list[int]],
                   priority: Sequence[int] = ()) -> TaskGraph:
        """A graph from each task's predecessor numbers (duplicates removed)."""
        succ: list[list[int]] = [[] for _ in ids]
        for task, deps in enumerate(pred):
            for dep in deps:
                succ[dep].append(task)
        return cls(list(ids), list(weight), succ, pred, list(priority))

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def edge_count(self) -> int:
        return sum(map(len, self.succ))

    def with_edges(self, edges: Iterable[tuple[int, int]]) -> TaskGraph:
        """A copy with extra edges ``(before, after)``, as serialising conflicts adds."""
        # Lists no new edge touches are shared with this graph, not copied: the
        # edges are few next to the tasks, and neither graph changes after.
        pred, succ = list(self.pred), list(self.succ)
        for before, after in edges:
            if before not in pred[after]:
                if pred[after] is self.pred[after]:
                    pred[after] = list(pred[after])
                if succ[before] is self.succ[before]:
                    succ[before] = list(succ[before])
                pred[after].append(before)
                bisect.insort(succ[before], after)  # in task order, as from_edges makes them
        return TaskGraph(list(self.ids), list(self.weight), succ, pred, list(self.priority))

    def topological_order(self) -> list[int]:
        """Kahn's algorithm, taking ready tasks in file order; ValueError on a cycle."""
        indegree = [len(p) for p in self.pred]
        order = [i for i, d in enumerate(indegree) if d == 0]
        succ = self.succ
        for i in order:  # ``order`` grows while it is walked
            for j in succ[i]:
                indegree[j] -= 1
                if indegree[j] == 0:
                    order.append(j)
        if len(order) != len(self.ids):
            raise ValueError("the task graph has a cycle")
        return order

    def levels(self, order: list[int] | None = None) -> list[int]:
        """Each task's wave number: 0 without dependencies, else 1 + its deepest dependency's."""
        level = [0] * len(self.ids)
        succ = self.succ
        for i in order or self.topological_order():
            next_level = level[i] + 1
            for j in succ[i]:
                if level[j] < next_level:
                    level[j] = next_level
        return level

    def waves(self, order: list[int] | None = None, level: list[int] | None = None) -> list[list[int]]:
        """Topological layers, each in file order (from ``level`` when the levels are known)."""
        if level is None:
            level = self.levels(order)
        waves: list[list[int]] = [[] for _ in range(max(level, default=-1) + 1)]
        for i, lv in enumerate(level):
            waves[lv].append(i)
        return waves

    def head_lengths(self, order: list[int]) -> list[float]:
        """Longest weighted path ending at each task, the task included (earliest finish)."""
        head = list(self.weight)
        weight, pred = self.weight, self.pred
        of = head.__getitem__  # max(map(...)) over a generator: a fifth quicker, same result
        for i in order:
            deps = pred[i]
            if deps:
                head[i] = weight[i] + max(map(of, deps))
        return head

    def tail_lengths(self, order: list[int]) -> list[float]:
        """Longest weighted path starting at each task, the task included (its b-level)."""
        tail = list(self.weight)
        weight, succ = self.weight, self.succ
        of = tail.__getitem__
        for i in reversed(order):
            nexts = succ[i]
            if nexts:
                tail[i] = weight[i] + max(map(of, nexts))
        return tail

    def reaches(self, source: int, targets: set[int], level: list[int]) -> set[int]:
        """Which of ``targets`` a path from ``source`` reaches.

        The search never descends past the deepest target's wave: a path only
        ever goes to later waves, so nothing beyond can lead back to a target.
        For many pairs at once, :class:`Reachability` is much faster.
        """
        if not targets:
            return set()
        deepest = max(level[t] for t in targets)
        found, seen, stack = set(), {source}, [source]
        succ = self.succ
        while stack and len(found) < len(targets):
            for j in succ[stack.pop()]:
                if j not in seen and level[j] <= deepest:
                    seen.add(j)
                    if j in targets:
                        found.add(j)
                    stack.append(j)
        return found

    def to_networkx(self) -> nx.DiGraph:
        import networkx as nx

        graph = nx.DiGraph()
        for i, task_id in enumerate(self.ids):
            graph.add_node(task_id, weight=self.weight[i])
        graph.add_edges_from((self.ids[i], self.ids[j]) for i, nexts in enumerate(self.succ) for j in nexts)
        return graph


class Reachability:
    """Answers "is there a path of dependencies from ``a`` to ``b``?" for many pairs at once.

    A search per question costs O(V+E) in a deep, well-connected graph, and
    conflict detection asks one per overlapping pair: O(n²) for large epics.
    Instead, a few *landmark* tasks are chosen, and every task gets two bit
    masks over them: the landmarks it reaches (``down``) and the landmarks
    that reach it (``up``), each computed in one pass over the graph. Then

    * a landmark reached by ``a`` that reaches ``b`` proves a path;
    * a landmark that reaches ``a`` but not ``b``, or one reached by ``b``
      but not by ``a``, disproves one (it would otherwise reach through);
    * ``b`` in the same or an earlier wave than ``a`` disproves one.

    That settles nearly every question in O(1). The rest get a short search,
    pruned by the same rules at every task on the way; the few a short search
    cannot settle are answered exactly by passes over the graph that carry one
    bit per target task, ``CHUNK`` targets a pass. So the worst case stays
    O((V+E) · (1 + targets / CHUNK)) rather than a search per question.
    """

    CHUNK = 2048  # targets per exact pass: wider masks make each OR dearer
    SEARCH_LIMIT = 32  # tasks a search may visit before its question waits for an exact pass

    def __init__(self, graph: TaskGraph, order: list[int], level: list[int], landmarks: int | None = None):
        n = len(graph)
        self.graph, self.order, self.level = graph, order, level
        if landmarks is None:
            # More landmarks settle more questions without a search; masks of
            # two thousand bits are still cheap enough to OR.
            landmarks = min(n, max(64, n // 50), 2048)
        bit = [0] * n
        # One landmark per stretch of the topological order: spread over the
        # whole depth of the graph, and in each stretch the task with the most
        # edges, as it lies on the most paths.
        pred, succ = graph.pred, graph.succ
        if landmarks:
            score = [(len(p) + 1) * (len(s) + 1) for p, s in zip(pred, succ)]
            stretch = -(-n // landmarks)
            for number, first in enumerate(range(0, n, stretch)):
                bit[max(order[first : first + stretch], key=score.__getitem__)] = 1 << number
        up = list(bit)
        for i in order:
            mask = up[i]
            for p in pred[i]:
                mask |= up[p]
            up[i] = mask
        down = list(bit)
        for i in reversed(order):
            mask = down[i]
            for j in succ[i]:
                mask |= down[j]
            down[i] = mask
        self.up, self.down = up, down

    def __call__(self, a: int, b: int) -> bool:
        """Whether a path of dependencies leads from ``a`` to ``b`` (``a != b``)."""
        # a path only ever leads to later waves, so from a to b or not at all
        return self.level[a] < self.level[b] and not self.unrelated([(a, b)])

    def unrelated(self, pairs: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
        """The pairs of tasks with no path of dependencies between them either way, in the order given."""
        level, up, down = self.level, self.up, self.down
        search = self._search
        out: list[tuple[int, int]] = []
        hard: set[tuple[int, int]] = set()  # (from, to) still to ask
        for pair in pairs:  # the rules of the class docstring, inlined: this loop is hot
            a, b = pair
            if level[a] == level[b]:
                out.append(pair)
                continue
            if level[a] > level[b]:
                a, b = b, a
            up_b = up[b]
            if down[a] & up_b:
                continue
            if up[a] & ~up_b or down[b] & ~down[a]:
                out.append(pair)
                continue
            answer = search(a, b)
            if answer is None:
                hard.add((a, b))
                out.append(pair)  # for now: taken out below if a path turns up
            elif not answer:
                out.append(pair)
        if hard:
            related = set(self._exact(list(hard)))
            out = [(a, b) for a, b in out if ((a, b) if level[a] < level[b] else (b, a)) not in related]
        return out

    def _search(self, a: int, b: int) -> bool | None:
        """A short search from ``a`` for ``b``, skipping every task the labels rule out; None if cut off."""
        level, up, down, succ = self.level, self.up, self.down, self.graph.succ
        deepest, up_b, down_b = level[b], up[b], down[b]
        seen, stack = {a}, [a]
        budget = self.SEARCH_LIMIT
        while stack:
            for j in succ[stack.pop()]:
                if j == b:
                    return True
                if j in seen or level[j] >= deepest:
                    continue
                seen.add(j)
                down_j = down[j]
                if down_j & up_b:
                    return True
                if up[j] & ~up_b or down_b & ~down_j:
                    continue
                budget -= 1
                if budget <= 0:
                    return None
                stack.append(j)
        return False

    def _exact(self, pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """The pairs with a path, found by backward passes that carry a bit per target."""
        order, succ = self.order, self.graph.succ
        position = [0] * len(order)
        for pos, task in enumerate(order):
            position[task] = pos
        targets = sorted({b for _, b in pairs}, key=position.__getitem__)
        found = []
        for first in range(0, len(targets), self.CHUNK):
            chunk = targets[first : first + self.CHUNK]
            bit = {b: 1 << number for number, b in enumerate(chunk)}
            reach = [0] * len(order)
            for b, mask in bit.items():
                reach[b] = mask
            asked = [(a, b) for a, b in pairs if b in bit]
            # only tasks between the earliest source and the last target matter
            for pos in range(position[chunk[-1]] - 1, min(position[a] for a, _ in asked) - 1, -1):
                i = order[pos]
                mask = reach[i]
                for j in succ[i]:
                    mask |= reach[j]
                reach[i] = mask
            found.extend((a, b) for a, b in asked if reach[a] & bit[b])
        return found
