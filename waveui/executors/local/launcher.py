"""A small process that forks supervisors on waveui's behalf, so that starting a step does not fork waveui itself.

Forking copies the parent's page tables and, as the child runs, every page it
touches: from waveui (an event loop, a user interface, a thread pool, every
module loaded) that took milliseconds of the event loop's time per step, and
the supervisor's first milliseconds more. The launcher is a fresh interpreter
that loads only the supervisor; waveui starts one per process, the first time
a step starts, and sends it each step over a Unix socket (:class:`Launcher`).
The launcher forks a supervisor for it exactly as waveui would
(:func:`waveui.executors.local.supervision.become_supervisor`: a session of
its own, waveui's files closed), handing it the write end of the pipe by which
the step's start is told (passed with the request, ``SCM_RIGHTS``).

Nothing about a supervisor depends on the launcher once it is forked: the
launcher lives in a session of its own and ends when waveui's end of the
socket closes (waveui exited, or was killed), leaving its supervisors running
for the next waveui to adopt. Children it forked are reaped by the kernel
(``SIGCHLD`` ignored), so none lingers as a zombie. If the launcher cannot be
started, or dies, waveui forks supervisors itself as before.
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
        self._lock = threading.Lock()  # one request at a time on the stream
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
               grace: float, started_fd: int, heading: str = "") -> None:
        """Have a supervisor forked for the step; ``started_fd`` (the pipe's write end) goes with it. OSError if not.

        ``heading``: the line the supervisor puts in the log before the step's output.
        """
        request = json.dumps({"command": command, "cwd": str(cwd), "env": env, "log": str(files.log),
                              "pidfile": str(files.pidfile), "status": str(files.status),
                              "timeout": timeout, "grace": grace, "heading": heading}).encode()
        with self._lock:
            socket.send_fds(self._socket, [_HEADER.pack(len(request))], [started_fd])
            self._socket.sendall(request)

    def close(self) -> None:
        """Close waveui's end: the launcher exits; supervisors it started go on."""
        self._socket.close()
        try:
            self.process.wait(timeout=READY_WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _receive(connection: socket.socket) -> tuple[dict, int] | None:
    """The next request and the descriptor that came with it; None once waveui's end is closed."""
    header, fds, _, _ = socket.recv_fds(connection, _HEADER.size, 1)
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
    if len(fds) != 1:
        for fd in fds:
            os.close(fd)
        raise OSError("a request came without its pipe")
    return json.loads(body), fds[0]


def serve(connection: socket.socket) -> None:
    """Fork a supervisor for every request until waveui's end of the socket closes."""
    from waveui.executors.local.supervision import become_supervisor  # (it imports this module)

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the supervisors: no zombies
    connection.sendall(READY)
    while True:
        received = _receive(connection)
        if received is None:
            return
        request, started_fd = received
        if os.fork() == 0:
            become_supervisor(request["command"], Path(request["cwd"]), request["env"],
                              StepFiles(Path(request["log"]), Path(request["pidfile"]), Path(request["status"])),
                              request["timeout"], request["grace"], started_fd, request["heading"])
        os.close(started_fd)


def main(args: list[str]) -> int:
    """``args``: the descriptor of the launcher's end of the socket."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for waveui is not the launcher's
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    with socket.socket(fileno=int(args[0])) as connection:
        serve(connection)
    return 0

