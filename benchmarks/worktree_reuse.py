"""How much pooled worktrees save: acquire from the pool against ``git worktree add``, setup skipped against rerun.

Run it from the repository root::

    python benchmarks/worktree_reuse.py                 # 5,000 files, 7 rounds
    python benchmarks/worktree_reuse.py --files 20000 --rounds 11

It builds a throw-away repository of ``--files`` files in a temporary folder
with two commits that differ in a few dozen files, then prints medians of:

* ``WorktreePool.acquire`` of a pooled worktree for a new task (switching the
  slot to a new branch, alternating between the two commits), against
  ``git worktree add -B <branch>`` of a new worktree at the same commit (what a
  pool-less engine would do per task; removing it afterwards is not timed);
* ``ensure_setup`` when the slot's setup is already done (hashing the inputs)
  against running it again (a command writing a few hundred files into
  ``node_modules``, standing in for a package install).

The ratios are what to compare between machines; the absolute times depend
on the disk and on the cost of starting processes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from waveui.executors.local.runner import run_to_end
from waveui.git.worktrees import WorktreePool

SETUP = ('mkdir -p node_modules && cd node_modules && '
         'for i in $(seq 1 {n}); do echo "module.exports = $i" > m$i.js; done')


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def make_repo(root: Path, files: int) -> tuple[str, str]:
    """A repository of ``files`` small files in folders of 100; two commits, the second changing 40 files."""
    git(root.parent, "init", "-q", "-b", "main", str(root))
    for i in range(files):
        path = root / f"pkg{i // 100:03d}" / f"file{i:05d}.txt"
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"line {i}\n" * 10)
    (root / ".gitignore").write_text("node_modules/\n")
    (root / "package.json").write_text('{"dependencies": {}}\n')
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "many files")
    first = git(root, "rev-parse", "HEAD")
    for i in range(0, files, max(1, files // 40)):
        path = root / f"pkg{i // 100:03d}" / f"file{i:05d}.txt"
        path.write_text(path.read_text() + "changed\n")
    git(root, "commit", "-q", "-am", "a few changes")
    return first, git(root, "rev-parse", "HEAD")


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_acquire(repo: Path, commits: tuple[str, str], rounds: int) -> tuple[list[float], list[float]]:
    fresh = []
    for i in range(rounds):
        path = repo.parent / f"fresh-{i}"
        fresh.append(timed(lambda: git(repo, "worktree", "add", "-q", "-B", f"waveui/bench@fresh{i}",
                                       str(path), commits[i % 2])))
        git(repo, "worktree", "remove", "--force", str(path))
    pool = WorktreePool(repo, "bench", None, [])
    pool.release(pool.acquire("warm-up", commits[1]))  # creating the slot is a fresh add: not counted
    reuse = []
    for i in range(rounds):
        wt = None

        def acquire() -> None:
            nonlocal wt
            wt = pool.acquire(f"reuse{i}", commits[i % 2])

        reuse.append(timed(acquire))
        (wt.path / "pkg000" / "new-file.txt").write_text("work of a task\n")
        pool.release(wt)
    return fresh, reuse


def bench_setup(repo: Path, commit: str, rounds: int, modules: int) -> tuple[list[float], list[float]]:
    pool = WorktreePool(repo, "bench", SETUP.format(n=modules), ["package.json"], run_setup=run_to_end)
    wt = pool.acquire("setup", commit)
    env = dict(os.environ)
    rerun, skipped = [], []
    marker = pool.root / f"slot-{wt.slot}.setup"
    for _ in range(rounds):
        marker.unlink(missing_ok=True)
        shutil.rmtree(wt.path / "node_modules", ignore_errors=True)
        result = pool.ensure_setup(wt, env)
        assert result.ran and result.exit_code == 0, result
        rerun.append(result.seconds)
        result = pool.ensure_setup(wt, env)
        assert not result.ran, result
        skipped.append(result.seconds)
    pool.release(wt)
    return rerun, skipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--modules", type=int, default=300, help="files the setup command writes")
    args = parser.parse_args()
    for who in ("AUTHOR", "COMMITTER"):  # the throw-away repository needs an identity for its commits
        os.environ.setdefault(f"GIT_{who}_NAME", "bench")
        os.environ.setdefault(f"GIT_{who}_EMAIL", "bench@localhost")

    with tempfile.TemporaryDirectory(prefix="waveui-bench-") as tmp:
        repo = Path(tmp) / "repo"
        commits = make_repo(repo, args.files)
        fresh, reuse = bench_acquire(repo, commits, args.rounds)
        rerun, skipped = bench_setup(repo, commits[1], args.rounds, args.modules)

    ms = lambda xs: statistics.median(xs) * 1000  # noqa: E731
    print(f"repository: {args.files} files, {args.rounds} rounds, medians")
    print(f"  fresh `git worktree add`  {ms(fresh):9.1f} ms")
    print(f"  acquire from the pool     {ms(reuse):9.1f} ms")
    print(f"  fresh / reuse             {ms(fresh) / ms(reuse):9.1f} x")
    print(f"  setup rerun ({args.modules} files)  {ms(rerun):9.1f} ms")
    print(f"  setup skipped             {ms(skipped):9.1f} ms")
    print(f"  rerun / skipped           {ms(rerun) / ms(skipped):9.1f} x")


if __name__ == "__main__":
    main()
