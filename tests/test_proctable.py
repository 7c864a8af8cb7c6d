"""The process table: walking it, reading one entry, and killing what a collect function finds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from waveui.executors.local.proctable import (
    Entry,
    alive,
    childless,
    descendants,
    process_table,
    read_entry,
    signal_group,
    terminate_blocking,
)


def child_of(ppid: int) -> Entry:
    return Entry(ppid=ppid, pgid=ppid, start=1.0, zombie=False)


def test_descendants_walks_down_from_the_roots_and_leaves_them_out():
    table = {1: child_of(0), 10: child_of(1), 11: child_of(10), 12: child_of(11), 13: child_of(10),
             20: child_of(1), 21: child_of(20)}
    assert descendants(table, {10}) == {11, 12, 13}
    assert descendants(table, {10, 11}) == {12, 13}  # a root is never its own descendant
    assert descendants(table, {20, 12}) == {21}
    assert descendants(table, {99}) == set()


def test_descendants_survives_a_cycle():
    # Read while pids are reused, the table can hold a loop of parents.
    table = {5: child_of(6), 6: child_of(5), 7: child_of(6)}
    assert descendants(table, {5}) == {6, 7}


def test_an_entry_is_the_process_as_the_table_shows_it():
    me = read_entry(os.getpid())
    assert me is not None and me.ppid == os.getppid() and me.pgid == os.getpgrp() and not me.zombie
    assert process_table()[os.getpid()] == me
    assert alive(os.getpid(), me.start)
    assert not alive(os.getpid(), me.start + 1)  # another start: a process that reused the pid
    assert read_entry(2**22 + 12345) is None


def test_waveuis_own_group_is_never_signalled():
    signal_group(os.getpgrp(), signal.SIGTERM)  # would end this test run
    signal_group(None, signal.SIGTERM)
    signal_group(1, signal.SIGTERM)


def test_terminate_kills_what_ignores_sigterm_after_the_grace_period():
    script = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(flush=True); time.sleep(100)"
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        child.stdout.readline()  # its handler is in place
        start = read_entry(child.pid).start

        def collect():
            now = read_entry(child.pid)
            live = now is not None and now.start == start and not now.zombie
            return None, ({child.pid: start} if live else {})

        began = time.monotonic()
        assert terminate_blocking(collect, grace=0.3) == 1
        assert time.monotonic() - began >= 0.3  # SIGTERM was ignored: SIGKILL came after the grace
        assert child.wait(5) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_terminate_with_nothing_to_kill_returns_at_once():
    assert terminate_blocking(lambda: (None, {}), grace=10) == 0


def test_the_table_sees_a_child_as_a_descendant():
    child = subprocess.Popen(["sleep", "5"], stdin=subprocess.DEVNULL)
    try:
        assert child.pid in descendants(process_table(), {os.getpid()})
    finally:
        child.kill()
        child.wait()


def test_childless_sees_a_child_until_it_is_reaped():
    # In a process of its own: this one may have children of earlier tests (a launcher, say).
    script = """
import subprocess
from waveui.executors.local.proctable import childless
before = childless()
child = subprocess.Popen(["sleep", "30"])
running = childless()
child.kill()
killed = childless()  # dead or dying, not reaped: still a child
child.wait()
print(before, running, killed, childless())
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "False", "False", "True"]
