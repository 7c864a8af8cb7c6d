"""A step's folder is known to be in use while its supervisor lives, and its result survives a failing status write.

Real supervisors run real commands; each command waits for a ``go`` file
the test creates, so the test decides when the step ends.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from waveui.core.occupancy import slot_in_use
from waveui.executors.local.supervision import SupervisedStep, live_steps
from waveui.executors.steps import StepFiles, read_status

DEADLINE = 30.0
WAIT_THEN_EXIT_7 = "while [ ! -e go ]; do sleep 0.05; done; exit 7"


from tests.faults.helpers import started_steps, stop_leftover_steps  # noqa: F401  (autouse)


async def start(work: Path, logs: Path, task_id: str = "t1", step: str = "running",
                command: str = WAIT_THEN_EXIT_7) -> SupervisedStep:
    work.mkdir(parents=True, exist_ok=True)
    started = await SupervisedStep.start(command, work, dict(os.environ), StepFiles.of(logs, task_id, step),
                                         lambda _values: None, timeout=None, grace=1.0)
    started_steps.append(started)
    return started


async def finish(step: SupervisedStep, work: Path) -> int:
    (work / "go").touch()
    return (await asyncio.wait_for(step.wait(), DEADLINE)).exit_code


# --- a slot in use is known to be in use ---------------------------------------------------------


async def test_a_folder_is_in_use_exactly_while_its_step_runs(tmp_path):
    work = tmp_path / "worktrees" / "slot-1"  # a pooled slot: only those are marked in use
    work.mkdir(parents=True)
    assert not slot_in_use(work)
    step = await start(work, tmp_path / "logs")
    assert slot_in_use(work)
    assert not slot_in_use(tmp_path)  # the lock is on the step's own folder, not on its parents
    assert await finish(step, work) == 7
    assert not slot_in_use(work)


def test_a_missing_folder_is_not_in_use(tmp_path):
    assert not slot_in_use(tmp_path / "never-made")


async def test_the_command_does_not_hold_the_folder_lock_itself(tmp_path):
    # Were the descriptor inherited, a command outliving a killed supervisor would keep the slot
    # locked for ever; the lock must be the supervisor's alone.
    work = tmp_path / "worktrees" / "slot-1"  # a pooled slot: only those are marked in use
    step = await start(work, tmp_path / "logs")
    holders = set()
    for pid in (step.pid, step.supervisor):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == str(work):
                    holders.add(pid)
            except OSError:
                continue
    assert holders == {step.supervisor}
    assert await finish(step, work) == 7


async def test_live_steps_lists_the_supervisors_still_running_in_every_run(tmp_path):
    repo = tmp_path / "repo"
    runs = repo / ".waveui" / "runs"
    first = await start(repo / ".waveui" / "worktrees" / "slot-1", runs / "run-a" / "logs", "task.one", "running")
    second = await start(repo / ".waveui" / "worktrees" / "slot-2", runs / "run-b" / "logs", "two", "verifying")
    done = await start(tmp_path / "elsewhere", runs / "run-b" / "logs", "three", "running", "exit 0")
    await asyncio.wait_for(done.wait(), DEADLINE)

    live = sorted(live_steps(repo), key=lambda s: s.run_id)
    assert [(s.run_id, s.task_id, s.step, s.supervisor) for s in live] == [
        ("run-a", "task.one", "running", first.supervisor), ("run-b", "two", "verifying", second.supervisor)]
    assert [s.cwd for s in live] == [repo / ".waveui" / "worktrees" / "slot-1",
                                     repo / ".waveui" / "worktrees" / "slot-2"]
    assert all(slot_in_use(s.cwd) for s in live)

    assert await finish(first, repo / ".waveui" / "worktrees" / "slot-1") == 7
    assert [s.task_id for s in live_steps(repo)] == ["two"]
    assert await finish(second, repo / ".waveui" / "worktrees" / "slot-2") == 7
    assert live_steps(repo) == []


def test_live_steps_of_a_repository_without_runs_is_empty(tmp_path):
    assert live_steps(tmp_path) == []


# --- a finished command's result is never lost ---------------------------------------------------


async def test_the_status_survives_the_logs_folder_being_deleted(tmp_path):
    work, logs = tmp_path / "work", tmp_path / "run" / "logs"
    step = await start(work, logs)
    shutil.rmtree(logs)  # the user cleans up .waveui/runs/... while the task runs
    assert await finish(step, work) == 7
    # A later waveui finds the result too, and does not run the command again.
    adopted = SupervisedStep.adopt(StepFiles.of(logs, "t1", "running"), lambda _values: None)
    assert adopted is not None
    assert (await asyncio.wait_for(adopted.wait(), DEADLINE)).exit_code == 7


async def test_a_supervisor_that_cannot_write_its_status_stays_alive_until_it_can(tmp_path):
    # The logs folder is replaced by a file: nothing can be written there. The reader must keep
    # waiting (the supervisor is alive), not take the silence for a failure.
    work, logs = tmp_path / "work", tmp_path / "run" / "logs"
    step = await start(work, logs)
    shutil.rmtree(logs)
    logs.write_text("not a folder")
    (work / "go").touch()
    waiting = asyncio.ensure_future(step.wait())
    deadline = time.monotonic() + DEADLINE
    while not (work / "go").exists() or _shell_alive(step.pid):
        assert time.monotonic() < deadline, "the command never ended"
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)  # several retries' worth
    assert not waiting.done()
    assert step.supervisor_alive()
    logs.unlink()
    assert (await asyncio.wait_for(waiting, DEADLINE)).exit_code == 7


def _shell_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except OSError:
        return False


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 1 MiB tmpfs, or a skip where this machine cannot mount one (not root, no mount rights)."""
    point = tmp_path / "tiny"
    point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(point)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


def _fill(folder: Path) -> None:
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass  # full
    finally:
        os.close(fd)


async def test_the_status_survives_a_full_disk(tiny_tmpfs):
    work, logs = tiny_tmpfs.parent / "work", tiny_tmpfs / "logs"
    files = StepFiles.of(logs, "t1", "running")
    step = await start(work, logs)
    _fill(tiny_tmpfs)
    with pytest.raises(OSError):  # the disk is full indeed: not even a small new file fits
        (tiny_tmpfs / "probe").write_bytes(b"x" * 8192)
    assert await finish(step, work) == 7
    assert not files.status.exists()  # it could not be written: the result lives in the pid file's reserved bytes
    assert read_status(files)["exit_code"] == 7
    adopted = SupervisedStep.adopt(files, lambda _values: None)
    assert adopted is not None
    assert (await asyncio.wait_for(adopted.wait(), DEADLINE)).exit_code == 7
