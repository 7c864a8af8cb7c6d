"""The task runner against real processes: logs, directives, exit codes, timeouts, leftovers, pause."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import shlex
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from waveui.executors.local.proctable import kill_leftover
from waveui.executors.local.runner import ExitResult, start_task


def alive(pid: int) -> bool:
    # A zombie is dead: whether it is reaped depends on who adopted it.
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def group_members(pgid: int) -> list[int]:
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc.pid)
        except (OSError, psutil.Error):
            continue
    return members


def tree(pid: int) -> list[int]:
    try:
        root = psutil.Process(pid)
        return [pid, *(p.pid for p in root.children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


async def until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def read_pid(path: Path) -> int:
    return int(path.read_text().strip())


@pytest.fixture(autouse=True)
def no_strays(tmp_path):
    """Should a test fail, kill the escaped processes it started, so they do not linger."""
    yield
    for pidfile in ("escaped", "child"):
        path = tmp_path / pidfile
        if path.exists() and path.read_text().strip():
            with contextlib.suppress(OSError):
                if alive(read_pid(path)):
                    os.kill(read_pid(path), signal.SIGKILL)


@pytest.fixture
def run(tmp_path):
    """Start a command in tmp_path; directives collected in ``run.directives``."""
    directives: list[dict] = []

    async def start(command: str, env: dict[str, str] | None = None, log: str = "logs/task.log"):
        return await start_task(command, tmp_path, dict(os.environ) if env is None else env,
                                tmp_path / log, directives.append)

    start.directives = directives
    start.log = tmp_path / "logs/task.log"
    return start


def escaper(tmp_path: Path, pidfile: str) -> str:
    """A command that leaves the task's session and sleeps, writing its pid first."""
    script = tmp_path / f"{pidfile}.py"
    script.write_text(
        "import os, time\n"
        "os.setsid()\n"
        f"open({str(tmp_path / pidfile)!r}, 'w').write(str(os.getpid()))\n"
        "time.sleep(1000)\n")
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"


# --- start_task -------------------------------------------------------------


async def test_directives_parsed_and_everything_logged(run, tmp_path):
    task = await run(
        'echo "starting"\n'
        'echo "::waveui progress=10 message=\\"setting up\\""\n'
        'echo "to stderr" >&2\n'
        'echo "::waveui progress=200 cost=0.5 nonsense=1"\n'
        'echo "  ::waveui iteration=2"\n'
        "printf '::waveui progress=90'\n")  # no newline at the end: still a line
    result = await task.wait()
    assert result == ExitResult(exit_code=0, timed_out=False, signal=None, seconds=result.seconds)
    assert run.directives == [{"progress": 10.0, "message": "setting up"}, {"cost": 0.5},
                              {"iterations": 2}, {"progress": 90.0}]
    text = run.log.read_text()
    assert text.splitlines()[:3] == ["starting", '::waveui progress=10 message="setting up"', "to stderr"]
    assert text.endswith("::waveui progress=90")
    assert stat.S_IMODE(run.log.stat().st_mode) == 0o600
    assert stat.S_IMODE(run.log.parent.stat().st_mode) == 0o700
    assert task.create_time == pytest.approx(time.time(), abs=60)


async def test_log_is_appended_and_handler_errors_do_not_stop_the_task(tmp_path):
    log = tmp_path / "task.log"
    log.write_text("earlier attempt\n")

    def broken(fields):
        raise RuntimeError("handler bug")

    task = await start_task("echo '::waveui progress=1'; echo after", tmp_path, dict(os.environ), log, broken)
    assert (await task.wait()).exit_code == 0
    assert log.read_text() == "earlier attempt\n::waveui progress=1\nafter\n"


async def test_every_line_goes_to_the_line_reader_given(tmp_path):
    received: list[dict] = []

    def numbers(line: bytes) -> dict | None:
        return {"iterations": int(line)} if line.isdigit() else None

    # One write holding many lines: each is offered, not only the first and the last.
    task = await start_task("printf '1\\nword\\n2\\n::waveui progress=5\\n3'", tmp_path, dict(os.environ),
                            tmp_path / "task.log", received.append, read_line=numbers)
    await task.wait()
    assert received == [{"iterations": 1}, {"iterations": 2}, {"iterations": 3}]


async def test_without_a_line_reader_output_is_only_logged(tmp_path):
    received: list[dict] = []
    task = await start_task("echo '::waveui progress=5'", tmp_path, dict(os.environ), tmp_path / "task.log",
                            received.append, read_line=None)
    assert (await task.wait()).exit_code == 0
    assert received == []
    assert (tmp_path / "task.log").read_text() == "::waveui progress=5\n"


async def test_env_is_exactly_the_one_given(run):
    task = await run('echo "$WAVEUI_TASK ${HOME-nohome}"', env={"PATH": os.environ["PATH"], "WAVEUI_TASK": "t-1"})
    await task.wait()
    assert run.log.read_text() == "t-1 nohome\n"


@pytest.mark.parametrize(("command", "code", "sig"), [
    ("true", 0, None),
    ("exit 3", 3, None),
    ("kill -9 $$", 128 + 9, 9),
    ("kill -TERM $$", 128 + 15, 15),
    ("no-such-command-xyz", 127, None),
])
async def test_exit_codes(run, command, code, sig):
    result = await (await run(command)).wait()
    assert (result.exit_code, result.signal, result.timed_out) == (code, sig, False)


async def test_stdin_is_dev_null(run):
    task = await run('readlink /proc/$$/fd/0; cat; read line; echo "read: $?"')
    await asyncio.wait_for(task.wait(), 5)
    lines = run.log.read_text().splitlines()
    if Path("/proc").is_dir():
        assert lines[0] == "/dev/null"
    assert lines[-1] == "read: 1"


async def test_exit_is_seen_without_pidfd(run, monkeypatch):
    def unsupported(pid):
        raise OSError("pidfd_open unsupported")

    monkeypatch.setattr(os, "pidfd_open", unsupported, raising=False)
    result = await asyncio.wait_for((await run("echo '::waveui progress=3'; exit 6")).wait(), 5)
    assert result.exit_code == 6 and run.directives == [{"progress": 3.0}]


async def test_cancelled_start_leaves_no_process(run, tmp_path):
    starting = asyncio.ensure_future(run("sleep 0.3; touch ran"))
    await asyncio.sleep(0)
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    await asyncio.sleep(0.6)
    assert not (tmp_path / "ran").exists()


async def test_wait_twice_gives_the_same_result(run):
    task = await run("exit 4")
    first = await task.wait()
    assert await task.wait() is first
    assert task.exited


# --- no process outlives its task ---------------------------------------------


async def test_timeout_kills_a_task_ignoring_sigterm_and_its_children(run, tmp_path):
    task = await run("trap '' TERM; sleep 1000 & echo $! > child; sleep 60")
    await until(lambda: (tmp_path / "child").exists() and (tmp_path / "child").read_text().strip())
    child = read_pid(tmp_path / "child")
    seen = set(group_members(task.pgid)) | set(tree(task.pid))
    assert {task.pid, child} <= seen
    started = time.monotonic()
    result = await task.wait(timeout=0.3, grace=0.3)
    assert result.timed_out and result.signal == signal.SIGKILL and result.exit_code == 137
    assert time.monotonic() - started < 3
    assert group_members(task.pgid) == []
    assert [pid for pid in seen if alive(pid)] == []


async def test_children_left_by_the_shell_are_killed(run, tmp_path):
    task = await run("sleep 1000 & echo $! > child; trap '' TERM; (trap '' TERM; exec sleep 1001) & exit 0")
    result = await task.wait(grace=0.3)
    assert result.exit_code == 0 and not result.timed_out
    assert result.leftovers >= 2
    assert not alive(read_pid(tmp_path / "child"))
    assert group_members(task.pgid) == []


async def test_descendant_leaving_the_group_is_found_by_sampling(run, tmp_path):
    # Its output goes elsewhere, so only the tree sampled while the task ran knows it.
    task = await run(f"{escaper(tmp_path, 'escaped')} >/dev/null 2>&1 & sleep 0.8; exit 0")
    await until(lambda: (tmp_path / "escaped").exists() and (tmp_path / "escaped").read_text())
    escaped = read_pid(tmp_path / "escaped")
    assert os.getsid(escaped) != task.pgid
    await task.wait(grace=1)
    assert not alive(escaped)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
async def test_descendant_holding_the_output_is_found_at_the_end(run, tmp_path):
    # Gone from the tree before any sample, but still holding stdout.
    task = await run(f"{escaper(tmp_path, 'escaped')} & exit 0")
    await until(lambda: (tmp_path / "escaped").exists() and (tmp_path / "escaped").read_text())
    await asyncio.wait_for(task.wait(grace=1), 10)
    assert not alive(read_pid(tmp_path / "escaped"))


async def test_terminate(run):
    task = await run("sleep 60")
    result = await task.terminate(grace=2)
    assert result.signal == signal.SIGTERM and not result.timed_out


# --- pause ----------------------------------------------------------------------


async def test_pause_stops_progress_and_resume_continues(run, tmp_path):
    counter = tmp_path / "counter"
    task = await run("i=0; while true; do i=$((i+1)); echo $i >> counter; sleep 0.05; done")
    await until(lambda: counter.exists() and counter.stat().st_size > 0)
    task.pause()
    assert task.paused
    await asyncio.sleep(0.1)  # a write under way when the signal came may still land
    size = counter.stat().st_size
    await asyncio.sleep(0.4)
    assert counter.stat().st_size == size
    task.resume()
    assert not task.paused
    await until(lambda: counter.stat().st_size > size, timeout=2)
    result = await task.terminate(grace=1)
    assert result.signal == signal.SIGTERM


async def test_paused_time_does_not_count_towards_the_timeout(run):
    task = await run("sleep 60")
    waiting = asyncio.ensure_future(task.wait(timeout=0.4, grace=0.5))
    task.pause()
    await asyncio.sleep(0.7)
    assert not waiting.done()
    task.resume()
    result = await asyncio.wait_for(waiting, 3)
    assert result.timed_out and 0.4 <= result.seconds < 1.0  # the 0.7 s paused not counted


async def test_terminate_while_paused(run):
    task = await run("trap 'exit 5' TERM; while true; do sleep 0.05; done")
    await asyncio.sleep(0.2)
    task.pause()
    started = time.monotonic()
    result = await task.terminate(grace=3)
    assert time.monotonic() - started < 2  # TERM was acted upon: no need for KILL
    assert result.exit_code in (5, 128 + signal.SIGTERM)
    assert not task.paused


# --- big output ---------------------------------------------------------------


async def test_huge_output_is_fully_logged_in_bounded_memory(run):
    rss_before = psutil.Process().memory_info().rss
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    task = await run(
        "yes 0123456789012345678901234567890123456789012345678 | head -c 20000000\n"
        "head -c 3000000 /dev/zero | tr '\\0' a; echo\n"  # one line longer than the parse limit
        "echo '::waveui message=\"after the long line\"'\n"
        "echo '::waveui progress=5'; head -c 2000000 /dev/zero | tr '\\0' b; echo\n"
        "echo '::waveui progress=6'\n")
    result = await asyncio.wait_for(task.wait(), 30)
    assert result.exit_code == 0
    directives = len('::waveui message="after the long line"\n') + 2 * len("::waveui progress=5\n")
    assert run.log.stat().st_size == 20_000_000 + 3_000_001 + 2_000_001 + directives
    assert run.directives == [{"message": "after the long line"}, {"progress": 5.0}, {"progress": 6.0}]
    peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    # Holding the output (or the long line) would add over 20 MB to the peak.
    assert peak_after <= max(peak_before, rss_before + 15_000_000)


# --- after a crash --------------------------------------------------------------


async def test_kill_leftover_kills_a_detached_group_only_when_it_is_the_same_process(tmp_path):
    command = f"sleep 1000 & {escaper(tmp_path, 'escaped')} & trap '' TERM; sleep 1000"
    proc = subprocess.Popen(["/bin/sh", "-c", command], start_new_session=True, stdin=subprocess.DEVNULL)
    try:
        await until(lambda: (tmp_path / "escaped").exists() and (tmp_path / "escaped").read_text())
        created = psutil.Process(proc.pid).create_time()
        members = group_members(proc.pid)
        escaped = read_pid(tmp_path / "escaped")
        assert len(members) >= 2
        assert kill_leftover(proc.pid, created - 100, grace=0.3) is False
        assert kill_leftover(proc.pid, created + 100, grace=0.3) is False
        member = next(pid for pid in members if pid != proc.pid)  # not a session leader: not a task's shell
        assert kill_leftover(member, psutil.Process(member).create_time(), grace=0.3) is False
        assert all(alive(pid) for pid in [*members, escaped])
        assert await asyncio.to_thread(kill_leftover, proc.pid, created, 0.3) is True
        assert [pid for pid in [*members, escaped] if alive(pid)] == []
        assert proc.wait(5) == -signal.SIGKILL
        assert kill_leftover(proc.pid, created) is False
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_kill_leftover_without_such_process():
    assert kill_leftover(2**22 + 12345, time.time()) is False
    assert kill_leftover(0, 0.0) is False
    assert kill_leftover(os.getpid(), psutil.Process().create_time()) is False
