"""The app ends when its terminal goes away, whatever screen is open, and leaves the run resumable.

Each test starts ``waveui demo`` in a real pseudo-terminal, waits until the
run is going and the app has drawn it, opens the quit dialog, then takes the
terminal away: our end of the pseudo-terminal closed (a closed window, a
dropped ssh connection: SIGHUP and EIO on every write), SIGHUP alone,
SIGTERM, a terminal that stopped reading, a killed tmux session. The bug
this guards against was a process that hung for good (Textual's writer
thread, src/textual/drivers/_writer_thread.py, blocked or dead behind a full
queue); the bound on the wait is generous, it is not a timing test.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARK = ROOT / "benchmarks" / "terminal_bytes.py"
# The demo's agents, slowed down so the run is still going when the terminal goes.
SLOW = "0.1"
GONE_WITHIN = 15.0

_loader = importlib.util.spec_from_file_location("terminal_bytes", BENCHMARK)
terminal_bytes = importlib.util.module_from_spec(_loader)
_loader.loader.exec_module(terminal_bytes)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals")


def demo_argv(folder: Path) -> list[str]:
    return [sys.executable, "-m", "waveui", "demo", str(folder), "--speed", SLOW]


def running(folder: Path) -> bool:
    return any(e.get("type") == "task_state" and e.get("state") == "running"
               for e in terminal_bytes.run_events(folder))


def assert_resumable(folder: Path) -> None:
    """The journal was closed as an interrupted or stopped run: `waveui run` goes on with it."""
    finished = [e for e in terminal_bytes.run_events(folder) if e.get("type") == "run_finished"]
    assert finished, "the run's journal has no end: the process did not close it"
    assert not any(e.get("ok") for e in finished)
    assert finished[-1]["reason"] in ("interrupted", "stopped")


@pytest.fixture
def app_in_terminal(tmp_path):
    """The demo's app in a 160×48 pseudo-terminal, the run going and the quit dialog open."""
    folder = tmp_path / "demo"
    terminal = terminal_bytes.Terminal(demo_argv(folder), columns=160, rows=48, cwd=ROOT,
                                       env={"PYTHONPATH": str(ROOT)})
    try:
        assert terminal.read_until(lambda: running(folder), timeout=60), terminal.received[-2000:]
        terminal.read_for(0.5)
        terminal.press(b"q")
        assert terminal.read_until(lambda: b"Quit while the run is going?" in terminal.received, timeout=30)
        yield terminal, folder
    finally:
        terminal.kill()


def test_closing_the_terminal_with_the_quit_dialog_open_ends_the_app(app_in_terminal):
    terminal, folder = app_in_terminal
    terminal.hang_up()
    assert terminal.wait(GONE_WITHIN), "the app outlived its terminal"
    assert_resumable(folder)


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM], ids=["SIGHUP", "SIGTERM"])
def test_a_signal_with_the_quit_dialog_open_ends_the_app(app_in_terminal, signum):
    terminal, folder = app_in_terminal
    terminal.signal(signum)
    assert terminal.wait(GONE_WITHIN), f"the app ignored {signal.Signals(signum).name}"
    assert terminal.status == 130  # "left resumable" / "stopped"
    assert_resumable(folder)


def test_sigterm_ends_the_app_on_a_terminal_that_stopped_reading(app_in_terminal):
    """A frozen ssh connection: the app's writes block; SIGTERM must still end it."""
    terminal, folder = app_in_terminal
    terminal.press(b"tttttt")  # each theme repaints the whole screen: more than the pseudo-terminal holds unread
    time.sleep(3)  # nothing read meanwhile
    terminal.signal(signal.SIGTERM)
    end = time.monotonic() + GONE_WITHIN
    while not terminal.exited() and time.monotonic() < end:
        time.sleep(0.1)  # still nothing read: the terminal stays stalled
    assert terminal.exited(), "the app hung on a stalled terminal"
    assert_resumable(folder)


def test_the_demo_says_in_the_app_where_its_repository_is(tmp_path):
    """The line printed before the app starts is hidden behind its screen until it ends: the app says it too."""
    folder = tmp_path / "demo"
    terminal = terminal_bytes.Terminal(demo_argv(folder), columns=160, rows=48, cwd=ROOT,
                                       env={"PYTHONPATH": str(ROOT)})
    try:
        assert terminal.read_until(lambda: b"The demo repository at" in terminal.received, timeout=60), \
            terminal.received[-2000:]
        screen = terminal.received[terminal.received.index(b"The demo repository at"):]
        assert str(folder)[:20].encode() in screen  # the start of the path, before the notice wraps it
    finally:
        terminal.kill()


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_killing_the_tmux_session_ends_the_app(tmp_path):
    folder = tmp_path / "demo"
    server = f"waveui-test-{uuid.uuid4().hex[:8]}"  # a tmux server of its own: no user session is touched
    tmux = ["tmux", "-L", server, "-f", os.devnull]
    command = "exec " + " ".join(map(str, demo_argv(folder)))  # the pane's process is the app itself
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([*tmux, "new-session", "-d", "-s", "demo", "-x", "160", "-y", "48", "-c", str(ROOT), command],
                   check=True, env=env)
    try:
        pid = int(subprocess.run([*tmux, "display-message", "-p", "-t", "demo", "#{pane_pid}"], check=True,
                                 capture_output=True, text=True).stdout)
        end = time.monotonic() + 60
        while not running(folder) and time.monotonic() < end:
            time.sleep(0.2)
        assert running(folder)
        subprocess.run([*tmux, "send-keys", "-t", "demo", "q"], check=True)
        time.sleep(1)
        subprocess.run([*tmux, "kill-session", "-t", "demo"], check=True)
        end = time.monotonic() + GONE_WITHIN
        while Path(f"/proc/{pid}").exists() and time.monotonic() < end:
            time.sleep(0.1)
        assert not Path(f"/proc/{pid}").exists(), "the app outlived its tmux session"
        assert_resumable(folder)
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
