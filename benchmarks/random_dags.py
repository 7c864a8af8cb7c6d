"""Makespans of the eager, wave-barrier and FIFO schedules on random task graphs, against the lower bound.

Run it from the repository root::

    python benchmarks/random_dags.py
    python benchmarks/random_dags.py --sizes 100 1000 --workers 4 --seeds 5

Each graph has random story points from 1 to 8, and each task depends on
up to three tasks among the ``--window`` tasks before it (a small window
makes a deep graph, a large one a wide graph). Every graph is planned at each
worker count and the makespan of each schedule is divided by
``lower_bound`` (critical path or total work / P, whichever is longer):
1.000 means no schedule could be shorter.

Two runs are simulated:

* exact: every task takes its story points, as the plan assumes;
* noisy: every task takes its story points times a random factor from 0.5
  to 2, unknown when planning. The eager order is still the one planned
  from story points, and FIFO follows the real finishes; the waves figure
  packs each wave by the real durations, which flatters it slightly.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass

from waveui.plan.graph import TaskGraph
from waveui.plan.schedule import best_eager_schedule, dispatch_check, fifo_schedule, lower_bound, wave_schedule

METHODS = ("eager", "waves", "FIFO")
NOISE = (0.5, 2.0)


def random_dag(n: int, window: int, rng: random.Random) -> TaskGraph:
    """``n`` tasks of 1 to 8 points, each after up to three of the ``window`` tasks before it."""
    pred = []
    for i in range(n):
        low = max(0, i - window)
        pred.append(sorted(set(rng.randrange(low, i) for _ in range(rng.randint(0, 3)))) if i else [])
    weight = [float(rng.randint(1, 8)) for _ in range(n)]
    return TaskGraph.from_edges([f"t{i}" for i in range(n)], weight, pred)


def with_weights(graph: TaskGraph, weight: list[float]) -> TaskGraph:
    return TaskGraph(graph.ids, weight, graph.succ, graph.pred, graph.priority)


@dataclass
class Run:
    size: int
    workers: int
    ratio: dict[str, float]  # makespan / lower bound, by method


def ratios(actual: TaskGraph, workers: int, dispatch_order: list[int]) -> dict[str, float]:
    """Makespan / lower bound of each method when tasks take ``actual``'s weights.

    The eager run dispatches in ``dispatch_order``, planned beforehand.
    """
    order = actual.topological_order()
    bound = lower_bound(actual, max(actual.tail_lengths(order)), workers)
    makespan = {
        "eager": dispatch_check(actual, workers, dispatch_order),
        "waves": wave_schedule(actual, actual.waves(order), workers).makespan,
        "FIFO": fifo_schedule(actual, workers).makespan,
    }
    return {method: value / bound for method, value in makespan.items()}


def table(header: list[str], rows: list[list[str]]) -> None:
    """Columns aligned: the first to the left, the others to the right."""
    widths = [max(len(row[c]) for row in [header, *rows]) for c in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        cells = [v.ljust(w) if c == 0 else v.rjust(w) for c, (v, w) in enumerate(zip(row, widths))]
        print("  " + "  ".join(cells))


def summary(runs: list[Run], group_of, label: str) -> None:
    groups: dict[int, list[Run]] = defaultdict(list)
    for run in runs:
        groups[group_of(run)].append(run)
    rows = []
    for key in sorted(groups):
        group = groups[key]
        row = [f"{key}", str(len(group))]
        for method in METHODS:
            ratios = [r.ratio[method] for r in group]
            row += [f"{statistics.fmean(ratios):.4f}", f"{max(ratios):.4f}"]
        for method in ("waves", "FIFO"):
            row.append(f"{statistics.fmean(r.ratio[method] / r.ratio['eager'] for r in group):.3f}")
        rows.append(row)
    table([label, "runs", "eager mean", "worst", "waves mean", "worst", "FIFO mean", "worst",
           "waves/eager", "FIFO/eager"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 300, 1000])
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument("--seeds", type=int, default=3, help="graphs per size and shape")
    parser.add_argument("--window", type=int, nargs="+", default=[10, 100],
                        help="how far back dependencies reach: one graph shape per value")
    args = parser.parse_args(argv)

    started, cpu_started = time.perf_counter(), time.process_time()
    exact: list[Run] = []
    noisy: list[Run] = []
    for size in args.sizes:
        for window in args.window:
            for seed in range(args.seeds):
                rng = random.Random(f"{size}-{window}-{seed}")
                graph = random_dag(size, window, rng)
                actual = with_weights(graph, [w * rng.uniform(*NOISE) for w in graph.weight])
                tail = graph.tail_lengths(graph.topological_order())
                for workers in args.workers:
                    plan = best_eager_schedule(graph, tail, workers).order
                    exact.append(Run(size, workers, ratios(graph, workers, plan)))
                    noisy.append(Run(size, workers, ratios(actual, workers, plan)))

    print("Random task graphs: makespan / lower bound (1.000 = provably shortest)")
    print(f"story points 1-8, windows {args.window}, {args.seeds} seeds, workers {args.workers}")
    for title, runs in (("exact durations (= story points)", exact),
                        (f"noisy durations (story points x {NOISE[0]:g}..{NOISE[1]:g}, planned on story points)",
                         noisy)):
        print()
        print(f"{title}, by size:")
        summary(runs, lambda r: r.size, "tasks")
        print(f"{title}, by workers:")
        summary(runs, lambda r: r.workers, "workers")
    print()
    print(f"whole run: {time.perf_counter() - started:.1f} s wall, {time.process_time() - cpu_started:.1f} s CPU, "
          f"{len(exact) + len(noisy)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
