"""Read Standard Task Graph Set (STG) files and bound tables into waveui task graphs.

The STG format (Tobita & Kasahara, 2002): the first number is n, the count of
real tasks; then n + 2 records ``id time npred pred...``. Task 0 is a dummy
entry and task n + 1 a dummy exit, both of time 0. Lines starting with ``#``
are comments. Records are read as a stream of numbers rather than line by
line, so a record wrapped over several lines still parses.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from waveui.plan.graph import TaskGraph


def read_stg(path: Path) -> TaskGraph:
    """The task graph of one STG file, dummies included (their weight 0 changes no schedule)."""
    numbers: list[int] = []
    with open(path, encoding="utf-8") as stream:
        for line in stream:
            if not line.lstrip().startswith("#"):
                numbers.extend(int(token) for token in line.split())
    if not numbers:
        raise ValueError(f"{path}: no tasks")
    count = numbers[0] + 2
    weight: list[float] = [0.0] * count
    pred: list[list[int]] = [[] for _ in range(count)]
    pos = 1
    for _ in range(count):
        task, time, npred = numbers[pos], numbers[pos + 1], numbers[pos + 2]
        if not 0 <= task < count:
            raise ValueError(f"{path}: task id {task} out of range 0..{count - 1}")
        weight[task] = float(time)
        pred[task] = list(dict.fromkeys(numbers[pos + 3: pos + 3 + npred]))
        pos += 3 + npred
    return TaskGraph.from_edges([str(i) for i in range(count)], weight, pred)


@dataclass(frozen=True)
class Bound:
    """What is known about one graph at one worker count."""

    file: str  # relative to the data folder, e.g. ``rand/50/rand0000.stg``
    procs: int
    best: float  # the shortest makespan anyone found
    lower: float  # a proven lower bound
    optimal: bool  # best == lower is proven


def published_bounds(root: Path) -> list[Bound]:
    """The published table for the 50- and 100-task random graphs, limited to files present."""
    bounds = []
    with open(root / "optimal" / "stg_published_50_100.csv", newline="", encoding="utf-8") as stream:
        for row in csv.DictReader(stream):
            file = f"rand/{row['size']}/{row['file']}"
            if (root / file).exists():
                bounds.append(Bound(file, int(row["procs"]), float(row["best_known"]),
                                    float(row["lower_bound"]), row["status"] == "optimal"))
    return bounds


def computed_bounds(root: Path) -> list[Bound]:
    """Solver bounds for the 300-task, application and workflow graphs, limited to files present."""
    bounds = []
    with open(root / "computed" / "computed_bounds.csv", newline="", encoding="utf-8") as stream:
        for row in csv.DictReader(stream):
            if (root / row["file"]).exists():
                bounds.append(Bound(row["file"], int(row["procs"]), float(row["best_makespan_found"]),
                                    float(row["proven_lower_bound"]), row["status"] == "optimal"))
    return bounds
