"""The process table, read from ``/proc``: finding a task's processes, and killing them with escalation.

Every process is known by its pid and its start time in the table (its
identity: a pid reused later gets another start time), so a process that has
gone is never mistaken for a later one with its number. :func:`_terminate`
sends SIGTERM, then SIGKILL after a grace period, to whatever a collect
function finds, collecting again while it waits; it runs blocking
(:func:`terminate_blocking`) or on an event loop (:func:`terminate_async`).
:func:`kill_leftover` cleans up after a crash of waveui itself, from the pid
and create time the journal recorded. Without ``/proc`` the same table is
read through psutil.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass

import psutil

from waveui.core.pids import CREATE_TIME_TOLERANCE

log = logging.getLogger(__name__)

# A process-table scan shared by all tasks sampling at about the same time, so
# the cost of sampling does not grow with the number of running tasks.
TABLE_MAX_AGE = 0.25
POLL = 0.05

LINUX_PROC = os.path.isdir("/proc/self/fd") and os.path.exists("/proc/self/stat")


# --- reading the table ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    ppid: int
    pgid: int
    start: float  # identity: with the pid, tells a process from a later one reusing the pid
    zombie: bool


_table_lock = threading.Lock()
_table_cache: tuple[float, dict[int, Entry]] = (-math.inf, {})


def _read_stat(pid: int) -> Entry:
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    # The command name is in parentheses and may itself hold spaces or ")".
    fields = data[data.rindex(b")") + 2:].split()
    return Entry(ppid=int(fields[1]), pgid=int(fields[2]), start=float(fields[19]),
                 zombie=fields[0] in (b"Z", b"X"))


def _scan_table() -> dict[int, Entry]:
    table: dict[int, Entry] = {}
    if LINUX_PROC:
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    table[int(name)] = _read_stat(int(name))
                except (OSError, ValueError, IndexError):
                    continue  # gone meanwhile
        return table
    for proc in psutil.process_iter(["ppid", "status", "create_time"]):
        try:
            table[proc.pid] = Entry(ppid=proc.info["ppid"] or 0, pgid=os.getpgid(proc.pid),
                                    start=proc.info["create_time"] or 0.0,
                                    zombie=proc.info["status"] == psutil.STATUS_ZOMBIE)
        except (OSError, psutil.Error):
            continue
    return table


def process_table(max_age: float = 0.0) -> dict[int, Entry]:
    """Every process's parent, group and identity; blocking, a few ms."""
    global _table_cache
    with _table_lock:
        taken, table = _table_cache
        now = time.monotonic()
        if now - taken > max_age:
            table = _scan_table()
            _table_cache = (now, table)
        return table


def read_entry(pid: int) -> Entry | None:
    """One process's entry, read afresh; None if there is no such process."""
    try:
        if LINUX_PROC:
            return _read_stat(pid)
        proc = psutil.Process(pid)
        with proc.oneshot():
            return Entry(ppid=proc.ppid(), pgid=os.getpgid(pid), start=proc.create_time(),
                         zombie=proc.status() == psutil.STATUS_ZOMBIE)
    except (OSError, ValueError, IndexError, psutil.Error):
        return None


def alive(pid: int, start: float) -> bool:
    """Whether the process ``(pid, start)`` exists and is not a zombie."""
    entry = read_entry(pid)
    return entry is not None and entry.start == start and not entry.zombie


def group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def signal_group(pgid: int | None, sig: int) -> None:
    if pgid is None or pgid <= 1 or pgid == os.getpgrp():  # never waveui's own group
        return
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def signal_pids(pids: dict[int, float], sig: int) -> None:
    for pid, start in pids.items():
        # Checked just before the signal, so a pid reused since it was seen is spared.
        entry = read_entry(pid)
        if entry is None or entry.start != start or pid == os.getpid():
            continue
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def descendants(table: dict[int, Entry], roots: set[int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, entry in table.items():
        children.setdefault(entry.ppid, []).append(pid)
    found: set[int] = set()
    todo = list(roots)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found and child not in roots:
                found.add(child)
                todo.append(child)
    return found


# What a collect function returns: the process group to signal (None once it
# has no live member) and the live processes, as pid -> identity.
Targets = tuple[int | None, dict[int, float]]


# --- a subreaper's children ----------------------------------------------


def _reap_children(table: dict[int, Entry], keep: int | None) -> None:
    """Reap this process's dead children (orphans re-parented here), except ``keep``, which its Popen reaps."""
    me = os.getpid()
    for pid, entry in table.items():
        if entry.ppid == me and entry.zombie and pid != keep:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


def childless() -> bool:
    """Whether this process has no child, not even a zombie; False when that cannot be told.

    In a subreaper that means no descendant at all, found without the scan of
    the whole process table :func:`descendants_of_me` makes (milliseconds on a
    busy machine, at the end of every step).
    """
    try:
        for thread in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{thread}/children", encoding="ascii") as children:
                if children.read().strip():
                    return False
    except OSError:  # no /proc, or a kernel without CONFIG_PROC_CHILDREN
        return False
    return True


def descendants_of_me(keep: int | None) -> Targets:
    """Every live descendant of this process, for :func:`_terminate`; reaps dead children on the way.

    A fresh scan every time, never the shared cache: a subreaper's children come
    and go while it kills them, and the process table lock may have been
    copied held into a forked child.
    """
    table = _scan_table()
    _reap_children(table, keep)
    return None, {pid: table[pid].start for pid in descendants(table, {os.getpid()})
                  if pid in table and not table[pid].zombie}


# --- killing, with escalation -------------------------------------------


# How _terminate steps: it yields COLLECT to be sent the result of collect(),
# or a number of seconds to sleep, so that one sequence serves both a
# blocking caller and the event loop (where the scans run in a thread).
COLLECT = "collect"
Steps = Generator[str | float, Targets, int]


def _terminate(grace: float) -> Steps:
    """SIGTERM, then SIGKILL after ``grace``, every process collected; returns how many there were.

    Processes are collected again while waiting, so those started by a dying
    one (a TERM handler that spawns) are caught too.
    """
    group, pids = yield COLLECT
    if group is None and not pids:
        return 0
    seen = set(pids)
    signalled: set[int] = set()
    group_signalled = False
    deadline = time.monotonic() + max(grace, 0.0)
    while True:
        fresh = {pid: start for pid, start in pids.items() if pid not in signalled}
        # Stopped first, all of them, then told to end, then continued: no process acts between the
        # signals of the others (a shell whose child died first would run its next command).
        # A stopped process acts on TERM only once continued.
        for sig in (signal.SIGSTOP, signal.SIGTERM, signal.SIGCONT):
            if group is not None and not group_signalled:
                signal_group(group, sig)
            signal_pids(fresh, sig)
        group_signalled = group_signalled or group is not None
        signalled |= fresh.keys()
        if time.monotonic() >= deadline:
            break
        yield min(POLL, max(0.0, deadline - time.monotonic()))
        group, pids = yield COLLECT
        seen |= pids.keys()
        if group is None and not pids:
            return len(seen)
    # Anything reaching here ignores SIGTERM or outlasted the grace period.
    for _ in range(20):
        signal_group(group, signal.SIGKILL)
        signal_pids(pids, signal.SIGKILL)
        yield POLL
        group, pids = yield COLLECT
        seen |= pids.keys()
        if group is None and not pids:
            break
    else:
        log.warning("processes survive SIGKILL (uninterruptible?): group %s, pids %s", group, sorted(pids))
    return len(seen)


def terminate_blocking(collect: Callable[[], Targets], grace: float) -> int:
    steps = _terminate(grace)
    try:
        step = next(steps)
        while True:
            if step == COLLECT:
                step = steps.send(collect())
            else:
                time.sleep(step)
                step = next(steps)
    except StopIteration as stop:
        return stop.value


async def terminate_async(collect: Callable[[], Targets], grace: float) -> int:
    # Not one long to_thread call: that would hold an executor thread for the
    # whole grace period, and a few such tasks would stall every task start.
    steps = _terminate(grace)
    try:
        step = next(steps)
        while True:
            if step == COLLECT:
                step = steps.send(await asyncio.to_thread(collect))
            else:
                await asyncio.sleep(step)
                step = next(steps)
    except StopIteration as stop:
        return stop.value


# --- whoever holds a task's output -------------------------------------------


def pipe_holders(inode: int) -> set[int]:
    """The processes (other than this one) with the pipe ``inode`` open; Linux only."""
    if not LINUX_PROC:
        return set()
    target = f"pipe:[{inode}]"
    me = os.getpid()
    holders = set()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            for fd in os.listdir(f"/proc/{name}/fd"):
                if os.readlink(f"/proc/{name}/fd/{fd}") == target:
                    holders.add(int(name))
                    break
        except OSError:
            continue
    return holders


def holders_collector(holders: set[int]) -> Callable[[], Targets]:
    """A collect function for the pipe holders and their descendants."""
    tracked: dict[int, float] = {}
    for pid in holders:
        entry = read_entry(pid)
        if entry is not None:
            tracked[pid] = entry.start

    def collect() -> Targets:
        table = process_table(0.0)
        live = {pid for pid, start in tracked.items() if pid in table and table[pid].start == start}
        for pid in live | descendants(table, live):
            tracked[pid] = table[pid].start
        return None, {pid: tracked[pid] for pid in tracked
                      if pid in table and table[pid].start == tracked[pid] and not table[pid].zombie}

    return collect


# --- after a crash of waveui ----------------------------------------------


def kill_leftover(pid: int, create_time: float, grace: float = 2.0) -> bool:
    """Kill what is left of a task started by a waveui process that died; blocking.

    Only if the process ``pid`` exists, was created at ``create_time`` (so a
    reused pid is never mistaken for it) and leads its own session, as every
    task's shell does: its process group and its descendants get SIGTERM,
    then SIGKILL after ``grace`` seconds. Returns whether any live process
    was found to kill.
    """
    if pid <= 1 or pid == os.getpid():
        return False
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - create_time) > CREATE_TIME_TOLERANCE:
            return False
        # A task's shell leads its own session for life: anything else is not one.
        if os.getsid(pid) != pid:
            return False
    except (psutil.Error, OSError):
        return False
    group_alive = True
    root = read_entry(pid)
    if root is None:
        return False
    tracked: dict[int, float] = {pid: root.start}

    def collect() -> Targets:
        nonlocal group_alive
        table = process_table(0.0)
        live = {p for p, start in tracked.items() if p in table and table[p].start == start}
        if group_alive:
            live |= {p for p, entry in table.items() if entry.pgid == pid}
        for p in live | descendants(table, live):
            tracked[p] = table[p].start
        members = [p for p, entry in table.items() if entry.pgid == pid and not entry.zombie]
        if group_alive and not members:
            group_alive = False  # never signal the number again: it may be reused
        return (pid if group_alive else None), {
            p: start for p, start in tracked.items()
            if p in table and table[p].start == start and not table[p].zombie}

    return terminate_blocking(collect, grace) > 0
