"""The app's terminal driver: one that never holds the app when the terminal is gone, stalled, or told to end.

Textual's Linux driver (textual ``src/textual/drivers/linux_driver.py``)
hands every write to a thread through a queue of 30
(``src/textual/drivers/_writer_thread.py``) and waits when it is full. A
terminal that goes away fails that thread's writes (EIO) and ends it; a
terminal that stops reading (a frozen ssh connection) blocks it: either way
the queue fills, the app waits on it for good and its event loop, which
runs the signal handlers set with ``loop.add_signal_handler``, never runs
again. Even SIGTERM was then ignored.

Here writes go to :class:`TerminalWriter`, which drops them once the
terminal is let go of, and SIGHUP and SIGTERM are caught by Python handlers
(they run in the main thread even while it waits on the queue), which let go
of the terminal (SIGHUP) or give it :data:`GRACE_SECONDS` to take the last
writes (SIGTERM), then tell the app by a message. A failed write tells the
app too. The app decides what each means for the run.
"""

from __future__ import annotations

import os
import queue
import signal
import sys
import time

from textual.drivers._writer_thread import WriterThread
from textual.drivers.linux_driver import LinuxDriver

from waveui.frontends.tui.messages import TerminalLost, TerminateRequested

# How long a terminal told to end (SIGTERM) may take to accept what is left to write.
GRACE_SECONDS = 0.5
# How often a write waiting for room looks whether the terminal was let go of meanwhile.
RECHECK_SECONDS = 0.1


class TerminalWriter(WriterThread):
    """Writes to the terminal in a thread, like Textual's, but lets go of a terminal that is gone.

    A write that fails, :meth:`let_go`, or a deadline set by
    :meth:`let_go_after` that passes while a write waits for room, ends
    the writing: what comes after is dropped, and stopping does not wait.
    ``on_lost`` is called, in this thread, when a write fails.
    """

    def __init__(self, file, on_lost) -> None:
        super().__init__(file)
        self.on_lost = on_lost
        self.lost = False
        self._deadline: float | None = None

    def let_go(self) -> None:
        self.lost = True

    def let_go_after(self, seconds: float) -> None:
        self._deadline = time.monotonic() + seconds

    def _past_deadline(self) -> bool:
        if self._deadline is not None and time.monotonic() >= self._deadline:
            self.lost = True
        return self.lost

    def write(self, text: str | None) -> None:
        while not self._past_deadline():
            try:
                self._queue.put(text, timeout=RECHECK_SECONDS)
                return
            except queue.Full:
                pass

    def run(self) -> None:
        # Straight to the descriptor, not through sys.__stderr__: a write blocked in here then holds
        # none of the interpreter's locks, and the process can end around it.
        fd = self._file.fileno()
        encoding = getattr(self._file, "encoding", None) or "utf-8"
        while (text := self._queue.get()) is not None:
            if self.lost:
                continue
            data = text.encode(encoding, "replace")
            try:
                while data:
                    data = data[os.write(fd, data):]
            except OSError:  # EIO: the terminal hung up
                self.lost = True
                self.on_lost()

    def stop(self) -> None:
        """Stop the thread, once it has written what was queued, unless the terminal was let go of."""
        self.write(None)
        while self.is_alive() and not self._past_deadline():
            self.join(RECHECK_SECONDS)


class TerminalDriver(LinuxDriver):
    """Textual's Linux driver with :class:`TerminalWriter`, and SIGHUP and SIGTERM told to the app as messages."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.writer = TerminalWriter(sys.__stderr__, self._lost)
        self.writer.start()
        self._handlers: dict[int, object] = {}

    def start_application_mode(self) -> None:
        # Again after a suspension (Ctrl-Z), and after the SIGCONT that comes with a hang-up's SIGHUP.
        if not self._handlers:
            for signum, handler in ((signal.SIGHUP, self._hung_up), (signal.SIGTERM, self._terminated)):
                self._handlers[signum] = signal.signal(signum, handler)
        super().start_application_mode()

    def write(self, data: str) -> None:
        self.writer.write(data)

    def stop_application_mode(self) -> None:
        super().stop_application_mode()
        for signum, handler in self._handlers.items():
            signal.signal(signum, handler)
        self._handlers.clear()

    def close(self) -> None:
        self.writer.stop()
        super().close()  # stops Textual's own writer thread, which was never given anything to write

    def run_input_thread(self) -> None:
        try:
            super().run_input_thread()
        except OSError:  # EIO: the terminal hung up (else Textual's thread would end the app with a traceback)
            self.writer.let_go()
            self._lost()

    def _lost(self) -> None:
        self.send_message(TerminalLost())

    # Signal handlers: they run in the main thread, between two bytecodes of whatever it was doing, so they
    # only set flags and hand the rest to the event loop (asyncio's own SIGINT handler does the same:
    # `asyncio.runners.Runner._on_sigint` calls `call_soon_threadsafe`).

    def _hung_up(self, signum, frame) -> None:
        self.writer.let_go()
        self._lost()

    def _terminated(self, signum, frame) -> None:
        self.writer.let_go_after(GRACE_SECONDS)
        self.send_message(TerminateRequested())
