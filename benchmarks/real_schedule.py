"""The real engine on Standard Task Graph Set graphs: its makespan against the best possible, and what each hop costs.

Run it from the repository root::

    python benchmarks/real_schedule.py                    # data in ../shared/stg next to the repository
    python benchmarks/real_schedule.py --stg DIR --unit 1 # 1 s per story point
    python benchmarks/real_schedule.py --chain 30         # only a chain of 30 no-op tasks: the cost of a hop

Each graph (three 50-task random graphs of the set by default, whose optimum
at 4 workers is proven) becomes an epic in a throw-away repository: one task
per node, its story points the node's time, its dependencies the node's
predecessors, and its command ``sleep`` of ``--unit`` seconds per point
followed by writing a file of its own, so every task is a real commit merged
into the integration branch from a pooled worktree. Each graph runs twice:

* exact: every task sleeps as long as its story points say; the makespan is
  divided by the proven optimum (times ``--unit``);
* noisy: every task sleeps its estimate off by up to ±``--noise`` (seeded),
  while the plan still sees the estimates; no optimum is known then, so the
  makespan is divided by the lower bound of the real durations
  (max(critical path, work / workers)).

The makespan runs from the first task's ``preparing`` to the last task's
``done`` in the journal. Each command prints its own start and end time
(``date +%s.%N``), so the journal and these give, for every dependency hop
(the last dependency of a task merged, then the task's command started) and
for every task's end (its command exited, then its work merged):

* dispatch: the last dependency's ``done`` to the task's ``preparing`` (in a
  graph, mostly waiting for a worker: ``--chain`` measures the hop alone);
* prepare: ``preparing`` to the command's first line (worktree, journal, supervisor),
  of which ``waiting``: a task prepared ahead of a worker waiting for one;
* commit: the command's last line to the task's work committed (the
  ``merging`` that names its commit; its worker is free from the first
  ``merging`` on, as soon as its commands end);
* merge: committed to ``done``;

with their medians and 90th percentiles, and how many git processes the run
started (each call through ``waveui/git/command.py``), per task; with
``--callers``, by the function that ran each. On a graph whose optimum is
bound by its work rather than its critical path, every millisecond a worker
spends on waveui's own work delays the end: the worker time around each
command (from the task's worker given to its first merging, the command's own time
left out) and the workers' share of time spent in commands tell how much.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from stg_format import published_bounds, read_stg

from waveui.core.spec import Epic, Task
from waveui.engine.engine import Engine, RunOptions
from waveui.git import command as git_command
from waveui.plan.graph import TaskGraph
from waveui.plan.schedule import lower_bound
from waveui.run.events import TaskStateChanged
from waveui.run.journal import read_events

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "stg"
DEFAULT_GRAPHS = ("rand/50/rand0000.stg", "rand/50/rand0010.stg", "rand/50/rand0020.stg")
# The command's own clock, on lines of its log: what it took, apart from waveui's work around it.
COMMAND = ('echo "bench-start $(date +%s.%N)"; sleep {seconds:.4f}; echo {id} > out/{id}.txt; '
           'echo "bench-end $(date +%s.%N)"')
SEGMENTS = ("dispatch", "prepare", "waiting", "commit", "merge")


class GitCounter:
    """Counts the git processes waveui starts, by wrapping the one function that runs them.

    With ``callers``, each is also counted by where it was asked: the first
    function of ``waveui/git/`` on the stack (acquire, commit, merge,
    release, the guard's check) and the one that ran the command.
    """

    def __init__(self, callers: bool = False) -> None:
        self.calls: dict[str, int] = defaultdict(int)
        self.by_caller: dict[str, int] = defaultdict(int)
        self._callers = callers
        self._original = git_command._execute

    def __enter__(self) -> GitCounter:
        def counted(cwd, args, *rest, **options):
            name = next((a for a in args if not a.startswith("-") and "=" not in a), "?")
            self.calls[name] += 1
            if self._callers:
                self.by_caller[f"{name} in {caller()}"] += 1
            return self._original(cwd, args, *rest, **options)
        git_command._execute = counted
        return self

    def __exit__(self, *_exc) -> None:
        git_command._execute = self._original

    @property
    def total(self) -> int:
        return sum(self.calls.values())


def caller() -> str:
    """``entry > function``: the outermost call into waveui/git/ on the stack, and the one that ran git."""
    frames = [frame for frame in traceback.extract_stack()
              if "/waveui/" in frame.filename and not frame.filename.endswith("/git/command.py")]
    ours = [frame for frame in frames if "/waveui/git/" in frame.filename]
    if not frames:
        return "?"
    entry, last = (ours or frames)[0].name, frames[-1].name
    return entry if entry == last else f"{entry} > {last}"


@dataclass
class Outcome:
    """One run of one graph."""

    makespan: float
    wall: float  # the whole engine.run(), opening and closing included
    segments: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    hop: list[float] = field(default_factory=list)  # last dependency merged -> command started
    landing: list[float] = field(default_factory=list)  # command ended -> work merged
    around: list[float] = field(default_factory=list)  # worker time around the command, per task
    in_commands: float = 0.0  # the commands' own time, summed
    git_calls: dict[str, int] = field(default_factory=dict)
    git_callers: dict[str, int] = field(default_factory=dict)
    tasks: int = 0


def make_repository(folder: Path) -> Path:
    repo = folder / "repo"
    repo.mkdir()
    for args in (("init", "-q", "-b", "main"), ("config", "user.name", "bench"),
                 ("config", "user.email", "bench@localhost")):
        subprocess.run(["git", *args], cwd=repo, check=True)
    (repo / "out").mkdir()
    (repo / "out" / ".keep").write_text("")
    (repo / "README").write_text("a small repository\n")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "start"], cwd=repo, check=True)
    return repo


def epic_of(graph: TaskGraph, seconds: list[float], workers: int) -> Epic:
    """One task per real node (the dummy entry and exit of the STG file, of weight 0, left out)."""
    real = [i for i in range(len(graph)) if graph.weight[i] > 0]
    names = {i: f"t{graph.ids[i]}" for i in real}
    tasks = [Task(id=names[i], story_points=graph.weight[i],
                  requires=[names[p] for p in graph.pred[i] if p in names],
                  command=COMMAND.format(seconds=seconds[i], id=names[i]))
             for i in real]
    return Epic(name="bench", tasks=tasks, max_parallel=workers)


def run_epic(epic: Epic, workers: int, callers: bool = False) -> tuple[Path, float, GitCounter]:
    """Run the epic in a fresh repository; the run folder (kept until the caller is done), wall time, git calls."""
    folder = Path(tempfile.mkdtemp(prefix="waveui-real-schedule-"))
    repo = make_repository(folder)
    engine = Engine(epic, repo, RunOptions(max_parallel=workers, sample_seconds=3600))
    with GitCounter(callers) as counter:
        started = time.perf_counter()
        state = asyncio.run(engine.run())
        wall = time.perf_counter() - started
    if not state.ok:
        failed = {t: v.reason for t, v in state.tasks.items() if v.state != "done"}
        raise SystemExit(f"the run did not finish: {failed}")
    return engine.run_dir, wall, counter


def command_times(log: Path) -> tuple[float, float]:
    start = end = None
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("bench-start "):
            start = float(line.split()[1])
        elif line.startswith("bench-end "):
            end = float(line.split()[1])
    if start is None or end is None:
        raise SystemExit(f"{log}: no times printed by the command")
    return start, end


def analyse(run_dir: Path, epic: Epic, wall: float, counter: GitCounter) -> Outcome:
    first: dict[tuple[str, str], float] = {}
    given: dict[str, float] = {}  # when each task got its worker
    committed: dict[str, float] = {}  # when its work was committed
    for event in read_events(run_dir / "events.jsonl"):
        if isinstance(event, TaskStateChanged):
            first.setdefault((event.task, event.state), event.t)
            if event.state in ("preparing", "running") and event.worker is not None:
                given.setdefault(event.task, event.t)
            if event.state == "merging" and event.commit:
                committed.setdefault(event.task, event.t)
    outcome = Outcome(0.0, wall, git_calls=dict(counter.calls), git_callers=dict(counter.by_caller),
                      tasks=len(epic.tasks))
    begun = min(first[t.id, "preparing"] for t in epic.tasks)
    outcome.makespan = max(first[t.id, "done"] for t in epic.tasks) - begun
    for task in epic.tasks:
        started, ended = command_times(run_dir / "logs" / f"{task.id}.log")
        preparing, merging, done = first[task.id, "preparing"], first[task.id, "merging"], first[task.id, "done"]
        if task.requires:
            freed = max(first[r, "done"] for r in task.requires)
            outcome.segments["dispatch"].append(preparing - freed)
            outcome.hop.append(started - freed)
        outcome.segments["prepare"].append(started - preparing)
        outcome.segments["waiting"].append(given[task.id] - preparing)
        outcome.around.append(merging - given[task.id] - (ended - started))
        outcome.in_commands += ended - started
        outcome.segments["commit"].append(committed[task.id] - ended)
        outcome.segments["merge"].append(done - committed[task.id])
        outcome.landing.append(done - ended)
    return outcome


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def ms(values: list[float]) -> str:
    return f"{1000 * statistics.median(values):6.1f} {1000 * p90(values):6.1f}" if values else "     -      -"


def print_hops(outcomes: list[Outcome]) -> None:
    merged: dict[str, list[float]] = defaultdict(list)
    hop, landing = [], []
    for outcome in outcomes:
        for name in SEGMENTS:
            merged[name] += outcome.segments[name]
        hop += outcome.hop
        landing += outcome.landing
    print("   per hop, ms (median, p90):")
    print(f"     last dependency merged -> command started  {ms(hop)}"
          f"   = dispatch {ms(merged['dispatch'])} + prepare {ms(merged['prepare'])}")
    print(f"     command ended -> work merged               {ms(landing)}"
          f"   = commit {ms(merged['commit'])} + merge {ms(merged['merge'])}")
    print(f"     of prepare, waiting for a worker (prepared ahead) {ms(merged['waiting'])}")
    around = [value for outcome in outcomes for value in outcome.around]
    print(f"   worker time around each command, ms (median, p90): {ms(around)}")
    calls: dict[str, int] = defaultdict(int)
    tasks = sum(o.tasks for o in outcomes)
    for outcome in outcomes:
        for name, count in outcome.git_calls.items():
            calls[name] += count
    top = ", ".join(f"{name} {count / tasks:.1f}" for name, count in sorted(calls.items(), key=lambda kv: -kv[1])[:8])
    print(f"   git processes per task: {sum(calls.values()) / tasks:.1f} ({top})")
    callers: dict[str, int] = defaultdict(int)
    for outcome in outcomes:
        for name, count in outcome.git_callers.items():
            callers[name] += count
    for name, count in sorted(callers.items(), key=lambda kv: (-kv[1], kv[0])):
        if count / tasks >= 0.05:  # what every task pays, or a good share of them; not the run's opening
            print(f"     {count / tasks:4.1f}  git {name}")


def run_graphs(args: argparse.Namespace) -> int:
    root = args.stg.resolve()
    bounds = {(b.file, b.procs): b for b in published_bounds(root)} if (root / "optimal").is_dir() else {}
    rng = random.Random(args.seed)
    ratios: dict[str, list[float]] = defaultdict(list)
    outcomes: list[Outcome] = []
    print(f"{len(args.graphs)} STG graphs, {args.workers} workers, {args.unit:g} s per story point, "
          f"noise ±{args.noise:.0%} (seed {args.seed})")
    for file in args.graphs:
        graph = read_stg(root / file)
        bound = bounds.get((file, args.workers))
        for kind in ("exact", "noisy"):
            factors = [1.0 if kind == "exact" else 1 + rng.uniform(-args.noise, args.noise) for _ in graph.weight]
            seconds = [w * args.unit * f for w, f in zip(graph.weight, factors)]
            epic = epic_of(graph, seconds, args.workers)
            run_dir, wall, counter = run_epic(epic, args.workers, args.callers)
            outcome = analyse(run_dir, epic, wall, counter)
            outcomes.append(outcome)
            if kind == "exact" and bound is not None and bound.optimal:
                against, name = bound.best * args.unit, "optimum"
            else:
                real = TaskGraph.from_edges(graph.ids, seconds, graph.pred)
                tail = real.tail_lengths(real.topological_order())
                against, name = lower_bound(real, max(tail), args.workers), "lower bound"
            ratio = outcome.makespan / against
            ratios[kind].append(ratio)
            print(f"  {file} {kind:5}: makespan {outcome.makespan:7.2f} s, {name} {against:7.2f} s, "
                  f"ratio {ratio:.3f}, workers in commands {outcome.in_commands / (args.workers * outcome.makespan):.0%} "
                  f"(whole run {outcome.wall:.2f} s)")
    print()
    for kind, target in (("exact", 1.10), ("noisy", 1.15)):
        values = ratios[kind]
        print(f"  overall {kind}: mean ratio {statistics.fmean(values):.3f}, worst {max(values):.3f} "
              f"(target <= {target:.2f})")
    print_hops(outcomes)
    return 0


def run_chain(args: argparse.Namespace) -> int:
    """A chain of no-op tasks: every task is a hop on the critical path, and nothing else runs."""
    count = args.chain
    graph = TaskGraph.from_edges([str(i) for i in range(count)], [1.0] * count,
                                 [[i - 1] if i else [] for i in range(count)])
    epic = epic_of(graph, [0.0] * count, args.workers)
    outcomes = []
    for _ in range(args.repeat):
        run_dir, wall, counter = run_epic(epic, args.workers, args.callers)
        outcomes.append(analyse(run_dir, epic, wall, counter))
    per_task = [o.makespan / count for o in outcomes]
    print(f"a chain of {count} tasks of no work, {args.repeat} run(s): {1000 * min(per_task):.1f} ms a task "
          f"(best run), whole run {min(o.wall for o in outcomes):.2f} s")
    print_hops(outcomes)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stg", type=Path, default=DEFAULT_DATA, metavar="DIR",
                        help="the STG data folder (default: ../shared/stg beside the repository)")
    parser.add_argument("--graphs", nargs="+", default=list(DEFAULT_GRAPHS), metavar="FILE",
                        help="STG files, relative to the data folder")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--unit", type=float, default=0.1, help="seconds of sleep per story point")
    parser.add_argument("--noise", type=float, default=0.5, help="how far real durations stray from the estimates")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--chain", type=int, metavar="N", help="run only a chain of N no-op tasks")
    parser.add_argument("--repeat", type=int, default=1, help="runs of the chain")
    parser.add_argument("--callers", action="store_true",
                        help="list the git processes per task by the function that ran them")
    args = parser.parse_args(argv)
    if args.chain:
        return run_chain(args)
    if not (args.stg / "rand").is_dir():
        print(f"no STG data in {args.stg} (expected rand/ there)", file=sys.stderr)
        return 2
    return run_graphs(args)


if __name__ == "__main__":
    sys.exit(main())
