"""One controller per repository, whatever a user or a task deletes while it runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.faults.helpers import finish, git, kill9, make_repo, run, start, wait_for, write_epic
from waveui.run.events import TaskStateChanged
from waveui.run.journal import list_runs, read_events
from waveui.engine.locks import ControllerBusy, ControllerLock, controller_holder

SLOW_EPIC = """
[epic]
name = "{name}"
isolation = "{isolation}"
adaptive = false
max_parallel = 2
command = 'sleep ${{WAVEUI_TEST_SLEEP:-3}}; echo "$WAVEUI_TASK_ID" > "$WAVEUI_TASK_ID.txt"'
[[task]]
id = "a"
[[task]]
id = "b"
"""


def slow_repo(path: Path, isolation: str = "worktree") -> Path:
    epics = {"waveui.toml": SLOW_EPIC.format(name="slow", isolation=isolation),
             "other.toml": SLOW_EPIC.format(name="other", isolation=isolation)}
    if isolation != "none":
        return make_repo(path, epics)  # committed: `git clean -fdx` keeps them
    path.mkdir(parents=True)
    for name, text in epics.items():
        (path / name).write_text(text)
    return path


def a_task_runs(repo: Path) -> bool:
    for run_dir in list_runs(repo):
        if any(isinstance(e, TaskStateChanged) and e.state == "running"
               for e in read_events(run_dir / "events.jsonl")):
            return True
    return False


def assert_refused(code: int, out: str, pid: int) -> None:
    assert code == 2, out
    assert out.splitlines() == [f"waveui: error: another waveui (pid {pid}) is running an epic in this repository"], out


def delete_pid_records(repo: Path) -> None:
    for record in (repo / ".git" / "waveui-controller.pid", repo / ".waveui" / "controller.pid"):
        record.unlink(missing_ok=True)


def delete_waveui(repo: Path) -> None:
    shutil.rmtree(repo / ".waveui", ignore_errors=True)


def git_clean(repo: Path) -> None:
    git(repo, "clean", "-fdx")


def nothing(repo: Path) -> None:
    pass


@pytest.mark.parametrize("cleanup", [nothing, delete_pid_records, delete_waveui, git_clean],
                         ids=["untouched", "rm-pid-record", "rm-rf-waveui", "git-clean-fdx"])
def test_a_second_controller_is_refused_whatever_was_deleted(tmp_path, cleanup):
    repo = slow_repo(tmp_path / "repo")
    linked = tmp_path / "linked"
    git(repo, "worktree", "add", "-q", "--detach", str(linked))
    (linked / "waveui.toml").write_text(SLOW_EPIC.format(name="elsewhere", isolation="worktree"))
    # Long enough to outlast the four refused starts on a loaded machine; the run after it is quick.
    first = start(repo, env={**os.environ, "WAVEUI_TEST_SLEEP": "60"})
    try:
        assert wait_for(lambda: a_task_runs(repo)), "the first run never started a task"
        cleanup(repo)
        assert controller_holder(repo).pid == first.pid
        assert controller_holder(linked).pid == first.pid  # one repository, one lock
        assert_refused(*run(repo), first.pid)  # the same epic
        assert_refused(*run(repo, "-f", "other.toml"), first.pid)  # another epic
        assert_refused(*run(linked), first.pid)  # from a linked worktree of the repository
        assert_refused(*run(repo, "--fresh"), first.pid)
        assert not (linked / ".waveui" / "runs").exists()  # a refused run writes nothing
    finally:
        kill9(first)
    # The kernel dropped the lock with the process: nothing is left locked.
    assert controller_holder(repo) is None
    code, out = run(repo, "--fresh")  # the first run's long steps are stopped, the new run's are short
    assert "another waveui" not in out and "Traceback" not in out, out
    if cleanup in (nothing, delete_pid_records):
        assert code == 0, out


def test_without_git_the_lock_survives_deleting_waveui(tmp_path):
    folder = slow_repo(tmp_path / "plain", isolation="none")
    first = start(folder)
    try:
        assert wait_for(lambda: a_task_runs(folder)), "the first run never started a task"
        delete_waveui(folder)
        assert_refused(*run(folder), first.pid)
        assert_refused(*run(folder, "-f", "other.toml"), first.pid)
    finally:
        kill9(first)
    code, out = run(folder)
    assert "another waveui" not in out and "Traceback" not in out, out


def test_asking_who_holds_the_lock_writes_nothing(tmp_path):
    repo = make_repo(tmp_path / "repo")
    assert controller_holder(repo) is None
    holder = ControllerLock(repo)
    holder.acquire()
    try:
        before = snapshot(repo)
        found = controller_holder(repo)
        assert found is not None and found.pid == os.getpid()
        assert snapshot(repo) == before
    finally:
        holder.release()
    before = snapshot(repo)
    assert controller_holder(repo) is None
    assert controller_holder(tmp_path / "missing") is None
    assert snapshot(repo) == before


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in [folder, *folder.rglob("*")]}


def test_readers_never_make_a_starting_controller_refuse(tmp_path):
    repo = make_repo(tmp_path / "repo")
    stop = threading.Event()

    def keep_asking():
        while not stop.is_set():
            controller_holder(repo)

    readers = [threading.Thread(target=keep_asking) for _ in range(2)]
    for reader in readers:
        reader.start()
    refused = 0
    try:
        for _ in range(200):
            lock = ControllerLock(repo)
            try:
                lock.acquire()
            except ControllerBusy:
                refused += 1
                continue
            lock.release()
    finally:
        stop.set()
        for reader in readers:
            reader.join()
    assert refused == 0


def test_a_task_left_running_does_not_hold_the_lock(tmp_path):
    """Supervisors outlive a killed waveui; the lock must not live on in them."""
    repo = slow_repo(tmp_path / "repo")
    first = start(repo)
    assert wait_for(lambda: a_task_runs(repo)), "the first run never started a task"
    kill9(first)
    holder = controller_holder(repo)
    assert holder is None, holder
    lock = subprocess.run([sys.executable, "-c", "import sys; from waveui.engine.locks import ControllerLock; "
                           "ControllerLock(sys.argv[1]).acquire()", str(repo)], capture_output=True, text=True)
    assert lock.returncode == 0, lock.stderr
    finish(start(repo))  # let the adopted tasks end before the folder goes
