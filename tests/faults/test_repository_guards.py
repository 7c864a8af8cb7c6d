"""A run refuses a repository whose .waveui git would track or that leads elsewhere; it finds its epic from a
subfolder; a filesystem error is one line naming the path and its cause."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults.helpers import git, make_repo, run

EPIC = """
[epic]
name = "guards"
adaptive = false
[[task]]
id = "one"
command = 'echo one > one.txt'
"""


def repo_with(path: Path, files: dict[str, str]) -> Path:
    return make_repo(path, {"waveui.toml": EPIC, "README.md": "hi\n", **files})


def assert_one_error(code: int, out: str) -> str:
    assert code == 2, out
    lines = out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("waveui: error: "), out
    return lines[0]


@pytest.mark.parametrize("ignore, line", [
    ("!.waveui/\n", 1),
    ("!/.waveui\n", 1),
    ("# build output\n*.pyc\n!.waveui\n", 3),
    ("*\n!*\n", 2),  # everything un-ignored
    ("!.wave*\n", 1),
    ("!**/.waveui\n", 1),
])
def test_a_gitignore_negation_of_waveui_is_refused_naming_its_line(tmp_path, ignore, line):
    repo = repo_with(tmp_path / "repo", {".gitignore": ignore})
    status = git(repo, "status", "--porcelain", "--ignored")
    pattern = ignore.splitlines()[line - 1]
    message = assert_one_error(*run(repo))
    assert message == (f"waveui: error: .gitignore:{line}: {pattern!r} makes git track waveui's folder .waveui/; "
                       f"remove that line, or add a line '/.waveui/' after it")
    assert not (repo / ".waveui").exists()  # nothing written, not even an empty folder
    assert git(repo, "status", "--porcelain", "--ignored") == status
    assert git(repo, "branch", "--list", "waveui/*") == ""
    # without the line the same repository runs
    (repo / ".gitignore").write_text("\n".join(x for i, x in enumerate(ignore.splitlines(), 1) if i != line) + "\n")
    code, out = run(repo)
    assert code == 0, out


def test_a_whitelist_gitignore_runs_once_waveui_is_ignored_after_it(tmp_path):
    """`*` then `!*/` (a whitelist) un-ignores every folder; `/.waveui/` after it, as the message says, is enough."""
    repo = repo_with(tmp_path / "repo", {".gitignore": "*\n!*/\n!*.md\n!*.txt\n!.gitignore\n"})
    assert "'/.waveui/' after it" in assert_one_error(*run(repo))
    (repo / ".gitignore").write_text("*\n!*/\n!*.md\n!*.txt\n!.gitignore\n/.waveui/\n")
    code, out = run(repo)
    assert code == 0, out


@pytest.mark.parametrize("ignore", ["!.waveui/**\n", "!.waveui/runs/\n", "!/.waveui/worktrees/slot-0/\n"])
def test_a_negation_git_cannot_apply_inside_waveui_is_not_refused(tmp_path, ignore):
    """Git never re-includes a path below an excluded folder: these lines are harmless."""
    repo = repo_with(tmp_path / "repo", {".gitignore": ignore})
    code, out = run(repo)
    assert code == 0, out
    assert git(repo, "status", "--porcelain", "-uall") == ""  # nothing of .waveui/ shows up to be committed


def test_a_negation_in_a_subfolder_gitignore_is_not_refused(tmp_path):
    repo = repo_with(tmp_path / "repo", {"sub/.gitignore": "!.waveui/\n", "sub/keep": ""})
    code, out = run(repo)
    assert code == 0, out


@pytest.mark.parametrize("inside", ["", "runs", "worktrees"])
def test_a_symlinked_waveui_folder_is_refused(tmp_path, inside):
    repo = repo_with(tmp_path / "repo", {})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = repo / ".waveui" / inside if inside else repo / ".waveui"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(elsewhere)
    message = assert_one_error(*run(repo))
    assert f"{link} is a symlink (to {elsewhere})" in message, message
    assert list(elsewhere.iterdir()) == []  # nothing went out of the repository
    assert git(repo, "branch", "--list", "waveui/*") == ""


@pytest.mark.parametrize("isolation", ["worktree", "none"])
@pytest.mark.parametrize("file", [".waveui", ".waveui/runs"])
def test_a_file_where_waveui_needs_a_folder_is_refused(tmp_path, file, isolation):
    repo = repo_with(tmp_path / "repo", {})
    (repo / "waveui.toml").write_text(EPIC.replace("[epic]\n", f'[epic]\nisolation = "{isolation}"\n'))
    (repo / file).parent.mkdir(parents=True, exist_ok=True)
    (repo / file).write_text("mine\n")
    message = assert_one_error(*run(repo))
    assert message.endswith(f"{repo / file} is a file, not a folder: waveui keeps its runs there; move it away")
    assert (repo / file).read_text() == "mine\n"


def test_an_unreadable_earlier_journal_is_one_line_naming_it(tmp_path):
    repo = repo_with(tmp_path / "repo", {})
    journal = repo / ".waveui" / "runs" / "20240101-000000-guards-0000" / "events.jsonl"
    journal.mkdir(parents=True)  # a folder where the journal file belongs
    message = assert_one_error(*run(repo))
    assert message == f"waveui: error: {journal}: Is a directory"


def test_a_read_only_repository_is_one_line_saying_so(tmp_path):
    repo = repo_with(tmp_path / "repo", {})
    mount = subprocess.run(["mount", "--bind", "-o", "ro", str(repo), str(repo)], capture_output=True)
    if mount.returncode != 0:
        pytest.skip("no read-only bind mount here (needs root)")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(repo)], check=True, capture_output=True)
        message = assert_one_error(*run(repo))
    finally:
        subprocess.run(["umount", str(repo)], check=True)
    assert "Read-only file system" in message and "the file system is read-only" in message, message
    assert "Traceback" not in message and "free some space" not in message


def test_a_journal_write_error_names_its_real_cause(tmp_path):
    """A file-size limit (EFBIG) stands in for a full disk: its cause and the advice to free space."""
    import resource
    import signal

    repo = repo_with(tmp_path / "repo", {})
    (repo / "waveui.toml").write_text(EPIC + "".join(
        f'[[task]]\nid = "t{i}"\ncommand = "true"\n' for i in range(20)))

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (3_000, resource.RLIM_INFINITY))

    code, out = run(repo, preexec_fn=small_disk)
    errors = [line for line in out.splitlines() if line.startswith("waveui: error:")]
    assert code == 2 and len(errors) == 1, out
    assert "events.jsonl: File too large; free some space and run `waveui run` again to resume" in errors[0]


# ------------------------------------------------------------ the epic file from a subfolder


def run_in(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "waveui", *args], cwd=folder, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


@pytest.mark.parametrize("command", [["run", "--headless"], []], ids=["waveui-run", "bare-waveui"])
def test_run_finds_the_epic_file_from_a_subfolder(tmp_path, command):
    repo = repo_with(tmp_path / "repo", {"src/deep/code.py": "x = 1\n"})
    done = run_in(repo / "src" / "deep", *command)
    assert done.returncode == 0, done.stdout + done.stderr
    assert git(repo, "show", "waveui/guards:one.txt") == "one"
    assert (repo / ".waveui" / "runs").is_dir() and not (repo / "src" / "deep" / ".waveui").exists()


def test_the_nearest_epic_file_wins(tmp_path):
    repo = repo_with(tmp_path / "repo", {"src/waveui.toml": EPIC.replace('"guards"', '"inner"'), "src/a/k": ""})
    done = run_in(repo / "src" / "a", "run", "--headless")
    assert done.returncode == 0, done.stdout + done.stderr
    assert git(repo, "branch", "--list", "waveui/inner") and not git(repo, "branch", "--list", "waveui/guards")


def test_an_epic_file_above_the_repository_is_not_used(tmp_path):
    (tmp_path / "waveui.toml").write_text(EPIC)
    repo = make_repo(tmp_path / "repo", {"sub/keep": ""})
    done = run_in(repo / "sub", "run", "--headless")
    assert done.returncode == 2 and done.stdout == "", done.stdout + done.stderr
    assert done.stderr.splitlines() == ["waveui: error: waveui.toml: no such file (run `waveui init` to write a "
                                        "starter epic)"]
    assert not (tmp_path / ".waveui").exists() and not (repo / ".waveui").exists()
    bare = run_in(repo / "sub")
    assert bare.returncode == 0 and "usage" in bare.stdout.lower()  # help, not a run of the outer epic
