"""Starting task commands under supervisors, following them, and adopting them after waveui died.

A supervisor is forked from waveui (cheaper than starting a new Python) and
leaves waveui's session at once, so nothing that happens to waveui reaches
it: not ``kill -9``, not a closed terminal. waveui follows a supervised step
through files only: it reads the log as it grows, with the line reader it
was given (``::waveui`` lines, and the agent's own result lines), and
learns the end from the status, which it reads from the status file or, when
that could not be written, from the pid file (see :mod:`waveui.executors.local.supervisor`).
The next waveui can do exactly the same with a step it did not start; that
is adoption. :func:`live_steps` lists the supervisors still running in any
run of a repository.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from typing import NoReturn
from dataclasses import dataclass
from pathlib import Path

import psutil

from waveui.core.pids import CREATE_TIME_TOLERANCE
from waveui.executors.local.launcher import Launcher
from waveui.executors.local.runner import ExitResult
from waveui.executors.local.supervisor import PAUSE_SIGNAL, RESUME_SIGNAL, supervise
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
    become_supervisor(command, cwd, env, files, timeout, grace, started_in_child, heading)


def become_supervisor(command: str, cwd: Path, env: dict[str, str], files: StepFiles, timeout: float | None,
                      grace: float, started_fd: int, heading: str = "") -> NoReturn:
    """In a process just forked (from waveui or its launcher): leave the session, supervise the step, exit.

    ``started_fd`` is closed once the step's pid file is written. ``heading``, when given, is put in the
    log as a line of its own before anything of the step's.
    """
    # From here on only plain, blocking calls, then _exit (never back into the parent's asyncio).
    try:
        os.setsid()
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        for name in os.listdir("/proc/self/fd") if os.path.isdir("/proc/self/fd") else ():
            if int(name) > 2 and int(name) != started_fd:
                try:
                    os.close(int(name))  # waveui's journal, terminal and sockets are not the supervisor's
                except OSError:
                    pass
        if heading:
            _append_line(files.log, heading)
        supervise(command, cwd, env, files.log, files.pidfile, files.status, timeout, grace, started_fd)
    finally:
        os._exit(0)


def _append_line(log: Path, line: str) -> None:
    """Append ``line`` to the log, made owner-only when it is new, as the supervisor makes it."""
    try:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    except OSError:  # its folder is gone: the supervisor makes it again, or leaves a status saying why not
        return
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _launch_supervisor(launcher: Launcher | None, command: str, cwd: Path, env: dict[str, str], files: StepFiles,
                       timeout: float | None, grace: float, heading: str) -> tuple[int | None, int]:
    """Start the step's supervisor: its pid when it is this process's child (None when the launcher forked it),
    and the read end of the pipe that ends once its pid file is written."""
    if launcher is not None:
        started, started_in_child = os.pipe()
        try:
            launcher.launch(command, cwd, env, files, timeout, grace, started_in_child, heading)
            return None, started
        except OSError:  # the launcher died meanwhile: this process forks the supervisor itself
            os.close(started)
        finally:
            os.close(started_in_child)
    return _fork_supervisor(command, cwd, env, files, timeout, grace, heading)


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
                 supervisor_is_child: bool, log_offset: int = 0, read_line: LineReader = read_directive):
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
        supervisor, started = _launch_supervisor(launcher, command, cwd, env, files, timeout, grace, heading)
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
                return cls(files, record, on_directive, supervisor is not None, offset, read_line)
            status = read_status(files)
            if status:  # could not even start (e.g. the folder vanished)
                now = time.time()
                return cls(files, {"pid": 0, "started": now, "supervisor": supervisor or 0,
                                   "supervisor_started": now}, on_directive, supervisor is not None, offset,
                           read_line)
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
        """Leave the step running for the next waveui to adopt."""

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
        """Set when the supervisor exits: a pidfd wakes us at once instead of at the next poll.

        Set at once when it has exited already (a short step often has); never set where there are no
        pidfds: polling alone notices the end then.
        """
        ended = asyncio.Event()
        try:
            fd = os.pidfd_open(self.supervisor)
        except ProcessLookupError:
            ended.set()
            return ended
        except (AttributeError, OSError):
            return ended
        loop = asyncio.get_running_loop()

        def exited() -> None:
            loop.remove_reader(fd)
            os.close(fd)
            ended.set()

        loop.add_reader(fd, exited)
        self._exit_fd = fd
        return ended

    async def wait(self, timeout: float | None = None, grace: float = 5.0) -> ExitResult:
        """Follow the log until the status file says the step ended (the supervisor enforces the timeout)."""
        if self._result is not None:
            return self._result
        ended = self._exit_signal()
        try:
            self._result = await self._follow(ended)
        finally:
            if not ended.is_set() and self._exit_fd is not None:
                asyncio.get_running_loop().remove_reader(self._exit_fd)
                os.close(self._exit_fd)
            self._exit_fd = None
        return self._result

    async def _follow(self, ended: asyncio.Event) -> ExitResult:
        first = True
        while True:
            # Woken by the supervisor's exit, else every POLL_SECONDS to read what the log gained. With a
            # pidfd to wake it, a short step is looked at once, when it has ended, not once before as well.
            if not ended.is_set() and (self._exit_fd is not None or not first):
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
                return ExitResult(exit_code=int(status.get("exit_code", 1)), timed_out=bool(status.get("timed_out")),
                                  signal=status.get("signal"), seconds=float(status.get("seconds", self.seconds)))
            # Woken by its pidfd, the supervisor has exited (the process table is asked only when polling:
            # a pid reused before the pidfd was opened would keep that from firing).
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
