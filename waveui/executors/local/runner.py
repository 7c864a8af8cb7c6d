"""Runs one task's shell command: its log, the lines its output reports, and every process it starts.

:func:`start_task` starts ``/bin/sh -c COMMAND`` in a session (and so a process
group) of its own, with stdin from ``/dev/null`` and stdout and stderr merged
into one pipe. Everything on that pipe is appended to the task's log as it
arrives; every line is also offered to the caller's line reader (by default
:func:`waveui.run.directives.read_directive`, the ``::waveui`` lines), and
what it reports is handed to a callback.

:class:`TaskProcess` makes sure no process of the task outlives it. In a
process that called :func:`become_subreaper` (the supervisor does, on Linux)
that holds by mechanism: the kernel re-parents every orphan to the subreaper,
so whatever the task starts stays a descendant of the calling process until
it dies, however it detaches (``setsid``, a double fork, ``nohup``, a daemon
closing its output), and the task's processes are exactly the caller's
descendants, found by walking ``/proc`` down from it. Elsewhere (no prctl, or
a caller running several tasks at once, as the tests do) the process group
catches ordinary children, descendants that leave the group are found by
sampling the process tree while the task runs, and any process still holding
the task's output pipe at the end is found through ``/proc``. Pausing stops
all of them with SIGSTOP; the task's clock (and its timeout) stops too. The
process table and the killing are :mod:`waveui.executors.local.proctable`'s.

:func:`run_to_end` runs a command that waveui waits for itself (an epic's
``setup``) with the same guarantee, under a small forked subreaper.

Nothing here touches the screen: the engine calls it from its event loop.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import math
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from waveui.executors.local.proctable import (
    LINUX_PROC,
    POLL,
    TABLE_MAX_AGE,
    Entry,
    Targets,
    alive,
    childless,
    descendants,
    descendants_of_me,
    group_exists,
    holders_collector,
    pipe_holders,
    process_table,
    read_entry,
    signal_group,
    signal_pids,
    terminate_async,
    terminate_blocking,
)
from waveui.run.directives import LineReader, read_directive

log = logging.getLogger(__name__)

# Lines longer than this are logged but not offered to the line reader, so one
# endless line cannot make waveui hold it all in memory.
MAX_LINE = 1 << 20

# The tree is sampled to find descendants that leave the process group; the
# first sample comes soon after the start, so that a parent living only a
# moment is seen before its child is orphaned.
FIRST_SAMPLE = 0.1
SAMPLE_INTERVAL = 0.5


# --- the subreaper ----------------------------------------------------------

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
# The process that made itself a subreaper: the attribute is not inherited by
# fork, so a child forked from that process must not believe it is one.
_subreaper_pid: int | None = None


def _prctl(option: int, value: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def become_subreaper() -> bool:
    """Make this process a child subreaper (Linux), and :class:`TaskProcess` rely on it; True if it worked.

    From then on an orphaned descendant is re-parented to this process rather
    than to init, so nothing a task starts can leave this process's tree, and
    every descendant is taken for a process of the task: call it only in a
    process that runs one task at a time (the supervisor). Where it fails,
    tasks are tracked by sampling, as in any other process.
    """
    global _subreaper_pid
    if _subreaper_pid == os.getpid():
        return True
    if not LINUX_PROC or not _prctl(PR_SET_CHILD_SUBREAPER, 1):
        return False
    _subreaper_pid = os.getpid()
    return True


def _is_subreaper() -> bool:
    return _subreaper_pid == os.getpid()


def subreaper_targets(shell: int | None) -> Targets:
    """In a subreaper: every live descendant, and the group of ``shell`` (a session leader) while it lives.

    ``shell`` is spared the reaping, for its owner to read its status; None once it was reaped.
    """
    _, pids = descendants_of_me(shell)
    # The shell's group too, signalled as one (see terminate_steps): sent to its processes one by
    # one, a shell whose `sleep` died first ran its next commands before its own signal came.
    group = shell if shell is not None and group_exists(shell) else None
    return group, pids


def signal_subreaper_tree(shell: int | None, sig: int) -> None:
    """In a subreaper: send ``sig`` to the group of ``shell`` (while it lives), then to every descendant."""
    if shell is not None:
        signal_group(shell, sig)
    signalled = subreaper_targets(shell)[1]
    signal_pids(signalled, sig)
    # Again for a child forked just before the first scan, which that scan missed.
    signal_pids({pid: start for pid, start in subreaper_targets(shell)[1].items()
                 if signalled.get(pid) != start}, sig)


# --- output -----------------------------------------------------------------


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class _OutputProtocol(asyncio.Protocol):
    """Appends the task's output to its log and passes on what ``read_line`` finds in its lines."""

    def __init__(self, loop: asyncio.AbstractEventLoop, log_fd: int, on_directive: Callable[[dict], None],
                 read_line: LineReader | None):
        self.output_closed: asyncio.Future[None] = loop.create_future()
        self._log_fd = log_fd
        self._log_failed = False
        self._on_directive = on_directive
        self._read_line = read_line
        self._partial = bytearray()  # the line being received, up to MAX_LINE
        self._overlong = False  # the line being received is past MAX_LINE: not parsed

    def data_received(self, data: bytes) -> None:
        if not self._log_failed:
            try:
                _write_all(self._log_fd, data)
            except OSError as exc:  # disk full: keep draining, or the task would block on its pipe
                self._log_failed = True
                log.error("cannot write task log: %s", exc)
        if self._read_line is not None:  # else nobody reads the lines here: the log is all
            self._scan(data)

    def _scan(self, data: bytes) -> None:
        first = data.find(b"\n")
        if first < 0:
            self._add_partial(data)
            return
        self._add_partial(data[:first])
        self._end_line()
        last = data.rfind(b"\n")
        if last > first:  # whole lines in between
            for line in data[first + 1:last].split(b"\n"):
                if len(line) <= MAX_LINE:
                    self._line(line)
        self._add_partial(data[last + 1:])

    def _add_partial(self, part: bytes) -> None:
        if self._overlong or not part:
            return
        if len(self._partial) + len(part) > MAX_LINE:
            self._overlong = True
            self._partial.clear()
        else:
            self._partial += part

    def _end_line(self) -> None:
        if self._partial and not self._overlong:
            self._line(bytes(self._partial))
        self._partial.clear()
        self._overlong = False

    def _line(self, line: bytes) -> None:
        fields = self._read_line(line)
        if fields:
            try:
                self._on_directive(fields)
            except Exception:
                log.exception("directive handler failed")

    def eof_received(self) -> bool:
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._end_line()  # a last line without a newline still counts
        if not self.output_closed.done():
            self.output_closed.set_result(None)


def _watch_exit(loop: asyncio.AbstractEventLoop, popen: subprocess.Popen, done: Callable[[], None]) -> None:
    """Reap ``popen`` when it exits, then call ``done`` on the loop.

    A pidfd needs no thread and no child watcher of the loop's; without one
    (not Linux, or a kernel before 5.3) a thread waits, as asyncio itself does.
    Reaping it here also means its pid cannot be reused while the task is known.
    The loop's child watcher must not reap children it did not start (asyncio's
    FastChildWatcher would; the default watchers do not).
    """
    try:
        pidfd = os.pidfd_open(popen.pid)
    except (AttributeError, OSError):
        pidfd = None
    if pidfd is not None:
        def ready() -> None:
            if popen.poll() is None:
                return
            loop.remove_reader(pidfd)
            os.close(pidfd)
            done()
        loop.add_reader(pidfd, ready)
        return

    def wait() -> None:
        popen.wait()
        try:
            loop.call_soon_threadsafe(done)
        except RuntimeError:
            pass  # the loop is closed: nobody waits any more

    threading.Thread(target=wait, name=f"waveui-wait-{popen.pid}", daemon=True).start()


# --- the task ---------------------------------------------------------------


@dataclass(frozen=True)
class ExitResult:
    exit_code: int  # the shell's exit status; 128 + N when killed by signal N, as a shell reports it
    timed_out: bool
    signal: int | None  # the signal that ended the shell, if one did
    seconds: float  # running time to the shell's exit, paused time not counted
    leftovers: int = 0  # processes still alive when the shell exited (killed since)
    error: str = ""  # why the step could not run, when it could not (its folder gone, say)

    @classmethod
    def of_status(cls, status: dict, seconds: float = 0.0) -> ExitResult:
        """The result a supervisor left in a step's status file; ``seconds`` when the status has none."""
        return cls(exit_code=int(status.get("exit_code", 1)), timed_out=bool(status.get("timed_out")),
                   signal=status.get("signal"), seconds=float(status.get("seconds", seconds)),
                   error=str(status.get("error") or ""))


class TaskProcess:
    """A running task: its shell and every process started under it.

    Call :meth:`wait` once the task is started (it also does the cleaning up);
    the other methods may be called meanwhile, from the same event loop.
    """

    def __init__(self, spawned: _Spawned, transport: asyncio.ReadTransport, protocol: _OutputProtocol,
                 log_path: Path, command: str):
        loop = asyncio.get_running_loop()
        popen = spawned.popen
        self.command = command
        self.log_path = log_path
        self.pid: int = popen.pid
        self.create_time: float = spawned.create_time
        self.pgid: int = self.pid  # start_new_session makes the shell its session's and group's leader
        self._popen = popen
        self._transport = transport
        self._protocol = protocol
        self._exited: asyncio.Future[None] = loop.create_future()
        self._exited_at: float | None = None
        self._log_fd: int | None = spawned.log_fd
        self._started = spawned.started
        self._paused_since: float | None = None
        self._paused_total = 0.0
        self._state_changed = asyncio.Event()
        self._timed_out = False
        self._kill_deadline: float | None = None
        self._result: ExitResult | None = None
        self._finish_lock = asyncio.Lock()
        self._lock = threading.Lock()  # _tracked is updated from sampling threads
        self._group_gone = False
        # Every process seen under the task, pid -> identity, the shell included.
        self._tracked: dict[int, float] = {}
        if spawned.identity is not None:
            self._tracked[self.pid] = spawned.identity
        self._pipe_inode: int | None = None
        pipe = transport.get_extra_info("pipe")
        if pipe is not None:
            try:
                self._pipe_inode = os.fstat(pipe.fileno()).st_ino
            except (OSError, ValueError):
                pass
        # A subreaper finds the task's processes by walking down from itself whenever it needs
        # them, and only then: nothing can slip away between two looks, so there is no sampling.
        self._subreaper = _is_subreaper()
        self._sampler = None if self._subreaper else loop.create_task(self._sample_loop())
        _watch_exit(loop, popen, self._on_exit)

    def _on_exit(self) -> None:
        self._exited_at = time.monotonic()
        if not self._exited.done():
            self._exited.set_result(None)

    # -- state

    @property
    def paused(self) -> bool:
        return self._paused_since is not None

    @property
    def exited(self) -> bool:
        """Whether the shell has exited (its leftovers may still be being killed)."""
        return self._exited.done()

    @property
    def seconds(self) -> float:
        """Running time so far (to the shell's exit), paused time not counted."""
        end = self._exited_at or time.monotonic()
        paused = self._paused_total
        if self._paused_since is not None:
            paused += max(0.0, end - self._paused_since)
        return max(0.0, end - self._started - paused)

    # -- tracking

    async def _sample_loop(self) -> None:
        await asyncio.sleep(FIRST_SAMPLE)
        while True:
            try:
                await asyncio.to_thread(self._sample, TABLE_MAX_AGE)
            except Exception:
                log.exception("sampling the process tree of %s failed", self.pid)
            await asyncio.sleep(SAMPLE_INTERVAL)

    def _sample(self, max_age: float) -> dict[int, Entry]:
        """Add to the tracked set every live process under the task; returns the table used."""
        table = process_table(max_age)
        with self._lock:
            live = {pid for pid, start in self._tracked.items()
                    if pid in table and table[pid].start == start}
            # Members of the group whose parent died are not descendants any more.
            if not self._group_gone:
                live |= {pid for pid, entry in table.items() if entry.pgid == self.pgid}
            for pid in live | descendants(table, live):
                entry = table.get(pid)
                if entry is not None and not entry.zombie:
                    self._tracked[pid] = entry.start
            # Forget the dead, so their pids are never signalled once reused.
            for pid in [pid for pid, start in self._tracked.items()
                        if pid not in table or table[pid].start != start or table[pid].zombie]:
                del self._tracked[pid]
        return table

    def _subreaper_targets(self) -> Targets:
        return subreaper_targets(None if self.exited else self.pid)

    def _nothing_left(self) -> bool:
        """A quick check, without a scan, that the group is empty and every tracked process gone."""
        if self._subreaper:
            return childless() or not self._subreaper_targets()[1]
        if not self._group_gone:
            if group_exists(self.pgid):
                return False
            self._group_gone = True  # an empty group can never fill again
        with self._lock:
            tracked = dict(self._tracked)
        return not any(alive(pid, start) for pid, start in tracked.items())

    def _collect(self) -> Targets:
        """The task's live processes, for :func:`~waveui.executors.local.proctable.terminate_async`; blocking."""
        if self._subreaper:
            return self._subreaper_targets()
        group: int | None = None
        if not self._group_gone:
            if group_exists(self.pgid):
                group = self.pgid
            else:
                # An empty group can never fill again; its number may be reused.
                self._group_gone = True
        with self._lock:
            tracked = dict(self._tracked)
        if group is None and not any(alive(pid, start) for pid, start in tracked.items()):
            with self._lock:
                self._tracked.clear()
            return None, {}
        table = self._sample(0.0)
        with self._lock:
            pids = dict(self._tracked)
        members = [pid for pid, entry in table.items() if entry.pgid == self.pgid and not entry.zombie]
        if group is not None and not members and self.exited:
            group = None  # only zombies left (their reaper is elsewhere); a live shell keeps its group
        return group, pids

    def _signal_all(self, sig: int) -> None:
        if self._subreaper:
            signal_subreaper_tree(None if self.exited else self.pid, sig)
            return
        # The shell's group first, as one: signalled process by process, a shell whose `sleep` was
        # killed first could run its next commands before its own signal came.
        if not self._group_gone and not self.exited:
            signal_group(self.pgid, sig)
        if not self._group_gone and self.exited:  # the group of a shell that exited may still hold children
            signal_group(self.pgid, sig)
        with self._lock:
            tracked = dict(self._tracked)
        signal_pids(tracked, sig)

    # -- control

    def pause(self) -> None:
        """Stop every process of the task (SIGSTOP); its clock stops too."""
        if self.paused or self.exited:
            return
        try:
            if not self._subreaper:
                self._sample(0.0)  # stop escaped descendants as well, even recent ones
        except Exception:
            log.exception("sampling the process tree of %s failed", self.pid)
        self._signal_all(signal.SIGSTOP)
        self._paused_since = time.monotonic()
        self._state_changed.set()

    def resume(self) -> None:
        """Continue a paused task (SIGCONT)."""
        if not self.paused:
            return
        self._signal_all(signal.SIGCONT)
        self._paused_total += time.monotonic() - self._paused_since
        self._paused_since = None
        self._state_changed.set()

    def kill(self) -> None:
        """SIGKILL every known process of the task at once, without waiting (for shutdown paths)."""
        self._signal_all(signal.SIGKILL)

    async def terminate(self, grace: float = 5.0) -> ExitResult:
        """SIGTERM the task, SIGKILL what is left after ``grace`` seconds; returns as :meth:`wait`."""
        if not self.exited:
            await self._stop(grace)
        return await self.wait(grace=grace)

    async def _stop(self, grace: float) -> None:
        if self._kill_deadline is None:
            self._kill_deadline = time.monotonic() + grace
        # Stopped, told to end, continued: no process of the task acts between the others' signals,
        # and a stopped process acts on TERM only once continued.
        self._signal_all(signal.SIGSTOP)
        self._signal_all(signal.SIGTERM)
        self._signal_all(signal.SIGCONT)
        if self.paused:
            self._paused_total += time.monotonic() - self._paused_since
            self._paused_since = None
        exited = self._exited
        try:
            await asyncio.wait_for(asyncio.shield(exited),
                                   max(0.0, self._kill_deadline - time.monotonic()))
        except TimeoutError:
            self._signal_all(signal.SIGKILL)
            await exited

    async def wait(self, timeout: float | None = None, grace: float = 5.0) -> ExitResult:
        """Wait for the task to end, and for every process it started to be gone.

        After ``timeout`` seconds of running (paused time not counted) the
        task is stopped: SIGTERM to all its processes, SIGKILL to any left
        after ``grace`` seconds. Processes still alive when the shell exits
        get the same treatment. Calling it again returns the same result.
        """
        if self._result is not None:
            return self._result
        exited = self._exited
        if timeout is not None:
            while not exited.done():
                remaining = timeout - self.seconds
                if remaining <= 0:
                    self._timed_out = True
                    await self._stop(grace)
                    break
                self._state_changed.clear()
                changed = asyncio.ensure_future(self._state_changed.wait())
                try:
                    # While paused the clock stands still: wait for exit or resume only.
                    await asyncio.wait({exited, changed}, timeout=None if self.paused else remaining,
                                       return_when=asyncio.FIRST_COMPLETED)
                finally:
                    changed.cancel()
        async with self._finish_lock:
            if self._result is None:
                await asyncio.shield(exited)
                self._result = await self._finish(grace)
        return self._result

    async def _finish(self, grace: float) -> ExitResult:
        seconds = self.seconds
        returncode = self._popen.returncode
        if returncode is None:  # cannot happen once reaped; be safe
            returncode = -signal.SIGKILL
        if self._kill_deadline is not None:
            grace = max(0.0, self._kill_deadline - time.monotonic())
        try:
            leftovers = 0
            if not self._nothing_left():
                leftovers = await terminate_async(self._collect, grace)
            if leftovers:
                log.info("task %s: killed %d process(es) left after the shell exited", self.pid, leftovers)
            leftovers += await self._drain_output(grace)
        finally:
            if self._sampler is not None:
                self._sampler.cancel()
            self._transport.close()
            if self._log_fd is not None:
                os.close(self._log_fd)
                self._log_fd = None
        if returncode < 0:
            sig: int | None = -returncode
            exit_code = 128 + sig
        else:
            sig, exit_code = None, returncode
        return ExitResult(exit_code=exit_code, timed_out=self._timed_out, signal=sig,
                          seconds=seconds, leftovers=leftovers)

    async def _drain_output(self, grace: float) -> int:
        """Wait for the end of the output; kill unknown processes still holding the pipe."""
        closed = self._protocol.output_closed
        try:
            await asyncio.wait_for(asyncio.shield(closed), 0.5)
            return 0
        except TimeoutError:
            pass
        # A descendant that escaped between two samples and kept the output open.
        killed = 0
        if self._pipe_inode is not None:
            holders = await asyncio.to_thread(pipe_holders, self._pipe_inode)
            if holders:
                killed = await terminate_async(holders_collector(holders), grace)
                log.info("task %s: killed %d process(es) holding its output", self.pid, killed)
        try:
            await asyncio.wait_for(asyncio.shield(closed), 1.0)
        except TimeoutError:
            log.warning("task %s: output still open after cleanup; closing it", self.pid)
        return killed


def _make_private_dirs(path: Path) -> None:
    """Create ``path`` and any missing parents owner-only; existing folders are left as they are."""
    missing = []
    while not path.exists():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            continue
        os.chmod(folder, 0o700)  # mkdir's mode is masked by the umask


def open_log(path: Path, heading: str = "") -> int:
    """A task's log, opened for appending (made owner-only, with its folders, if new); its descriptor.

    ``heading``, when given, is written first, as a line of its own.
    """
    _make_private_dirs(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    if heading:
        try:
            _write_all(fd, (heading + "\n").encode())
        except OSError:
            os.close(fd)
            raise
    return fd


@dataclass
class _Spawned:
    popen: subprocess.Popen
    log_fd: int
    started: float  # time.monotonic() at the start
    create_time: float
    identity: float | None  # the shell's start in the process table

    def discard(self, loop: asyncio.AbstractEventLoop) -> None:
        """Kill a shell nobody will wait for (its start was cancelled)."""
        signal_group(self.popen.pid, signal.SIGKILL)
        self.popen.stdout.close()
        os.close(self.log_fd)
        _watch_exit(loop, self.popen, lambda: None)


def _spawn(command: str, cwd: Path, env: dict[str, str], log_path: Path) -> _Spawned:
    """Open the log and start the shell; blocking (run in a thread)."""
    log_fd = open_log(log_path)
    try:
        started = time.monotonic()
        # Popen rather than loop.subprocess_exec: the shell is reaped by
        # _watch_exit, whatever child watcher the loop has (on Python 3.11 the
        # default one costs a thread per process).
        popen = subprocess.Popen(
            ["/bin/sh", "-c", command], cwd=cwd, env=env, start_new_session=True, bufsize=0,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
    except BaseException:
        os.close(log_fd)
        raise
    try:
        # Not reaped before _watch_exit runs, so this is surely the shell's.
        create_time = psutil.Process(popen.pid).create_time()
    except psutil.Error:
        create_time = time.time()
    entry = read_entry(popen.pid)
    return _Spawned(popen, log_fd, started, create_time, entry.start if entry is not None else None)


async def start_task(command: str, cwd: Path, env: dict[str, str], log_path: Path,
                     on_directive: Callable[[dict], None],
                     read_line: LineReader | None = read_directive, spawn_in_thread: bool = True) -> TaskProcess:
    """Start ``/bin/sh -c command`` in ``cwd`` with exactly ``env``; its output is appended to ``log_path``.

    ``on_directive`` is called, on the event loop, with the fields
    ``read_line`` finds in each line of output (by default those of a valid
    ``::waveui`` line; with None no line is read, only logged). Cancelling the
    start kills the shell if it had started already. Whether the task's
    processes are found by mechanism or by sampling depends on the calling
    process: by mechanism once it called :func:`become_subreaper`.
    ``spawn_in_thread`` False spawns in the event loop: for a caller with
    nothing else to do meanwhile (a supervisor), to which a thread is only a delay.
    """
    loop = asyncio.get_running_loop()
    if spawn_in_thread:
        # Creating a file and forking block for a while (the parent is suspended
        # until the child execs): in a thread, other tasks' output and exits are
        # handled meanwhile, which nearly doubled the rate of no-op tasks in
        # benchmarks/overhead.py.
        spawning = loop.run_in_executor(None, _spawn, command, cwd, env, Path(log_path))
        try:
            spawned = await asyncio.shield(spawning)
        except asyncio.CancelledError:
            def discard(future: asyncio.Future) -> None:
                if not future.cancelled() and future.exception() is None:
                    future.result().discard(loop)
            spawning.add_done_callback(discard)
            raise
    else:
        spawned = _spawn(command, cwd, env, Path(log_path))
    protocol = _OutputProtocol(loop, spawned.log_fd, on_directive, read_line)
    try:
        transport, _ = await loop.connect_read_pipe(lambda: protocol, spawned.popen.stdout)
    except BaseException:
        spawned.discard(loop)
        raise
    return TaskProcess(spawned, transport, protocol, Path(log_path), command)


# --- a command waveui waits for itself ---------------------------------------

TIMED_OUT_EXIT = 124  # as coreutils' timeout reports one


def run_to_end(command: str, cwd: Path, env: dict[str, str], log_path: Path | None,
               timeout: float | None = None, grace: float = 5.0) -> int:
    """Run ``/bin/sh -c command`` to its end, and every process it started with it; blocking.

    Output is appended to ``log_path`` (discarded if None). Returns the
    shell's exit status, ``128 + N`` if signal N ended it, or
    :data:`TIMED_OUT_EXIT` if it ran past ``timeout`` seconds and was stopped.
    On Linux the command runs under a forked child that is a subreaper, so
    nothing it detaches survives the return; the child also ends the command
    if this process dies meanwhile. Elsewhere it is a task run by
    :func:`start_task`, in an event loop of its own.
    """
    if not LINUX_PROC:
        return _run_to_end_sampled(command, cwd, env, log_path, timeout, grace)
    output = subprocess.DEVNULL
    if log_path is not None:
        output = open_log(Path(log_path))
    try:
        parent = os.getpid()
        child = os.fork()
        if child == 0:
            code = 127
            try:
                code = _run_as_subreaper(parent, command, cwd, env, output, timeout, grace)
            finally:
                os._exit(code)
    finally:
        if output != subprocess.DEVNULL:
            os.close(output)
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except InterruptedError:
            continue
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _run_as_subreaper(parent: int, command: str, cwd: Path, env: dict[str, str], output: int,
                      timeout: float | None, grace: float) -> int:
    """The forked child of :func:`run_to_end`: plain blocking calls only, never back into the parent's loop."""
    requests = SignalRequests(stop=(signal.SIGTERM, signal.SIGINT, signal.SIGHUP))
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    if not become_subreaper():
        return 127  # the guarantee cannot be given: do not start
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)  # waveui killed: stop the command, and all it started
    if os.getppid() != parent:
        return 128 + signal.SIGTERM  # it died before the line above
    try:
        task = ReapedTask(command, cwd, env, output)
    except OSError:
        return 127
    result = task.wait(requests, timeout, grace)
    return TIMED_OUT_EXIT if result.timed_out else result.exit_code


class SignalRequests:
    """Signals that ask a blocking :meth:`ReapedTask.wait` to stop, pause or resume the task.

    Their handlers only queue them; the signal also wakes the wait through
    :func:`signal.set_wakeup_fd`, so none waits for a poll. Made before the
    task starts, so that a signal sent at once is not lost (or fatal, as
    SIGUSR1's default is). Main thread only, as every signal handler.
    """

    def __init__(self, stop: tuple[int, ...] = (signal.SIGTERM,), pause: int | None = None,
                 resume: int | None = None):
        self.stop, self.pause, self.resume = frozenset(stop), pause, resume
        self._pending: list[int] = []
        self.wake_fd, write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(write_fd)
        for signum in (*stop, pause, resume):
            if signum is not None:
                signal.signal(signum, lambda signum, _frame: self._pending.append(signum))

    def take(self) -> list[int]:
        """The signals received since the last call, oldest first."""
        try:
            while os.read(self.wake_fd, 512):
                pass
        except BlockingIOError:
            pass
        taken = self._pending[:]
        del self._pending[:len(taken)]  # a handler may append meanwhile: only what was taken goes
        return taken


class ReapedTask:
    """A task run by a subreaper with plain blocking calls: ``/bin/sh -c COMMAND`` and every descendant.

    The supervisor's (and setup's) way of running a command: it has nothing
    else to do, so a blocking loop woken by the shell's pidfd and by signals
    does what :class:`TaskProcess` does on an event loop, at a fraction of
    its cost per step. The output goes straight to ``output`` (the log,
    opened for appending): nobody reads it on the way. Every process left is
    a descendant of this process, by the subreaper's mechanism, so the
    cleanup needs no sampling. Call :func:`become_subreaper` first.
    """

    def __init__(self, command: str, cwd: Path, env: dict[str, str], output: int):
        self.started = time.monotonic()
        self.shell = subprocess.Popen(["/bin/sh", "-c", command], cwd=cwd, env=env, start_new_session=True,
                                      stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT)
        self.pid = self.shell.pid
        self._exited_at: float | None = None
        self._paused_since: float | None = None
        self._paused_total = 0.0

    @property
    def seconds(self) -> float:
        """Running time so far (to the shell's exit), paused time not counted."""
        end = self._exited_at or time.monotonic()
        paused = self._paused_total + (max(0.0, end - self._paused_since) if self._paused_since is not None else 0.0)
        return max(0.0, end - self.started - paused)

    def _exited(self) -> bool:
        if self._exited_at is None and self.shell.poll() is not None:
            self._exited_at = time.monotonic()
        return self._exited_at is not None

    def pause(self) -> None:
        if self._paused_since is None and not self._exited():
            signal_subreaper_tree(self.pid, signal.SIGSTOP)
            self._paused_since = time.monotonic()

    def resume(self) -> None:
        if self._paused_since is not None:
            signal_subreaper_tree(None if self._exited() else self.pid, signal.SIGCONT)
            self._paused_total += time.monotonic() - self._paused_since
            self._paused_since = None

    def wait(self, requests: SignalRequests, timeout: float | None = None, grace: float = 5.0) -> ExitResult:
        """Run the task to its end, and every process it started with it.

        After ``timeout`` seconds of running (paused time not counted), or
        on a stop request, every process of the task gets SIGTERM, and
        SIGKILL after ``grace`` seconds; processes still alive when the
        shell exits get the same.
        """
        try:
            exit_fd: int | None = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            exit_fd = None  # no pidfd (or already gone): woken every POLL seconds instead
        poller = select.poll()
        poller.register(requests.wake_fd, select.POLLIN)
        if exit_fd is not None:
            poller.register(exit_fd, select.POLLIN)
        timed_out = stopping = False
        try:
            while not self._exited():
                for signum in requests.take():
                    if signum in requests.stop:
                        stopping = True
                    elif signum == requests.pause:
                        self.pause()
                    elif signum == requests.resume:
                        self.resume()
                if not stopping and timeout is not None and self._paused_since is None \
                        and self.seconds >= timeout:
                    stopping = timed_out = True
                if stopping:
                    break
                wait = None if timeout is None or self._paused_since is not None else timeout - self.seconds
                if exit_fd is None:
                    wait = POLL if wait is None else min(wait, POLL)
                poller.poll(None if wait is None else max(1, math.ceil(wait * 1000)))
        finally:
            if exit_fd is not None:
                os.close(exit_fd)
        kill_at = time.monotonic() + grace
        if stopping:
            if self._paused_since is not None:
                self._paused_total += time.monotonic() - self._paused_since
                self._paused_since = None  # stopping continues it
            # The shell is spared by the reaping (not the signals): its Popen must read its status.
            terminate_blocking(lambda: descendants_of_me(None if self._exited() else self.pid), grace)
        returncode = self.shell.wait()
        self._exited()
        # The shell is gone: whatever it left behind is a descendant of this process, whatever it did.
        leftovers = 0 if childless() else terminate_blocking(lambda: descendants_of_me(None),
                                                              max(0.0, kill_at - time.monotonic()) if stopping else grace)
        sig = -returncode if returncode < 0 else None
        return ExitResult(exit_code=128 + sig if sig else returncode, timed_out=timed_out, signal=sig,
                          seconds=self.seconds, leftovers=leftovers)


def _run_to_end_sampled(command: str, cwd: Path, env: dict[str, str], log_path: Path | None,
                        timeout: float | None, grace: float) -> int:
    async def run() -> ExitResult:
        task = await start_task(command, cwd, env, Path(os.devnull) if log_path is None else log_path,
                                lambda _values: None, read_line=None)
        return await task.wait(timeout=timeout, grace=grace)

    outcome: list[ExitResult] = []
    # A thread of its own: the caller may be inside a running event loop.
    runner = threading.Thread(target=lambda: outcome.append(asyncio.run(run())), name="waveui-run-to-end")
    runner.start()
    runner.join()
    if not outcome:
        return 127
    return TIMED_OUT_EXIT if outcome[0].timed_out else outcome[0].exit_code
