"""The one place waveui runs git: every call names its git dir and work tree, in a cleaned environment.

Three rules keep git away from what waveui did not mean to touch:

* **Nothing is found by searching.** Each command gets ``--git-dir`` and
  ``--work-tree`` explicitly, and its folder as ``cwd`` (which must exist: a
  missing folder is an error, never a fall back to the current one). Git
  looks upward from a folder that has lost its ``.git``, and GitPython runs in
  the process's own folder when the one it is given does not exist; both
  once sent a "cleanup" into the user's checkout.
* **Nothing is inherited.** ``GIT_DIR``, ``GIT_WORK_TREE``, ``GIT_INDEX_FILE``
  and the rest of the caller's ``GIT_*`` variables would redirect a command
  (a hook exports them; so may the user's shell). :func:`clean_env` drops
  them, as pre-commit's ``no_git_env`` does, and tasks get the same
  environment. Paths are used as given, never ``$VAR``- or ``~``-expanded.
* **Nothing of a task's runs.** Hooks and the fsmonitor are switched off for
  every command waveui runs, so a task that writes ``.git/hooks`` or
  ``core.hooksPath`` cannot make waveui execute anything.

Commands run through :mod:`subprocess`, not GitPython: its ``execute`` always
merges ``os.environ`` (so a ``GIT_DIR`` there cannot be removed) and expands
variables in repository paths.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# Variables that configure how git reaches the outside world, not which repository it acts on.
_KEPT = frozenset({
    "GIT_EXEC_PATH", "GIT_SSH", "GIT_SSH_COMMAND", "GIT_SSL_CAINFO", "GIT_SSL_NO_VERIFY", "GIT_ASKPASS",
    "GIT_HTTP_PROXY_AUTHMETHOD", "GIT_ALLOW_PROTOCOL", "GIT_CONFIG_COUNT",
    "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL",
    # Which configuration files git reads (the user's identity, say); hooks in them never run in waveui's commands.
    "GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM", "GIT_CONFIG_NOSYSTEM",
})
_KEPT_PREFIXES = ("GIT_CONFIG_KEY_", "GIT_CONFIG_VALUE_")
# Options for every command: no hooks, no fsmonitor daemon or command, nothing that could run a task's code.
_SAFE_OPTIONS = ("-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false")
MIN_VERSION = (2, 38)  # merge-tree --write-tree
OBJECT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # SHA-1 or SHA-256


class GitError(Exception):
    """A git operation that failed, with a message fit to show the user."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def clean_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) without the ``GIT_*`` variables that choose a repository, index or tree."""
    env = os.environ if env is None else env
    cleaned = {k: v for k, v in env.items()
               if not k.startswith("GIT_") or k in _KEPT or k.startswith(_KEPT_PREFIXES)}
    return cleaned


def _env() -> dict[str, str]:
    env = clean_env()
    env["GIT_TERMINAL_PROMPT"] = "0"  # never wait for a password on a terminal the app is drawing
    env["GIT_OPTIONAL_LOCKS"] = "0"  # reading never refreshes (writes) anybody's index
    return env


@dataclass(frozen=True)
class Result:
    status: int
    out: str
    err: str


def _execute(cwd: Path, args: Sequence[str], ok: Sequence[int], input: str | None, where: str,
             timeout: float | None = None) -> Result:
    command = ["git", *_SAFE_OPTIONS, *args]
    try:
        done = subprocess.run(command, cwd=cwd, env=_env(), input=input, capture_output=True,
                              stdin=None if input is not None else subprocess.DEVNULL, timeout=timeout,
                              text=True, encoding="utf-8", errors="surrogateescape")
    except subprocess.TimeoutExpired:
        raise GitError(f"git {' '.join(args)} ({where}) took longer than {timeout:g}s") from None
    except FileNotFoundError as error:
        if not Path(cwd).is_dir():
            raise GitError(f"{cwd} does not exist (deleted while waveui was using it?)") from None
        raise GitError("git is not installed (or not on PATH)") from error
    except NotADirectoryError:
        raise GitError(f"{cwd} is not a folder") from None
    except OSError as error:
        raise GitError(f"cannot run git in {cwd}: {error.strerror or error}") from None
    if done.returncode not in ok:
        said = (done.stderr or done.stdout).strip() or f"exit status {done.returncode}"
        raise GitError(f"git {' '.join(args)} ({where}) failed: {said}")
    return Result(done.returncode, done.stdout, done.stderr)


@dataclass(frozen=True)
class Checkout:
    """A work tree and the git dir serving it: every command names both, nothing is discovered."""

    work_tree: Path
    git_dir: Path

    def run(self, *args: str, ok: Sequence[int] = (0,), input: str | None = None,
            timeout: float | None = None) -> Result:
        """``git args`` on this work tree; GitError for a status not in ``ok``."""
        return _execute(self.work_tree, (f"--git-dir={self.git_dir}", f"--work-tree={self.work_tree}", *args),
                        ok, input, f"in {self.work_tree}", timeout)

    def resolve_all(self, *revs: str) -> list[str | None]:
        """The object each of ``revs`` names (``X^{commit}`` for a commit), None for those naming none.

        One git process for all of them (``cat-file --batch-check``): a task's
        commit and merge ask several at once, and each process costs milliseconds.
        """
        for rev in revs:
            if "\n" in rev or not rev.strip():  # one line each: such a name would shift every answer after it
                raise GitError(f"not a revision: {rev!r}")
        out = self.run("cat-file", "--batch-check=%(objectname) %(objecttype)",
                       input="".join(rev + "\n" for rev in revs)).out.splitlines()
        if len(out) != len(revs):
            raise GitError(f"git cat-file answered {len(out)} lines for {len(revs)} revisions")
        # An unknown or ambiguous name is answered "<name> missing" or "<name> ambiguous".
        return [line.split(" ")[0] if line.endswith((" commit", " tree", " blob", " tag")) else None
                for line in out]


@dataclass(frozen=True)
class Repository:
    """The user's repository: its top folder, its own git dir and the common one its worktrees share."""

    root: Path
    git_dir: Path
    common_dir: Path

    @classmethod
    def open(cls, root: Path) -> Repository:
        """The repository whose top folder is exactly ``root`` (not one above it); GitError otherwise."""
        root = Path(root)
        if not root.is_dir():
            raise GitError(f"{root} is not a folder")
        root = root.resolve()
        found = discover(root, ceiling=root.parent)
        if found is None or found.root != root:
            raise GitError(f"{root} is not the top folder of a git repository")
        return found

    @property
    def checkout(self) -> Checkout:
        return Checkout(self.root, self.git_dir)

    def run(self, *args: str, ok: Sequence[int] = (0,), input: str | None = None,
            timeout: float | None = None) -> Result:
        """A command on the repository itself (refs, objects, worktree records); never on a task's tree."""
        return self.checkout.run(*args, ok=ok, input=input, timeout=timeout)

    def run_on_history(self, *args: str, ok: Sequence[int] = (0,)) -> Result:
        """A command on commits and objects only, as in a bare repository: no work tree at all.

        Git reads ``.gitattributes`` from the work tree when it has one; for a
        merge computed in the object database that would let an untracked file
        in the user's checkout (``f.txt merge=union``) decide how tasks' work is
        merged. Without a work tree only what history and ``info/attributes``
        say counts.
        """
        return _execute(self.git_dir, (f"--git-dir={self.git_dir}", "-c", "core.bare=true", *args), ok, None,
                        f"in {self.root}")

    def version(self) -> tuple[int, ...]:
        out = self.run("version").out
        numbers = []
        for part in out.split()[2].split(".") if len(out.split()) > 2 else ():
            if not part.isdigit():
                break
            numbers.append(int(part))
        return tuple(numbers)

    def resolve_all(self, *revs: str) -> list[str | None]:
        """See :meth:`Checkout.resolve_all`."""
        return self.checkout.resolve_all(*revs)

    def resolve(self, rev: str) -> str | None:
        """The commit ``rev`` names, or None."""
        result = self.run("rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}",
                          ok=(0, 1, 128))
        return result.out.strip() if result.status == 0 and result.out.strip() else None

    def is_ancestor(self, a: str, b: str) -> bool:
        return self.run("merge-base", "--is-ancestor", a, b, ok=(0, 1)).status == 0

    def worktrees(self) -> list[dict[str, str]]:
        """``git worktree list --porcelain`` as one dict per worktree (keys: worktree, HEAD, branch, locked, ...)."""
        entries, current = [], {}
        for field in self.run("worktree", "list", "--porcelain", "-z").out.split("\0"):
            if not field:  # an empty field ends a record
                if current:
                    entries.append(current)
                current = {}
                continue
            key, _, value = field.partition(" ")
            current[key] = value
        if current:
            entries.append(current)
        return entries

    def checked_out(self) -> dict[str, Path] | None:
        """Which branch each worktree of the repository is on (``refs/heads/...`` -> its folder).

        Read from their HEAD files, as ``git worktree list`` reads them, without
        a git process: a merge asks before every move of the integration
        branch. None where HEADs are not kept in files (a reftable): ask
        :meth:`worktrees` then.
        """
        if (self.common_dir / "reftable").exists():
            return None
        heads = [(self.common_dir / "HEAD", self.common_dir.parent if self.common_dir.name == ".git" else self.root)]
        try:
            linked = list((self.common_dir / "worktrees").iterdir())
        except FileNotFoundError:
            linked = []
        for admin in linked:
            try:
                folder = Path((admin / "gitdir").read_text(encoding="utf-8", errors="surrogateescape").strip()).parent
            except OSError:
                folder = admin
            heads.append((admin / "HEAD", folder))
        branches = {}
        for head, folder in heads:
            try:
                text = head.read_text(encoding="utf-8", errors="surrogateescape").strip()
            except OSError:
                continue
            if text.startswith("ref: "):
                branches.setdefault(text[len("ref: "):], folder)
        return branches

    def loose_ref(self, ref: str) -> str | None:
        """The object id the loose file of ``ref`` (``refs/...``) holds, read without a git process.

        None when git keeps the ref otherwise (in ``packed-refs``, as a symbolic
        ref, in a reftable) or the file holds no object id: ask git then. The
        id is not checked to name an object; a caller compares it with one it
        knows, and asks git on any difference.
        """
        if not ref.startswith("refs/") or ".." in ref or (self.common_dir / "reftable").exists():
            return None
        try:
            text = (self.common_dir / ref).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            return None
        return text if OBJECT_ID.fullmatch(text) else None

    def identity(self) -> list[str]:
        """``-c user.name=... -c user.email=...`` for whichever the repository has not configured.

        waveui commits on tasks' behalf; a machine without an identity (CI, a
        fresh container) must not fail every task for it.
        """
        try:  # read again only when the repository's config changes (it is asked per commit)
            stamp = (self.common_dir / "config").stat().st_mtime_ns
        except OSError:
            stamp = 0
        return list(_identity_options(self.root, self.git_dir, stamp))

    def linked_worktree(self, path: Path) -> Checkout | None:
        """``path`` as a worktree of this repository, if that is what it still is; else None.

        It must be a real folder (not a symlink) whose ``.git`` file points into
        ``<common dir>/worktrees/`` and whose record there points back at it.
        Anything else (a folder that lost its ``.git``, one a task replaced,
        one that is now another repository) is not to be touched as a worktree.
        """
        path = Path(path)
        try:
            if path.is_symlink() or not path.is_dir():
                return None
            dotgit = path / ".git"
            if dotgit.is_symlink() or not dotgit.is_file():
                return None
            text = dotgit.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        if not text.startswith("gitdir:"):
            return None
        gitdir = Path(path, text[len("gitdir:"):].strip()).resolve()
        try:
            back = Path((gitdir / "gitdir").read_text(encoding="utf-8").strip())
        except (OSError, UnicodeDecodeError):
            return None
        if (gitdir.parent != self.common_dir / "worktrees" or not (gitdir / "HEAD").is_file()
                or not _same_path(back, path / ".git")):
            return None
        return Checkout(path.resolve(), gitdir)


def init_repository(folder: Path, branch: str = "main") -> Repository:
    """A new repository in the existing, empty ``folder``, whatever ``GIT_DIR`` the caller exported."""
    _execute(folder, ("init", "-q", "-b", branch, str(folder)), (0,), None, f"in {folder}")
    return Repository.open(folder)


def discover(folder: Path, ceiling: Path | None = None) -> Repository | None:
    """The repository holding ``folder`` (searching upward, no higher than ``ceiling``), or None."""
    env_ceiling = {} if ceiling is None else {"GIT_CEILING_DIRECTORIES": str(ceiling)}
    env = {**_env(), **env_ceiling}
    paths = []
    # One question per command: a path may hold a newline, so answers cannot be split on newlines.
    for option in ("--show-toplevel", "--git-dir", "--git-common-dir"):
        try:
            done = subprocess.run(["git", *_SAFE_OPTIONS, "rev-parse", "--path-format=absolute", option],
                                  cwd=folder, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  encoding="utf-8", errors="surrogateescape")
        except FileNotFoundError as error:
            if not Path(folder).is_dir():
                return None
            raise GitError("git is not installed (or not on PATH)") from error
        except OSError:
            return None
        answer = done.stdout.removesuffix("\n")
        if done.returncode != 0 or not answer:
            return None  # not a repository, or a bare one (no top folder)
        paths.append(Path(answer).resolve())
    return Repository(*paths)


@functools.lru_cache(maxsize=16)
def _identity_options(root: Path, git_dir: Path, _config_stamp: int) -> tuple[str, ...]:
    options: list[str] = []
    for key, default in (("user.name", "waveui"), ("user.email", "waveui@localhost")):
        found = Checkout(root, git_dir).run("config", "--get", key, ok=(0, 1))
        if found.status != 0 or not found.out.strip():
            options += ["-c", f"{key}={default}"]
    return tuple(options)


def _same_path(a: Path, b: Path) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False
