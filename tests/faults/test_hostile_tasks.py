"""More hostile tasks and users: planted .git files, the shared stash, kept refs, broken slots, info files,
replace refs, a checkout's own attributes, the run folder deleted mid-run. Nothing of the user's is lost."""

from __future__ import annotations

import shutil
import subprocess

from tests.faults.helpers import final_state, finish, git, ledger_counts, make_repo, run, start, wait_for
from tests.faults.test_confinement import WRITE, checkout_state, dirty_checkout, epic, on_branch, succeeds, task

COMMON = "$(git rev-parse --path-format=absolute --git-common-dir)"


def test_a_git_file_planted_in_a_tracked_folder_never_lets_a_later_task_commit_onto_your_branch(tmp_path):
    repo = dirty_checkout(tmp_path)
    (repo / "src").mkdir()
    (repo / "src" / "a.py").write_text("a = 1\n")
    git(repo, "add", "src/a.py")
    git(repo, "commit", "-q", "-m", "src", "--", "src/a.py")
    git(repo, "add", "lib.py")  # staged again: the commit above took only src/a.py
    before = checkout_state(repo)
    plant = f'echo "a = 2" > src/a.py; echo "gitdir: {COMMON}" > src/.git'
    innocent = 'cd src && git add -A . && git commit -qm "an agent commits in src"; cd ..; echo b > b.txt'
    epic(repo, task("a", plant) + task("b", innocent, requires='["a"]'), parallel=1)
    run(repo)
    assert checkout_state(repo) == before  # main, HEAD, index, files: as they were
    aside = list((repo / ".waveui" / "worktrees" / "set-aside").glob("*/src/.git"))
    assert aside, "the planted .git was not set aside"


def test_a_task_moving_your_checked_out_branch_forward_stops_the_run(tmp_path):
    repo = dirty_checkout(tmp_path)
    before = checkout_state(repo)
    move = 'git add -A && git commit -qm agent && git update-ref refs/heads/main HEAD'
    epic(repo, task("a", f"{WRITE}; {move}") + task("later", WRITE, requires='["a"]'))
    code, out = run(repo)
    assert code != 0 and "refs/heads/main was moved forward" in out, out
    assert on_branch(repo, "waveui/conf", "out-later.txt") is None


def test_your_stash_popped_or_cleared_by_a_task_is_put_back(tmp_path):
    for sabotage in ("git stash pop", "git stash clear"):
        repo = make_repo(tmp_path / sabotage.replace(" ", "-"), {"README.md": "hi\n", "wip.txt": "old\n"})
        (repo / "wip.txt").write_text("my work in progress\n")
        git(repo, "stash", "push", "-q", "-m", "precious")
        stashed = git(repo, "rev-parse", "refs/stash")
        epic(repo, task("a", f"{sabotage}; {WRITE}") + task("later", WRITE, requires='["a"]'))
        code, out = run(repo)
        assert code != 0 and "stash list" in out, out
        assert git(repo, "rev-parse", "refs/stash") == stashed
        assert "precious" in git(repo, "stash", "list")


def test_kept_attempts_and_branches_a_task_deletes_are_put_back(tmp_path):
    repo = make_repo(tmp_path / "repo")
    fails = 'echo "precious failed work" > a.txt; exit 1'
    wipe = ('git for-each-ref --format="%(refname)" refs/waveui | while read r; do git update-ref -d "$r"; done; '
            f'git branch -D waveui/conf@a; {WRITE}')
    epic(repo, task("a", fails) + task("b", wipe, priority="-1"), parallel=1)
    code, out = run(repo)
    assert on_branch(repo, "refs/waveui/conf/a/1", "a.txt") == "precious failed work\n"
    assert succeeds(repo, "rev-parse", "--verify", "refs/heads/waveui/conf@a")
    assert "restored" in out


def test_a_slot_whose_head_names_no_commit_is_rebuilt(tmp_path):
    repo = make_repo(tmp_path / "repo")
    bad = (f'{WRITE}; [ "$WAVEUI_ATTEMPT" = 1 ] && '
           'echo 1111111111111111111111111111111111111111 > "$(git rev-parse --git-dir)/HEAD"; true')
    epic(repo, task("a", bad) + task("b", WRITE, requires='["a"]') + task("c", WRITE, requires='["b"]'),
         parallel=1, extra="retries = 1")
    code, out = run(repo)
    assert code == 0, out
    assert on_branch(repo, "refs/waveui/conf/a/1", "out-a.txt") == "a\n"  # the broken attempt's work kept
    for name in ("a", "b", "c"):
        assert on_branch(repo, "waveui/conf", f"out-{name}.txt") == f"{name}\n"
    assert subprocess.run(["git", "-C", str(repo), "gc", "-q"], capture_output=True).returncode == 0


def test_info_exclude_and_attributes_a_task_writes_are_reverted(tmp_path):
    repo = make_repo(tmp_path / "repo", {"README.md": "hi\n", "f.txt": "line1\nline2\n"})
    poison = (f'echo "*" >> "{COMMON}/info/exclude"; echo "* merge=union" >> "{COMMON}/info/attributes"; '
              f"{WRITE}")
    epic(repo, task("a", poison) + task("b", WRITE, requires='["a"]'), parallel=1)
    code, out = run(repo)
    assert code == 0, out
    assert on_branch(repo, "waveui/conf", "out-b.txt") == "b\n"  # not hidden by the planted "*"
    assert "*" not in (repo / ".git" / "info" / "exclude").read_text().splitlines()
    assert not (repo / ".git" / "info" / "attributes").exists()


def test_a_replace_ref_a_task_makes_is_set_aside(tmp_path):
    repo = make_repo(tmp_path / "repo", {"README.md": "hi\n", "f.txt": "honest\n"})
    evil = 'git replace "$(git rev-parse HEAD:f.txt)" "$(echo EVIL | git hash-object -w --stdin)"'
    epic(repo, task("a", f"{evil}; {WRITE}"))
    code, out = run(repo)
    assert git(repo, "show", "main:f.txt") == "honest"
    assert git(repo, "for-each-ref", "refs/replace/") == ""
    assert git(repo, "for-each-ref", "--format=%(refname)", "refs/waveui/conf/set-aside/")


def test_attributes_in_your_checkout_never_shape_waveuis_merges(tmp_path):
    repo = make_repo(tmp_path / "repo", {"README.md": "hi\n", "f.txt": "line1\nline2\n"})
    (repo / ".gitattributes").write_text("f.txt merge=union\n")  # untracked, in the user's checkout
    edit = "sed -i \"1s/.*/$WAVEUI_TASK_ID/\" f.txt"
    epic(repo, task("a", edit) + task("b", edit), extra='conflicts = "defer"')
    code, out = run(repo)
    states = {t.id: t.state for t in final_state(repo).tasks.values()}
    assert sorted(states.values()) == ["conflicted", "done"], states


def test_the_run_folder_deleted_mid_run_reruns_no_command(tmp_path):
    ledger = tmp_path / "ledger"
    repo = make_repo(tmp_path / "repo")
    epic(repo, task("a", f"sleep 2; {WRITE}; echo a >> {ledger}") + task("b", f"sleep 2; {WRITE}; echo b >> {ledger}"))
    process = start(repo)
    runs = repo / ".waveui" / "runs"
    assert wait_for(lambda: any(runs.glob("*/logs/*.running.pid")), timeout=60)
    shutil.rmtree(runs)
    out = finish(process)
    assert "killed by signal" not in out, out
    code, out = run(repo)
    code, out = run(repo) if code != 0 else (code, out)
    assert ledger_counts(ledger) == {"a": 1, "b": 1}, out
    assert on_branch(repo, "waveui/conf", "out-a.txt") == "a\n"
    assert on_branch(repo, "waveui/conf", "out-b.txt") == "b\n"


def test_files_a_task_leaves_that_git_ignores_are_named_before_they_are_cleaned(tmp_path):
    repo = make_repo(tmp_path / "repo", {"README.md": "hi\n", ".gitignore": "NOTES.md\n__pycache__/\n"})
    # .pytest_cache is how pytest leaves its cache: a folder git ignores file by file through its own .gitignore.
    cache = "mkdir -p .pytest_cache/v && echo '*' > .pytest_cache/.gitignore && touch .pytest_cache/v/x"
    epic(repo, task("a", f"echo notes > NOTES.md; mkdir -p __pycache__; touch __pycache__/x.pyc; {cache}; {WRITE}"),
         extra='setup = "echo dep > dep.txt"')
    code, out = run(repo)
    assert code == 0, out
    assert "left files git ignores (NOTES.md)" in out  # a cache folder is expected, a file may be work
    assert "setup left files git does not ignore (dep.txt)" in out


def test_a_task_switching_your_checkouts_head_is_put_back(tmp_path):
    repo = dirty_checkout(tmp_path)
    git(repo, "branch", "side")
    blob = subprocess.run(["git", "-C", str(repo), "hash-object", "-w", "--stdin"], input="side\n",
                          capture_output=True, text=True, check=True).stdout.strip()
    listing = git(repo, "ls-tree", "HEAD") + f"\n100644 blob {blob}\tside.txt\n"
    tree = subprocess.run(["git", "-C", str(repo), "mktree"], input=listing, capture_output=True, text=True,
                          check=True).stdout.strip()
    side = git(repo, "commit-tree", tree, "-p", "HEAD", "-m", "elsewhere")
    git(repo, "update-ref", "refs/heads/side", side)  # another commit: the switch shows in the checkout
    before = checkout_state(repo)
    switch = f'git --git-dir="{COMMON}" symbolic-ref HEAD refs/heads/side; {WRITE}'
    epic(repo, task("a", switch) + task("later", WRITE, requires='["a"]'))
    code, out = run(repo)
    assert code != 0 and "HEAD was switched" in out, out
    assert checkout_state(repo) == before  # on main again, nothing of the user's changed


def test_you_switching_branch_in_your_checkout_meanwhile_is_fine(tmp_path):
    repo = make_repo(tmp_path / "repo")
    git(repo, "checkout", "-q", "-b", "side")
    (repo / "side.txt").write_text("side\n")
    git(repo, "add", "side.txt")
    git(repo, "commit", "-q", "-m", "side")
    git(repo, "checkout", "-q", "main")
    epic(repo, task("t1", f"sleep 1; {WRITE}") + task("t2", f"sleep 1; {WRITE}", requires='["t1"]'))
    process = start(repo)
    assert wait_for(lambda: (repo / ".waveui" / "worktrees").exists(), timeout=60)
    git(repo, "checkout", "-q", "side")
    finish(process)
    assert process.returncode == 0
    assert git(repo, "symbolic-ref", "--short", "HEAD") == "side"
