"""Starting task commands under supervisors, following them, and adopting them after waveui died.

A supervisor is forked by waveui's launcher and runs step after step (or,
without a launcher, is forked from waveui for one step); either way it leaves
waveui's session at once, so nothing that happens to waveui reaches it: not
``kill -9``, not a closed terminal. waveui follows a supervised step through
files only: it reads the log as it grows, with the line reader it was given
(``::waveui`` lines, and the agent's own result lines), and learns the end
from the status, which it reads from the status file or, when that could not
be written, from the pid file (see :mod:`waveui.executors.local.supervisor`).
A pipe whose end the supervisor closes once the status is out, or the
supervisor's exit, wakes waveui at once; polling catches the rest.
The next waveui can do exactly the same with a step it did not start; that
is adoption. :func:`live_steps` lists the supervisors still running in any
run of a repository.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import NoReturn
from dataclasses import dataclass
from pathlib import Path

import psutil

from waveui.core.pids import CREATE_TIME_TOLERANCE
from waveui.executors.local.launcher import Launcher, SupervisorLine
from waveui.executors.local.runner import ExitResult, SignalRequests, become_subreaper
from waveui.executors.local.supervisor import PAUSE_SIGNAL, RESUME_SIGNAL, supervise, supervise_step
from waveui.executors.steps import StepFiles, read_json, read_status
from waveui.run.directives import LineReader, read_directive
from waveui.run.journal import runs_dir

STEPS = ("running", "verifying", "resolving")  # resolving: a conflict's resolver command
POLL_SECONDS = 0.1
START_WAIT_SECONDS = 10.0
READ_CHUNK = 1 << 20
LONGEST_LINE = 1 << 20  # longer lines are logged but not parsed
INLINE_READ = 1 << 16  # bytes of log read in the event loop; more are read in a thread


def _alive(pid: int | None, started: float | None) -> bool:
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        return (started is None or abs(proc.create_time() - started) < CREATE_TIME_TOLERANCE) \
            and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _fork_supervisor(command: str, cwd: Path, env: dict[str, str], files: StepFiles,
                     timeout: float | None, grace: float, heading: str) -> tuple[int, int]:
    """The supervisor's pid, and the read end of a pipe that ends once its pid file is written."""
    started, started_in_child = os.pipe()
    pid = os.fork()
    if pid:
        os.close(started_in_child)
        return pid, started
    try:
        _leave_session(keep={started_in_child})
        supervise(command, cwd, env, files.log, files.pidfile, files.status, timeout, grace, started_in_child,
                  heading)
    finally:
        os._exit(0)


def serve_steps(connection_fd: int) -> NoReturn:
    """In a process the launcher just forked: leave the session, run the steps sent on the socket, exit.

    One step at a time, each to its end (status written), then the next; once
    waveui's end of the socket closes, this process exits. Without a subreaper
    (not Linux) a supervisor cannot tell one step's leftovers from the next
    step's processes: it runs one step and exits, and waveui asks for another.
    """
    from waveui.executors.local.launcher import receive  # (it imports this module)

    try:
        _leave_session(keep={connection_fd})
        with socket.socket(fileno=connection_fd) as connection:
            subreaper = become_subreaper()
            requests = SignalRequests(stop=(signal.SIGTERM,), pause=PAUSE_SIGNAL, resume=RESUME_SIGNAL) \
                if subreaper else None
            while (received := receive(connection, 2)) is not None:
                step, (started_fd, ended_fd) = received
                files = StepFiles(Path(step["log"]), Path(step["pidfile"]), Path(step["status"]))
                try:
                    if requests is None:
                        supervise(step["command"], Path(step["cwd"]), step["env"], files.log, files.pidfile,
                                  files.status, step["timeout"], step["grace"], started_fd, step["heading"])
                        return
                    requests.take()  # signals meant for the step before, sent as it ended
                    supervise_step(step["command"], Path(step["cwd"]), step["env"], files.log, files.pidfile,
                                   files.status, step["timeout"], step["grace"], started_fd, requests,
                                   step["heading"])
                finally:
                    os.close(ended_fd)  # after the status: waveui, following the step, reads this pipe's end
    finally:
        os._exit(0)


def _leave_session(keep: set[int]) -> None:
    """In a process just forked (from waveui or its launcher), become nobody's but the step's.

    From here on only plain, blocking calls, then _exit (never back into the parent's asyncio).
    """
    os.setsid()
    signal.set_wakeup_fd(-1)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    for name in os.listdir("/proc/self/fd") if os.path.isdir("/proc/self/fd") else ():
        if int(name) > 2 and int(name) not in keep:
            try:
                os.close(int(name))  # waveui's journal, terminal and sockets are not the supervisor's
            except OSError:
                pass


def _launch_supervisor(launcher: Launcher | None, command: str, cwd: Path, env: dict[str, str], files: StepFiles,
                       timeout: float | None, grace: float, heading: str) -> tuple[int | None, int, _Ending]:
    """Have the step started by a supervisor: its pid when it is this process's child (None when the launcher's),
    the read end of the pipe that ends once its pid file is written, and how its end is told."""
    if launcher is not None:
        started, started_in_child = os.pipe()
        ended, ended_in_child = os.pipe()
        try:
            line = launcher.launch(command, cwd, env, files, timeout, grace, started_in_child, ended_in_child,
                                   heading)
            return None, started, _Ending(launcher, line, ended)
        except OSError:  # the launcher died meanwhile: this process forks the supervisor itself
            os.close(started)
            os.close(ended)
        finally:
            os.close(started_in_child)
            os.close(ended_in_child)
    supervisor, started = _fork_supervisor(command, cwd, env, files, timeout, grace, heading)
    return supervisor, started, _Ending()


@dataclass
class _Ending:
    """How a step's end is told, besides its status file: the launcher's supervisor that runs it closes
    ``pipe``'s other end and is given back for another step; a supervisor of its own exits."""

    launcher: Launcher | None = None
    line: SupervisorLine | None = None
    pipe: int | None = None  # its read end

    def close(self, supervisor_moves_on: bool) -> None:
        """Done with it; with ``supervisor_moves_on`` the supervisor ran the step to its end and awaits another."""
        if self.pipe is not None:
            os.close(self.pipe)
            self.pipe = None
        if self.line is not None:
            if supervisor_moves_on:
                self.launcher.give_back(self.line)
            else:
                self.line.close()
            self.line = None


async def _readable(fd: int, timeout: float) -> None:
    """Return once ``fd`` is readable (or at its end), or after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)
    loop.add_reader(fd, wake)
    timer = loop.call_later(timeout, wake)  # the timeout wakes it as the pipe would: no wait_for around it
    try:
        await ready
    finally:
        timer.cancel()
        loop.remove_reader(fd)


class SupervisedStep:
    """A task step running under a supervisor: pause, resume, terminate, wait — started here or adopted."""

    def __init__(self, files: StepFiles, record: dict, on_directive: Callable[[dict], None],
                 supervisor_is_child: bool, log_offset: int = 0, read_line: LineReader = read_directive,
                 ending: _Ending | None = None):
        self.files = files
        self.pid: int = record["pid"]
        self.create_time: float = record["started"]
        self.supervisor: int = record["supervisor"]
        self.supervisor_started: float = record["supervisor_started"]
        self._on_directive = on_directive
        self._read_line = read_line
        self._child = supervisor_is_child
        self._offset = log_offset
        self._partial = b""
        self._paused_since: float | None = None
        self._paused_total = 0.0
        self._started = time.monotonic()
        self._result: ExitResult | None = None
        self._exit_fd: int | None = None
        self._ending = ending or _Ending()
        self._status_read = False  # the step ended with a status: its supervisor ran it to the end

    # ---- starting and adopting ----

    @classmethod
    async def start(cls, command: str, cwd: Path, env: dict[str, str], files: StepFiles,
                    on_directive: Callable[[dict], None], timeout: float | None, grace: float,
                    read_line: LineReader = read_directive, heading: str = "",
                    launcher: Launcher | None = None) -> SupervisedStep:
        """Start ``command`` under a supervisor; ``on_directive`` gets what ``read_line`` finds in its output.

        ``heading``, a line put in the log first, tells this step's output from the earlier ones' it follows.
        The supervisor is forked by ``launcher`` when given (and working), else from this process.
        """
        files.log.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        files.clear()
        # The supervisor writes the heading: creating a file costs the kernel more than the rest of a step's
        # start, better spent outside waveui's one thread. The step's output begins after it.
        try:
            offset = os.stat(files.log).st_size
        except FileNotFoundError:
            offset = 0
        if heading:
            offset += len((heading + "\n").encode())
        supervisor, started, ending = _launch_supervisor(launcher, command, cwd, env, files, timeout, grace,
                                                         heading)
        deadline = time.monotonic() + START_WAIT_SECONDS
        try:
            # Woken when the supervisor closes its end of the pipe (its pid file is written, or it
            # ended), not by polling: a poll that backs off started commands up to its step late.
            await _readable(started, START_WAIT_SECONDS)
        finally:
            os.close(started)
        while True:
            record = read_json(files.pidfile)
            if record and "pid" in record:
                return cls(files, record, on_directive, supervisor is not None, offset, read_line, ending)
            status = read_status(files)
            if status:  # could not even start (e.g. the folder vanished)
                now = time.time()
                return cls(files, {"pid": 0, "started": now, "supervisor": supervisor or 0,
                                   "supervisor_started": now}, on_directive, supervisor is not None, offset,
                           read_line, ending)
            if time.monotonic() > deadline:
                raise RuntimeError(f"the supervisor of {files.log.stem} did not start")
            await asyncio.sleep(0.02)  # it ended without either, or a status is still being written

    @classmethod
    def adopt(cls, files: StepFiles, on_directive: Callable[[dict], None],
              read_line: LineReader = read_directive) -> SupervisedStep | None:
        """Follow a step an earlier waveui started: if it finished, or its supervisor still runs.

        The whole log is read again, so progress and cost come back as they were.
        """
        record = read_json(files.pidfile)
        if record is None:
            return None
        if "pid" not in record:
            return None
        if read_status(files) is not None or _alive(record.get("supervisor"), record.get("supervisor_started")):
            return cls(files, record, on_directive, False, 0, read_line)
        return None

    def supervisor_alive(self) -> bool:
        return _alive(self.supervisor, self.supervisor_started)

    # ---- control ----

    @property
    def paused(self) -> bool:
        return self._paused_since is not None

    def _signal(self, signum: int) -> None:
        if self.pid:
            try:
                os.killpg(self.pid, signum)
            except (ProcessLookupError, PermissionError):
                pass

    def _ask_supervisor(self, signum: int, fallback: int) -> None:
        if self._result is not None:
            return  # ended: its supervisor may be running another step now
        if self.supervisor_alive():
            try:
                os.kill(self.supervisor, signum)
                return
            except ProcessLookupError:
                pass
        self._signal(fallback)  # no supervisor to ask: act on the command's group directly

    def pause(self) -> None:
        if not self.paused:
            self._ask_supervisor(PAUSE_SIGNAL, signal.SIGSTOP)
            self._paused_since = time.monotonic()

    def resume(self) -> None:
        if self.paused:
            self._ask_supervisor(RESUME_SIGNAL, signal.SIGCONT)
            self._paused_total += time.monotonic() - self._paused_since
            self._paused_since = None

    async def terminate(self, grace: float = 5.0) -> ExitResult:
        """Ask the supervisor to stop the command (it still writes the status); kill it all if it cannot."""
        if self._result is not None:
            return self._result  # ended: its supervisor may be running another step now
        if self.supervisor_alive():
            try:
                os.kill(self.supervisor, signal.SIGTERM)
            except ProcessLookupError:
                pass
        self._signal(signal.SIGCONT)
        self._paused_since = None
        try:
            return await asyncio.wait_for(self.wait(), grace + 5.0)
        except asyncio.TimeoutError:
            self._signal(signal.SIGKILL)
            return ExitResult(exit_code=137, timed_out=False, signal=signal.SIGKILL, seconds=self.seconds)

    def detach(self) -> None:
        """Leave the step running for the next waveui to adopt (its supervisor exits after it)."""
        self._ending.close(supervisor_moves_on=False)

    @property
    def seconds(self) -> float:
        paused = self._paused_total + (time.monotonic() - self._paused_since if self._paused_since else 0.0)
        return time.monotonic() - self._started - paused

    # ---- following ----

    async def _read_more(self) -> None:
        """Read what the log gained and report its lines here, on the event loop.

        The report reaches the engine, which journals it and folds it into the
        run's state; doing that from the reading thread raced the loop's own events.
        A large read goes to a thread; a few kilobytes are read at once, as
        handing them to a thread costs more than reading them; a log that did not
        grow is not opened.
        """
        try:
            grown = os.stat(self.files.log).st_size - self._offset
        except OSError:  # deleted, or its folder replaced: the status still tells the end
            return
        if grown <= 0:
            return
        found = self._read_log() if grown <= INLINE_READ else await asyncio.to_thread(self._read_log)
        for values in found:
            self._on_directive(values)

    def _read_log(self) -> list[dict]:
        try:
            with open(self.files.log, "rb") as log:
                log.seek(self._offset)
                data = log.read(READ_CHUNK)
        except OSError:  # deleted, or its folder replaced: the status still tells the end
            return []
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > LONGEST_LINE:
            self._partial = b""  # logged, too long to be a directive
        found = []
        for raw in lines:
            values = self._read_line(raw)
            if values:
                found.append(values)
        return found

    def _exit_signal(self) -> asyncio.Event:
        """Set when the step's status is out (its ending pipe closed) or its supervisor exited: a wake-up at
        once instead of at the next poll."""
        ended = asyncio.Event()
        loop = asyncio.get_running_loop()
        if self._ending.pipe is not None:
            pipe = self._ending.pipe

            def status_out() -> None:
                loop.remove_reader(pipe)
                ended.set()

            loop.add_reader(pipe, status_out)
        try:
            fd = os.pidfd_open(self.supervisor)
        except ProcessLookupError:  # exited already (a short step's supervisor of its own often has)
            ended.set()
            return ended
        except (AttributeError, OSError):
            return ended  # no pidfd here: the pipe, or polling, notices the end

        def exited() -> None:
            loop.remove_reader(fd)
            os.close(fd)
            self._exit_fd = None
            ended.set()

        loop.add_reader(fd, exited)
        self._exit_fd = fd
        return ended

    async def wait(self, timeout: float | None = None, grace: float = 5.0) -> ExitResult:
        """Follow the log until the status file says the step ended (the supervisor enforces the timeout)."""
        if self._result is not None:
            return self._result
        ended = self._exit_signal()
        loop = asyncio.get_running_loop()
        try:
            self._result = await self._follow(ended)
        finally:
            if self._exit_fd is not None:
                loop.remove_reader(self._exit_fd)
                os.close(self._exit_fd)
            self._exit_fd = None
            if self._ending.pipe is not None:
                loop.remove_reader(self._ending.pipe)
            # With its status read, the supervisor has moved on; lost or cancelled, it is let go.
            self._ending.close(supervisor_moves_on=self._result is not None and self._status_read)
        return self._result

    async def _follow(self, ended: asyncio.Event) -> ExitResult:
        first = True
        while True:
            # Woken by the step's end, else every POLL_SECONDS to read what the log gained. With a
            # wake-up to count on, a short step is looked at once, when it has ended, not once before as well.
            if not ended.is_set() and (self._exit_fd is not None or self._ending.pipe is not None or not first):
                try:
                    await asyncio.wait_for(ended.wait(), POLL_SECONDS)
                except asyncio.TimeoutError:
                    pass
            first = False
            await self._read_more()
            status = read_status(self.files)  # a small file: a thread would cost more than the read
            if status is not None:
                while True:  # the step ended: read the rest of its log, however far behind a flood left us
                    offset = self._offset
                    await self._read_more()
                    if self._offset == offset:
                        break
                if self._partial:  # its last line, which no end of line will follow
                    values = self._read_line(self._partial)
                    self._partial = b""
                    if values:
                        self._on_directive(values)
                self._reap()
                self._status_read = True
                return ExitResult.of_status(status, self.seconds)
            # Woken with no status, the supervisor has exited or given up the step (the process table is
            # asked only when polling: a pid reused before the pidfd was opened would keep that from firing).
            if ended.is_set() or not self.supervisor_alive():
                self._reap()
                # Alive, it would still be trying to leave its status: only a supervisor gone without
                # one (killed) means the result is lost. Found now, it is read on the next pass.
                if await asyncio.to_thread(read_status, self.files) is None:
                    self._signal(signal.SIGKILL)
                    return ExitResult(exit_code=137, timed_out=False, signal=signal.SIGKILL, seconds=self.seconds)

    def _reap(self) -> None:
        if self._child:
            try:
                os.waitpid(self.supervisor, os.WNOHANG)
            except ChildProcessError:
                pass


@dataclass(frozen=True)
class LiveStep:
    """A step whose supervisor still runs, in some run of the repository: its command, or its leftovers, too."""

    run_id: str
    task_id: str
    step: str  # "running" or "verifying"
    supervisor: int  # pid
    cwd: Path | None  # the command's folder (None for a supervisor of a waveui that did not record it)


def live_steps(repo_root: Path) -> list[LiveStep]:
    """Every step of every run of the repository whose supervisor is alive and has not left a status; blocking."""
    found = []
    for pidfile in sorted(runs_dir(repo_root).glob("*/logs/*.pid")):
        task_id, _, step = pidfile.name.removesuffix(".pid").rpartition(".")
        if step not in STEPS or not task_id:
            continue
        files = StepFiles.of(pidfile.parent, task_id, step)
        record = read_json(pidfile)
        if record is None or read_status(files) is not None:
            continue
        if not _alive(record.get("supervisor"), record.get("supervisor_started")):
            continue
        cwd = record.get("cwd")
        found.append(LiveStep(pidfile.parent.parent.name, task_id, step, record["supervisor"],
                              Path(cwd) if isinstance(cwd, str) else None))
    return found
