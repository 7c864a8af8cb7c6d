"""Sandboxed tasks (`sandbox = true`): real bubblewrap, real repositories, real processes.

Each test runs an epic whose tasks try what the sandbox must stop (or allow),
then checks inside (what the task saw) and outside (what changed).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import stat
import sys
import threading
from pathlib import Path

import psutil
import pytest

from tests.engine_helpers import git, make_repo, run_engine, write_epic
from waveui.core import spec
from waveui.engine.engine import Engine, RunOptions
from waveui.executors import Sandbox
from waveui.executors.local.sandbox import bwrap_arguments, unavailable, writable_paths

CANNOT_SANDBOX = unavailable()
needs_bwrap = pytest.mark.skipif(CANNOT_SANDBOX is not None, reason=f"no sandbox here: {CANNOT_SANDBOX}")


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A home folder of the test's own, as the tasks' HOME; it stays visible (read-only) in the sandbox,
    so the tests keep their scripts there."""
    folder = tmp_path / "home"
    folder.mkdir()
    (folder / ".bashrc").write_text("# the user's\n")
    monkeypatch.setenv("HOME", str(folder))
    return folder


def state_of(engine: Engine, task_id: str):
    return engine.state.tasks[task_id]


# ------------------------------------------------------------------ the arguments


def test_arguments_confine_to_the_folder_and_the_given_paths():
    sandbox = Sandbox(network=False, writable=(Path("/h/.claude"),), private=((Path("/p"), Path("/r/.git/worktrees/w")),),
                      visible=(Path("/r"),))
    arguments = bwrap_arguments("/usr/bin/bwrap", sandbox, Path("/r/.waveui/worktrees/w"))
    joined = " ".join(arguments)
    assert joined.startswith("/usr/bin/bwrap --ro-bind / / --dev /dev --proc /proc --tmpfs /tmp "
                             "--unshare-pid --die-with-parent --unshare-net")
    # later binds win: the repository shown read-only first, then the writable folder, its .git read-only again
    assert joined.index("--ro-bind-try /r /r") < joined.index("--bind /r/.waveui/worktrees/w /r/.waveui/worktrees/w")
    assert joined.index("--bind /r/.waveui/worktrees/w ") < joined.index("--ro-bind-try /r/.waveui/worktrees/w/.git")
    assert "--bind-try /h/.claude /h/.claude" in joined
    assert joined.index("--bind-try /h/.claude") < joined.index("--bind /p /r/.git/worktrees/w")
    assert "--new-session" not in arguments
    assert "--unshare-net" not in bwrap_arguments("bwrap", Sandbox(), Path("/w"))


def test_writable_paths_make_folders_and_skip_missing_files(tmp_path):
    (tmp_path / ".claude.json").write_text("{}")
    paths = writable_paths(["~/.claude/", "~/.claude.json", "~/.absent.json"], tmp_path)
    assert paths[0] == tmp_path / ".claude" and (tmp_path / ".claude").is_dir()
    assert tmp_path / ".claude.json" in paths
    assert tmp_path / ".absent.json" not in paths


# ------------------------------------------------------------------ confinement


HOSTILE = r'''
set +e
try() { if sh -c "$1" 2>/dev/null; then echo "WROTE: $1"; else echo "refused: $1"; fi; }
try 'echo x >> "$REPO/README.md"'
try 'echo 0000000000000000000000000000000000000000 > "$REPO/.git/refs/heads/main"'
try 'echo "echo pwned" > "$REPO/.git/hooks/pre-commit"'
try 'echo "[alias] st = !echo pwned" >> "$REPO/.git/config"'
for _ in $(seq 100); do  # the other task's slot, made at the same time as this one
  OTHER=$(ls -d "$REPO"/.waveui/worktrees/slot-? | grep -v "^$PWD\$" | head -n 1)
  [ -n "$OTHER" ] && break; sleep 0.1
done
try "echo x > $OTHER/planted.txt"
try 'echo x >> "$HOME/.bashrc"'
try 'echo x > "$OUTSIDE/planted.txt"'
try 'echo "gitdir: /elsewhere" > .git'
echo done > work.txt
'''


@needs_bwrap
def test_every_write_outside_the_worktree_fails_and_the_work_is_merged(tmp_path, home):
    repo = make_repo(tmp_path / "repo")
    outside = home / "outside"  # not under /tmp, which the sandbox replaces with a private one
    outside.mkdir()
    (home / "hostile.sh").write_text(HOSTILE)
    before = {path: path.read_bytes() for path in (repo / "README.md", repo / ".git/config", home / ".bashrc")}
    main = git(repo, "rev-parse", "main")
    epic = write_epic(repo, f'''
        [epic]
        name = "box"
        sandbox = true
        max_parallel = 2
        [[task]]
        id = "hostile"
        command = 'REPO={repo} OUTSIDE={outside} sh {home}/hostile.sh'
        [[task]]
        id = "neighbour"
        command = "sleep 2; echo mine > neighbour.txt"
        ''')
    engine = run_engine(epic, repo)
    log = (engine.run_dir / "logs" / "hostile.log").read_text()
    assert "WROTE" not in log, log
    assert log.count("refused:") == 8
    assert "/.waveui/worktrees/slot-" in log  # the other slot was there to be refused
    assert state_of(engine, "hostile").state == "done"
    assert state_of(engine, "hostile").sandboxed
    assert git(repo, "show", "waveui/box:work.txt") == "done"
    assert git(repo, "show", "waveui/box:neighbour.txt") == "mine"
    for path, content in before.items():
        assert path.read_bytes() == content
    assert git(repo, "rev-parse", "main") == main
    assert not (repo / ".git/hooks/pre-commit").exists()
    assert not list(outside.iterdir())
    assert not (repo / ".waveui" / "sandbox").exists() or not any((repo / ".waveui" / "sandbox").iterdir())


GIT_WORK = r'''
set -e
echo changed >> README.md
echo new > new.txt
git status --short
git diff --stat
git add -A
git stash
test ! -e new.txt
git stash pop
git commit -q -m "made inside the sandbox"
echo after > after.txt
git add after.txt
git stash
git stash list | grep -q WIP
git stash pop
git log --oneline | head -3
'''


@needs_bwrap
def test_git_status_diff_add_stash_and_commit_work_inside_and_change_nothing_outside(tmp_path, home):
    repo = make_repo(tmp_path / "repo")
    (home / "git-work.sh").write_text(GIT_WORK)
    refs_before = git(repo, "for-each-ref")
    config_before = (repo / ".git/config").read_bytes()
    epic = write_epic(repo, f'''
        [epic]
        name = "gits"
        sandbox = true
        [[task]]
        id = "gitty"
        command = "sh {home}/git-work.sh"
        ''')
    engine = run_engine(epic, repo)
    view = state_of(engine, "gitty")
    log = (engine.run_dir / "logs" / "gitty.log").read_text()
    assert view.state == "done", (view.reason, log)
    assert "made inside the sandbox" in log
    # the task's commit was flattened into waveui's: its files are merged, its commit is nowhere
    assert git(repo, "show", "waveui/gits:new.txt") == "new"
    assert git(repo, "show", "waveui/gits:after.txt") == "after"
    assert git(repo, "show", "waveui/gits:README.md").endswith("changed")
    assert "made inside the sandbox" not in git(repo, "log", "--all", "--format=%s")
    assert "refs/stash" not in git(repo, "for-each-ref")
    own = [line for line in git(repo, "for-each-ref").splitlines() if "waveui" not in line]
    assert own == [line for line in refs_before.splitlines() if "waveui" not in line]
    assert (repo / ".git/config").read_bytes() == config_before
    git(repo, "fsck", "--no-dangling")  # no ref, index or reflog names an object the store lacks


# ------------------------------------------------------------------ network


def _listening() -> tuple[socket.socket, int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(60)
    threading.Thread(target=lambda: _accept_all(server), daemon=True).start()
    return server, server.getsockname()[1]


def _accept_all(server: socket.socket) -> None:
    try:
        while True:
            connection, _ = server.accept()
            connection.close()
    except OSError:
        pass


DIAL = """import socket, sys
dialer = socket.socket()
dialer.settimeout(5)
print("connected" if dialer.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else "no connection")
"""


@needs_bwrap
@pytest.mark.parametrize("network", [True, False])
def test_the_network_is_there_only_when_allowed(tmp_path, home, network):
    repo = make_repo(tmp_path / "repo")
    (home / "dial.py").write_text(DIAL)
    server, port = _listening()
    try:
        epic = write_epic(repo, f'''
            [epic]
            name = "net"
            sandbox = true
            sandbox_network = {str(network).lower()}
            [[task]]
            id = "dial"
            command = "{sys.executable} {home}/dial.py {port} > net.txt"
            ''')
        engine = run_engine(epic, repo)
    finally:
        server.close()
    assert state_of(engine, "dial").state == "done"
    assert git(repo, "show", "waveui/net:net.txt") == ("connected" if network else "no connection")


# ------------------------------------------------------------------ agents


@needs_bwrap
def test_an_agent_writes_its_session_files_under_its_own_folder(tmp_path, home, monkeypatch):
    repo = make_repo(tmp_path / "repo")
    bin_dir = home / "bin"
    bin_dir.mkdir()
    claude = bin_dir / "claude"
    claude.write_text('#!/bin/sh\nmkdir -p "$HOME/.claude" && echo \'{"session": 1}\' > "$HOME/.claude/session.json"'
                      ' && echo edited > agent.txt\n')
    claude.chmod(claude.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    epic = write_epic(repo, '''
        [epic]
        name = "agent"
        sandbox = true
        [[task]]
        id = "a"
        command = 'claude -p "$WAVEUI_PROMPT"'
        ''')
    engine = run_engine(epic, repo)
    assert state_of(engine, "a").state == "done", state_of(engine, "a").reason
    assert (home / ".claude" / "session.json").read_text().strip() == '{"session": 1}'
    assert git(repo, "show", "waveui/agent:agent.txt") == "edited"
    assert (home / ".bashrc").read_text() == "# the user's\n"


# ------------------------------------------------------------------ pause, timeout, cancel


def _step_processes(engine: Engine, task_id: str) -> list[psutil.Process]:
    """The step's process (bwrap, execed by its shell) and everything under it, sandboxed processes included."""
    top = psutil.Process(engine.state.tasks[task_id].pid)
    return [top, *top.children(recursive=True)]


async def _statuses_once(processes: list[psutil.Process], wanted, tries: int = 200) -> list[str]:
    """The processes' statuses once every one is ``wanted`` (or after ``tries`` looks, to fail the test)."""
    for _ in range(tries):
        statuses = [process.status() for process in processes if process.is_running()]
        if all(wanted(status) for status in statuses):
            break
        await asyncio.sleep(0.05)
    return statuses


def _gone(processes: list[psutil.Process]) -> bool:
    return not any(process.is_running() and process.status() != psutil.STATUS_ZOMBIE for process in processes)


@needs_bwrap
def test_pause_resume_and_cancel_reach_every_sandboxed_process_and_leave_none(tmp_path, home):
    repo = make_repo(tmp_path / "repo")
    epic = write_epic(repo, '''
        [epic]
        name = "steer"
        sandbox = true
        [[task]]
        id = "loop"
        command = 'sh -c "while true; do echo tick >> ticks.txt; sleep 0.05; done" & wait'
        ''')
    engine = Engine(epic, repo, RunOptions(grace=0.5))
    seen: dict[str, list] = {}

    async def drive():
        run = asyncio.create_task(engine.run())
        while "loop" not in engine.state.tasks or engine.state.tasks["loop"].state != "running" or not (
                Path(engine.state.tasks["loop"].worktree) / "ticks.txt").exists():
            await asyncio.sleep(0.05)
        processes = _step_processes(engine, "loop")
        seen["processes"] = processes
        assert "bwrap" in processes[0].name()
        engine.pause_task("loop")  # the supervisor stops them when it gets the word
        seen["paused"] = await _statuses_once(processes, lambda s: s == psutil.STATUS_STOPPED)
        engine.resume_task("loop")
        seen["resumed"] = await _statuses_once(processes, lambda s: s != psutil.STATUS_STOPPED)
        engine.cancel("loop")
        await run

    asyncio.run(drive())
    assert seen["paused"] and all(status == psutil.STATUS_STOPPED for status in seen["paused"])
    assert psutil.STATUS_STOPPED not in seen["resumed"]
    assert engine.state.tasks["loop"].state == "cancelled"
    assert _gone(seen["processes"])


@needs_bwrap
def test_a_sandboxed_step_past_its_timeout_is_stopped_with_all_its_processes(tmp_path, home):
    repo = make_repo(tmp_path / "repo")
    epic = write_epic(repo, '''
        [epic]
        name = "late"
        sandbox = true
        [[task]]
        id = "slow"
        timeout = "1s"
        command = 'sleep 313 & sleep 313'
        ''')
    engine = run_engine(epic, repo)
    view = engine.state.tasks["slow"]
    assert view.state == "failed" and "timed out" in view.reason
    assert not [process for process in psutil.process_iter(["cmdline"]) if process.info["cmdline"] == ["sleep", "313"]]


# ------------------------------------------------------------------ without bubblewrap


def _path_without_bwrap(tmp_path: Path) -> str:
    """A PATH holding git and nothing else: no bwrap on it."""
    folder = tmp_path / "no-bwrap"
    folder.mkdir()
    (folder / "git").symlink_to(shutil.which("git"))
    return str(folder)


def test_plan_refuses_a_sandbox_without_bubblewrap_in_one_line(tmp_path, cli, monkeypatch):
    (tmp_path / "waveui.toml").write_text('[epic]\nname = "x"\n\nsandbox = true\n[[task]]\nid = "a"\ncommand = "true"\n')
    monkeypatch.setenv("PATH", _path_without_bwrap(tmp_path))
    result = cli("plan")
    assert result.returncode == 2
    assert len(result.error_lines) == 1
    line = result.error_lines[0]
    assert line.startswith("waveui: error: waveui.toml:4: sandbox = true, but bubblewrap (bwrap) is not installed")
    assert "apt-get install bubblewrap" in line and "dnf install bubblewrap" in line
    (tmp_path / "waveui.toml").write_text('[epic]\nname = "x"\nsandbox = "auto"\n[[task]]\nid = "a"\ncommand = "true"\n')
    assert cli("plan").returncode == 0


def test_run_refuses_it_too_and_starts_nothing(tmp_path, cli, monkeypatch):
    repo = make_repo(tmp_path / "repo")
    (repo / "waveui.toml").write_text('[epic]\nname = "x"\n[[task]]\nid = "a"\nsandbox = true\n'
                                      'command = "echo ran > ran.txt"\n')
    monkeypatch.setenv("PATH", _path_without_bwrap(tmp_path))
    result = cli("run", "--headless", cwd=repo)
    assert result.returncode == 2
    assert result.error_lines == [result.error_lines[0]] and "waveui.toml:5: sandbox = true" in result.stderr
    assert not (repo / ".waveui").exists()


def test_auto_runs_unsandboxed_with_a_notice_where_bubblewrap_is_missing(tmp_path, home, monkeypatch):
    repo = make_repo(tmp_path / "repo")
    epic = write_epic(repo, '''
        [epic]
        name = "fallback"
        sandbox = "auto"
        [[task]]
        id = "a"
        command = "echo ran > ran.txt"
        ''')
    monkeypatch.setenv("PATH", _path_without_bwrap(tmp_path))
    engine = run_engine(epic, repo)
    assert engine.state.tasks["a"].state == "done"
    assert not engine.state.tasks["a"].sandboxed
    notices = [notice for notice in engine.state.notices if notice.kind == "sandbox"]
    assert len(notices) == 1 and "bubblewrap (bwrap) is not installed" in notices[0].text


# ------------------------------------------------------------------ the epic file


def test_sandbox_settings_are_read_with_task_overrides_and_bad_values_named_by_line():
    epic = spec.loads('[epic]\nname = "s"\nsandbox = "auto"\nsandbox_writable = ["~/.npm/"]\n'
                      '[[task]]\nid = "a"\nsandbox = true\nsandbox_network = false\nsandbox_writable = ["/opt/x"]\n'
                      '[[task]]\nid = "b"\n')
    a, b = epic.tasks
    assert epic.sandbox_of(a) == (True, False, ["~/.npm/", "/opt/x"])
    assert epic.sandbox_of(b) == ("auto", True, ["~/.npm/"])
    assert epic.sandbox_line == 7
    with pytest.raises(spec.SpecError) as refused:
        spec.loads('[epic]\nsandbox = "yes"\nsandbox_network = "no"\n[[task]]\nid = "a"\nsandbox_writable = ["rel/x"]\n')
    assert [str(problem) for problem in refused.value.problems] == [
        'waveui.toml:2: [epic] sandbox must be true, false or "auto", not \'yes\'',
        "waveui.toml:3: [epic] sandbox_network must be true or false, not string 'no'",
        "waveui.toml:6: task 'a': sandbox_writable holds 'rel/x': give absolute paths, or paths under ~/",
    ]


@needs_bwrap
def test_a_program_on_path_under_tmp_stays_runnable(tmp_path, home, monkeypatch):
    """A virtualenv under /tmp on PATH (a CI checkout, say) is not hidden by the sandbox's private /tmp."""
    repo = make_repo(tmp_path / "repo")
    tools = tmp_path / "venv" / "bin"
    tools.mkdir(parents=True)
    (tmp_path / "venv" / "lib").mkdir()
    (tmp_path / "venv" / "lib" / "greeting").write_text("hello from the venv\n")
    tool = tools / "greet"
    tool.write_text(f"#!/bin/sh\ncat {tmp_path / 'venv' / 'lib' / 'greeting'}\n")
    tool.chmod(0o755)
    epic = write_epic(repo, '''
        [epic]
        name = "onpath"
        sandbox = true
        [[task]]
        id = "greet"
        command = "greet > out.txt"
        ''')
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    engine = run_engine(epic, repo)
    assert state_of(engine, "greet").state == "done", state_of(engine, "greet").reason
    assert git(repo, "show", "waveui/onpath:out.txt") == "hello from the venv"
