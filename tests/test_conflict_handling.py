"""Failures and conflicts finished: every attempt kept and told to the next, conflicts retried or resolved, ordering
that never blocks, blame that names who changed a file. Real repositories, real commands, real conflicts."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from pathlib import Path

from waveui.engine.engine import Engine, RunOptions
from waveui.run.events import AttemptKept, Notice, TaskStateChanged
from waveui.run.journal import read_events

from engine_helpers import git, make_repo, run_engine, write_epic

# Two tasks that rewrite the same line of the same file: whichever merges second conflicts.
SAME_LINE = {"notes.txt": "one\ntwo\nthree\n"}


def script(path: Path, text: str) -> Path:
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def journal_of(engine: Engine) -> list:
    return read_events(engine.run_dir / "events.jsonl")


def spans(events, task: str, attempt: int) -> tuple[float, float]:
    """When an attempt of a task started and ended, from the journal."""
    times = [e.t for e in events if isinstance(e, TaskStateChanged) and e.task == task and e.attempt == attempt]
    return min(times), max(times)


# ------------------------------------------------------------ attempts kept and told


def test_a_failed_verify_keeps_the_attempt_and_the_retry_is_told_of_it(tmp_path):
    repo = make_repo(tmp_path / "repo")
    told = tmp_path / "told.txt"
    epic = write_epic(repo, f'''
        [epic]
        name = "kept"
        retries = 1
        [[task]]
        id = "fix"
        command = """
        if [ -n "$WAVEUI_PREVIOUS_ATTEMPT" ]; then
          cat "$WAVEUI_PREVIOUS_ATTEMPT_FILE" > {told}; echo "ref=$WAVEUI_PREVIOUS_ATTEMPT" >> {told}
          printf '%s\\n' "$WAVEUI_PROMPT" >> {told}; echo fixed > f.txt
        else
          echo half-done > f.txt
        fi
        """
        verify = "grep -q fixed f.txt || {{ echo VERIFY-SAYS-NOT-FIXED; exit 1; }}"
        ''')
    engine = run_engine(epic, repo)
    assert engine.state.tasks["fix"].state == "done"
    first = engine.state.tasks["fix"].attempts[0]
    assert first.ref == "refs/waveui/kept/fix/1"
    assert git(repo, "show", f"{first.ref}:f.txt") == "half-done"  # the failed attempt's work, as it was left
    brief = told.read_text()
    assert "VERIFY-SAYS-NOT-FIXED" in brief  # its verify output
    assert "+half-done" in brief  # its diff
    assert "ref=refs/waveui/kept/fix/1" in brief
    assert "Note from waveui: attempt 1 of this task ended" in brief  # told in the prompt as well
    assert git(repo, "show", "waveui/kept:f.txt") == "fixed"
    kept = [e for e in journal_of(engine) if isinstance(e, AttemptKept)]
    assert [e.attempt for e in kept] == [1, 2]  # the merged attempt is kept too


def test_a_retry_can_go_on_from_a_kept_attempt(tmp_path):
    repo = make_repo(tmp_path / "repo")
    epic = write_epic(repo, '''
        [epic]
        name = "goon"
        [[task]]
        id = "step"
        command = "echo attempt-$WAVEUI_ATTEMPT >> progress.txt"
        verify = "test $(wc -l < progress.txt) -ge 2"
        ''')
    engine = Engine(epic, repo, RunOptions(backoff=0.05, grace=0.5, sample_seconds=0.2))

    def retry_once(event):
        if isinstance(event, TaskStateChanged) and event.state == "failed" and event.attempt == 1:
            asyncio.get_running_loop().call_soon(engine.retry, "step", 1)

    engine.options.listeners.append(retry_once)
    asyncio.run(engine.run())
    assert engine.state.tasks["step"].state == "done"
    # The second attempt started from the first one's work, not from the tip.
    assert git(repo, "show", "waveui/goon:progress.txt").splitlines() == ["attempt-1", "attempt-2"]


# ------------------------------------------------------------ ordering is not dependency


def test_a_serialised_task_runs_when_the_earlier_one_fails_and_blocked_reasons_name_the_root(tmp_path):
    repo = make_repo(tmp_path / "repo", {"CHANGELOG.md": "# changes\n"})
    epic = write_epic(repo, '''
        [epic]
        name = "order"
        conflicts = "serialise"
        max_parallel = 2
        [[task]]
        id = "first"
        affected_files = ["CHANGELOG.md"]
        command = "exit 3"
        [[task]]
        id = "second"
        affected_files = ["CHANGELOG.md"]
        command = "echo second >> CHANGELOG.md"
        [[task]]
        id = "needs-first"
        requires = ["first"]
        command = "echo x > x.txt"
        [[task]]
        id = "needs-that"
        requires = ["needs-first"]
        command = "echo y > y.txt"
        ''')
    engine = run_engine(epic, repo)
    tasks = engine.state.tasks
    assert tasks["first"].state == "failed"
    assert tasks["second"].state == "done"  # ordered after "first" for CHANGELOG.md only: it still runs
    assert tasks["second"].after == ["first"] and tasks["second"].requires == []
    starts = [e.reason for e in journal_of(engine)
              if isinstance(e, TaskStateChanged) and e.task == "second" and e.state == "preparing"]
    assert "first failed; only ordered before it for CHANGELOG.md" in starts[0]
    assert tasks["needs-first"].reason == "waiting on first, which failed"
    assert tasks["needs-that"].reason == "waiting on first, which failed (through needs-first)"


# ------------------------------------------------------------ on_conflict = "retry"


def once_merged(repo: Path, epic: str, task: str) -> str:
    """A shell command that waits until ``task`` is merged: a later task then conflicts, whatever the load."""
    return f"until git -C {repo} log --format=%s waveui/{epic} -- 2>/dev/null | grep -q '^waveui: {task}$'; do sleep 0.05; done"


def _same_line_epic(repo: Path, name: str, tasks: list[str], extra: str = "", stagger: bool = False) -> object:
    """Tasks that rewrite the same line; with ``stagger`` each after the first finishes once the first merged."""
    wait = f" && {once_merged(repo, name, tasks[0])}" if stagger else ""
    rows = "\n".join(f'''
        [[task]]
        id = "{task}"
        command = "sed -i 's/^two.*$/two by {task}/' notes.txt{wait if i else ''}"
        ''' for i, task in enumerate(tasks))
    return write_epic(repo, f'''
        [epic]
        name = "{name}"
        max_parallel = {len(tasks)}
        {extra}
        ''' + rows)


def test_retry_reruns_a_conflicted_task_from_the_new_tip_and_never_beside_its_rivals(tmp_path):
    repo = make_repo(tmp_path / "repo", SAME_LINE)
    epic = _same_line_epic(repo, "rerun", ["a", "b", "c"], 'on_conflict = "retry"', stagger=True)
    engine = run_engine(epic, repo)
    tasks = engine.state.tasks
    assert all(t.state == "done" for t in tasks.values()), {t.id: t.reason for t in tasks.values()}
    rerun = [t.id for t in tasks.values() if t.attempt == 2]
    assert sorted(rerun) == ["b", "c"]  # both conflicted with a's merge
    events = journal_of(engine)
    first, second = sorted((spans(events, task, 2) for task in rerun))
    assert first[1] <= second[0]  # the reruns did not overlap: they would only have conflicted again
    reasons = [e.reason for e in events if isinstance(e, TaskStateChanged) and e.task == "b" and e.state == "pending"]
    assert any("merge conflict in notes.txt with a" in r and "rerunning from the new tip" in r for r in reasons)


# ------------------------------------------------------------ on_conflict = "resolve"


def _resolver_epic(repo: Path, resolver: Path, verify: str = "true") -> object:
    return _same_line_epic(repo, "solve", ["a", "b"], f'on_conflict = "resolve"\nresolve = "{resolver}"\n'
                                                      f'verify = "{verify}"', stagger=True)


KEEP_BOTH = """
for f in $WAVEUI_CONFLICT_FILES; do
  grep -v -e '^<<<<<<<' -e '^=======' -e '^>>>>>>>' "$f" > "$f.tmp" && mv "$f.tmp" "$f"
done
"""


def test_a_resolver_that_resolves_gets_the_task_merged(tmp_path):
    repo = make_repo(tmp_path / "repo", SAME_LINE)
    engine = run_engine(_resolver_epic(repo, script(tmp_path / "keep-both", KEEP_BOTH)), repo)
    tasks = engine.state.tasks
    assert tasks["b"].state == "done", tasks["b"].reason
    assert "resolved by `resolve`" in tasks["b"].reason
    lines = git(repo, "show", "waveui/solve:notes.txt").splitlines()
    assert "two by a" in lines and "two by b" in lines


def test_a_resolver_that_leaves_markers_leaves_the_task_conflicted(tmp_path):
    repo = make_repo(tmp_path / "repo", SAME_LINE)
    engine = run_engine(_resolver_epic(repo, script(tmp_path / "idle", "exit 0\n")), repo)
    b = engine.state.tasks["b"]
    assert b.state == "conflicted"
    assert "merge conflict in notes.txt with a" in b.reason and "conflict markers are left" in b.reason
    assert "<<<<<<<" not in git(repo, "show", "waveui/solve:notes.txt")


def test_a_resolution_whose_verify_fails_is_not_merged(tmp_path):
    repo = make_repo(tmp_path / "repo", SAME_LINE)
    resolver = script(tmp_path / "keep-both", KEEP_BOTH)
    engine = run_engine(_resolver_epic(repo, resolver, verify="! grep -q 'two by a' notes.txt || ! grep -q 'two by b' notes.txt"), repo)
    b = engine.state.tasks["b"]
    assert b.state == "conflicted"
    assert "verify of the resolved merge failed" in b.reason
    assert "two by b" not in git(repo, "show", "waveui/solve:notes.txt")


# ------------------------------------------------------------ by hand


def _conflicted_run(tmp_path) -> tuple[Path, Engine]:
    repo = make_repo(tmp_path / "repo", SAME_LINE)
    epic = _same_line_epic(repo, "hand", ["a", "b"], stagger=True)
    (repo / "waveui.toml").write_text((repo / "waveui.toml").read_text() + '''
[[task]]
id = "after-b"
requires = ["b"]
command = "echo after > after.txt"
''')
    from waveui.core import spec

    engine = run_engine(spec.load(repo / "waveui.toml"), repo)
    assert engine.state.tasks["b"].state == "conflicted"
    assert engine.state.tasks["after-b"].state == "blocked"
    return repo, engine


def waveui(repo: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "waveui", *args], cwd=repo, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def test_waveui_resolve_by_hand_then_the_run_goes_on(tmp_path):
    repo, _ = _conflicted_run(tmp_path)
    shown = waveui(repo, "resolve", "b", "--print")
    assert shown.returncode == 0, shown.stderr
    where = Path(shown.stdout.strip())
    assert "<<<<<<<" in (where / "notes.txt").read_text()
    (where / "notes.txt").write_text("one\ntwo by a and b\nthree\n")
    git(where, "add", "notes.txt")
    done = waveui(repo, "resolve", "b", "--print")
    assert done.returncode == 0 and "b resolved" in done.stdout, done.stderr
    again = waveui(repo, "run", "--headless")
    assert again.returncode == 0, again.stdout + again.stderr
    assert git(repo, "show", "waveui/hand:notes.txt") == "one\ntwo by a and b\nthree"
    assert git(repo, "show", "waveui/hand:after.txt") == "after"


def test_waveui_resolve_opens_the_users_shell_there(tmp_path):
    repo, _ = _conflicted_run(tmp_path)
    shell = script(tmp_path / "user-shell", 'printf "one\\nboth\\nthree\\n" > notes.txt\n'
                                           'git add notes.txt && git commit -q -m "resolved by me"\n')
    done = waveui(repo, "resolve", "b", env={"SHELL": str(shell)})
    assert done.returncode == 0, done.stderr
    assert "committed by the resolver" in done.stdout
    unresolved = waveui(repo, "resolve", "a")
    assert unresolved.returncode == 2 and "a is not in conflict (it is done)" in unresolved.stderr


def test_a_conflict_merged_outside_waveui_is_done_and_never_rerun(tmp_path):
    repo, engine = _conflicted_run(tmp_path)
    b = engine.state.tasks["b"]
    outside = tmp_path / "outside"
    git(repo, "worktree", "add", "-q", str(outside), "waveui/hand")
    merging = subprocess.run(["git", "-C", str(outside), "merge", "-q", b.commit], capture_output=True)
    assert merging.returncode == 1  # the same conflict, met by the user
    (outside / "notes.txt").write_text("one\ntwo, merged by hand\nthree\n")
    git(outside, "commit", "-q", "-am", "merged b by hand")
    git(repo, "worktree", "remove", str(outside))
    again = waveui(repo, "run", "--headless")
    assert again.returncode == 0, again.stdout + again.stderr
    final = read_events(engine.run_dir / "events.jsonl")
    b_states = [e for e in final if isinstance(e, TaskStateChanged) and e.task == "b"]
    assert b_states[-1].state == "done" and "merged outside waveui" in b_states[-1].reason
    assert max(e.attempt for e in b_states) == 1  # never run again
    assert git(repo, "show", "waveui/hand:notes.txt") == "one\ntwo, merged by hand\nthree"


# ------------------------------------------------------------ blame


def test_a_conflict_names_the_task_that_changed_the_file_without_declaring_it(tmp_path):
    repo = make_repo(tmp_path / "repo", SAME_LINE)
    epic = write_epic(repo, f'''
        [epic]
        name = "blame"
        max_parallel = 2
        [[task]]
        id = "culprit"
        affected_files = ["other.txt"]
        command = "sed -i 's/^two$/two by culprit/' notes.txt && echo x > other.txt"
        [[task]]
        id = "honest"
        affected_files = ["notes.txt"]
        command = "sed -i 's/^two$/two by honest/' notes.txt && {once_merged(repo, "blame", "culprit")}"
        ''')
    engine = run_engine(epic, repo)
    honest = engine.state.tasks["honest"]
    assert honest.state == "conflicted"
    assert "merge conflict in notes.txt with culprit (culprit did not declare it)" in honest.reason
    assert "honest did not declare" not in honest.reason
    assert engine.state.undeclared() == {"culprit": ["notes.txt"]}


def test_waveui_resolve_beside_a_live_run_hands_the_merge_to_it(tmp_path):
    """The run is still open (a user at the app): `waveui resolve` leaves the merge, the run merges it and goes on."""
    repo = make_repo(tmp_path / "repo", SAME_LINE)
    epic = _same_line_epic(repo, "live", ["a", "b"], stagger=True)
    engine = Engine(epic, repo, RunOptions(backoff=0.05, grace=0.5, sample_seconds=0.2, stay_open=True))
    outcome = {}

    def resolve_by_hand() -> None:
        shown = waveui(repo, "resolve", "b", "--print")
        where = Path(shown.stdout.strip())
        (where / "notes.txt").write_text("one\ntwo by both\nthree\n")
        git(where, "add", "notes.txt")
        outcome["handed"] = waveui(repo, "resolve", "b", "--print")

    def user(event):
        if isinstance(event, Notice) and event.kind == "idle":
            loop = asyncio.get_running_loop()
            if engine.state.tasks["b"].state == "conflicted" and "started" not in outcome:
                outcome["started"] = loop.run_in_executor(None, resolve_by_hand)
            elif engine.state.tasks["b"].state == "done":
                loop.call_soon(engine.close)

    engine.options.listeners.append(user)
    state = asyncio.run(engine.run())
    assert "the running waveui merges it" in outcome["handed"].stdout, outcome["handed"].stderr
    assert state.tasks["b"].state == "done" and "resolved by hand with `waveui resolve`" in state.tasks["b"].reason
    assert git(repo, "show", "waveui/live:notes.txt") == "one\ntwo by both\nthree"


def test_a_sandboxed_resolver_resolves_in_its_worktree_and_writes_nothing_else(tmp_path):
    from waveui.executors.local.sandbox import unavailable

    import pytest

    if unavailable():
        pytest.skip(f"no sandbox here: {unavailable()}")
    repo = make_repo(tmp_path / "repo", SAME_LINE)
    outside = tmp_path / "outside.txt"
    # In the user's checkout (visible, read-only, in the sandbox), not under /tmp: the sandbox's /tmp is its own.
    resolver = script(repo / "keep-both", KEEP_BOTH + f"echo escaped > {outside} 2>/dev/null || true\n")
    epic = _same_line_epic(repo, "boxsolve", ["a", "b"], f'on_conflict = "resolve"\nresolve = "{resolver}"\n'
                                                         'sandbox = true', stagger=True)
    engine = run_engine(epic, repo)
    b = engine.state.tasks["b"]
    assert b.state == "done", b.reason
    lines = git(repo, "show", "waveui/boxsolve:notes.txt").splitlines()
    assert "two by a" in lines and "two by b" in lines
    assert not outside.exists()  # the resolver, sandboxed, could write only its worktree
