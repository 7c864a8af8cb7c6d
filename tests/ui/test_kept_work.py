"""Kept attempts in the app: retrying from one, their diffs, resolving a merge by hand, serialised and undeclared files.

The run comes from scripted events (the sample run and a few more); a
recording control stands in for the engine's answers, and the diffs come
from a real git repository.
"""

from __future__ import annotations

import subprocess

import pytest
from textual.drivers.headless_driver import HeadlessDriver

from tests.ui.helpers import SIZE, PushFeed, RecordingControl, press, settle
from tests.ui.helpers import isolated_user_themes  # noqa: F401  (autouse: keeps your own themes out)
from waveui.frontends.tui.app import WaveApp
from waveui.frontends.tui.sample_run import NOW, START, sample_events, write_sample_logs
from waveui.frontends.tui.screens.detail import TaskDetailScreen
from waveui.frontends.tui.screens.dialogs import RetryFrom
from waveui.run.events import AttemptKept, TaskStateChanged

REF = "refs/waveui/checkout-v2/search-index/{}"


def kept(attempt: int, commit: str = "c0ffee", base: str = "ba5e") -> AttemptKept:
    return AttemptKept(t=START + 1460 + attempt, task="search-index", attempt=attempt, ref=REF.format(attempt),
                       commit=commit, base=base)


def second_failure() -> list:
    """search-index tried again and failed again: two kept attempts."""
    return [kept(1),
            TaskStateChanged(t=START + 1470, task="search-index", state="running", attempt=2, worker=4),
            TaskStateChanged(t=START + 1480, task="search-index", state="failed", attempt=2, exit_code=1,
                             reason="verify failed: 1 test failed"),
            kept(2)]


def app_on(tmp_path, events, repo_root=None):
    feed = PushFeed(events)
    write_sample_logs(tmp_path)
    control = RecordingControl(feed)
    app = WaveApp(feed, control, log_dir=tmp_path, repo_root=repo_root, clock=lambda: NOW)
    control.state = app.state
    return app, control


async def select(pilot, app, task_id: str) -> None:
    """Move down the wave timeline with `j`, as a user would, until ``task_id`` is selected."""
    await press(pilot, app, "g")
    for _ in app.state.tasks:
        if app.main_screen.selected == task_id:
            return
        await press(pilot, app, "j")
    assert app.main_screen.selected == task_id


# ---------------------------------------------------------------- retry


@pytest.mark.parametrize("keys, from_attempt", [(["enter"], None), (["down", "enter"], 2),
                                                (["down", "down", "enter"], 1)])
async def test_r_asks_where_to_retry_from_newest_attempt_first(tmp_path, keys, from_attempt):
    events = sample_events() + second_failure()
    app, control = app_on(tmp_path, events)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app, len(events))
        await select(pilot, app, "search-index")
        await press(pilot, app, "r")
        assert isinstance(app.screen, RetryFrom)
        assert app.screen.choices == [None, 2, 1]
        await press(pilot, app, *keys)
        assert control.calls == [("retry", "search-index", from_attempt)]
        assert not isinstance(app.screen, RetryFrom)
        assert app.state.tasks["search-index"].state == "ready"


async def test_escape_in_the_retry_question_retries_nothing(tmp_path):
    events = sample_events() + [kept(1)]
    app, control = app_on(tmp_path, events)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app, len(events))
        await select(pilot, app, "search-index")
        await press(pilot, app, "r", "escape")
        assert not isinstance(app.screen, RetryFrom)
        assert control.calls == []
        assert app.state.tasks["search-index"].state == "failed"


# ------------------------------------------------- the detail screen


def git(repo, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL).stdout.strip()


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A repository where attempt 1 of search-index is kept under its ref, as the engine keeps it."""
    for name in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{name}_NAME", "waveui test")
        monkeypatch.setenv(f"GIT_{name}_EMAIL", "test@waveui.invalid")
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "index.py").write_text("first\n")
    git(root, "add", "index.py")
    git(root, "commit", "-q", "-m", "base")
    base = git(root, "rev-parse", "HEAD")
    (root / "index.py").write_text("first\nkept by attempt one\n")
    git(root, "commit", "-q", "-am", "attempt 1")
    git(root, "update-ref", REF.format(1), "HEAD")
    return root, base, git(root, "rev-parse", "HEAD")


async def test_enter_on_a_kept_attempt_shows_its_diff(tmp_path, repo):
    root, base, commit = repo
    events = sample_events() + [kept(1, commit=commit, base=base)]
    app, _ = app_on(tmp_path, events, repo_root=root)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app, len(events))
        await select(pilot, app, "search-index")
        await press(pilot, app, "enter")
        detail = app.screen
        assert isinstance(detail, TaskDetailScreen)
        table = detail.attempts_table
        assert table.get_row("1")[4].plain == "waveui/checkout-v2/search-index/1"  # git's short form of the ref
        table.focus()
        await press(pilot, app, "enter")
        assert detail.tabs.active == "tab-diff"
        for _ in range(200):
            shown = "\n".join(line.text for line in detail.diff_view.lines)
            if "kept by attempt one" in shown:
                break
            await pilot.pause(0.02)
        assert "+kept by attempt one" in shown
        assert detail.diff_view.border_title == "Diff of attempt 1, as kept"
        await press(pilot, app, "l")
        assert detail.tabs.active == "tab-log"
        await press(pilot, app, "d")  # back to the branch's own diff
        assert detail.tabs.active == "tab-diff"
        assert detail.diff_view.border_title == "Diff against the merge base"


async def test_the_detail_screen_says_what_a_task_is_ordered_after(tmp_path):
    events = sample_events()
    started = events[0]
    next(info for info in started.tasks if info.id == "rate-limits").after = ["payment-client"]
    app, _ = app_on(tmp_path, events)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app, len(events))
        await select(pilot, app, "rate-limits")
        await press(pilot, app, "enter")
        summary = app.screen.summary.visual.plain
        assert "ordered after payment-client (shares src/api/middleware.py)" in summary


async def test_the_diff_tab_key_is_in_the_footer_and_help(tmp_path):
    app, _ = app_on(tmp_path, sample_events())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await press(pilot, app, "enter", "question_mark")
        shown = {binding.key for binding in app.screen.bindings_shown}
        assert {"d", "l", "m"} <= shown


# ---------------------------------------------------- resolve by hand


@pytest.fixture
def suspendable(monkeypatch):
    """Let the test driver hand the terminal over, as a real terminal's driver does."""
    monkeypatch.setattr(HeadlessDriver, "can_suspend", property(lambda driver: True))


@pytest.fixture
def shell(tmp_path, monkeypatch):
    """A $SHELL that resolves at once: it notes the task and where it ran, and exits."""
    script = tmp_path / "resolving-shell"
    script.write_text('#!/bin/sh\nprintf "%s %s\\n" "$WAVEUI_TASK_ID" "$PWD" > resolved.txt\n')
    script.chmod(0o755)
    monkeypatch.setenv("SHELL", str(script))


async def test_m_opens_a_shell_in_the_resolution_worktree_then_merges(tmp_path, suspendable, shell):
    worktree = tmp_path / "resolution"
    worktree.mkdir()
    app, control = app_on(tmp_path, sample_events())
    control.resolution_folder = worktree
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await select(pilot, app, "analytics-events")
        await press(pilot, app, "m")
        assert control.calls == [("prepare_resolution", "analytics-events"), ("accept_resolution", "analytics-events")]
        assert (worktree / "resolved.txt").read_text() == f"analytics-events {worktree}\n"
        assert app.state.tasks["analytics-events"].state == "done"
        assert any("merged" in n.message for n in app._notifications)


async def test_a_resolution_not_merged_says_why(tmp_path, suspendable, shell):
    worktree = tmp_path / "resolution"
    worktree.mkdir()
    app, control = app_on(tmp_path, sample_events())
    control.resolution_folder, control.resolution_answer = worktree, "conflict markers left in src/events/bus.py"
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await select(pilot, app, "analytics-events")
        await press(pilot, app, "m")
        assert control.calls[-1] == ("accept_resolution", "analytics-events")
        assert app.state.tasks["analytics-events"].state == "conflicted"
        assert any("conflict markers left" in n.message for n in app._notifications)


async def test_a_refused_resolution_is_shown_and_no_shell_runs(tmp_path, suspendable, shell):
    app, control = app_on(tmp_path, sample_events())  # no folder: the control refuses as the engine does
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await select(pilot, app, "analytics-events")
        await press(pilot, app, "m")
        assert control.calls == [("prepare_resolution", "analytics-events")]
        assert any("not kept" in n.message for n in app._notifications)
        assert app.is_running
    assert not list(tmp_path.rglob("resolved.txt"))


async def test_m_on_a_task_that_is_not_conflicted_only_explains(tmp_path):
    app, control = app_on(tmp_path, sample_events())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await select(pilot, app, "search-index")
        await press(pilot, app, "m")
        assert control.calls == []
        assert any("only a conflicted task" in n.message for n in app._notifications)


# ------------------------------------------------- the conflict pane


async def test_the_conflict_pane_lists_the_runs_undeclared_files(tmp_path):
    app, _ = app_on(tmp_path, sample_events())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        pane = app.main_screen.conflict_list
        rows = {pane.task_of(option): str(option.prompt) for option in pane.options if option.id
                and option.id.startswith("undeclared:")}
        assert set(rows) == set(app.state.undeclared()) == {"theme-switch", "user-model"}
        assert "src/db/seed.sql" in rows["user-model"]
        assert pane.counts[2] == 2
