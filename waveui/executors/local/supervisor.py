"""The supervisor: a small process of waveui's own that runs task commands, one at a time, and outlives waveui.

A supervisor runs in a session of its own, forked by waveui's launcher (see
:mod:`waveui.executors.local.launcher`), which gives it step after step, or by
waveui itself for one step (``python -m waveui.executors.local.supervisor``
does the same by hand). It is a child subreaper (Linux) and runs the command
with :class:`waveui.executors.local.runner.ReapedTask`: ``/bin/sh -c`` in a
process group of its own, its output going straight to the task's log, with
the timeout enforced and whatever the command left behind killed; being the
subreaper, "whatever the command left behind" is every process still below
it, detached or not. While the step runs it holds a shared lock on the
command's folder (:mod:`waveui.core.occupancy`), so no waveui reuses that
worktree. Then it writes the exit status and end time next to the log, and
only then takes another step. waveui pauses, resumes and stops the command by
signalling the supervisor (SIGUSR1, SIGUSR2, SIGTERM), which keeps the books.
If waveui is killed, the supervisor and its command go on; the next ``waveui
run`` finds the status, or the supervisor still running, and adopts the task
instead of starting it again. Where it cannot be a subreaper, the supervisor
runs its one step on an event loop with :func:`~waveui.executors.local.runner.start_task`,
which samples the process tree instead.

Files, for a step (``running`` or ``verifying``) of task ``ID``, in the run's
logs folder:

* ``ID.log`` — the command's output, appended;
* ``ID.STEP.pid`` — JSON: supervisor pid and start time, command pid (also
  its process group) and start time, the command's folder (``cwd``); written
  once the command runs, padded with blanks to a size with room for the
  status, and kept open;
* ``ID.STEP.status`` — JSON: exit_code, signal, timed_out, seconds, ended;
  written (atomically) when the command and its leftovers are gone.

A finished command's status is never lost: it is first written in place into
the pid file's reserved bytes (under ``"status"``; no new disk block is
needed, so a full disk cannot stop it), then as the status file. A deleted
logs folder is made again and both files written anew. If neither can be
written, the supervisor stays alive and tries again, so that waveui, seeing
it alive, waits instead of running a finished command again; it gives up
only when the run's folder itself is gone, and with it anyone to tell.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from waveui.core.occupancy import occupy
from waveui.executors.local.runner import ReapedTask, SignalRequests, become_subreaper, open_log, start_task
from waveui.run.journal import ensure_private_dir

PAUSE_SIGNAL = signal.SIGUSR1
RESUME_SIGNAL = signal.SIGUSR2
PIDFILE_TRIES = 3  # a logs folder deleted between two writes is made again; a full disk fails after these
PIDFILE_BLOCK = 4096  # the pid file's size is a multiple of this, with at least STATUS_ROOM to spare
STATUS_ROOM = 1024
RETRY_FIRST, RETRY_MOST = 0.05, 5.0  # seconds between attempts to write a status


def write_json_atomically(path: Path, data: dict, pad_to: int = 0, keep_open: bool = False) -> int | None:
    """Write ``data`` to ``path`` as JSON, whole or not at all, blank-padded to ``pad_to`` bytes.

    With ``keep_open`` the file stays open for reading and writing and its
    descriptor is returned (the caller closes it).
    """
    # No fsync: these files matter when waveui dies, not the machine (then the task dies too),
    # and the page cache outlives any process. The rename makes them appear whole.
    text = json.dumps(data).encode()
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        _write_all(fd, text.ljust(pad_to) if pad_to else text)
        os.replace(partial, path)
    except BaseException:
        os.close(fd)
        try:
            os.unlink(partial)  # a full disk: give back what the attempt took
        except OSError:
            pass
        raise
    if keep_open:
        return fd
    os.close(fd)
    return None


def _write_all(fd: int, data: bytes, offset: int | None = None) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view) if offset is None else os.pwrite(fd, view, offset)
        if offset is not None:
            offset += written
        view = view[written:]


class PidFile:
    """A step's pid file, written with room to spare and kept open, so the status can go into it in place."""

    def __init__(self, path: Path, record: dict):
        self.path = path
        self.record = record
        text = json.dumps(record).encode()
        self.size = (len(text) + STATUS_ROOM + PIDFILE_BLOCK - 1) // PIDFILE_BLOCK * PIDFILE_BLOCK
        self._fd = write_json_atomically(path, record, pad_to=self.size, keep_open=True)

    def write_status(self, status: dict) -> bool:
        """Put ``status`` into the reserved bytes; True if the file at :attr:`path` now holds it."""
        text = json.dumps({**self.record, "status": status}).encode()
        if self._fd is None or len(text) > self.size:
            return False
        try:
            here, there = os.fstat(self._fd), os.stat(self.path)
            if (here.st_dev, here.st_ino) != (there.st_dev, there.st_ino):
                return False  # deleted (with its folder, say): writing would reach no one
            # Overwrites bytes the file already has: the disk needs no new block for it.
            _write_all(self._fd, text.ljust(self.size), 0)
            return True
        except OSError:
            return False

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _pid_file(path: Path, record: dict) -> PidFile:
    """The step's pid file, the logs folder made again if the user deleted it just now; OSError if it cannot be."""
    for attempt in range(PIDFILE_TRIES):
        try:
            return PidFile(path, record)
        except OSError:
            if attempt == PIDFILE_TRIES - 1 or not _repository_of(path.parent).is_dir():
                raise
            try:
                ensure_private_dir(path.parent)
            except OSError:
                pass
            time.sleep(RETRY_FIRST)
    raise AssertionError("unreachable")


def _repository_of(logs: Path) -> Path:
    """The repository a run's logs folder (``<repo>/.waveui/runs/<run>/logs``) belongs to."""
    return logs.parents[3] if len(logs.parents) > 3 else logs.parent


def record_status(status_path: Path, pidfile: PidFile | None, status: dict) -> None:
    """Leave ``status`` where waveui looks for it, whatever happened to the logs folder; blocking.

    Retries until it is readable somewhere, or until the run's folder is gone.
    """
    delay = RETRY_FIRST
    while True:
        in_place = pidfile is not None and pidfile.write_status(status)
        try:
            logs = status_path.parent
            if not logs.is_dir():
                # The user deleted the logs or the whole run folder: waveui still follows this step and
                # must learn how it ended, or it would run a command again that succeeded. Only a
                # repository that is gone altogether leaves nobody to read it.
                if not _repository_of(logs).is_dir():
                    return
                ensure_private_dir(logs)
            write_json_atomically(status_path, status)
            if pidfile is not None and not in_place:
                write_json_atomically(pidfile.path, {**pidfile.record, "status": status})  # for adoption
            return
        except OSError:
            if in_place:
                return
        time.sleep(delay)
        delay = min(delay * 2, RETRY_MOST)


def supervise_step(command: str, cwd: Path, env: dict[str, str], log: Path, pidfile: Path, status: Path,
                   timeout: float | None, grace: float, started_fd: int | None, requests: SignalRequests,
                   heading: str = "") -> None:
    """One step, by a supervisor that is a subreaper: run with plain blocking calls (see :class:`ReapedTask`).

    ``requests`` are the signals waveui steers the step with, their handlers
    installed beforehand. ``heading``, when given, is put in the log as a
    line of its own before the step's output. ``started_fd`` is closed once
    the pid file is written, or the status if the step could not start. The supervisor may
    run another step afterwards: nothing of this one is left open.
    """
    def tell_started() -> None:  # waveui, waiting for the pid file, reads the end of this pipe
        nonlocal started_fd
        if started_fd is not None:
            os.close(started_fd)
            started_fd = None

    occupied = occupy(cwd) if Path(cwd).parent.name == "worktrees" else None  # a pooled slot: others see it in use
    try:
        _run_step(command, cwd, env, log, pidfile, status, timeout, grace, tell_started, requests, heading)
    finally:
        tell_started()  # the status tells, if the step did not start
        if occupied is not None:
            os.close(occupied)  # after the command's last process: the slot is free


def _run_step(command: str, cwd: Path, env: dict[str, str], log: Path, pidfile: Path, status: Path,
              timeout: float | None, grace: float, tell_started: Callable[[], None], requests: SignalRequests,
              heading: str) -> None:
    try:
        output = open_log(log, heading)
        try:
            task = ReapedTask(command, cwd, env, output)
        finally:
            os.close(output)  # the shell has it: output never passes through this process
    except OSError as error:
        record_status(status, None, _status(exit_code=127, seconds=0.0, error=str(error)))
        return
    record = {"supervisor": os.getpid(), "supervisor_started": _started_at(),
              "pid": task.pid, "started": _create_time(task.pid), "cwd": os.path.abspath(cwd)}
    try:
        reserved = _pid_file(pidfile, record)
    except OSError as error:  # no pid file, no way for waveui to follow it: do not let it run unseen
        result = task.wait(requests, timeout=0.0, grace=grace)  # out of time at once: stopped
        record_status(status, None, _status(exit_code=127, signum=result.signal, seconds=result.seconds,
                                            error=f"cannot write the pid file: {error}"))
        return
    tell_started()
    # waveui steers the command through this process, which keeps the books (paused time, cleanup).
    result = task.wait(requests, timeout, grace)
    # The handlers stay: a stop asked for now must not end this process before the status is out.
    record_status(status, reserved, _status(exit_code=result.exit_code, signum=result.signal,
                                            timed_out=result.timed_out, seconds=result.seconds))
    reserved.close()


def _status(exit_code: int, seconds: float, signum: int | None = None, timed_out: bool = False,
            error: str | None = None) -> dict:
    """A step's status, as its status file holds it."""
    status = {"exit_code": exit_code, "signal": signum, "timed_out": timed_out, "seconds": seconds,
              "ended": time.time()}
    return status if error is None else {**status, "error": error}


_start_of: dict[int, float] = {}  # by pid: a process forked from a supervisor inherits the table


def _started_at() -> float:
    """This process's start time, read once: a supervisor runs step after step."""
    pid = os.getpid()
    if pid not in _start_of:
        _start_of[pid] = _create_time(pid)
    return _start_of[pid]


def _create_time(pid: int) -> float:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:  # not reaped yet, so only a failing /proc: the start is close enough
        return time.time()


async def _supervise_sampled(command: str, cwd: Path, env: dict[str, str], log: Path, pidfile: Path,
                             status: Path, timeout: float | None, grace: float, started_fd: int | None,
                             heading: str) -> None:
    """The supervisor where it cannot be a subreaper: the task run on an event loop, its tree sampled."""
    if Path(cwd).parent.name == "worktrees":
        occupy(cwd)
    try:
        if heading:
            os.close(open_log(log, heading))
        # The runner does the work: output to the log, the timeout (paused time not counted),
        # and no process of the task outliving it. waveui reads the log for progress itself.
        process = await start_task(command, cwd, env, log, lambda _values: None, read_line=None,
                                   spawn_in_thread=False)
    except OSError as error:
        record_status(status, None, _status(exit_code=127, seconds=0.0, error=str(error)))
        return
    record = {"supervisor": os.getpid(), "supervisor_started": _started_at(),
              "pid": process.pid, "started": process.create_time, "cwd": os.path.abspath(cwd)}
    try:
        reserved = _pid_file(pidfile, record)
    except OSError as error:
        result = await process.terminate(grace)
        record_status(status, None, _status(exit_code=127, signum=result.signal, seconds=result.seconds,
                                            error=f"cannot write the pid file: {error}"))
        return
    if started_fd is not None:
        os.close(started_fd)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, lambda: loop.create_task(process.terminate(grace)))
    loop.add_signal_handler(PAUSE_SIGNAL, process.pause)
    loop.add_signal_handler(RESUME_SIGNAL, process.resume)
    result = await process.wait(timeout=timeout, grace=grace)
    record_status(status, reserved, _status(exit_code=result.exit_code, signum=result.signal,
                                            timed_out=result.timed_out, seconds=result.seconds))
    reserved.close()


def supervise(command: str, cwd: Path, env: dict[str, str] | None, log: Path, pidfile: Path, status: Path,
              timeout: float | None, grace: float, started_fd: int | None = None, heading: str = "") -> None:
    """Run ``command`` to its end: the pid file once it runs, the status file once it and its leftovers are gone.

    ``started_fd``, the write end of a pipe, is closed once the pid file is written (or this process ends).
    ``heading``, when given, is put in the log as a line of its own before the command's output.
    """
    env = dict(os.environ) if env is None else env
    # Before the command starts, so that nothing it starts can escape the tree or find the folder free.
    if become_subreaper():
        requests = SignalRequests(stop=(signal.SIGTERM,), pause=PAUSE_SIGNAL, resume=RESUME_SIGNAL)
        supervise_step(command, cwd, env, log, pidfile, status, timeout, grace, started_fd, requests, heading)
        return
    asyncio.events._set_running_loop(None)  # forked from inside waveui's running loop: start a loop of our own
    # Not asyncio.run: its teardown (joining the thread pool in a new thread) took milliseconds after
    # the status was out, and waveui learns the end when this process exits, which it does right after.
    loop = asyncio.new_event_loop()
    loop.run_until_complete(_supervise_sampled(command, cwd, env, log, pidfile, status, timeout, grace,
                                               started_fd, heading))


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
