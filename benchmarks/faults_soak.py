"""Soak test of crash recovery: kill -9 `waveui run` at random moments many times and check nothing is lost.

Run it from the repository root::

    python benchmarks/faults_soak.py                  # 20 runs
    python benchmarks/faults_soak.py --cycles 100 --kills 8 --tasks 10 --seed 3

Each run builds a throw-away repository with an epic of ``--tasks`` tasks
(each one writes a file, then appends its id to a ledger outside the
repository), starts `waveui run --headless` and kills it with SIGKILL after a
random delay, up to ``--kills`` times; every other run also leaves half a JSON
line at the end of the journal, as a crash mid-write would. Then it runs
`waveui run` until it exits 0 and compares the integration branch with a clean
run's. It prints one row per run and a total; the exit status is 1 if any work
was lost or any task's command ran to completion twice.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.faults.helpers import (  # noqa: E402
    final_state,
    journal,
    kill_cycles,
    ledger_counts,
    ledger_repo,
    run,
    run_until_ok,
    tree_files,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=20, help="runs, each in a new repository (default 20)")
    parser.add_argument("--kills", type=int, default=6, help="kill -9 attempts per run (default 6)")
    parser.add_argument("--tasks", type=int, default=8, help="tasks in the epic (default 8)")
    parser.add_argument("--sleep", type=float, default=0.3, help="seconds each task works (default 0.3)")
    parser.add_argument("--max-delay", type=float, default=1.5, help="longest wait before a kill (default 1.5s)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="waveui-soak-"))
    branch = "waveui/faults"
    try:
        clean = ledger_repo(root / "clean", root / "clean-ledger", args.tasks, args.sleep)
        code, out = run(clean)
        if code != 0:
            print(out)
            return 1
        expected = tree_files(clean, branch)
        print(f"{'run':>4} {'kills':>5} {'torn':>4} {'resumes':>7} {'seconds':>7}  {'outcome':<8} "
              f"{'lost files':>10} {'ran twice':>9}")
        total_kills = total_lost = total_twice = 0
        for number in range(1, args.cycles + 1):
            rng = random.Random(args.seed * 100_003 + number)
            ledger = root / f"ledger-{number}"
            repo = ledger_repo(root / f"run-{number}", ledger, args.tasks, args.sleep)
            began = time.monotonic()
            kills = kill_cycles(repo, args.kills, rng, args.max_delay)
            torn = number % 2 == 0 and kills > 0
            if torn:
                with open(journal(repo), "a") as f:
                    f.write('{"type": "task_state", "t": 17')
            outcome = "ok"
            try:
                run_until_ok(repo)
            except AssertionError:
                outcome = "FAILED"
            state = final_state(repo)
            if not state.ok:
                outcome = "FAILED"
            got = tree_files(repo, branch) if outcome == "ok" else {}
            lost = sum(1 for name, blob in expected.items() if got.get(name) != blob)
            counts = ledger_counts(ledger)
            twice = sum(1 for n in counts.values() if n > 1)
            lost += sum(1 for i in range(args.tasks) if counts.get(f"t{i}", 0) == 0)
            total_kills += kills
            total_lost += lost
            total_twice += twice
            print(f"{number:>4} {kills:>5} {'yes' if torn else 'no':>4} {state.resumes:>7} "
                  f"{time.monotonic() - began:>7.1f}  {outcome:<8} {lost:>10} {twice:>9}", flush=True)
            shutil.rmtree(repo, ignore_errors=True)
        print(f"total: {args.cycles} runs, {total_kills} kills, lost work {total_lost}, "
              f"commands run to completion twice {total_twice}")
        return 1 if total_lost or total_twice else 0
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
