"""Shared helpers: building epics and graphs by hand, random DAGs, brute force, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from waveui.plan.graph import TaskGraph
from waveui.core.spec import Epic, Task

# Modest by default so the suite stays fast; HYPOTHESIS_PROFILE=thorough searches much harder.
settings.register_profile("waveui", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "waveui"))

EXAMPLES = Path(__file__).resolve().parent.parent / "waveui" / "examples"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.toml"))

# Story points that are exact in binary, so sums of them compare exactly.
EXACT_POINTS = [0, 0.5, 1, 2, 3, 5, 8]
# A small pool of files and globs that overlap in every interesting way.
FILE_POOL = [
    "src/a.py",
    "src/b.py",
    "src/sub/a.py",
    "src/*.py",
    "src/**",
    "src/sub/",
    "docs/",
    "docs/index.md",
    "**/a.py",
    "README.md",
    "./README.md",
]


# ------------------------------------------------------------- building epics


def task(task_id: str, points: float = 1, requires=(), files=(), **extra) -> Task:
    return Task(id=task_id, story_points=points, requires=list(requires), affected_files=list(files), **extra)


def epic_of(*tasks: Task, **settings_) -> Epic:
    settings_.setdefault("name", "test")
    return Epic(tasks=list(tasks), **settings_)


def graph_of(epic: Epic) -> TaskGraph:
    return TaskGraph.from_epic(epic)


def edges_of(graph: TaskGraph) -> set[tuple[int, int]]:
    return {(i, j) for i, nexts in enumerate(graph.succ) for j in nexts}


# ----------------------------------------------------------------- random DAGs


@dataclass
class RandomDag:
    ids: list[str]
    weight: list[float]
    pred: list[list[int]]  # file-order numbers of each task's dependencies
    files: list[list[str]]

    def graph(self) -> TaskGraph:
        return TaskGraph.from_edges(self.ids, self.weight, [list(p) for p in self.pred])

    def epic(self, **settings_) -> Epic:
        tasks = [
            task(self.ids[i], self.weight[i], [self.ids[d] for d in self.pred[i]], self.files[i])
            for i in range(len(self.ids))
        ]
        return epic_of(*tasks, **settings_)


@st.composite
def dags(draw, min_tasks: int = 1, max_tasks: int = 8, points=st.sampled_from(EXACT_POINTS),
         with_files: bool = False) -> RandomDag:
    """A random DAG whose file order is a random permutation of a topological order."""
    n = draw(st.integers(min_tasks, max_tasks))
    place = draw(st.permutations(range(n)))  # place[k]: file position of the k-th task in topological order
    density = draw(st.sampled_from([0.0, 0.2, 0.4, 0.7]))
    pred: list[list[int]] = [[] for _ in range(n)]
    for later in range(n):
        for earlier in range(later):
            if draw(st.floats(0, 1)) < density:
                pred[place[later]].append(place[earlier])
    weight = [draw(points) for _ in range(n)]
    ids = [f"t{i:02d}" for i in range(n)]
    files = [draw(st.lists(st.sampled_from(FILE_POOL), max_size=3, unique=True)) if with_files else [] for _ in ids]
    return RandomDag(ids, weight, pred, files)


# ----------------------------------------------------------------- brute force


def all_paths(graph: TaskGraph) -> list[list[int]]:
    """Every maximal path: from a task without dependencies to one without dependants."""
    out: list[list[int]] = []

    def walk(path: list[int]) -> None:
        nexts = graph.succ[path[-1]]
        if not nexts:
            out.append(path)
        for j in nexts:
            walk(path + [j])

    for i in range(len(graph)):
        if not graph.pred[i]:
            walk([i])
    return out


def path_weight(graph: TaskGraph, path: list[int]) -> float:
    return sum(graph.weight[i] for i in path)


def reachable(graph: TaskGraph, source: int) -> set[int]:
    seen, stack = set(), [source]
    while stack:
        for j in graph.succ[stack.pop()]:
            if j not in seen:
                seen.add(j)
                stack.append(j)
    return seen


def concurrent(start: float, length: float, other_start: float, other_length: float, eps: float = 1e-9) -> bool:
    """Whether two runs [start, start + length) share a moment of time (empty runs never do)."""
    if length <= eps or other_length <= eps:
        return False
    return max(start, other_start) < min(start + length, other_start + other_length) - eps


def max_running(starts: list[float], weights: list[float]) -> int:
    """The most tasks running at one instant of a schedule."""
    most = 0
    for s, w in zip(starts, weights):
        if w <= 0:
            continue
        running = sum(1 for s2, w2 in zip(starts, weights) if w2 > 0 and s2 <= s < s2 + w2 - 1e-9)
        most = max(most, running)
    return most


# ------------------------------------------------------------------------- CLI


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        return self.stderr.splitlines()


WAVEUI = [sys.executable, "-m", "waveui"]


def cli_env() -> dict[str, str]:
    env = dict(os.environ, NO_COLOR="1", COLUMNS="100")
    env.pop("PYTHONWARNINGS", None)
    return env


def start_cli(args, cwd: Path) -> subprocess.Popen:
    """Start `python -m waveui ARGS...` in ``cwd`` without waiting for it."""
    return subprocess.Popen([*WAVEUI, *args], cwd=cwd, env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish_cli(process: subprocess.Popen) -> Result:
    out, err = process.communicate(timeout=120)
    return Result(process.returncode, out, err)


@pytest.fixture
def cli(tmp_path):
    """Run `python -m waveui ARGS...` as a subprocess in an empty folder."""

    def run(*args: str, cwd: Path | None = None) -> Result:
        return finish_cli(start_cli(args, cwd or tmp_path))

    return run
