"""What running a task through waveui costs, against ``xargs -P`` running the same commands.

Run it from the repository root::

    python benchmarks/overhead.py                     # 2,000 tasks, 4 at a time
    python benchmarks/overhead.py --tasks 500 --parallel 8 --repeat 3

Every way of running gets the same no-op commands (``true``, each through
``/bin/sh -c``) and the same parallelism, so what is left is the overhead of
the way itself. It prints, best of ``--repeat`` runs, tasks per second, the
CPU time this Python process spent per task for the ways running in it (the
children's time is not counted) and each way's throughput as a ratio to
``xargs``. The machine may be noisy: compare ratios, not absolute figures,
between machines, and run it more than once.

Ways of running (``RUNNERS``):

* ``xargs``: ``xargs -P N -I{} /bin/sh -c {}``, the floor;
* ``xargs_logged``: the same, each command's output appended to a log file
  of its own as waveui does, to tell the cost of creating the logs from
  waveui's own;
* ``start_task``: :func:`waveui.executors.local.runner.start_task` and ``wait`` for
  each, at most N at a time (an asyncio semaphore), each with its own log;
* ``engine``: the whole engine on an epic of these tasks with
  ``isolation = "none"``: planning, dispatch, journal (fsync per state
  change) and logs.

To measure another way (the full engine, say), write a function taking
``(commands, parallel, workdir)`` that runs them all and returns when they are
done, and add it to ``RUNNERS``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from waveui.executors.local.runner import start_task

Runner = Callable[[list[str], int, Path], None]


def run_xargs(commands: list[str], parallel: int, workdir: Path) -> None:
    # -d '\n' keeps every line one command, quotes and all (GNU xargs).
    subprocess.run(["xargs", "-d", "\n", "-P", str(parallel), "-I{}", "/bin/sh", "-c", "{}"],
                   input="".join(f"{c}\n" for c in commands), text=True, cwd=workdir, check=True)


def run_xargs_logged(commands: list[str], parallel: int, workdir: Path) -> None:
    (workdir / "logs").mkdir(mode=0o700)
    run_xargs([f"exec >>logs/t{n}.log 2>&1; {c}" for n, c in enumerate(commands)], parallel, workdir)


def run_start_task(commands: list[str], parallel: int, workdir: Path) -> None:
    async def main() -> None:
        limit = asyncio.Semaphore(parallel)
        logs = workdir / "logs"
        failures = 0

        async def one(number: int, command: str) -> None:
            nonlocal failures
            async with limit:
                env = dict(os.environ, WAVEUI_TASK=f"t{number}")
                task = await start_task(command, workdir, env, logs / f"t{number}.log", lambda fields: None)
                result = await task.wait()
                failures += result.exit_code != 0

        await asyncio.gather(*(one(n, c) for n, c in enumerate(commands)))
        if failures:
            raise SystemExit(f"{failures} tasks failed")

    asyncio.run(main())


def run_engine(commands: list[str], parallel: int, workdir: Path) -> None:
    """The whole engine: an epic of independent tasks with ``isolation = "none"``, journal and all."""
    from waveui.engine.engine import Engine, RunOptions
    from waveui.core.spec import Epic, Task

    epic = Epic(name="overhead", isolation="none", max_parallel=parallel,
                tasks=[Task(id=f"t{n}", command=command) for n, command in enumerate(commands)])
    engine = Engine(epic, workdir, RunOptions(max_parallel=parallel))
    state = asyncio.run(engine.run())
    if not state.ok:
        raise SystemExit(f"{state.total - state.done} tasks did not finish")


RUNNERS: dict[str, Runner] = {
    "xargs": run_xargs,
    "xargs_logged": run_xargs_logged,
    "start_task": run_start_task,
    "engine": run_engine,
}
BASELINE = "xargs"
EXTERNAL = {"xargs", "xargs_logged"}  # their work is done by other processes: no CPU figure of ours


def measure(runner: Runner, commands: list[str], parallel: int) -> tuple[float, float]:
    """Wall seconds and this process's CPU seconds for one run, in a fresh folder."""
    with tempfile.TemporaryDirectory(prefix="waveui-overhead-") as folder:
        before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        runner(commands, parallel, Path(folder))
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each way; the best counts")
    parser.add_argument("--command", default="true", help="the command every task runs")
    parser.add_argument("--only", nargs="+", choices=sorted(RUNNERS), help="ways to run (the baseline always runs)")
    args = parser.parse_args(argv)

    names = [BASELINE, *(n for n in RUNNERS if n != BASELINE and (not args.only or n in args.only))]
    commands = [args.command] * args.tasks
    print(f"{args.tasks} tasks of {args.command!r}, {args.parallel} at a time, best of {args.repeat}; "
          f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print(f"{'way':<12} {'seconds':>8} {'tasks/s':>9} {'ms CPU/task':>12} {'vs ' + BASELINE:>10}")
    baseline_rate = None
    for name in names:
        runs = [measure(RUNNERS[name], commands, args.parallel) for _ in range(args.repeat)]
        wall, cpu = min(runs)
        rate = args.tasks / wall
        baseline_rate = baseline_rate or rate
        cpu_ms = "-" if name in EXTERNAL else f"{1000 * cpu / args.tasks:.2f}"
        print(f"{name:<12} {wall:>8.2f} {rate:>9.0f} {cpu_ms:>12} {rate / baseline_rate:>9.2f}x")


if __name__ == "__main__":
    main()
