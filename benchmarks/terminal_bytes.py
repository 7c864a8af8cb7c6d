"""How many bytes the app sends to the terminal: while the demo runs, and once nothing changes any more.

Run it from the repository root::

    python benchmarks/terminal_bytes.py                  # 160×48 and 80×24
    python benchmarks/terminal_bytes.py --size 160x48 --idle 10

Each size starts ``waveui demo`` in a new pseudo-terminal of that size, reads
everything the app writes to it and counts the bytes: per second while the
run goes on, then, a second after nothing is left to run (the screen that shows the end),
for ``--idle`` seconds (the app still open, nothing new to show). Then it presses ``q``.

Targets: under 10 KB/s while the demo runs; nothing while the screen has
nothing new. The figures depend on the machine and are printed, not
asserted; the exit status is non-zero only when the app crashed.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import select
import signal
import struct
import sys
import tempfile
import termios
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_RUNNING = 10 * 1024  # bytes a second
TARGET_IDLE = 0
SIZES = ("160x48", "80x24")


class Terminal:
    """A program in a pseudo-terminal of ``columns``×``rows``: what it writes is read (and counted) here.

    ``read_for`` keeps the pseudo-terminal drained, as a terminal does;
    ``hang_up`` closes our end, as a closed window or a dropped ssh
    connection does (the program gets SIGHUP and its writes fail with EIO).
    """

    def __init__(self, argv: list[str], *, columns: int, rows: int, cwd: Path | None = None,
                 env: dict[str, str] | None = None):
        pid, fd = pty.fork()
        if pid == 0:  # the child: its terminal is the pseudo-terminal, sized before the program starts
            try:
                fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
                if cwd is not None:
                    os.chdir(cwd)
                os.execve(argv[0], argv, {**os.environ, "TERM": "xterm-256color", **(env or {})})
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.received = bytearray()
        self.status: int | None = None

    def read_for(self, seconds: float) -> int:
        """Read what comes for ``seconds``; the number of bytes."""
        end = time.monotonic() + seconds
        count = 0
        while self.fd >= 0 and (left := end - time.monotonic()) > 0:
            ready, _, _ = select.select([self.fd], [], [], min(left, 0.1))
            if ready:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:  # EIO: the program and its children closed the terminal
                    chunk = b""
                if not chunk:
                    time.sleep(min(left, 0.1))
                    continue
                count += len(chunk)
                self.received += chunk
        return count

    def read_until(self, done, timeout: float, step: float = 0.2) -> bool:
        """Read until ``done()`` is true (True) or ``timeout`` seconds went by (False)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if done():
                return True
            self.read_for(step)
        return done()

    def press(self, keys: bytes) -> None:
        os.write(self.fd, keys)

    def hang_up(self) -> None:
        os.close(self.fd)
        self.fd = -1

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def exited(self) -> bool:
        """Whether the program has ended (its status is then in ``status``)."""
        if self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
        return self.status is not None

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the program to end, reading what it writes meanwhile."""
        if self.fd < 0:
            end = time.monotonic() + timeout
            while not self.exited() and time.monotonic() < end:
                time.sleep(0.05)
            return self.exited()
        return self.read_until(self.exited, timeout, step=0.05)

    def kill(self) -> None:
        if not self.exited():
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.status = -signal.SIGKILL
        if self.fd >= 0:
            self.hang_up()


def run_events(folder: Path) -> list[dict]:
    """The events of the demo's run so far (none before it started)."""
    events = []
    for journal in folder.glob(".waveui/runs/*/events.jsonl"):
        for line in journal.read_text(errors="replace").splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                pass  # a line being written
    return events


def finished(folder: Path) -> bool:
    """Nothing is left to run: the app, still open (the run is the user's until they quit), says so."""
    return any(e.get("type") == "run_finished" or (e.get("type") == "notice" and e.get("kind") == "idle")
               for e in run_events(folder))


def measure(columns: int, rows: int, idle: float, speed: float) -> tuple[list[int], list[int], int | None]:
    """Bytes written each second while the demo ran, each second of ``idle`` after, and the exit status."""
    folder = Path(tempfile.mkdtemp(prefix="waveui-bytes-")) / "demo"
    argv = [sys.executable, "-m", "waveui", "demo", str(folder), "--speed", f"{speed:g}"]
    terminal = Terminal(argv, columns=columns, rows=rows, cwd=ROOT, env={"PYTHONPATH": str(ROOT)})
    running: list[int] = []
    try:
        while not finished(folder) and not terminal.exited() and len(running) < 600:
            running.append(terminal.read_for(1.0))
        terminal.read_for(1.0)  # the screen that shows the run's end
        idle_seconds = [terminal.read_for(1.0) for _ in range(round(idle))]
        terminal.press(b"q")
        terminal.wait(10)
    finally:
        terminal.kill()
    return running, idle_seconds, terminal.status


def rate(counts: list[int]) -> float:
    return sum(counts) / len(counts) if counts else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", action="append", help="COLUMNSxROWS (repeatable; default: 160x48 and 80x24)")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds measured after the run finished")
    parser.add_argument("--speed", type=float, default=1.0, help="how fast the demo's agents work")
    args = parser.parse_args(argv)
    crashed = False
    for size in args.size or SIZES:
        columns, rows = (int(n) for n in size.lower().split("x"))
        running, idle, status = measure(columns, rows, args.idle, args.speed)
        print(f"{columns}x{rows}: running {len(running)} s at {rate(running) / 1024:.1f} KB/s "
              f"({rate(running) / TARGET_RUNNING:.2f}× the target of {TARGET_RUNNING // 1024} KB/s, "
              f"peak {max(running, default=0) / 1024:.1f} KB/s); "
              f"idle {len(idle)} s at {rate(idle) / 1024:.2f} KB/s, {sum(idle)} bytes in all "
              f"(target: {TARGET_IDLE}); exit status {status}")
        crashed |= status != 0
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
