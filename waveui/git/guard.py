"""Noticing what tasks must not change in the shared repository: other refs, its config and its hooks.

A task's worktree shares the repository's refs, config and hooks with the
user's checkout, so an agent can move ``main``, delete a tag, or set
``core.hooksPath`` and plant a ``pre-commit`` hook that would then run in the
user's own ``git commit``. waveui itself never runs hooks (see
:mod:`waveui.git.command`); this guard takes a snapshot when the run starts and
compares at every task's end:

* **Refs.** waveui's own (the integration branch, the tasks' branches,
  ``refs/waveui/<epic>/``) move only as waveui writes them, and waveui never
  deletes one: one deleted is put back. Any other ref that is deleted or
  rewritten, or a branch that moves while nobody has it checked out, is
  reported: the run stops rather than go on beside a history something
  rewrote. A branch checked out in one of the user's own worktrees may move
  forward when that worktree's index holds the new commit: that is the user
  committing. A ``refs/replace/`` ref a task makes is set aside (it would swap
  objects in every later git command). ``refs/remotes/`` (the user fetching)
  is not watched. Refs are read from git's files while these hold nothing
  unusual (:mod:`waveui.git.reffiles`), else asked of ``git for-each-ref``.
* **The user's HEAD.** A switch of the user's checkout to another commit that
  its index does not hold (a task writing the HEAD through the shared git
  dir) is put back, and the run stops; a checkout by the user goes on.
* **The stash.** An entry of the user's stash list that goes away (a task's
  ``git stash pop``, ``drop`` or ``clear`` reaches the shared stash) is put
  back with ``git stash store``, and the run stops: the popped work may be in
  the task's commit.
* **Config, hooks and info.** A hook added or changed, a change to
  ``info/exclude`` or ``info/attributes``, or a config change that sets
  something git executes (hooks path, fsmonitor, filters, pagers, aliases,
  includes, ...), is reverted at once and the changed file kept aside under
  ``.waveui/set-aside/`` for the user to read; other config changes (the user
  setting ``user.email`` meanwhile) are only reported.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from waveui.run.journal import ensure_private_dir, waveui_dir
from waveui.git.command import Checkout, GitError, Repository
from waveui.git.reffiles import RefFiles

_UNWATCHED = ("refs/remotes/", "refs/stash")  # the user fetching; the stash is checked through its entries
_INFO_FILES = ("exclude", "attributes")
# Config keys whose values git runs or that pull in other config: a task must never set them.
_EXECUTABLE_KEYS = re.compile(
    r"^(core\.(hookspath|fsmonitor|sshcommand|pager|editor|askpass|gitproxy|worktree|bare|attributesfile"
    r"|excludesfile)|include(if\..*)?\.path|extensions\..*|filter\..*|diff\..*\.(textconv|command)"
    r"|merge\..*\.driver|alias\..*|credential\..*|sequence\.editor|gpg\..*program|pager\..*|uploadpack\..*"
    r"|receive\..*|url\..*|http\..*|protocol\..*|submodule\..*|remote\..*\.(uploadpack|receivepack|proxy)"
    r"|safe\.directory|sendemail\..*|web\.browser|browser\..*|man\..*|difftool\..*|mergetool\..*)$")


@dataclass
class GuardReport:
    stop: list[str]  # problems the run must not go on beside
    notices: list[str]  # what was reverted or changed, for the user to know


class RepositoryGuard:
    """A snapshot of the repository's refs, config and hooks, compared at every task's end."""

    def __init__(self, repository: Repository, epic: str):
        self.repository = repository
        self.epic = epic
        # refs/waveui/ as a whole: a pool keeps what a reused slot held under the epic that left it.
        self._owned = (f"refs/heads/waveui/{epic}@", "refs/waveui/")
        self._owned_exact = f"refs/heads/waveui/{epic}"
        self._ref_files = RefFiles(repository.common_dir, skipped=_UNWATCHED)
        self._refs, self._owned_refs = self._read_refs()
        self._stash = self._stash_entries()
        self._head_path = repository.git_dir / "HEAD"  # which branch or commit the user's checkout is on
        self._head = _read_bytes(self._head_path)
        self._config_path = repository.common_dir / "config"
        self._config = _read_bytes(self._config_path)
        self._config_keys = self._config_values()
        self._hooks_dir = repository.common_dir / "hooks"
        self._hooks = _read_folder(self._hooks_dir)
        # info/exclude can make a task's new files vanish from its commit; info/attributes can make
        # conflicting work merge silently (merge=union) in waveui's merges and the user's alike.
        self._info_dir = repository.common_dir / "info"
        self._info = {name: _read_bytes(self._info_dir / name) for name in _INFO_FILES}
        self._stamp = self._stamps()
        self._stash_stamp = self._stash_log_stamp()

    # ---------------------------------------------------------------- checking

    def check(self) -> GuardReport:
        """Compare with the snapshot; revert config and hooks a task changed; report the rest."""
        report = GuardReport([], [])
        self._check_refs(report)
        stash_stamp = self._stash_log_stamp()
        if stash_stamp is None or stash_stamp != self._stash_stamp:  # its reflog is read only when it changed
            self._check_stash(report)
            self._stash_stamp = self._stash_log_stamp()
        self._check_head(report)
        stamp = self._stamps()
        if stamp != self._stamp:  # the files are read only when something about them changed
            self._check_config(report)
            self._check_hooks(report)
            self._check_info(report)
            self._stamp = self._stamps()
        return report

    def _stash_log_stamp(self) -> tuple | None:
        """What the stash's reflog file looks like (every push, pop or drop rewrites it); None: not told so.

        A repository keeping refs in a reftable has no such file: its stash is read every time.
        """
        if (self.repository.common_dir / "reftable").exists():
            return None
        try:
            st = (self.repository.common_dir / "logs" / "refs" / "stash").stat()
        except FileNotFoundError:
            return ()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def _stamps(self) -> tuple:
        def stat(path: Path) -> tuple:
            try:
                st = path.stat()
            except OSError:
                return ()
            return st.st_mtime_ns, st.st_size, st.st_ino
        hooks = tuple(sorted((entry.name, stat(Path(entry.path))) for entry in _scandir(self._hooks_dir)))
        info = tuple(stat(self._info_dir / name) for name in _INFO_FILES)
        return stat(self._config_path), stat(self._hooks_dir), hooks, info

    # ------------------------------------------------------------------- refs

    def _read_refs(self) -> tuple[dict[str, str], dict[str, str]]:
        """The refs to watch (everyone's but waveui's own and the unwatched), and waveui's own."""
        refs = self._ref_files.read()  # read after every task: from the files when they tell it plainly
        if refs is None:
            out = self.repository.run("for-each-ref", "--format=%(objectname) %(refname)").out
            refs = {name: sha for sha, _, name in (line.partition(" ") for line in out.splitlines())}
        watched, owned = {}, {}
        for name, sha in refs.items():
            if name == self._owned_exact or name.startswith(self._owned):
                owned[name] = sha
            elif not name.startswith(_UNWATCHED):
                watched[name] = sha
        return watched, owned

    def _user_checkouts(self) -> dict[str, Checkout]:
        """The user's own worktrees (not waveui's slots), by the branch each has checked out."""
        slots = waveui_dir(self.repository.root) / "worktrees"
        found = {}
        for entry in self.repository.worktrees():
            path = Path(entry.get("worktree", ""))
            if "branch" not in entry or path.is_relative_to(slots):
                continue
            checkout = (self.repository.checkout if path == self.repository.root
                        else self.repository.linked_worktree(path))
            if checkout is not None:
                found[entry["branch"]] = checkout
        return found

    def _committed_there(self, checkout: Checkout, old: str, new: str) -> bool:
        """Whether ``old..new`` is a commit made in ``checkout``: its index holds what the commits changed.

        ``git commit`` (or a pull) leaves the index equal to the new commit; a
        task moving the branch from elsewhere (``update-ref``, a checkout with
        ``--ignore-other-worktrees``) leaves the user's index behind, and the
        checkout would show the task's work as staged changes in reverse.
        """
        changed = [p for p in self.repository.run("diff", "--name-only", "-z", old, new, "--").out.split("\0") if p]
        if not changed:
            return True
        return checkout.run("diff", "--cached", "--quiet", new, "--", *changed, ok=(0, 1)).status == 0

    def _check_refs(self, report: GuardReport) -> None:
        now, owned = self._read_refs()
        self._restore_owned(owned, report)
        if now == self._refs:
            return
        checkouts = None
        for name, old in self._refs.items():
            new = now.get(name)
            if new == old:
                continue
            if new is None:
                report.stop.append(f"{name} was deleted during the run (it was {old[:12]})")
                continue
            if checkouts is None:
                checkouts = self._user_checkouts()
            forward = self.repository.is_ancestor(old, new)
            if forward and name in checkouts and self._committed_there(checkouts[name], old, new):
                continue  # the user committing in their checkout
            how = "moved forward" if forward else "rewritten"
            report.stop.append(f"{name} was {how} during the run ({old[:12]} -> {new[:12]}) by something "
                               "other than waveui")
        for name in sorted(set(now) - set(self._refs)):
            if name.startswith("refs/heads/waveui/"):
                report.stop.append(f"{name} was created during the run in waveui's namespace")
            elif name.startswith("refs/replace/"):
                # A replace ref silently swaps one object for another in every later git command.
                kept = self._set_aside_ref(name, now[name])
                report.notices.append(f"{name}, which a task made, would replace an object in your history; "
                                      f"removed (kept as {kept})")
                now.pop(name)
            # Other new refs (a branch an agent made) change nothing that exists: accepted.
        self._refs = now

    def check_owned(self) -> list[str]:
        """Put back waveui's own refs something deleted, and take note of those waveui wrote since; notices.

        Called after waveui writes refs (an attempt kept, a branch moved), so a
        deletion by a task running meanwhile is caught at its end.
        """
        report = GuardReport([], [])
        self._restore_owned(self._read_refs()[1], report)
        return report.notices

    def _restore_owned(self, owned: dict[str, str], report: GuardReport) -> None:
        """Put back waveui's own refs (kept attempts, tasks' branches) that something deleted: waveui never does."""
        for name, sha in self._owned_refs.items():
            if name not in owned:
                done = self.repository.run("update-ref", "-m", "waveui: restored after a deletion", name, sha, "",
                                           ok=(0, 1, 128))
                if done.status == 0:
                    owned[name] = sha
                    report.notices.append(f"{name} was deleted during the run; restored to {sha[:12]}")
        self._owned_refs = owned

    def _set_aside_ref(self, name: str, sha: str) -> str:
        kept = f"refs/waveui/{self.epic}/set-aside/{name.removeprefix('refs/')}"
        self.repository.run("update-ref", "-m", "waveui: set aside", kept, sha)
        self.repository.run("update-ref", "-d", name, sha, ok=(0, 1, 128))
        return kept

    def _check_head(self, report: GuardReport) -> None:
        """The user's checkout switched to another branch or commit: fine if the user did it, else put back.

        A checkout by the user leaves the index holding the new HEAD; a task
        writing the HEAD (``git --git-dir=... symbolic-ref HEAD ...``) leaves the
        index behind, and the checkout would show the task's switch as changes.
        """
        now = _read_bytes(self._head_path)
        if now == self._head or now is None or self._head is None:
            return
        old, new = (self._head_commit(text) for text in (self._head, now))
        if old and new and self._committed_there(self.repository.checkout, old, new):
            self._head = now
            return
        _write_atomically(self._head_path, self._head)
        report.stop.append(f"your checkout's HEAD was switched from {_head_name(self._head)} to {_head_name(now)} "
                           "during the run, not by a checkout of yours; it is put back")

    def _head_commit(self, text: bytes) -> str | None:
        target = text.decode(errors="replace").strip()
        return self.repository.resolve(target.removeprefix("ref: ") if target.startswith("ref: ") else target)

    # ------------------------------------------------------------------ stash

    def _stash_entries(self) -> list[tuple[str, str]]:
        """The user's stash list, newest first: (commit, message)."""
        done = self.repository.run("log", "-g", "--format=%H%x00%gs", "refs/stash", "--", ok=(0, 128))
        if done.status != 0:
            return []
        return [tuple(line.split("\0", 1)) for line in done.out.splitlines() if "\0" in line]

    def _check_stash(self, report: GuardReport) -> None:
        """A stash entry that went away during the run is put back: a task popped or dropped the user's work."""
        now = self._stash_entries()
        if now == self._stash:
            return
        present = {commit for commit, _ in now}
        lost = [(commit, message) for commit, message in self._stash if commit not in present]
        for commit, message in reversed(lost):  # oldest first, so the list keeps its order
            self.repository.run("stash", "store", "-m", message, commit, ok=(0, 1))
        if lost:
            report.stop.append(f"{len(lost)} entr{'y' if len(lost) == 1 else 'ies'} of your stash list "
                               "went away during the run (a task ran `git stash pop`, `drop` or `clear`); "
                               "put back, see `git stash list`")
            now = self._stash_entries()
        self._stash = now

    # ----------------------------------------------------------- config, hooks

    def _config_values(self) -> dict[str, list[str]]:
        try:
            out = self.repository.run("config", "--file", str(self._config_path), "--null", "--list").out
        except GitError:
            return {}
        values: dict[str, list[str]] = {}
        for item in out.split("\0"):
            if item:
                key, _, value = item.partition("\n")
                values.setdefault(key.lower(), []).append(value)
        return values

    def _check_config(self, report: GuardReport) -> None:
        current = _read_bytes(self._config_path)
        if current == self._config:
            return
        keys = self._config_values()
        changed = sorted(k for k in set(keys) | set(self._config_keys) if keys.get(k) != self._config_keys.get(k))
        dangerous = [k for k in changed if _EXECUTABLE_KEYS.match(k)]
        if not dangerous and current is not None:
            report.notices.append(f"the repository's config changed during the run ({', '.join(changed) or 'layout'})")
            self._config, self._config_keys = current, keys
            return
        kept = self._set_aside(self._config_path, "config") if current is not None else None
        if self._config is not None:
            _write_atomically(self._config_path, self._config)
        report.notices.append(
            f"a change to {self._config_path} setting {', '.join(dangerous) or 'everything (deleted)'} was reverted"
            + (f"; the changed file is kept as {kept}" if kept else ""))

    def _check_hooks(self, report: GuardReport) -> None:
        current = _read_folder(self._hooks_dir)
        for name in sorted(set(current) | set(self._hooks)):
            before, after = self._hooks.get(name), current.get(name)
            if before == after:
                continue
            path = self._hooks_dir / name
            kept = self._set_aside(path, f"hook-{name}") if after is not None else None
            if before is not None:
                self._hooks_dir.mkdir(exist_ok=True)
                _write_atomically(path, before[0], before[1])
            what = "added" if before is None else "deleted" if after is None else "changed"
            report.notices.append(f"hook {name} {what} during the run was reverted"
                                  + (f"; the task's version is kept as {kept}" if kept else ""))

    def _check_info(self, report: GuardReport) -> None:
        for name in _INFO_FILES:
            path = self._info_dir / name
            before, after = self._info[name], _read_bytes(path)
            if before == after:
                continue
            kept = self._set_aside(path, f"info-{name}") if after is not None else None
            if before is not None:
                self._info_dir.mkdir(exist_ok=True)
                _write_atomically(path, before)
            report.notices.append(f"a change to {path} during the run was reverted"
                                  + (f"; the changed file is kept as {kept}" if kept else ""))

    def _set_aside(self, path: Path, label: str) -> Path | None:
        folder = ensure_private_dir(waveui_dir(self.repository.root) / "set-aside")
        target = folder / f"{label}-{time.strftime('%Y%m%d-%H%M%S')}-{time.monotonic_ns() % 10**9}"
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.move(str(path), target)
            else:
                os.replace(path, target)
        except OSError:
            try:
                shutil.copy2(path, target)
            except OSError:
                return None
        return target


def _head_name(text: bytes) -> str:
    """What a HEAD file names: a ref, or a commit id."""
    return text.decode(errors="replace").strip().removeprefix("ref: ")


def _scandir(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except OSError:
        return []


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _read_folder(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Each file's content and mode (a symlink or folder counts by its target's bytes, or as empty)."""
    files = {}
    for entry in _scandir(folder):
        path = Path(entry.path)
        try:
            mode = path.lstat().st_mode & 0o7777
            data = os.readlink(path).encode() if path.is_symlink() else path.read_bytes() if path.is_file() else b""
        except OSError:
            continue
        files[entry.name] = (data, mode)
    return files


def _write_atomically(path: Path, data: bytes, mode: int = 0o644) -> None:
    partial = path.with_name(f".{path.name}.waveui-restore")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(partial, mode)
    os.replace(partial, path)
