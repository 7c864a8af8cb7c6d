"""Nothing a task starts outlives its step, however it detaches: the supervisor is a subreaper.

Every command leaves a process behind in one of the ways a daemon escapes a
process group and its parent (``setsid -f``, a double fork, ``nohup``, a
Python daemon that closes every descriptor, a detach just before exiting).
Each leftover carries a marker unique to the test in its argv, so the check
is a plain scan of the process table once the step has ended: no waiting.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from tests.faults.helpers import git, make_repo, run, write_epic
from waveui.executors.local.runner import TIMED_OUT_EXIT, run_to_end
from waveui.executors.local.supervision import SupervisedStep
from waveui.executors.steps import StepFiles

DEADLINE = 30.0  # generous: only ever waited out when something is broken


def new_marker() -> str:
    """A sleep length no other process on the machine uses: ``300.<random digits>``."""
    return f"300.{uuid.uuid4().int % 10**12:012d}"


def marked(marker: str) -> list[psutil.Process]:
    """Live (non-zombie) processes whose argv mentions ``marker``."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and marker in " ".join(proc.info["cmdline"] or ()):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def kill_marked(marker: str) -> None:
    for proc in marked(marker):
        try:
            proc.kill()
        except psutil.Error:
            pass


async def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.05)


def python_daemon(marker: str) -> str:
    """A classic daemon in Python: fork, setsid, fork again, close every descriptor, sleep."""
    code = ("import os, sys, time\n"
            "if os.fork(): sys.exit(0)\n"
            "os.setsid()\n"
            "if os.fork(): os._exit(0)\n"
            "os.closerange(0, 4096)\n"
            f"time.sleep({marker})\n")
    return f"{sys.executable} -c '{code}' {marker}"


# How a command leaves a process behind; each takes the marker.
DETACHERS = {
    "setsid": lambda m: f"setsid -f sleep {m}",
    "double fork": lambda m: f"( (sleep {m} &) & )",
    "nohup": lambda m: f"nohup sleep {m} >/dev/null 2>&1 &",
    "python daemon": python_daemon,
    "setsid, output closed": lambda m: f"setsid -f sh -c 'exec >/dev/null 2>&1 </dev/null; exec sleep {m}'",
    "grandchild of a setsid child": lambda m: f"setsid -f sh -c '(sleep {m} &); sleep {m}'",
}


@pytest.fixture
def marker():
    value = new_marker()
    yield value
    kill_marked(value)  # a failing test must not leave sleepers on a shared machine


from tests.faults.helpers import started_steps, stop_leftover_steps  # noqa: F401  (autouse)


async def start_step(tmp_path: Path, command: str, timeout: float | None = None) -> SupervisedStep:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    files = StepFiles.of(tmp_path / "logs", "t1", "running")
    step = await SupervisedStep.start(command, work, dict(os.environ), files, lambda _values: None,
                                      timeout=timeout, grace=1.0)
    started_steps.append(step)
    return step


def go_after(detach: str) -> str:
    """Detach, then idle until the test creates ``go``, then exit 5."""
    return f"{detach}\nwhile [ ! -e go ]; do sleep 0.05; done; exit 5"


@pytest.mark.parametrize("how", list(DETACHERS))
async def test_detached_processes_end_with_the_step(tmp_path, marker, how):
    step = await start_step(tmp_path, go_after(DETACHERS[how](marker)))
    await wait_for(lambda: marked(marker), f"the {how} leftover starts")
    (tmp_path / "work" / "go").touch()
    result = await asyncio.wait_for(step.wait(), DEADLINE)
    assert result.exit_code == 5
    assert marked(marker) == []


@pytest.mark.parametrize("how", ["setsid", "double fork", "nohup", "python daemon"])
async def test_a_process_detached_just_before_the_exit_ends_too(tmp_path, marker, how):
    # Nothing waits for the leftover to be seen: the shell exits the moment it has detached it.
    step = await start_step(tmp_path, f"{DETACHERS[how](marker)}\nexit 0")
    result = await asyncio.wait_for(step.wait(), DEADLINE)
    assert result.exit_code == 0
    assert marked(marker) == []


async def test_detached_processes_end_when_the_step_times_out(tmp_path, marker):
    # The leftovers touch "up" before the shell starts idling, so they surely ran before the timeout.
    detach = (f"setsid -f sh -c 'touch up; exec sleep {marker}'; ( (sleep {marker} &) & ); "
              "while [ ! -e up ]; do sleep 0.01; done; sleep 1000")
    step = await start_step(tmp_path, detach, timeout=3.0)
    result = await asyncio.wait_for(step.wait(), DEADLINE)
    assert result.timed_out
    assert (tmp_path / "work" / "up").exists()
    assert marked(marker) == []


async def test_detached_processes_end_when_the_step_is_stopped(tmp_path, marker):
    step = await start_step(tmp_path, go_after(f"{DETACHERS['setsid'](marker)}\n{python_daemon(marker)}"))
    await wait_for(lambda: len(marked(marker)) >= 2, "both leftovers start")
    await asyncio.wait_for(step.terminate(grace=1.0), DEADLINE)
    assert marked(marker) == []


async def test_a_leftover_that_ignores_sigterm_is_killed(tmp_path, marker):
    stubborn = f"setsid -f sh -c 'trap \"\" TERM; while :; do sleep {marker}; done'"
    step = await start_step(tmp_path, go_after(stubborn))
    await wait_for(lambda: marked(marker), "the leftover starts")
    (tmp_path / "work" / "go").touch()
    result = await asyncio.wait_for(step.wait(), DEADLINE)
    assert result.exit_code == 5
    assert marked(marker) == []


async def test_pause_stops_detached_processes_and_resume_continues_them(tmp_path, marker):
    step = await start_step(tmp_path, go_after(DETACHERS["python daemon"](marker)))
    await wait_for(lambda: marked(marker), "the daemon starts")

    def daemon_status() -> set[str]:
        # as listed: asking again races with a process of the daemon's that ends meanwhile
        return {proc.info["status"] for proc in marked(marker)}

    step.pause()
    await wait_for(lambda: daemon_status() == {psutil.STATUS_STOPPED}, "the detached daemon is stopped")
    step.resume()
    await wait_for(lambda: psutil.STATUS_STOPPED not in daemon_status(), "the detached daemon continues")
    (tmp_path / "work" / "go").touch()
    result = await asyncio.wait_for(step.wait(), DEADLINE)
    assert result.exit_code == 5
    assert marked(marker) == []


def test_a_whole_run_leaves_no_detached_process(tmp_path, marker):
    repo = make_repo(tmp_path / "repo", {"README.md": "hi\n"})
    write_epic(repo, f"""
[epic]
name = "detach"
max_parallel = 2
adaptive = false

[[task]]
id = "a"
command = "setsid -f sleep {marker}; ( (sleep {marker} &) & ); echo a > a.txt"

[[task]]
id = "b"
requires = ["a"]
command = "nohup sleep {marker} >/dev/null 2>&1 & echo b > b.txt"
""")
    code, text = run(repo)
    assert code == 0, text
    assert git(repo, "show", "waveui/detach:b.txt").strip() == "b"
    assert marked(marker) == []


# --- run_to_end: the same guarantee for a command waveui waits for itself (an epic's setup) ---


@pytest.mark.parametrize("how", list(DETACHERS))
def test_run_to_end_leaves_nothing_behind(tmp_path, marker, how):
    log = tmp_path / "logs" / "setup.log"
    code = run_to_end(f"{DETACHERS[how](marker)}\necho done; exit 3", tmp_path, dict(os.environ), log)
    assert code == 3
    assert marked(marker) == []
    assert "done" in log.read_text().splitlines()  # a leftover's shell may say "Terminated" after it


def test_run_to_end_stops_a_command_past_its_timeout(tmp_path, marker):
    code = run_to_end(f"setsid -f sleep {marker}; sleep {marker}", tmp_path, dict(os.environ), None,
                      timeout=1.0, grace=1.0)
    assert code == TIMED_OUT_EXIT
    assert marked(marker) == []


def test_run_to_end_reports_a_signal_as_a_shell_does(tmp_path):
    assert run_to_end("kill -TERM $$", tmp_path, dict(os.environ), None) == 128 + signal.SIGTERM


def test_run_to_end_cleans_up_when_its_caller_is_killed(tmp_path, marker):
    # The caller (waveui running a setup) dies by SIGKILL: the command and its daemon must not live on.
    script = ("import os, sys\n"
              "from pathlib import Path\n"
              "from waveui.executors.local.runner import run_to_end\n"
              f"run_to_end('setsid -f sleep {marker}; sleep {marker}', Path(sys.argv[1]), dict(os.environ), None)\n")
    caller = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)])
    try:
        deadline = time.monotonic() + DEADLINE
        while len(marked(marker)) < 2:
            assert time.monotonic() < deadline, "the setup never started"
            time.sleep(0.05)
    finally:
        caller.kill()
        caller.wait()
    deadline = time.monotonic() + DEADLINE
    while marked(marker):
        assert time.monotonic() < deadline, "the setup outlived the process that ran it"
        time.sleep(0.05)
