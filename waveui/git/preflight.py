"""Checks before a run writes anything: waveui's folder is a real folder of the repository, and git ignores it.

waveui keeps its worktrees, journals and logs in ``.waveui/`` at the top of
the repository. Two things would send them where they must not go: git
tracking the folder (a user's ``.gitignore`` negation such as ``!.waveui/``
outranks ``info/exclude``, and ``git add -A`` in the user's checkout would
then commit every worktree and log), and ``.waveui`` (or one of its own
folders) being a symlink, which puts worktrees and journals outside the
repository. Git itself is asked whether the folder is ignored, so every
source of ignore rules counts exactly as git counts it.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from waveui.core.errors import describe
from waveui.git.command import GitError, Repository

WAVEUI_FOLDER = ".waveui"
EXCLUDE_LINE = "/.waveui/"
_OWN_FOLDERS = ("runs", "worktrees")  # where waveui writes journals and checks out worktrees
_PROBE = f"{WAVEUI_FOLDER}/runs/probe/events.jsonl"  # a path inside, asked about as well


class PreflightError(Exception):
    """The repository is not fit for a run: one line for the user."""


def check_waveui_folder(root: Path) -> None:
    """Refuse when ``.waveui`` or one of its own folders is a symlink, or a file where a folder belongs."""
    for path in (root / WAVEUI_FOLDER, *(root / WAVEUI_FOLDER / name for name in _OWN_FOLDERS)):
        try:
            info = path.lstat()
        except FileNotFoundError:
            continue
        except OSError as error:
            raise PreflightError(describe(error, path)) from None
        if stat.S_ISLNK(info.st_mode):
            target = os.readlink(path)
            raise PreflightError(f"{path} is a symlink (to {target}): waveui keeps worktrees and journals in a "
                                 f"real folder inside the repository; remove the link")
        if not stat.S_ISDIR(info.st_mode):
            raise PreflightError(f"{path} is a file, not a folder: waveui keeps its runs there; move it away")


def exclude_waveui(common_dir: Path) -> None:
    """Keep ``.waveui/`` out of git through ``info/exclude``, leaving the user's tracked .gitignore alone."""
    exclude = common_dir / "info" / "exclude"
    try:
        text = exclude.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    except (OSError, UnicodeDecodeError) as error:
        raise PreflightError(f"{exclude}: cannot read it: {getattr(error, 'strerror', None) or error}") from None
    if any(line.strip() in ("/.waveui/", ".waveui/", "/.waveui", ".waveui") for line in text.splitlines()):
        return
    try:
        exclude.parent.mkdir(parents=True, exist_ok=True)
        with open(exclude, "a", encoding="utf-8") as f:
            f.write(("\n" if text and not text.endswith("\n") else "") + EXCLUDE_LINE + "\n")
    except OSError as error:
        raise PreflightError(describe(error, exclude)) from None


def ensure_waveui_ignored(repo: Repository) -> None:
    """Make git ignore ``.waveui/`` and check that it does; :class:`PreflightError` naming the rule that un-ignores it.

    Git decides whether a folder is ignored by its rules *and* by whether the
    path is a folder (``!.waveui/`` matches only a folder), so the folder is
    made (empty, owner-only) to be asked about, and removed again when the
    run is refused.
    """
    check_waveui_folder(repo.root)
    exclude_waveui(repo.common_dir)
    folder = repo.root / WAVEUI_FOLDER
    made = False
    try:
        folder.mkdir(mode=0o700)
        made = True
    except FileExistsError:
        pass
    except OSError as error:
        raise PreflightError(describe(error, folder)) from None
    try:
        _check_ignored(repo)
    except BaseException:
        if made:
            try:
                folder.rmdir()
            except OSError as error:
                if error.errno not in (errno.ENOENT, errno.ENOTEMPTY):
                    raise
        raise


def _check_ignored(repo: Repository) -> None:
    try:
        # --no-index: ask the rules alone, whatever the index holds; -n: one answer per path, ignored or not.
        out = repo.run("check-ignore", "--no-index", "--verbose", "--non-matching", "--stdin", "-z",
                       input=f"{WAVEUI_FOLDER}\0{_PROBE}\0", ok=(0, 1)).out
    except GitError as error:
        raise PreflightError(error.message) from None
    fields = out.split("\0")
    for source, line, pattern, path in zip(fields[0::4], fields[1::4], fields[2::4], fields[3::4], strict=False):
        if pattern and not pattern.startswith("!"):
            continue  # ignored, by this rule
        if pattern:
            # The folder itself must be ignored: then git never looks inside, and no later rule (`!*.py`)
            # can make it track the copies of your files in waveui's worktrees.
            raise PreflightError(f"{source}:{line}: {pattern!r} makes git track waveui's folder {WAVEUI_FOLDER}/; "
                                 f"remove that line, or add a line '/{WAVEUI_FOLDER}/' after it")
        raise PreflightError(f"git does not ignore {path} although {repo.common_dir / 'info' / 'exclude'} "
                             f"says {EXCLUDE_LINE}; make git ignore {WAVEUI_FOLDER}/")
