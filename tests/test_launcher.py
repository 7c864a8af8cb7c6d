"""The launcher and its supervisors: steps outlive their controller, a supervisor runs step after step, and
without the launcher steps still start."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil

from waveui.executors.local import LocalExecutor
from waveui.executors.local.launcher import Launcher
from waveui.executors.local.supervision import SupervisedStep
from waveui.executors.steps import StepFiles, read_status
from tests.engine_helpers import WAIT, wait_for




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
    status = wait_for(lambda: read_status(files), "the step's status")
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


# --- one supervisor, step after step -------------------------------------------------------------------


def _run_steps(folder: Path, commands: list[str], between=None) -> list[tuple[SupervisedStep, object]]:
    """Run ``commands`` one after another through one launcher; each step and its result."""
    async def scenario():
        launcher = Launcher()
        try:
            done = []
            for number, command in enumerate(commands):
                files = StepFiles.of(folder / "logs", f"t{number}", "running")
                step = await SupervisedStep.start(command, folder, dict(os.environ), files, lambda _values: None,
                                                  None, 1.0, launcher=launcher)
                done.append((step, await step.wait()))
                if between is not None:
                    between(step)
            return done
        finally:
            launcher.close()
    return asyncio.run(scenario())


def test_a_supervisor_whose_step_ended_runs_the_next_step(tmp_path):
    steps = _run_steps(tmp_path, ["echo one", "echo two", "exit 3"])
    assert [result.exit_code for _, result in steps] == [0, 0, 3]
    # The same process ran all three, each command a process of its own.
    assert len({step.supervisor for step, _ in steps}) == 1
    assert len({step.pid for step, _ in steps}) == 3
    assert (tmp_path / "logs" / "t1.log").read_text() == "two\n"


def test_what_a_step_left_running_is_gone_before_the_next_step_starts(tmp_path):
    # The first step detaches a process of its own session that would outlive it; the second looks for it.
    steps = _run_steps(tmp_path, ["setsid sh -c 'echo $$ > left.pid; exec sleep 300' & sleep 0.3",
                                  "kill -0 $(cat left.pid) 2>/dev/null && echo alive || echo gone"])
    assert [result.exit_code for _, result in steps] == [0, 0]
    assert (tmp_path / "logs" / "t1.log").read_text() == "gone\n"
    assert not psutil.pid_exists(int((tmp_path / "left.pid").read_text())) or \
        psutil.Process(int((tmp_path / "left.pid").read_text())).status() == psutil.STATUS_ZOMBIE


def test_a_pause_asked_of_a_step_that_ended_does_not_reach_the_next_one(tmp_path):
    def late_signals(step: SupervisedStep) -> None:
        step.pause()  # the step ended: its supervisor is idle, or running the next step
        os.kill(step.supervisor, signal.SIGUSR1)  # and a pause that arrived after the end, as a race would
    steps = _run_steps(tmp_path, ["true", "sleep 0.2; echo ran"], between=late_signals)
    assert steps[1][1].exit_code == 0
    assert (tmp_path / "logs" / "t1.log").read_text() == "ran\n"


def test_a_step_run_in_a_slot_frees_it_when_it_ends_though_its_supervisor_lives_on(tmp_path):
    from waveui.core.occupancy import slot_in_use

    slot = tmp_path / "worktrees" / "slot-0"
    slot.mkdir(parents=True)
    seen_busy = []

    async def scenario():
        launcher = Launcher()
        try:
            files = StepFiles.of(tmp_path / "logs", "t0", "running")
            step = await SupervisedStep.start("while [ ! -e go ]; do sleep 0.05; done", slot, dict(os.environ),
                                              files, lambda _values: None, None, 1.0, launcher=launcher)
            seen_busy.append(slot_in_use(slot))
            (slot / "go").touch()
            await step.wait()
            return step
        finally:
            launcher.close()

    asyncio.run(scenario())
    assert seen_busy == [True]
    assert not slot_in_use(slot)


IDLE_CONTROLLER = textwrap.dedent("""
    import asyncio, json, os, sys
    from pathlib import Path
    from waveui.executors.local import LocalExecutor

    async def main():
        folder = Path(sys.argv[1])
        step = await LocalExecutor(folder, "run-1").start("t1", "running", "true", folder, dict(os.environ), None,
                                                          1.0, lambda _values: None)
        await step.wait()
        print(json.dumps({"supervisor": step.supervisor}), flush=True)
        await asyncio.sleep(3600)  # killed -9 meanwhile

    asyncio.run(main())
""")


def test_an_idle_supervisor_exits_when_its_controller_is_killed_9(tmp_path):
    controller = subprocess.Popen([sys.executable, "-c", IDLE_CONTROLLER, str(tmp_path)], stdout=subprocess.PIPE,
                                  text=True, env=dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1])))
    supervisor = psutil.Process(json.loads(controller.stdout.readline())["supervisor"])
    assert supervisor.is_running()  # kept for the next step
    controller.send_signal(signal.SIGKILL)
    controller.wait()
    supervisor.wait(timeout=WAIT)  # nothing to finish: it goes with its controller
