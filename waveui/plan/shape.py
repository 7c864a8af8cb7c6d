"""The graph's type (chain / broad / hybrid) and the strategy that suits it."""

from __future__ import annotations

import math
from dataclasses import dataclass

from waveui.run.metrics import plural

CHAIN_PARALLELISM = 1.5  # below it, the critical path holds two thirds of the work or more
BROAD_WAVE_SHARE = 0.5  # a broad graph's one wide wave holds at least this share of the tasks


@dataclass(frozen=True)
class Shape:
    kind: str  # "chain" | "broad" | "hybrid"
    parallelism: float  # total story points / critical path length
    level: str  # "none" | "low" | "medium" | "high"
    widest_wave: int
    useful_workers: int
    strategy: str
    verdict: str


def classify(task_count: int, total_work: float, span: float, waves: list[list[int]],
             locked: bool = False) -> Shape:
    """Name the graph's type from its average parallelism and its widest wave.

    * ``parallelism`` is total story points divided by the span, a makespan
      no number of workers can beat: the critical path's length, or longer
      when ``locked`` tasks must take turns. It is how many workers the graph
      can keep busy on average.
    * **chain** when ``parallelism < 1.5``: the critical path (or the locked
      tasks' turns) holds two thirds of the work or more, so the tasks mostly wait for one another (a pure
      chain has exactly 1.0).
    * **broad** otherwise, when the tasks that can run side by side all sit
      in one wave, holding at least half of the tasks: most work is
      independent (a pure fan-out, or fan-out then fan-in).
    * **hybrid** in every other case: parallel branches joined by
      dependencies, side by side at more than one depth (two tasks, then
      their join, then two more is hybrid, though its first wave holds half).

    Parallelisation level: none (1.0), low (< 1.5), medium (< 3), high (>= 3).
    ``useful_workers`` is ceil(parallelism) but no more than the widest wave:
    more workers than that would mostly sit idle.
    """
    widest = max((len(w) for w in waves), default=0)
    parallelism = total_work / span if span > 0 else float(max(1, widest))
    if parallelism <= 1.0 + 1e-9:
        level = "none"
    elif parallelism < CHAIN_PARALLELISM:
        level = "low"
    elif parallelism < 3:
        level = "medium"
    else:
        level = "high"
    useful = max(1, min(widest, math.ceil(parallelism - 1e-9)))
    if parallelism < CHAIN_PARALLELISM:
        kind = "chain"
        strategy = "sequential: one or two workers are enough; split long tasks to create parallelism"
    elif task_count and widest >= BROAD_WAVE_SHARE * task_count and sum(len(w) > 1 for w in waves) == 1:
        kind = "broad"
        strategy = f"wide parallel: run up to {useful} tasks at once and watch for shared files"
    else:
        kind = "hybrid"
        strategy = f"eager critical-path first with about {useful} workers"
    verdict = (
        f"{kind} graph: {plural(task_count, 'task')} in {plural(len(waves), 'wave')}, widest wave {widest}; "
        f"{level} parallelism ({parallelism:.1f} workers busy on average"
        f"{', the locks counted' if locked else ''}). Strategy: {strategy}."
    )
    return Shape(kind, parallelism, level, widest, useful, strategy, verdict)
