"""Shared pieces of the fault tests: an epic that records finished work, and driving `waveui run` as a subprocess."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pytest

from tests.engine_helpers import git, make_repo, paired_chain_tasks, tree_files, write_epic  # noqa: F401  (re-exported)
from waveui.run.events import TaskStateChanged
from waveui.run.journal import list_runs, read_events
from waveui.run.state import RunState, replay

RUN_TIMEOUT = 120

# Each task does its work, then appends its id to a ledger outside the repository: a line
# there means the command ran to completion, so a duplicate line means work was done twice.
LEDGER_EPIC = """
[epic]
name = "{name}"
max_parallel = 2
adaptive = false
command = 'sleep {sleep}; echo "$WAVEUI_TASK_ID" > "out/$WAVEUI_TASK_ID.txt"; echo "$WAVEUI_TASK_ID" >> "{ledger}"'
{tasks}
"""


def ledger_repo(path: Path, ledger: Path, n: int = 6, sleep: float = 0.3, name: str = "faults") -> Path:
    repo = make_repo(path, {"README.md": "hi\n", "out/.keep": ""})
    write_epic(repo, LEDGER_EPIC.format(name=name, sleep=sleep, ledger=ledger, tasks=paired_chain_tasks(n)))
    return repo


def start(repo: Path, *args: str, **kwargs) -> subprocess.Popen:
    """`waveui run --headless` in ``repo``; output goes to a file so a flood can never block it on a pipe."""
    out = tempfile.TemporaryFile("w+")
    process = subprocess.Popen([sys.executable, "-m", "waveui", "run", "--headless", *args], cwd=repo,
                               stdout=out, stderr=subprocess.STDOUT, text=True, **kwargs)
    process.out_file = out
    return process


def finish(process: subprocess.Popen, timeout: float = RUN_TIMEOUT) -> str:
    """Wait for the process; return what it printed."""
    process.wait(timeout=timeout)
    out = process.out_file
    out.seek(0)
    text = out.read()
    out.close()
    return text


def run(repo: Path, *args: str, timeout: float = RUN_TIMEOUT, **kwargs) -> tuple[int, str]:
    process = start(repo, *args, **kwargs)
    text = finish(process, timeout)
    return process.returncode, text


def run_until_ok(repo: Path, attempts: int = 5) -> str:
    """`waveui run` until it exits 0, as a user would after a crash."""
    text = ""
    for _ in range(attempts):
        code, text = run(repo)
        if code == 0:
            return text
    raise AssertionError(f"waveui run never succeeded:\n{text}")


def kill9(process: subprocess.Popen) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    process.out_file.close()


def journal(repo: Path) -> Path:
    return list_runs(repo)[-1] / "events.jsonl"


def final_state(repo: Path) -> RunState:
    return replay(read_events(journal(repo)))


def done_count(repo: Path) -> int:
    runs = list_runs(repo)
    if not runs:
        return 0
    return len({e.task for e in read_events(runs[-1] / "events.jsonl")
                if isinstance(e, TaskStateChanged) and e.state == "done"})


def wait_for(predicate, timeout: float = 30, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


def gone(pid: int) -> bool:
    """True when no live process has ``pid`` (a zombie awaiting its parent counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def ledger_counts(ledger: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    if ledger.exists():
        for line in ledger.read_text().split():
            counts[line] = counts.get(line, 0) + 1
    return counts


def kill_cycles(repo: Path, cycles: int, rng: random.Random, max_delay: float = 2.0) -> int:
    """Start waveui and kill -9 it after a random delay, ``cycles`` times; return how many kills landed mid-run."""
    kills = 0
    for _ in range(cycles):
        process = start(repo)
        try:
            process.wait(timeout=rng.uniform(0.05, max_delay))
        except subprocess.TimeoutExpired:
            kill9(process)
            kills += 1
            continue
        process.out_file.close()
        if process.returncode == 0:
            break  # finished before the kill came
    return kills


class PeakRss:
    """Samples a process's resident memory in a thread; ``peak`` is the largest seen, in bytes."""

    def __init__(self, pid: int, every: float = 0.02):
        self.peak = 0
        self._proc = psutil.Process(pid)
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self._proc.memory_info().rss)
            except psutil.Error:
                return
            self._stop.wait(self._every)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


# Steps a test started, stopped after it by the fixture below (import it into the test module).
started_steps: list = []


@pytest.fixture(autouse=True)
def stop_leftover_steps():
    """A test failing half way must not leave its supervisor waiting for ever on a shared machine."""
    yield
    while started_steps:
        step = started_steps.pop()
        if step.supervisor_alive():
            os.kill(step.supervisor, signal.SIGTERM)
