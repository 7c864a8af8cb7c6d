"""Confining a step with bubblewrap: the arguments that do it, and whether bubblewrap can run here.

A sandboxed step's shell execs ``bwrap ... /bin/sh -c COMMAND``, so bwrap is
the process the supervisor started: its process group is the step's, and
pausing, the timeout and cancelling reach it and everything under it as they
reach an unsandboxed step. ``--unshare-pid`` gives the step a PID namespace
of its own, whose processes the kernel kills when its first process ends,
and ``--die-with-parent`` ends bwrap with the supervisor. No
``--new-session``: the supervisor already runs every step in a session of its
own with no terminal (stdin is ``/dev/null``), so there is no terminal to
inject keystrokes into, and a session of bwrap's own would take the step's
processes out of the process group the supervisor signals.

The filesystem is mounted read-only (``--ro-bind / /``) under a private
``/tmp`` and ``/dev``; then the step's working folder and the paths its
:class:`~waveui.executors.Sandbox` names are bound writable over it, in that
order, later binds over earlier ones.
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from waveui.executors import Sandbox

INSTALL = ("install it with `apt-get install bubblewrap` (Debian, Ubuntu) or `dnf install bubblewrap` "
           "(Fedora, RHEL)")
PROBE_TIMEOUT = 30.0  # seconds: creating namespaces takes milliseconds; a machine this slow has other troubles


def bwrap_arguments(bwrap: str, sandbox: Sandbox, cwd: Path) -> list[str]:
    """The bwrap command line (without the command) that confines a step running in ``cwd`` as ``sandbox`` says."""
    arguments = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
                 "--unshare-pid", "--die-with-parent"]
    if not sandbox.network:
        arguments.append("--unshare-net")
    for path in sandbox.visible:  # a repository under /tmp is hidden by the private /tmp unless shown again
        arguments += ["--ro-bind-try", str(path), str(path)]
    arguments += ["--bind", str(cwd), str(cwd)]
    # The folder's own .git stays read-only: a worktree's pointer to its git data, which a task must not
    # redirect, or the repository's git dir itself when the task runs in place.
    dotgit = str(Path(cwd, ".git"))
    arguments += ["--ro-bind-try", dotgit, dotgit]
    for path in sandbox.writable:
        arguments += ["--bind-try", str(path), str(path)]
    for copy, seen_at in sandbox.private:
        arguments += ["--bind", str(copy), str(seen_at)]
    return arguments + ["--chdir", str(cwd)]


def sandboxed_command(command: str, sandbox: Sandbox, cwd: Path, env: dict[str, str]) -> str:
    """``command`` made to run confined: the shell execs bwrap, which runs ``/bin/sh -c command``.

    bwrap is looked up on the step's ``PATH``; where it is gone since the
    check, the step fails (exit 127) rather than run unconfined.
    """
    bwrap = shutil.which("bwrap", path=env.get("PATH", os.defpath)) or "bwrap"
    return "exec " + shlex.join(bwrap_arguments(bwrap, sandbox, cwd) + ["/bin/sh", "-c", command])


def unavailable(path: str | None = None) -> str | None:
    """Why bubblewrap cannot sandbox steps here (looked up on ``path``, else ``PATH``); None when it can."""
    bwrap = shutil.which("bwrap", path=path if path is not None else os.environ.get("PATH", os.defpath))
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed"
    return _cannot_run(bwrap)


@functools.cache
def _cannot_run(bwrap: str) -> str | None:
    """Whether ``bwrap`` can create its namespaces, tried once per process: its error, or None."""
    try:
        result = subprocess.run([bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                                 "--unshare-pid", "--die-with-parent", "true"],
                                stdin=subprocess.DEVNULL, capture_output=True, timeout=PROBE_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"bubblewrap ({bwrap}) cannot run: {error}"
    if result.returncode != 0:
        said = result.stderr.decode(errors="replace").strip().splitlines()
        why = said[-1] if said else f"exit {result.returncode}"
        return f"bubblewrap ({bwrap}) cannot create its namespaces here (user namespaces off?): {why}"
    return None


def writable_paths(paths: Iterable[str], home: Path) -> tuple[Path, ...]:
    """``paths`` (``~`` meaning ``home``) as a sandboxed step may write them.

    A path ending in ``/`` is a folder, made (owner-only) when missing, so that
    an agent's first run in a sandbox can keep its settings; another path that
    does not exist is left out, as there is nothing to bind.
    """
    found: list[Path] = []
    for text in paths:
        path = home / text[2:] if text.startswith("~/") else home if text == "~" else Path(text)
        if text.endswith("/"):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        elif not path.exists():
            continue
        if path not in found:
            found.append(path)
    return tuple(found)
