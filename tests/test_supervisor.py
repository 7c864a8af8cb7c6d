"""The supervisor run as ``python -m waveui.executors.local.supervisor``: pause, resume, stop, timeout, leftovers.

It is a subreaper running the command with plain blocking calls; waveui steers
it with signals (SIGUSR1 pause, SIGUSR2 resume, SIGTERM stop), and learns
everything else from its pid and status files, as these tests do.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from waveui.executors.local.supervisor import PAUSE_SIGNAL, RESUME_SIGNAL
from tests.engine_helpers import WAIT, wait_for

ROOT = Path(__file__).parents[1]



class Supervised:
    """A supervisor started by hand, as the module's command line allows."""

    def __init__(self, folder: Path, command: str, timeout: float | None = None, grace: float = 1.0):
        self.folder = folder
        self.log, self.pidfile, self.status = folder / "t.log", folder / "t.pid", folder / "t.status"
        extra = ["--timeout", str(timeout)] if timeout is not None else []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "waveui.executors.local.supervisor", "--log", str(self.log), "--pidfile",
             str(self.pidfile), "--status", str(self.status), "--cwd", str(folder), "--grace", str(grace), *extra,
             command], env=dict(os.environ, PYTHONPATH=str(ROOT)))
        self.record = wait_for(lambda: self.pidfile.exists() and json.loads(self.pidfile.read_text()),
                                "the pid file")

    def send(self, signum: int) -> None:
        self.process.send_signal(signum)

    def result(self) -> dict:
        self.process.wait(timeout=WAIT)
        return json.loads(self.status.read_text())


def test_a_paused_step_makes_no_progress_and_its_clock_stands_still(tmp_path):
    step = Supervised(tmp_path, "i=0; while [ $i -lt 30 ]; do i=$((i+1)); echo $i >> counter; sleep 0.02; done")
    wait_for(lambda: (tmp_path / "counter").exists(), "the first count")
    step.send(PAUSE_SIGNAL)
    time.sleep(0.2)  # a write under way when the signal came may still land
    size = (tmp_path / "counter").stat().st_size
    time.sleep(1.0)
    assert (tmp_path / "counter").stat().st_size == size
    assert psutil.Process(step.record["pid"]).status() == psutil.STATUS_STOPPED
    step.send(RESUME_SIGNAL)
    status = step.result()
    assert status["exit_code"] == 0
    assert (tmp_path / "counter").read_text().split()[-1] == "30"
    wall = status["ended"] - step.record["started"]
    assert wall - status["seconds"] >= 1.0  # the second paused is not running time


def test_paused_time_does_not_count_towards_the_timeout(tmp_path):
    step = Supervised(tmp_path, "sleep 60", timeout=0.5, grace=0.5)
    step.send(PAUSE_SIGNAL)
    time.sleep(1.0)
    assert step.process.poll() is None and not step.status.exists()  # paused: not out of time
    step.send(RESUME_SIGNAL)
    status = step.result()
    assert status["timed_out"] is True
    assert status["signal"] == signal.SIGTERM and status["exit_code"] == 128 + signal.SIGTERM
    assert 0.5 <= status["seconds"] < 1.0  # the second paused is not counted


def test_a_stop_ends_the_command_with_term_then_kill_and_everything_it_started(tmp_path):
    # The shell ignores TERM and leaves a detached process behind: both must go.
    step = Supervised(tmp_path, "trap '' TERM; setsid sh -c 'echo $$ > left.pid; exec sleep 300' & "
                                "while true; do sleep 0.05; done", grace=0.5)
    left = int(wait_for(lambda: (tmp_path / "left.pid").exists() and (tmp_path / "left.pid").read_text().strip(),
                         "the detached process"))
    step.send(signal.SIGTERM)
    status = step.result()
    assert status["signal"] == signal.SIGKILL and status["timed_out"] is False
    assert not psutil.pid_exists(left) or psutil.Process(left).status() == psutil.STATUS_ZOMBIE


def test_a_stop_while_paused_continues_the_command_so_it_can_end(tmp_path):
    step = Supervised(tmp_path, "trap 'exit 5' TERM; while true; do sleep 0.05; done", grace=30)
    time.sleep(0.2)
    step.send(PAUSE_SIGNAL)
    time.sleep(0.2)
    step.send(signal.SIGTERM)
    status = step.result()
    assert status["exit_code"] in (5, 128 + signal.SIGTERM)  # TERM acted upon: no need for the KILL of 30 s later
    assert status["signal"] != signal.SIGKILL


def test_output_goes_to_the_log_in_order_and_the_exit_status_to_the_status(tmp_path):
    step = Supervised(tmp_path, "echo out; echo err >&2; echo done; exit 7")
    status = step.result()
    assert status["exit_code"] == 7 and status["signal"] is None
    assert tmp_path.joinpath("t.log").read_text() == "out\nerr\ndone\n"
