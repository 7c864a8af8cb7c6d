"""The launcher that forks supervisors: steps it starts outlive their controller, and without it steps still start."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil

from waveui.executors.local import LocalExecutor
from waveui.executors.local.launcher import Launcher
from waveui.executors.local.supervision import SupervisedStep
from waveui.executors.steps import StepFiles, read_status

WAIT = 60.0  # generous: a deadline for a machine under load, never a measure of speed


def _wait_for(condition, what: str):
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


CONTROLLER = textwrap.dedent("""
    import asyncio, json, os, sys
    from pathlib import Path
    from waveui.executors.local import LocalExecutor
    from waveui.executors.local.launcher import Launcher

    async def main():
        folder = Path(sys.argv[1])
        step = await LocalExecutor(folder, "run-1").start(
            "t1", "running", "while [ ! -e go ]; do sleep 0.05; done; echo finished > out.txt", folder,
            dict(os.environ), None, 1.0, lambda _values: None)
        print(json.dumps({"launcher": Launcher.running().process.pid, "supervisor": step.supervisor}), flush=True)
        await asyncio.sleep(3600)  # killed -9 meanwhile

    asyncio.run(main())
""")


def test_a_step_started_through_the_launcher_outlives_its_controller_killed_9(tmp_path):
    controller = subprocess.Popen([sys.executable, "-c", CONTROLLER, str(tmp_path)], stdout=subprocess.PIPE,
                                  text=True, env=dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1])))
    started = json.loads(controller.stdout.readline())
    launcher, supervisor = psutil.Process(started["launcher"]), psutil.Process(started["supervisor"])
    assert supervisor.ppid() == launcher.pid  # forked by the launcher, not by the controller
    assert os.getsid(supervisor.pid) not in (os.getsid(controller.pid), os.getsid(launcher.pid))

    controller.send_signal(signal.SIGKILL)
    controller.wait()
    launcher.wait(timeout=WAIT)  # it ends with its controller's end of the socket...
    assert supervisor.is_running() and supervisor.status() != psutil.STATUS_ZOMBIE  # ...its supervisors do not

    (tmp_path / "go").touch()
    files = StepFiles.of(tmp_path / ".waveui" / "runs" / "run-1" / "logs", "t1", "running")
    status = _wait_for(lambda: read_status(files), "the step's status")
    assert status["exit_code"] == 0
    assert (tmp_path / "out.txt").read_text() == "finished\n"


def test_a_step_still_starts_when_the_launcher_is_gone(tmp_path):
    async def scenario():
        launcher = Launcher()
        launcher.process.kill()
        launcher.process.wait()
        files = StepFiles.of(tmp_path, "t1", "running")
        step = await SupervisedStep.start("while [ ! -e go ]; do sleep 0.05; done; echo started", tmp_path,
                                          dict(os.environ), files, lambda _values: None, None, 1.0,
                                          launcher=launcher)
        parent = psutil.Process(step.supervisor).ppid()
        (tmp_path / "go").touch()
        return parent, await step.wait()

    parent, ended = asyncio.run(scenario())
    assert parent == os.getpid()  # forked from this process instead
    assert ended.exit_code == 0
    assert "started" in (tmp_path / "t1.log").read_text()


def test_steps_of_several_executors_share_one_launcher(tmp_path):
    async def scenario():
        first = await LocalExecutor(tmp_path / "a", "run-1").start("t1", "running", "true", tmp_path,
                                                                   dict(os.environ), None, 1.0, lambda _values: None)
        launcher = Launcher.running()
        second = await LocalExecutor(tmp_path / "b", "run-2").start("t1", "running", "true", tmp_path,
                                                                    dict(os.environ), None, 1.0, lambda _values: None)
        return launcher, Launcher.running(), await first.wait(), await second.wait()

    launcher, again, first, second = asyncio.run(scenario())
    assert launcher is not None and launcher is again
    assert first.exit_code == 0 and second.exit_code == 0
