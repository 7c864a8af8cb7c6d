"""The supervisor: a small process of waveui's own that runs one task command and outlives waveui.

waveui forks a supervisor into a session of its own for every command a task
runs (``python -m waveui.engine.supervisor`` does the same by hand). The
supervisor runs the command with :func:`waveui.engine.runner.start_task`: in a
process group of its own, its output going to the task's log (the pipe ends in
the supervisor, never in a waveui that may die), with the timeout enforced and
whatever the command left behind killed. Then it writes the exit status and
end time next to the log. waveui pauses, resumes and stops the command by
signalling the supervisor (SIGUSR1, SIGUSR2, SIGTERM), which keeps the books. If waveui is
killed, the supervisor and its command go on; the next ``waveui run`` finds
the status file, or the supervisor still running, and adopts the task
instead of starting it again.

Files, for a step (``running`` or ``verifying``) of task ``ID``, in the run's
logs folder:

* ``ID.log`` — the command's output, appended;
* ``ID.STEP.pid`` — JSON: supervisor pid and start time, command pid (also
  its process group) and start time; written before the command runs;
* ``ID.STEP.status`` — JSON: exit_code, signal, timed_out, seconds, ended;
  written (atomically) when the command and its leftovers are gone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import psutil

from waveui.engine.runner import start_task

PAUSE_SIGNAL = signal.SIGUSR1
RESUME_SIGNAL = signal.SIGUSR2


def write_json_atomically(path: Path, data: dict) -> None:
    # No fsync: these files matter when waveui dies, not the machine (then the task dies too),
    # and the page cache outlives any process. The rename makes them appear whole.
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(data, out)
    os.replace(partial, path)


async def _supervise(command: str, cwd: Path, env: dict[str, str], log: Path, pidfile: Path, status: Path,
                     timeout: float | None, grace: float) -> None:
    try:
        # The runner does the work: output to the log, the timeout (paused time not counted),
        # and no process of the task outliving it. waveui reads the log for progress itself.
        process = await start_task(command, cwd, env, log, lambda _values: None)
    except OSError as error:
        write_json_atomically(status, {"exit_code": 127, "signal": None, "timed_out": False, "seconds": 0.0,
                                       "ended": time.time(), "error": str(error)})
        return
    write_json_atomically(pidfile, {
        "supervisor": os.getpid(), "supervisor_started": psutil.Process().create_time(),
        "pid": process.pid, "started": process.create_time,
    })
    # waveui steers the command through its supervisor, which keeps the books (paused time, cleanup).
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, lambda: loop.create_task(process.terminate(grace)))
    loop.add_signal_handler(PAUSE_SIGNAL, process.pause)
    loop.add_signal_handler(RESUME_SIGNAL, process.resume)
    result = await process.wait(timeout=timeout, grace=grace)
    write_json_atomically(status, {"exit_code": result.exit_code, "signal": result.signal,
                                   "timed_out": result.timed_out, "seconds": result.seconds, "ended": time.time()})


def supervise(command: str, cwd: Path, env: dict[str, str] | None, log: Path, pidfile: Path, status: Path,
              timeout: float | None, grace: float) -> None:
    """Run ``command`` to its end: the pid file once it runs, the status file once it and its leftovers are gone."""
    asyncio.events._set_running_loop(None)  # forked from inside waveui's running loop: start a loop of our own
    asyncio.run(_supervise(command, cwd, dict(os.environ) if env is None else env, log, pidfile, status,
                           timeout, grace))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="waveui-supervisor")
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--pidfile", type=Path, required=True)
    parser.add_argument("--status", type=Path, required=True)
    parser.add_argument("--cwd", type=Path, required=True)
    parser.add_argument("--timeout", type=float)
    parser.add_argument("--grace", type=float, default=5.0)
    parser.add_argument("command")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a closed terminal must not end the task
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    supervise(args.command, args.cwd, None, args.log, args.pidfile, args.status, args.timeout, args.grace)
    return 0


if __name__ == "__main__":
    sys.exit(main())
