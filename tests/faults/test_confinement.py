"""Hostile tasks and users against the user's checkout: every git command confined, nothing lost.

Each scenario runs the real `waveui run --headless` in a real repository whose
checkout holds uncommitted work of every kind (staged, modified, untracked, a
stash of HEAD's branch), then checks that every byte of it is still there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults.helpers import final_state, finish, git, make_repo, run, start, wait_for, write_epic


def dirty_checkout(tmp_path: Path, name: str = "repo") -> Path:
    """A repository on main with staged, modified and untracked work in its checkout."""
    repo = make_repo(tmp_path / name, {"README.md": "hello\n", "app.py": "x = 1\n", "lib.py": "y = 1\n"})
    (repo / "app.py").write_text("x = 2  # modified, not staged\n")
    (repo / "lib.py").write_text("y = 2  # staged\n")
    git(repo, "add", "lib.py")
    (repo / "notes.txt").write_text("untracked notes\n")
    return repo


def checkout_state(repo: Path) -> dict:
    """Everything of the user's that a run must leave exactly as it was."""
    return {
        "head": git(repo, "symbolic-ref", "HEAD"),
        "main": git(repo, "rev-parse", "refs/heads/main"),
        "status": git(repo, "status", "--porcelain=v1", "--untracked-files=all", "--", ".", ":!waveui.toml"),
        "staged": git(repo, "diff", "--cached"),
        "unstaged": git(repo, "diff"),
        "files": {p: (repo / p).read_text() for p in ("README.md", "app.py", "lib.py", "notes.txt")},
    }


def epic(repo: Path, tasks: str, name: str = "conf", extra: str = "", parallel: int = 2) -> None:
    write_epic(repo, f"""
        [epic]
        name = "{name}"
        max_parallel = {parallel}
        adaptive = false
        {extra}
        {tasks}
        """)


WRITE = 'echo "$WAVEUI_TASK_ID" > "out-$WAVEUI_TASK_ID.txt"'


def task(task_id: str, command: str, **fields: str) -> str:
    rest = "".join(f"\n{k} = {v}" for k, v in fields.items())
    return f"[[task]]\nid = \"{task_id}\"\ncommand = '''{command}'''{rest}\n"


def succeeds(repo: Path, *args: str) -> bool:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True).returncode == 0


def on_branch(repo: Path, ref: str, path: str) -> str | None:
    found = subprocess.run(["git", "-C", str(repo), "show", f"{ref}:{path}"], capture_output=True, text=True)
    return found.stdout if found.returncode == 0 else None


# ----------------------------------------------------------- 1. confinement

@pytest.mark.parametrize("sabotage", [
    'rm -rf "$WAVEUI_WORKTREE"',  # the task deletes its own worktree
    'rm -f "$WAVEUI_WORKTREE/.git"',  # ... or only its .git file: git would search upward into the user's
    'rm -f "$WAVEUI_WORKTREE/.git"; git init -q "$WAVEUI_WORKTREE"',  # ... and makes it another repository
    'rm -f .git; ln -s "$(git rev-parse --path-format=absolute --git-common-dir)" .git',  # ... a link to the shared one
])
def test_a_task_breaking_its_worktree_never_touches_the_users_checkout(tmp_path, sabotage):
    repo = dirty_checkout(tmp_path)
    epic(repo, task("good", WRITE) + task("bad", f'{WRITE}; if [ "$WAVEUI_ATTEMPT" = 1 ]; then {sabotage}; fi') + task("after", WRITE, requires='["bad"]'))
    before = checkout_state(repo)
    code, out = run(repo)
    assert checkout_state(repo) == before, out
    state = final_state(repo)
    assert state.tasks["good"].state == "done"
    assert state.tasks["bad"].state == "failed" and "worktree" in state.tasks["bad"].reason
    assert on_branch(repo, "waveui/conf", "out-good.txt") == "good\n"
    assert "Traceback" not in out and code != 0
    # The broken slot was set aside or rebuilt, never used through the checkout: a new run finishes the rest.
    code, out = run(repo)
    assert code == 0, out
    assert checkout_state(repo) == before
    assert on_branch(repo, "waveui/conf", "out-after.txt") == "after\n"


def test_the_user_deleting_worktrees_mid_run_loses_nothing_of_theirs(tmp_path):
    repo = dirty_checkout(tmp_path)
    epic(repo, "".join(task(f"t{i}", f"sleep 1; {WRITE}") for i in range(4)), extra="retries = 1")
    before = checkout_state(repo)
    process = start(repo)
    slots = repo / ".waveui" / "worktrees"
    assert wait_for(lambda: any(slots.glob("slot-*/.git")), timeout=60)
    for slot in slots.glob("slot-*"):
        shutil.rmtree(slot, ignore_errors=True)
    finish(process)
    assert checkout_state(repo) == before
    run(repo)  # what failed is retried on rebuilt slots
    assert checkout_state(repo) == before
    for i in range(4):
        assert on_branch(repo, "waveui/conf", f"out-t{i}.txt") == f"t{i}\n"


def test_git_variables_in_the_callers_environment_redirect_nothing(tmp_path):
    """GIT_DIR, GIT_WORK_TREE and GIT_INDEX_FILE exported by the user's shell (or a hook) are not inherited."""
    repo = dirty_checkout(tmp_path)
    other = make_repo(tmp_path / "other", {"other.txt": "other\n"})
    other_refs = git(other, "for-each-ref")
    index = tmp_path / "stray-index"
    # The task's own git must also act on its worktree, not on the exported repository.
    epic(repo, task("t1", f'{WRITE}; git add -A && git commit -qm "agent commit"') + task("t2", WRITE))
    before = checkout_state(repo)
    env = {**os.environ, "GIT_DIR": str(other / ".git"), "GIT_WORK_TREE": str(other),
           "GIT_INDEX_FILE": str(index)}
    code, out = run(repo, env=env)
    assert code == 0, out
    assert git(other, "for-each-ref") == other_refs and git(other, "status", "--porcelain") == ""
    assert not index.exists()
    assert checkout_state(repo) == before
    assert on_branch(repo, "waveui/conf", "out-t1.txt") == "t1\n"
    assert on_branch(repo, "waveui/conf", "out-t2.txt") == "t2\n"


def test_a_repository_path_is_never_expanded(tmp_path):
    """A folder literally named ``$OTHER`` or ``~`` is that folder, not what the variable or home names."""
    decoy = make_repo(tmp_path / "decoy", {"decoy.txt": "decoy\n"})
    decoy_refs = git(decoy, "for-each-ref")
    for literal in ("$OTHER", "~"):
        repo = dirty_checkout(tmp_path / literal)
        epic(repo, task("t1", WRITE))
        env = {**os.environ, "OTHER": str(decoy), "HOME": str(decoy)}
        code, out = run(repo, env=env)
        assert code == 0, out
        assert on_branch(repo, "waveui/conf", "out-t1.txt") == "t1\n"
    assert git(decoy, "for-each-ref") == decoy_refs


# ------------------------------------------------------ 2. branches and refs

@pytest.mark.parametrize("moves", [
    "git checkout -q -b elsewhere",  # switches branch, then edits
    "git checkout -q --detach",  # detaches HEAD, then edits
])
@pytest.mark.parametrize("commits", [True, False])
def test_work_done_on_another_branch_or_a_detached_head_is_merged(tmp_path, moves, commits):
    repo = make_repo(tmp_path / "repo")
    then = f'; git add -A && git commit -qm "agent"' if commits else ""
    epic(repo, task("t1", f"{moves}; {WRITE}{then}"))
    code, out = run(repo)
    assert code == 0, out
    assert on_branch(repo, "waveui/conf", "out-t1.txt") == "t1\n"
    assert final_state(repo).tasks["t1"].state == "done"


def test_a_task_on_an_unrelated_branch_fails_and_its_work_is_kept(tmp_path):
    repo = make_repo(tmp_path / "repo")
    git(repo, "checkout", "-q", "--orphan", "island")
    git(repo, "commit", "-q", "--allow-empty", "-m", "unrelated")
    git(repo, "checkout", "-q", "main")
    epic(repo, task("t1", f"git checkout -q island; {WRITE}"))
    code, out = run(repo)
    state = final_state(repo)
    assert state.tasks["t1"].state == "failed" and "not built on" in state.tasks["t1"].reason
    kept = git(repo, "for-each-ref", "--format=%(refname)", "refs/waveui/conf/t1/")
    assert any(on_branch(repo, ref, "out-t1.txt") == "t1\n" for ref in kept.split())


@pytest.mark.parametrize("move", [
    'git update-ref refs/heads/waveui/conf "$(git rev-parse main)"',  # the integration branch, moved back
    "git update-ref refs/heads/side HEAD",  # a branch of the user's, not checked out
    "git tag -d v1",  # the user's tag
    "git update-ref -d refs/heads/side",
])
def test_a_task_moving_refs_stops_the_run(tmp_path, move):
    repo = make_repo(tmp_path / "repo")
    git(repo, "branch", "side")
    git(repo, "tag", "v1")
    epic(repo, task("first", WRITE) + task("mover", f"{WRITE}; {move}", requires='["first"]')
         + task("later", WRITE, requires='["mover"]'))
    code, out = run(repo)
    assert code != 0 and "Traceback" not in out
    assert "by something other than waveui" in out or "deleted during the run" in out, out
    assert on_branch(repo, "waveui/conf", "out-later.txt") is None  # nothing built beside the move


def test_the_user_committing_on_their_branch_meanwhile_is_fine(tmp_path):
    repo = make_repo(tmp_path / "repo")
    epic(repo, task("t1", f"sleep 1; {WRITE}") + task("t2", f"sleep 1; {WRITE}", requires='["t1"]'))
    process = start(repo)
    assert wait_for(lambda: (repo / ".waveui" / "worktrees").exists(), timeout=60)
    (repo / "mine.txt").write_text("mine\n")
    git(repo, "add", "mine.txt")
    git(repo, "commit", "-q", "-m", "the user goes on working")
    assert finish(process) is not None and process.returncode == 0


def test_hooks_and_config_a_task_plants_are_reverted_and_never_run(tmp_path):
    repo = make_repo(tmp_path / "repo")
    marker = tmp_path / "hook-ran"
    hook = f"#!/bin/sh\ntouch {marker}\n"
    plant = ('common=$(git rev-parse --path-format=absolute --git-common-dir); '
             f"printf '{hook}' > \"$common/hooks/post-commit\"; chmod +x \"$common/hooks/post-commit\"; "
             f"mkdir -p {tmp_path}/evil; printf '{hook}' > {tmp_path}/evil/pre-commit; "
             f"chmod +x {tmp_path}/evil/pre-commit; git config core.hooksPath {tmp_path}/evil; "
             f"git config core.fsmonitor 'touch {marker}'")
    epic(repo, task("planter", f"{plant}; {WRITE}") + task("next", WRITE, requires='["planter"]'))
    code, out = run(repo)
    assert code == 0, out
    assert not marker.exists()  # waveui's own commits and merges ran none of it
    assert succeeds(repo, "config", "--get", "core.hooksPath") is False
    assert not (repo / ".git" / "hooks" / "post-commit").exists()
    assert "reverted" in out
    kept = list((repo / ".waveui" / "set-aside").iterdir())
    assert any("post-commit" in p.name for p in kept) and any(p.name.startswith("config") for p in kept)
    (repo / "u.txt").write_text("u\n")
    git(repo, "add", "u.txt")
    git(repo, "commit", "-q", "-m", "the user's own commit")
    assert not marker.exists()  # and none of it runs in the user's git either


def test_an_integration_branch_rewritten_between_runs_is_refused_moved_forward_is_built_on(tmp_path):
    repo = make_repo(tmp_path / "repo")
    epic(repo, task("t1", WRITE) + task("t2", f"sleep 30; {WRITE}"))
    process = start(repo)
    assert wait_for(lambda: on_branch(repo, "waveui/conf", "out-t1.txt") is not None, timeout=60)
    process.terminate()  # SIGTERM: t2 stopped, the run resumable
    finish(process)
    merged = git(repo, "rev-parse", "waveui/conf")
    git(repo, "update-ref", "refs/heads/waveui/conf", "main")  # the user rewrites it back
    epic(repo, task("t1", WRITE) + task("t2", WRITE))
    done = subprocess.run([sys.executable, "-m", "waveui", "run", "--headless"], cwd=repo, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "was rewritten since the last run" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert git(repo, "rev-parse", "waveui/conf") == git(repo, "rev-parse", "main")  # nothing written
    # Put back and moved forward by hand: built upon.
    forward = git(repo, "commit-tree", f"{merged}^{{tree}}", "-p", merged, "-m", "a merge by hand")
    git(repo, "update-ref", "refs/heads/waveui/conf", forward)
    code, out = run(repo)
    assert code == 0, out
    assert succeeds(repo, "merge-base", "--is-ancestor", forward, "waveui/conf")
    assert on_branch(repo, "waveui/conf", "out-t2.txt") == "t2\n"


# ------------------------------------------------ 5. finished work is kept

def test_a_merge_that_must_wait_is_not_a_rerun(tmp_path):
    """The user checks the integration branch out to look at it: the merge waits, the command never reruns."""
    repo = make_repo(tmp_path / "repo")
    ledger = tmp_path / "ledger"
    epic(repo, task("t1", WRITE) + task("t2", f'sleep 2; {WRITE}; echo t2 >> {ledger}', requires='["t1"]'))
    look = tmp_path / "look"
    process = start(repo)
    assert wait_for(lambda: on_branch(repo, "waveui/conf", "out-t1.txt") is not None, timeout=60)
    git(repo, "worktree", "add", "-q", str(look), "waveui/conf")
    assert wait_for(lambda: "waiting to merge" in (final_state(repo).tasks["t2"].reason or ""), timeout=60)
    git(look, "checkout", "-q", "--detach")
    finish(process)
    assert process.returncode == 0
    assert ledger.read_text() == "t2\n"
    assert on_branch(repo, "waveui/conf", "out-t2.txt") == "t2\n"


# ------------------------------------------------------- 6. nothing leaks

def test_nothing_a_task_leaves_reaches_the_next_but_what_setup_installed(tmp_path):
    """Ignored files, build output and repositories a task made are gone before the next task; setup's stay."""
    repo = make_repo(tmp_path / "repo", {".gitignore": "node_modules/\nbuild/\n*.log\n", "README.md": "hi\n"})
    leave = ("mkdir -p build nested && echo junk > build/out.o && echo debug > debug.log "
             "&& git init -q nested && echo n > nested/n.txt")
    look = ('for p in build/out.o debug.log nested/n.txt; do [ -e "$p" ] && echo "$p" >> leaked.txt; done; '
            f"[ -e node_modules/dep.js ] && echo kept > kept.txt; {WRITE}")
    epic(repo, task("a", f"{leave}; {WRITE}") + task("b", look, requires='["a"]'), parallel=1,
         extra='setup = "mkdir -p node_modules && echo dep > node_modules/dep.js"')
    code, out = run(repo)
    assert code == 0, out
    assert on_branch(repo, "waveui/conf", "leaked.txt") is None
    assert on_branch(repo, "waveui/conf", "kept.txt") == "kept\n"
    assert on_branch(repo, "waveui/conf", "nested/n.txt") is None  # never committed as a gitlink or files
    aside = list((repo / ".waveui" / "worktrees" / "set-aside").glob("*/nested/n.txt"))
    assert [p.read_text() for p in aside] == ["n\n"]  # set aside, not deleted


def test_every_attempt_is_kept_under_its_own_ref(tmp_path):
    repo = make_repo(tmp_path / "repo")
    epic(repo, task("t1", 'echo "try $WAVEUI_ATTEMPT" > work.txt; [ "$WAVEUI_ATTEMPT" = 2 ]', retries="1"),
         extra="")
    code, out = run(repo)
    assert code == 0, out
    assert on_branch(repo, "refs/waveui/conf/t1/1", "work.txt") == "try 1\n"  # the failed one
    assert on_branch(repo, "refs/waveui/conf/t1/2", "work.txt") == "try 2\n"
    assert on_branch(repo, "waveui/conf", "work.txt") == "try 2\n"


