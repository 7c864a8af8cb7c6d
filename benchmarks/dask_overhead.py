"""What running an epic on a Dask cluster costs, against the local executor with as many slots.

Run it from the repository root (it needs the ``dask`` extra)::

    python benchmarks/dask_overhead.py                       # 200 tasks of `sleep 1`, 4 workers x 4 slots
    python benchmarks/dask_overhead.py --tasks 40 --sleep 0.5 --workers 2 --slots 2 --history-mb 20

Two figures, each printed with what was run:

* **makespan**: ``--tasks`` independent tasks of ``sleep --sleep`` run by the
  whole engine, once on a local Dask cluster of ``--workers`` worker
  processes with ``--slots`` waveui resources each (``--dask local:WxS``:
  every attempt's start point goes out as a bundle, its work comes back as
  one, its log and states as Dask events), once by the local executor with
  ``workers x slots`` slots; and the ratio of the two makespans.
* **first-task latency**: in a repository of about ``--history-mb`` MB of
  history (random, incompressible files over 20 commits), a chain of
  ``--chain`` small tasks on one worker: how long each waited from being
  dispatched to its command starting. The first waits for the whole history
  as a bundle; the later ones get only what the tasks before them merged.

The machine may be noisy and small (both clusters share its cores): compare
ratios, not absolute figures, and run it more than once. Nothing asserts on
time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path

from waveui.core import spec
from waveui.engine.engine import Engine, RunOptions
from waveui.engine.remote import dask_executor
from waveui.run.events import TaskStateChanged


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def make_repo(path: Path, history_mb: float = 0.0) -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", "bench")
    git(path, "config", "user.email", "bench@example.invalid")
    (path / ".gitignore").write_text(".waveui/\n")
    commits = 20 if history_mb else 1
    for n in range(commits):
        if history_mb:
            (path / f"blob-{n}.bin").write_bytes(os.urandom(int(history_mb * 2**20 / commits)))
        git(path, "add", "-A")
        git(path, "commit", "-q", "-m", f"history {n}")
    return path


def run_epic(repo: Path, text: str, executor=None, parallel: int | None = None) -> tuple[float, list]:
    """Run the epic in ``text`` to its end; its makespan and every task state change."""
    (repo / "waveui.toml").write_text(textwrap.dedent(text))
    epic = spec.load(repo / "waveui.toml")
    changes: list[TaskStateChanged] = []
    options = RunOptions(max_parallel=parallel, listeners=[lambda e: changes.append(e)
                                                           if isinstance(e, TaskStateChanged) else None])
    if executor is not None:
        options.executor = executor
    engine = Engine(epic, repo, options)
    began = time.monotonic()
    state = asyncio.run(engine.run())
    took = time.monotonic() - began
    undone = [t.id for t in state.tasks.values() if t.state != "done"]
    if undone:
        raise SystemExit(f"tasks not done: {', '.join(undone[:5])}")
    return took, changes


def sleeping_epic(tasks: int, seconds: float) -> str:
    """Independent tasks that only sleep (so they change nothing, as expected)."""
    rows = "".join(f'[[task]]\nid = "t{n}"\nexpect_changes = false\n' for n in range(tasks))
    return f'[epic]\nname = "bench"\nbase = "main"\ncommand = "sleep {seconds:g}"\n{rows}'


def makespans(args, root: Path) -> None:
    slots = args.workers * args.slots
    print(f"makespan: {args.tasks} tasks of `sleep {args.sleep:g}`; local executor with {slots} slots "
          f"against --dask local:{args.workers}x{args.slots}")
    local, _ = run_epic(make_repo(root / "local"), sleeping_epic(args.tasks, args.sleep), parallel=slots)
    cluster, _ = run_epic(make_repo(root / "dask"), sleeping_epic(args.tasks, args.sleep),
                          dask_executor(f"local:{args.workers}x{args.slots}"))
    ideal = -(-args.tasks // slots) * args.sleep
    print(f"  local {local:.2f}s, dask {cluster:.2f}s (ideal {ideal:g}s): dask / local = {cluster / local:.2f}")


def latencies(args, root: Path) -> None:
    print(f"first-task latency: {args.chain} chained tasks on local:1x1, a repository of {args.history_mb:g} MB history")
    repo = make_repo(root / "history", args.history_mb)
    rows = "".join(f'[[task]]\nid = "c{n}"\ncommand = "echo {n} > c{n}.txt"\n'
                   + (f'requires = ["c{n - 1}"]\n' if n else "") for n in range(args.chain))
    _, changes = run_epic(repo, f'[epic]\nname = "latency"\nbase = "main"\n{rows}', dask_executor("local:1x1"))
    waits = []
    for n in range(args.chain):
        mine = [c for c in changes if c.task == f"c{n}"]
        dispatched = next(c.t for c in mine if c.state == "preparing")
        started = next(c.t for c in mine if c.state == "running")
        waits.append(started - dispatched)
    later = waits[1:] or [float("nan")]
    print(f"  first {waits[0]:.2f}s; later mean {sum(later) / len(later):.2f}s "
          f"(each: {', '.join(f'{w:.2f}' for w in waits)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--sleep", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--history-mb", type=float, default=100.0)
    parser.add_argument("--chain", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="waveui-dask-bench-") as folder:
        makespans(args, Path(folder))
        latencies(args, Path(folder))


if __name__ == "__main__":
    main()
