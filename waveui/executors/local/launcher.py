"""A small process that forks supervisors on waveui's behalf, and the supervisors that run step after step.

Forking copies the parent's page tables and, as the child runs, every page it
touches: from waveui (an event loop, a user interface, a thread pool, every
module loaded) that took milliseconds of the event loop's time per step, and
a fork and an exit of even a small interpreter cost milliseconds more. The
launcher is a fresh interpreter that loads only the supervisor; waveui starts
one per process, the first time a step starts (:class:`Launcher`). Asked over
a Unix socket, it forks a supervisor exactly as waveui would
(:func:`waveui.executors.local.supervision.serve_steps`: a session of its
own, waveui's files closed), handing it a socket of its own to waveui.

A supervisor runs one step at a time, and then the next step waveui sends it
on that socket, so that starting a step costs no process but the command's
own: a supervisor that finished its step is idle until waveui hands it
another (:meth:`Launcher.launch`). With each step come the write ends of two
pipes (``SCM_RIGHTS``), closed when the step's pid file is written and when its
status is.

Nothing about a supervisor depends on the launcher once it is forked, or on
waveui: the launcher lives in a session of its own and ends when waveui's end
of the socket closes (waveui exited, or was killed); a supervisor whose socket
closes finishes the step it runs, for the next waveui to adopt, and exits.
Children the launcher forked are reaped by the kernel (``SIGCHLD`` ignored), so
none lingers as a zombie. If the launcher cannot be started, or dies, waveui
forks supervisors itself, one per step, as before.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

from waveui.executors.steps import StepFiles

_HEADER = struct.Struct("!I")  # the length of the JSON request that follows
READY = b"r"  # the launcher's first word: it is up and listening
FORK = b"f"  # asks the launcher for a supervisor, whose socket comes with it
READY_WAIT_SECONDS = 10.0
# This waveui's package, wherever it was imported from (a checkout, say), found last so it shadows nothing.
_START = ("import sys; sys.path.append(sys.argv[1]); from waveui.executors.local.launcher import main; "
          "sys.exit(main(sys.argv[2:]))")
MAX_STARTS = 2  # a launcher that died is started once more; after that waveui forks supervisors itself


class Launcher:
    """waveui's end of one launcher process; :meth:`shared` gives this process's one."""

    _shared: Launcher | None = None
    _starts = 0
    _shared_lock = threading.Lock()

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        package_root = Path(__file__).resolve().parents[3]  # the folder holding the waveui package
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _START, str(package_root), str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True, cwd="/")
        finally:
            theirs.close()
        self._socket = ours
        self._lock = threading.Lock()  # one request at a time on the stream, and the idle list
        self._idle: list[SupervisorLine] = []  # supervisors whose step ended, waiting for another
        ours.settimeout(READY_WAIT_SECONDS)
        try:
            if ours.recv(1) != READY:
                raise OSError("the launcher did not start")
        except OSError:
            self.close()
            raise
        ours.settimeout(None)

    @classmethod
    def running(cls) -> Launcher | None:
        """This process's launcher if it is up; never blocks."""
        current = cls._shared
        return current if current is not None and current.process.poll() is None else None

    @classmethod
    def shared(cls) -> Launcher | None:
        """This process's launcher, started if need be (blocking); None when none can run: fork directly then."""
        with cls._shared_lock:
            if cls.running() is not None:
                return cls._shared
            if cls._shared is not None:
                cls._shared.close()
                cls._shared = None
            if cls._starts >= MAX_STARTS:
                return None
            cls._starts += 1
            try:
                cls._shared = cls()
            except OSError:
                return None
            return cls._shared

    def launch(self, command: str, cwd: Path, env: dict[str, str], files: StepFiles, timeout: float | None,
               grace: float, started_fd: int, ended_fd: int, heading: str = "") -> SupervisorLine:
        """Have the step run by an idle supervisor, or by one forked for it; its line. OSError if neither can.

        ``started_fd`` and ``ended_fd`` (the write ends of two pipes) go with the step. ``heading``: the
        line the supervisor puts in the log before the step's output.
        """
        request = json.dumps({"command": command, "cwd": str(cwd), "env": env, "log": str(files.log),
                              "pidfile": str(files.pidfile), "status": str(files.status),
                              "timeout": timeout, "grace": grace, "heading": heading}).encode()
        while True:
            with self._lock:
                line = self._idle.pop() if self._idle else None
            if line is None:
                line = self._fork_supervisor()
                line.send(request, [started_fd, ended_fd])  # a new one that fails: the launcher's fault
                return line
            try:
                line.send(request, [started_fd, ended_fd])
                return line
            except OSError:  # it ended meanwhile (killed, or unable to run more than one step): another
                line.close()

    def give_back(self, line: SupervisorLine) -> None:
        """Keep a supervisor whose step ended for the next step."""
        with self._lock:
            if self._socket.fileno() != -1:  # not closed
                self._idle.append(line)
                return
        line.close()

    def _fork_supervisor(self) -> SupervisorLine:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with self._lock:  # one request at a time on the stream
                socket.send_fds(self._socket, [FORK], [theirs.fileno()])
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        return SupervisorLine(ours)

    def close(self) -> None:
        """Close waveui's end: the launcher and idle supervisors exit; steps running go on."""
        with self._lock:
            idle, self._idle = self._idle, []
            self._socket.close()
        for line in idle:
            line.close()
        try:
            self.process.wait(timeout=READY_WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()


class SupervisorLine:
    """waveui's end of one supervisor's socket: the steps it is sent, one at a time."""

    def __init__(self, connection: socket.socket):
        self._socket = connection

    def send(self, request: bytes, fds: list[int]) -> None:
        message = _HEADER.pack(len(request)) + request
        sent = socket.send_fds(self._socket, [message], fds)  # one call: waking the supervisor costs each
        if sent < len(message):
            self._socket.sendall(message[sent:])

    def close(self) -> None:
        """The supervisor exits once its step (if any) has ended."""
        self._socket.close()


def receive(connection: socket.socket, fd_count: int) -> tuple[dict, list[int]] | None:
    """The next step sent to a supervisor and the descriptors that came with it; None once waveui's end closed."""
    header, fds, _, _ = socket.recv_fds(connection, _HEADER.size, fd_count)
    if not header:
        return None
    while len(header) < _HEADER.size:
        more = connection.recv(_HEADER.size - len(header))
        if not more:
            return None
        header += more
    (length,) = _HEADER.unpack(header)
    body = bytearray()
    while len(body) < length:
        chunk = connection.recv(length - len(body))
        if not chunk:
            return None
        body += chunk
    if len(fds) != fd_count:
        for fd in fds:
            os.close(fd)
        raise OSError("a step came without its pipes")
    return json.loads(body), fds


def serve(connection: socket.socket) -> None:
    """Fork a supervisor for every request until waveui's end of the socket closes."""
    from waveui.executors.local.supervision import serve_steps  # (it imports this module)

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the supervisors: no zombies
    connection.sendall(READY)
    while True:
        word, fds, _, _ = socket.recv_fds(connection, len(FORK), 1)
        if not word:
            return
        if word != FORK or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            continue
        if os.fork() == 0:
            serve_steps(fds[0])
        os.close(fds[0])


def main(args: list[str]) -> int:
    """``args``: the descriptor of the launcher's end of the socket."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for waveui is not the launcher's
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    with socket.socket(fileno=int(args[0])) as connection:
        serve(connection)
    return 0

