"""Permissions: `.waveui/` is owner-only whatever the umask, and `waveui watch` never writes.

Real headless runs (``isolation = "none"`` and a git repository, under umask
022 and 000) must leave every folder under ``.waveui/`` 0700 and every file
0600 (the checked-out worktrees aside: those are the user's files). Then the
finished run's folder is made read-only and watched: the app, ``waveui watch
--list`` and ``waveui status`` must work, while an audit hook records every
open for writing, folder made, mode changed, file renamed or removed under
the repository, and every process started, and finds none but read-only git.
(Tests often run as root, whom ``chmod a-w`` does not stop: the audit is what
proves nothing is written.)
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.engine_helpers import git, make_repo
from tests.ui.helpers import SIZE, press
from tests.ui.helpers import isolated_user_themes  # noqa: F401  (autouse: keeps your own themes out)
from waveui.frontends import cli
from waveui.run.events import TaskStateChanged
from waveui.run.journal import Journal
from waveui.frontends.tui.app import WaveApp
from waveui.frontends.tui.feeds import JournalFeed

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
# Audit events that change the file system (see the table of audit events in Python's documentation).
CHANGING_EVENTS = frozenset({"os.mkdir", "os.chmod", "os.chown", "os.rename", "os.remove", "os.rmdir",
                             "os.truncate", "os.utime", "os.link", "os.symlink", "shutil.rmtree",
                             "shutil.copyfile", "shutil.move", "os.chflags"})
READ_ONLY_GIT = frozenset({"diff", "rev-parse", "log", "show", "merge-base", "cat-file", "ls-tree"})

_recording: list | None = None


def _audit(event: str, args: tuple) -> None:
    record = _recording
    if record is None:
        return
    if event == "open":
        path, _mode, flags = args
        if isinstance(path, (str, bytes, os.PathLike)) and flags & WRITE_FLAGS:
            record.append(("open for writing", os.fsdecode(path)))
    elif event in CHANGING_EVENTS:
        record.append((event, *(os.fsdecode(a) for a in args[:2] if isinstance(a, (str, bytes, os.PathLike)))))
    elif event == "subprocess.Popen":
        record.append(("process", [os.fsdecode(a) for a in args[1]] if args[1] else [os.fsdecode(args[0])]))


sys.addaudithook(_audit)  # cannot be removed: it records only inside ``audit()``


@contextmanager
def audit():
    """Record, while inside, what the process does that could change files."""
    global _recording
    _recording = record = []
    try:
        yield record
    finally:
        _recording = None


def writes_under(record: list, root: Path) -> list:
    """The recorded changes to files under ``root``, and every process but read-only git."""
    root = root.resolve()
    bad = []
    for entry in record:
        if entry[0] == "process":
            argv = entry[1]
            options = argv[:argv.index("--end-of-options")] if "--end-of-options" in argv else argv
            if (Path(argv[0]).name != "git" or _git_subcommand(argv) not in READ_ONLY_GIT
                    or any(a.startswith("--output") for a in options)):
                bad.append(entry)
        elif any(Path(p).resolve() == root or root in Path(p).resolve().parents for p in entry[1:]):
            bad.append(entry)
    return bad


def _git_subcommand(argv: list[str]) -> str:
    rest = argv[1:]
    while rest and rest[0].startswith("-"):
        rest = rest[2:] if rest[0] in ("-C", "-c") else rest[1:]
    return rest[0] if rest else ""


# ------------------------------------------------------------------- runs

NONE_EPIC = """\
[epic]
name = "perm"
isolation = "none"
max_parallel = 2
[[task]]
id = "one"
command = "echo one; echo '::waveui progress=50 message=\\"half\\"'"
[[task]]
id = "two"
requires = ["one"]
command = "echo two"
[[task]]
id = "broken"
command = "echo broken; exit 3"
"""

GIT_EPIC = """\
[epic]
name = "perm"
max_parallel = 2
setup = "true"
setup_inputs = ["README.md"]
[[task]]
id = "one"
command = "echo one > one.txt; echo wrote one.txt"
[[task]]
id = "two"
requires = ["one"]
command = "echo two > two.txt; echo wrote two.txt"
"""


def run_headless(folder: Path, umask: int) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_COLOR="1")
    env.pop("PYTHONWARNINGS", None)
    command = f"umask {umask:03o} && exec {sys.executable} -m waveui run --headless"
    return subprocess.run(["/bin/sh", "-c", command], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=180, stdin=subprocess.DEVNULL)


def make_run(tmp_path: Path, kind: str, umask: int = 0o022) -> Path:
    """A finished run of a small epic in a fresh folder (``kind``: "none" or "git"); the folder."""
    if kind == "none":
        folder = tmp_path / "plain"
        folder.mkdir()
        (folder / "waveui.toml").write_text(NONE_EPIC)
    else:
        folder = make_repo(tmp_path / "repo")
        (folder / "waveui.toml").write_text(GIT_EPIC)
        git(folder, "add", "waveui.toml")
        git(folder, "commit", "-q", "-m", "epic")
    done = run_headless(folder, umask)
    assert done.returncode == (1 if kind == "none" else 0), done.stdout + done.stderr
    return folder


def modes(waveui: Path) -> dict[str, tuple[str, int]]:
    """Kind and permission bits of everything under ``.waveui/``, the worktrees' checkouts left out."""
    out = {}
    for folder, dirs, files in os.walk(waveui):
        here = Path(folder)
        if here.parent.name == "worktrees" and here.name.startswith("slot-"):
            dirs[:] = []  # a checkout of the user's repository: git and the umask decide, inside 0700 folders
            continue
        for name in dirs + files:
            path = here / name
            info = path.lstat()
            out[str(path.relative_to(waveui))] = ("dir" if stat.S_ISDIR(info.st_mode) else "file",
                                                  stat.S_IMODE(info.st_mode))
    return out


@pytest.mark.parametrize("umask", [0o022, 0o000], ids=["umask-022", "umask-000"])
@pytest.mark.parametrize("kind", ["none", "git"])
def test_a_run_leaves_waveui_owner_only(tmp_path, kind, umask):
    folder = make_run(tmp_path, kind, umask)
    waveui = folder / ".waveui"
    assert stat.S_IMODE(waveui.stat().st_mode) == 0o700
    found = modes(waveui)
    [run] = [name for name in found if name.startswith("runs/") and name.count("/") == 1]
    expected = {"runs": 0o700, run: 0o700, f"{run}/logs": 0o700, f"{run}/events.jsonl": 0o600}
    if kind == "git":
        expected["worktrees"] = 0o700
    for name, mode in expected.items():
        assert found[name][1] == mode, f"{name}: {found[name][1]:o}"
    logs = [name for name in found if name.startswith(f"{run}/logs/")]
    assert any(name.endswith("/one.log") for name in logs)
    # Nothing at all under .waveui/ that the group or others may use.
    loose = {name: f"{mode:o}" for name, (kind_, mode) in found.items()
             if mode != (0o700 if kind_ == "dir" else 0o600)}
    assert not loose


# ------------------------------------------------------------ watching, read-only


def tree_fingerprint(root: Path) -> dict[str, tuple]:
    """Every file and folder under ``root`` with its content hash, size, mode and mtime."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            info = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(info.st_mode) else ""
            out[str(path.relative_to(root))] = (digest, info.st_size, info.st_mode, info.st_mtime_ns)
    return out


@contextmanager
def read_only(folder: Path):
    """``chmod -R a-w folder`` for the duration (given back after, so the test's folder can be removed)."""
    subprocess.run(["chmod", "-R", "a-w", str(folder)], check=True)
    try:
        yield
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(folder)], check=True)


@pytest.mark.parametrize("kind", ["none", "git"])
async def test_watch_works_over_a_read_only_run_and_writes_nothing(tmp_path, kind):
    folder = make_run(tmp_path, kind)
    [run_dir] = (folder / ".waveui" / "runs").iterdir()
    before = tree_fingerprint(folder)
    with read_only(folder / ".waveui"), audit() as record:
        app = WaveApp(JournalFeed(run_dir / "events.jsonl", poll=0.02), None, log_dir=run_dir / "logs",
                      repo_root=folder, read_only=True)
        async with app.run_test(size=SIZE) as pilot:
            for _ in range(300):
                if app.state.finished:
                    break
                await pilot.pause(0.02)
            assert app.state.finished and app.state.total == (3 if kind == "none" else 2)
            for task_id in sorted(app.state.tasks):
                app.main_screen.select_task(task_id)
                await press(pilot, app)
                assert app.main_screen.task_log.line_count > 0
                await press(pilot, app, "enter")  # the detail screen: log, git diff, files, attempts
                await pilot.pause(0.3)
                await press(pilot, app, "escape")
            await press(pilot, app, "r", "c", "space", "P", "plus")  # refused: read-only
            await press(pilot, app, "q")
    assert writes_under(record, folder) == []
    assert tree_fingerprint(folder) == before


async def test_watch_never_lets_a_tampered_journal_make_git_write(tmp_path):
    """A commit id such as "--output=FILE" in the journal stays a bad revision, never a git option."""
    folder = make_run(tmp_path, "git")
    [run_dir] = (folder / ".waveui" / "runs").iterdir()
    target = tmp_path / "pwned"
    journal = Journal(run_dir)
    journal.append(TaskStateChanged(t=time.time(), task="one", state="done", attempt=1,
                                    commit=f"--output={target}"))
    journal.close()
    with audit() as record:
        app = WaveApp(JournalFeed(run_dir / "events.jsonl", poll=0.02), None, log_dir=run_dir / "logs",
                      repo_root=folder, read_only=True)
        async with app.run_test(size=SIZE) as pilot:
            for _ in range(300):
                if app.state.tasks.get("one") and app.state.tasks["one"].commit.startswith("--"):
                    break
                await pilot.pause(0.02)
            app.main_screen.select_task("one")
            await press(pilot, app, "enter")
            for _ in range(100):
                if getattr(app.screen, "diff", None) is not None:
                    break
                await pilot.pause(0.05)
            assert app.screen.diff is not None
    assert not list(tmp_path.glob("pwned*"))
    assert writes_under(record, folder) == []
    assert any(entry[0] == "process" and "--end-of-options" in entry[1] for entry in record)


@pytest.mark.parametrize("args", [["watch", "--list"], ["watch", "--list", "--json"], ["status"],
                                  ["status", "--json"]])
def test_watch_list_and_status_read_a_read_only_run_and_write_nothing(tmp_path, monkeypatch, capsys, args):
    if args[0] == "status" and "status" not in cli.build_parser()._subparsers._group_actions[0].choices:
        pytest.skip("no `waveui status` command")
    folder = make_run(tmp_path, "none")
    before = tree_fingerprint(folder)
    monkeypatch.chdir(folder)
    with read_only(folder / ".waveui"):
        with audit() as record:
            assert cli.main(args) == 0
        out = capsys.readouterr().out
        assert "perm" in out
        env = dict(os.environ, NO_COLOR="1")
        done = subprocess.run([sys.executable, "-m", "waveui", *args], cwd=folder, capture_output=True, text=True,
                              timeout=60, env=env, stdin=subprocess.DEVNULL)
        assert done.returncode == 0 and done.stderr == "", done.stderr
    assert writes_under(record, folder) == []
    assert tree_fingerprint(folder) == before


def test_the_audit_sees_writes(tmp_path):
    """The audit hook really does catch what the tests above rely on it to catch."""
    target = tmp_path / "x"
    with audit() as record:
        target.write_text("x")
        os.close(os.open(tmp_path / "y", os.O_WRONLY | os.O_CREAT, 0o600))
        (tmp_path / "d").mkdir()
        os.chmod(target, 0o600)
        target.rename(tmp_path / "z")
        subprocess.run(["git", "--version"], capture_output=True)
        subprocess.run(["git", "-C", str(tmp_path), "diff", "--output=/dev/null"], capture_output=True)
        (tmp_path / "z").read_text()
    kinds = [entry[0] for entry in writes_under(record, tmp_path)]
    assert kinds == ["open for writing", "open for writing", "os.mkdir", "os.chmod", "os.rename", "process",
                     "process"]
