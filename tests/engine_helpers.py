"""Real git repositories and epics for engine tests, and waiting for what real processes do."""

from __future__ import annotations

import asyncio
import subprocess
import textwrap
import time
from pathlib import Path

from waveui.core import spec
from waveui.engine.engine import Engine, RunOptions

WAIT = 60.0  # generous: a deadline for a machine under load, never a measure of speed


def wait_for(condition, what: str):
    """What ``condition()`` returns once it is true; fails after WAIT seconds, naming ``what``."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"gave up waiting for {what}")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def make_repo(path: Path, files: dict[str, str] | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", "Test User")
    git(path, "config", "user.email", "test@example.invalid")
    for name, text in (files or {"README.md": "hello\n"}).items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return path


def write_epic(repo: Path, text: str) -> spec.Epic:
    path = repo / "waveui.toml"
    path.write_text(textwrap.dedent(text))
    return spec.load(path)


def tree_files(repo: Path, ref: str) -> dict[str, str]:
    """Every file on ``ref`` with its blob id: two refs with equal maps hold the same work."""
    out = git(repo, "ls-tree", "-r", ref)
    return {line.split("\t", 1)[1]: line.split()[2] for line in out.splitlines()}


def paired_chain_tasks(n: int) -> str:
    """``[[task]]`` tables t0..t(n-1), each but the first two needing the one two before it."""
    rows = []
    for i in range(n):
        requires = f'requires = ["t{i - 2}"]' if i >= 2 else ""
        rows.append(f'[[task]]\nid = "t{i}"\naffected_files = ["out/t{i}.txt"]\n{requires}\n')
    return "\n".join(rows)


def run_engine(epic, repo: Path, **options) -> Engine:
    """Run ``epic`` in ``repo`` in this process with short waits (backoff, grace, sampling); the engine."""
    engine = Engine(epic, repo, RunOptions(backoff=0.05, grace=0.5, sample_seconds=0.2, **options))
    asyncio.run(engine.run())
    return engine
