"""The supervisor: a small process of waveui's own that runs one task command and outlives waveui.

waveui starts ``python -m waveui.engine.supervisor`` in a session of its own
for every command a task runs. The supervisor starts the command in a process
group of its own, its output going straight to the task's log (no pipe to a
waveui that may die), enforces the timeout, kills whatever the command left
behind, and writes the exit status and end time next to the log. If waveui is
killed, the supervisor and its command go on; the next ``waveui run`` finds
the status file, or the supervisor still running, and adopts the task
instead of starting it again.

Files, for a step (``running`` or ``verifying``) of task ``ID``, in the run's
logs folder:

* ``ID.log`` — the command's output, appended;
* ``ID.STEP.pid`` — JSON: supervisor pid and start time, command pid (also
  its process group) and start time; written before the command runs;
* ``ID.STEP.status`` — JSON: exit_code, signal, timed_out, seconds, ended;
  written (atomically) when the command and its leftovers are gone.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

POLL_SECONDS = 0.05
TREE_SAMPLE_FIRST = 0.1
TREE_SAMPLE_SECONDS = 0.5


def write_json_atomically(path: Path, data: dict) -> None:
    # No fsync: these files matter when waveui dies, not the machine (then the task dies too),
    # and the page cache outlives any process. The rename makes them appear whole.
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(data, out)
    os.replace(partial, path)


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


class Supervised:
    """One command under supervision: started, waited on (with a timeout), cleaned up."""

    def __init__(self, command: str, cwd: Path, log: Path, timeout: float | None, grace: float,
                 env: dict[str, str] | None = None):
        self.timeout = timeout
        self.grace = grace
        log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.started = time.time()
        self.process = subprocess.Popen(
            ["/bin/sh", "-c", command], cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log_fd, stderr=log_fd,
            process_group=0,  # its own group: pausing or killing it never touches the supervisor
        )
        os.close(log_fd)
        self.known: dict[int, float] = {}  # every descendant seen, with its start time
        self.terminated = False

    def _remember_tree(self) -> None:
        for child in _descendants(self.process.pid):
            try:
                self.known.setdefault(child.pid, child.create_time())
            except psutil.Error:
                pass

    def terminate(self) -> None:
        """SIGTERM to the group (and SIGCONT, so a paused one can die); SIGKILL after the grace period."""
        self.terminated = True
        _signal_group(self.process.pid, signal.SIGTERM)
        _signal_group(self.process.pid, signal.SIGCONT)
        deadline = time.monotonic() + self.grace
        while self.process.poll() is None and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
        _signal_group(self.process.pid, signal.SIGKILL)

    def _stopped(self) -> bool:
        try:
            return psutil.Process(self.process.pid).status() == psutil.STATUS_STOPPED
        except psutil.Error:
            return False

    def wait(self) -> dict:
        timed_out = False
        deadline = time.monotonic() + self.timeout if self.timeout else None
        next_sample = time.monotonic() + TREE_SAMPLE_FIRST
        while True:
            try:
                self.process.wait(timeout=POLL_SECONDS)  # returns the moment the command ends
                break
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            if now >= next_sample:  # who to clean up if they escape the group
                self._remember_tree()
                next_sample = now + TREE_SAMPLE_SECONDS
            if deadline is not None and self._stopped():
                deadline += POLL_SECONDS  # a paused task's clock stops, and so does its timeout
            if deadline is not None and now > deadline and not self.terminated:
                timed_out = True
                self.terminate()
        code = self.process.returncode
        self._kill_leftovers()
        return {
            "exit_code": code if code >= 0 else 128 - code,
            "signal": -code if code < 0 else None,
            "timed_out": timed_out,
            "seconds": time.time() - self.started,
            "ended": time.time(),
        }

    def _kill_leftovers(self) -> None:
        """No process of a task may outlive it: its group, and descendants that left the group."""
        _signal_group(self.process.pid, signal.SIGTERM)
        _signal_group(self.process.pid, signal.SIGCONT)
        leftovers = []
        for pid, started in self.known.items():
            try:
                proc = psutil.Process(pid)
                if abs(proc.create_time() - started) < 1.0:
                    leftovers.append(proc)
                    proc.terminate()
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(leftovers, timeout=min(self.grace, 2.0))
        for proc in alive:
            try:
                proc.kill()
            except psutil.Error:
                pass
        _signal_group(self.process.pid, signal.SIGKILL)


def supervise(command: str, cwd: Path, env: dict[str, str] | None, log: Path, pidfile: Path, status: Path,
              timeout: float | None, grace: float) -> None:
    """Run ``command`` to its end and write the pid file, then the status file."""
    try:
        supervised = Supervised(command, cwd, log, timeout, grace, env)
    except OSError as error:
        write_json_atomically(status, {"exit_code": 127, "signal": None, "timed_out": False, "seconds": 0.0,
                                       "ended": time.time(), "error": str(error)})
        return
    write_json_atomically(pidfile, {
        "supervisor": os.getpid(), "supervisor_started": psutil.Process().create_time(),
        "pid": supervised.process.pid, "started": psutil.Process(supervised.process.pid).create_time(),
    })
    # waveui asks the supervisor, not the command, to stop: it cleans up and still writes the status.
    signal.signal(signal.SIGTERM, lambda *_: supervised.terminate())
    write_json_atomically(status, supervised.wait())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="waveui-supervisor")
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--pidfile", type=Path, required=True)
    parser.add_argument("--status", type=Path, required=True)
    parser.add_argument("--cwd", type=Path, required=True)
    parser.add_argument("--timeout", type=float)
    parser.add_argument("--grace", type=float, default=5.0)
    parser.add_argument("command")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a closed terminal must not end the task
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    supervise(args.command, args.cwd, None, args.log, args.pidfile, args.status, args.timeout, args.grace)
    return 0


if __name__ == "__main__":
    sys.exit(main())
