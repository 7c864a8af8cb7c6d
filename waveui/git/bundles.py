"""Git history carried as bundles: a task's start point to a clone on another machine, its work back.

A machine that runs tasks for a repository it cannot reach keeps a
:class:`WorkerClone` of its own: history arrives as bundles holding only
what the clone does not have yet, tasks run in a :class:`WorktreePool` of
that clone exactly as they do in the user's repository, and each attempt's
work leaves as a bundle of the one ref that keeps it. The user's repository
takes a returned bundle in with :func:`fetch_bundle`, which verifies it
first: nothing from a bundle that does not apply is written.

When both sides reach a git remote, history goes through it instead: the
start point is pushed to the attempt's ref there, the clone fetches it, and
pushes the attempt's work to the same ref for the user's repository to fetch.
"""

from __future__ import annotations

import os
import tempfile
import threading
import uuid
from collections.abc import Iterable
from pathlib import Path

from waveui.git.command import GitError, Repository, clean_env, init_repository
from waveui.git.names import attempt_ref
from waveui.git.worktrees import SetupResult, SetupRunner, Worktree, WorktreePool

RECEIVED = "refs/received/"  # in a worker's clone: each start point it was sent, so it is never collected
TIPS_REPORTED = 20  # the newest received commits a clone names as what it has


class BundleRefused(GitError):
    """A bundle that cannot be taken in: its prerequisites are missing, or it is no bundle at all."""


def write_bundle(repository: Repository, ref: str, path: Path, known: Iterable[str] = ()) -> bool:
    """Write to ``path`` a bundle of ``ref`` leaving out what the commits ``known`` hold; False when nothing is left.

    Commits of ``known`` this repository does not have are ignored (they
    cannot be left out, and git would refuse them); the bundle then holds more.
    """
    present = [commit for commit in dict.fromkeys(known) if repository.resolve(commit)]
    result = repository.run_on_history("bundle", "create", "-q", str(path), ref, *(f"^{c}" for c in present),
                                       ok=(0, 128))
    if result.status == 0:
        return True
    if "empty bundle" in result.err:
        return False
    raise GitError(f"git bundle create {ref} failed: {result.err.strip()}")


def fetch_bundle(repository: Repository, path: Path, refs: dict[str, str]) -> None:
    """Verify the bundle at ``path`` against ``repository``, then fetch its refs into ours (``{theirs: ours}``).

    BundleRefused, and nothing fetched, when it does not apply (the commits it
    builds on are missing here) or names none of ``refs``.
    """
    verified = repository.run_on_history("bundle", "verify", str(path), ok=(0, 1, 128))
    if verified.status != 0:
        said = " ".join(verified.err.split()) or "not a bundle"
        raise BundleRefused(f"the bundle does not apply: {said}")
    heads = repository.run_on_history("bundle", "list-heads", str(path)).out.split()
    missing = [theirs for theirs in refs if theirs not in heads]
    if missing:
        raise BundleRefused(f"the bundle does not hold {', '.join(missing)}")
    repository.run_on_history("fetch", "-q", "--no-tags", "--no-write-fetch-head", str(path),
                              *(f"+{theirs}:{ours}" for theirs, ours in refs.items()))


def push_commit(repository: Repository, remote: str, commit: str, ref: str) -> None:
    """Point ``ref`` on the git remote ``remote`` (a URL) at ``commit``, whatever it held. GitError if refused."""
    repository.run_on_history("push", "-q", "--no-verify", remote, f"+{commit}:{ref}")


def fetch_ref(repository: Repository, remote: str, refs: dict[str, str]) -> None:
    """Fetch refs of the git remote ``remote`` into ours (``{theirs: ours}``). GitError if it cannot."""
    repository.run_on_history("fetch", "-q", "--no-tags", "--no-write-fetch-head", remote,
                              *(f"+{theirs}:{ours}" for theirs, ours in refs.items()))


def bundle_bytes(repository: Repository, ref: str, known: Iterable[str] = ()) -> bytes | None:
    """:func:`write_bundle` into memory: the bundle's bytes, or None when it would be empty."""
    with tempfile.TemporaryDirectory(prefix="waveui-bundle-") as folder:
        path = Path(folder) / "out.bundle"
        return path.read_bytes() if write_bundle(repository, ref, path, known) else None


def fetch_bundle_bytes(repository: Repository, data: bytes, refs: dict[str, str]) -> None:
    """:func:`fetch_bundle` from bytes in memory."""
    with tempfile.TemporaryDirectory(prefix="waveui-bundle-") as folder:
        path = Path(folder) / "in.bundle"
        path.write_bytes(data)
        fetch_bundle(repository, path, refs)


class WorkerClone:
    """A repository's history as far as it was sent to this machine, and a pool of worktrees over it.

    The folder is made on first use. Safe to share between the threads that
    run one machine's tasks at once, like the pool it holds.
    """

    _made = threading.Lock()

    def __init__(self, folder: Path, epic: str, setup: str | None, setup_inputs: list[str],
                 run_setup: SetupRunner | None = None):
        folder = Path(folder)
        with self._made:
            if not (folder / ".git").exists():
                folder.mkdir(parents=True, exist_ok=True)
                init_repository(folder, branch="waveui-clone")  # an unborn branch: the clone's own tree stays empty
        self.epic = epic
        self.pool = WorktreePool(folder, epic, setup, setup_inputs, folder / ".waveui" / "logs",
                                 run_setup=run_setup)
        self.repository = self.pool.repository

    def tips(self) -> list[str]:
        """The newest commits this clone was sent: what a bundle for it may leave out."""
        out = self.repository.run("for-each-ref", "--sort=-committerdate", f"--count={TIPS_REPORTED}",
                                  "--format=%(objectname)", RECEIVED).out
        return out.split()

    def receive(self, bundle: bytes | None, ref: str, start_point: str, remote: str = "") -> str | None:
        """Take in a bundle of ``ref`` (None: nothing new was sent); why ``start_point`` is still missing, or None.

        With a ``remote`` (a git URL), ``ref`` is fetched from there instead.
        """
        if bundle is not None or remote:
            incoming = f"{RECEIVED}incoming-{uuid.uuid4().hex}"  # attempts on this machine receive at once
            try:
                if remote:
                    fetch_ref(self.repository, remote, {ref: incoming})
                else:
                    fetch_bundle_bytes(self.repository, bundle, {ref: incoming})
            except GitError as refused:  # a BundleRefused, or a remote this machine cannot fetch from
                return refused.message
            tip = self.repository.resolve(incoming)
            self.repository.run("update-ref", RECEIVED + tip, tip)
            self.repository.run("update-ref", "-d", incoming)
        if self.repository.resolve(start_point) is None:
            return f"the clone does not have the start point {start_point[:12]}"
        return None

    def acquire(self, task_id: str, start_point: str) -> Worktree:
        return self.pool.acquire(task_id, start_point)

    @staticmethod
    def task_env(variables: dict[str, str], worktree: Worktree) -> dict[str, str]:
        return {**clean_env(os.environ), **variables, "WAVEUI_WORKTREE": str(worktree.path)}

    def ensure_setup(self, worktree: Worktree, env: dict) -> SetupResult:
        return self.pool.ensure_setup(worktree, env)

    def commit(self, worktree: Worktree, start_point: str, message: str, keep_out: tuple[str, ...]) -> str | None:
        return self.pool.commit(worktree, start_point, message, keep_out)

    def release(self, worktree: Worktree, attempt: int, start_point: str,
                remote: str = "") -> tuple[str | None, bytes | None]:
        """Keep the attempt's work under its ref and free the worktree: the commit kept and a bundle of that ref.

        (None, None) when the attempt left nothing beyond its start. The bundle
        leaves out everything the controller sent: it has all of that. With a
        ``remote`` the ref is pushed there instead, and no bundle is made.
        """
        released = self.pool.release(worktree, attempt)
        if released.kept is None:
            return None, None
        ref = attempt_ref(self.epic, worktree.task_id, attempt)
        if remote:
            push_commit(self.repository, remote, released.kept, ref)
            return released.kept, None
        return released.kept, bundle_bytes(self.repository, ref, [start_point, *self.tips()])
