"""How close waveui's schedules come to the best known makespans of the Standard Task Graph Set.

Run it from the repository root::

    python benchmarks/stg.py                 # data in ../shared/stg next to the repository
    python benchmarks/stg.py --stg DIR --workers 2 4

The data folder holds STG graphs with published or solver-computed bounds
(see its README.md). Every graph is planned at each worker count with

* eager: ``best_eager_schedule``, the dispatch order ``waveui plan`` gives;
* critical path: one list schedule, longest remaining path first;
* waves: every wave finishes before the next starts (``wave_schedule``);
* FIFO: ready tasks start in the order they became ready;

and each makespan is divided by the best known one (1.000 = as good as the
best schedule anyone found). Three parts are printed:

1. the 74 cases of the 50- and 100-task random graphs proven optimal;
2. the cases of those graphs still open, against their published bounds;
3. the 300-task random graphs, the application graphs (robot, sparse, fpppp)
   and the Pegasus workflows, against the CP-SAT bounds in ``computed/``.

It also checks that eager dispatch in the plan's order reproduces each eager
makespan (``dispatch_check``) and prints how long everything took.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from stg_format import Bound, computed_bounds, published_bounds, read_stg

from waveui.plan.graph import EPSILON, TaskGraph
from waveui.plan.schedule import (
    best_eager_schedule,
    dispatch_check,
    fifo_schedule,
    list_schedule,
    lower_bound,
    wave_schedule,
)

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "stg"
METHODS = ("eager", "critical path", "waves", "FIFO")


@dataclass
class Case:
    bound: Bound
    makespan: dict[str, float]  # by method
    eager_rule: str
    eager_seconds: float  # CPU time of best_eager_schedule
    reproduced: bool  # dispatch_check gave the eager makespan back

    def ratio(self, method: str, to: str = "best") -> float:
        return self.makespan[method] / (self.bound.best if to == "best" else self.bound.lower)


class Graphs:
    """Each STG file read once, with its topological order and b-levels."""

    def __init__(self, root: Path):
        self.root = root
        self._cache: dict[str, tuple[TaskGraph, list[float]]] = {}

    def get(self, file: str) -> tuple[TaskGraph, list[float]]:
        if file not in self._cache:
            graph = read_stg(self.root / file)
            self._cache[file] = graph, graph.tail_lengths(graph.topological_order())
        return self._cache[file]


def run_case(graphs: Graphs, bound: Bound) -> Case:
    graph, tail = graphs.get(bound.file)
    workers = bound.procs
    clock = time.process_time()  # CPU time: the machine may be busy with other work
    eager = best_eager_schedule(graph, tail, workers)
    seconds = time.process_time() - clock
    reproduced = abs(dispatch_check(graph, workers, eager.order) - eager.makespan) <= EPSILON
    critical = list_schedule(graph, workers, [(-tail[i], i) for i in range(len(graph))], "critical path")
    makespan = {
        "eager": eager.makespan,
        "critical path": critical.makespan,
        "waves": wave_schedule(graph, graph.waves(), workers).makespan,
        "FIFO": fifo_schedule(graph, workers).makespan,
    }
    if eager.makespan < lower_bound(graph, max(tail), workers) - EPSILON:
        raise AssertionError(f"{bound.file} at {workers}: eager {eager.makespan} beats the lower bound")
    return Case(bound, makespan, eager.rule, seconds, reproduced)


# ------------------------------------------------------------------ printing


def table(header: list[str], rows: list[list[str]], indent: str = "  ") -> None:
    """Columns aligned: the first to the left, the others to the right."""
    widths = [max(len(str(row[c])) for row in [header, *rows]) for c in range(len(header))]

    def line(row: list[str]) -> str:
        cells = [str(v).ljust(w) if c == 0 else str(v).rjust(w) for c, (v, w) in enumerate(zip(row, widths))]
        return indent + "  ".join(cells).rstrip()

    print(line(header))
    print(indent + "  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))


def at_best(cases: list[Case], method: str) -> int:
    return sum(c.makespan[method] <= c.bound.best + EPSILON for c in cases)


def summary_rows(cases: list[Case], to: str = "best") -> list[list[str]]:
    """Per method: mean and worst ratio, and how many cases reach the best known makespan."""
    rows = []
    for method in METHODS:
        ratios = [c.ratio(method, to) for c in cases]
        rows.append([method, f"{statistics.fmean(ratios):.4f}", f"{max(ratios):.4f}",
                     f"{at_best(cases, method)}/{len(cases)}"])
    return rows


def by_workers_rows(cases: list[Case]) -> list[list[str]]:
    """Eager against critical path alone, per worker count."""
    rows = []
    groups: dict[int, list[Case]] = defaultdict(list)
    for case in cases:
        groups[case.bound.procs].append(case)
    for procs in sorted(groups):
        group = groups[procs]
        row = [f"{procs} workers", str(len(group))]
        for method in ("eager", "critical path"):
            ratios = [c.ratio(method) for c in group]
            row += [f"{statistics.fmean(ratios):.4f}", f"{max(ratios):.4f}", str(at_best(group, method))]
        rows.append(row)
    return rows


def print_proven(cases: list[Case]) -> None:
    print(f"1. Proven optima: {len(cases)} cases of the 50- and 100-task random graphs (rand/50, rand/100)")
    print("   makespan / optimal makespan; 'at optimum' counts cases that reach it")
    table(["method", "mean", "worst", "at optimum"], summary_rows(cases))
    print()
    table(["eager vs critical path", "cases", "eager mean", "worst", "at opt", "cp mean", "worst", "at opt"],
          by_workers_rows(cases))
    misses = [c for c in cases if c.makespan["eager"] > c.bound.best + EPSILON]
    if misses:
        print("   eager above the optimum:")
        for c in misses:
            print(f"     {c.bound.file} at {c.bound.procs} workers: {c.makespan['eager']:g} "
                  f"vs {c.bound.best:g} ({c.eager_rule})")


def print_open(cases: list[Case]) -> None:
    print(f"2. Open cases of the same graphs: {len(cases)}, against the published best and lower bound")
    rows = [[f"{c.bound.file} P={c.bound.procs}", f"{c.bound.lower:g}", f"{c.bound.best:g}",
             *(f"{c.makespan[m]:g}" for m in METHODS)] for c in cases]
    table(["case", "lower", "best", *METHODS], rows)


def print_computed(cases: list[Case]) -> None:
    print("3. Larger and application graphs against the CP-SAT bounds in computed/")
    print("   makespan / best makespan found, and / proven lower bound")
    groups: dict[str, list[Case]] = defaultdict(list)
    for case in cases:
        groups[case.bound.file.split("/")[0] if "/300/" not in case.bound.file else "rand/300"].append(case)
    for name, group in groups.items():
        optimal = sum(c.bound.optimal for c in group)
        print(f"   {name}: {len(group)} cases, {optimal} of them with a proven optimum")
        rows = summary_rows(group, "best")
        for row, lower_row in zip(rows, summary_rows(group, "lower")):
            row[3:3] = lower_row[1:3]
        table(["method", "/best mean", "worst", "/lower mean", "worst", "at best"], rows, indent="     ")
    details = [c for c in cases if "/300/" not in c.bound.file]
    print("   per case (application graphs and workflows):")
    rows = [[f"{c.bound.file} P={c.bound.procs}", f"{c.bound.lower:g}", f"{c.bound.best:g}",
             *(f"{c.ratio(m):.3f}" for m in METHODS)] for c in details]
    table(["case", "lower", "best", *(f"{m} /best" for m in METHODS)], rows, indent="     ")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stg", type=Path, default=DEFAULT_DATA, metavar="DIR",
                        help="the STG data folder (default: ../shared/stg beside the repository)")
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4, 8, 16])
    args = parser.parse_args(argv)
    root = args.stg.resolve()
    if not (root / "optimal").is_dir():
        print(f"no STG data in {args.stg} (expected optimal/ and computed/ there)", file=sys.stderr)
        return 2

    started, cpu_started = time.perf_counter(), time.process_time()
    graphs = Graphs(root)
    published = [b for b in published_bounds(root) if b.procs in args.workers]
    computed = [b for b in computed_bounds(root) if b.procs in args.workers]
    proven = [run_case(graphs, b) for b in published if b.optimal]
    still_open = [run_case(graphs, b) for b in published if not b.optimal]
    larger = [run_case(graphs, b) for b in computed]
    everything = proven + still_open + larger

    print("Standard Task Graph Set: makespan of waveui's schedules on P identical workers")
    print()
    print_proven(proven)
    print()
    print_open(still_open)
    print()
    print_computed(larger)
    print()
    failed = [c for c in everything if not c.reproduced]
    print(f"dispatch check: {len(everything) - len(failed)}/{len(everything)} eager schedules reproduced "
          "by dispatching in their start order")
    for c in failed:
        print(f"  NOT reproduced: {c.bound.file} at {c.bound.procs} workers")
    sizes: dict[int, list[float]] = defaultdict(list)
    for c in everything:
        sizes[len(graphs.get(c.bound.file)[0])].append(c.eager_seconds)
    print("best_eager_schedule, CPU time per call:")
    table(["tasks (dummies included)", "calls", "mean ms", "max ms"],
          [[str(n), str(len(s)), f"{statistics.fmean(s) * 1000:.0f}", f"{max(s) * 1000:.0f}"]
           for n, s in sorted(sizes.items())])
    print(f"whole run: {time.perf_counter() - started:.1f} s wall, {time.process_time() - cpu_started:.1f} s CPU, "
          f"{len(everything)} cases")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
