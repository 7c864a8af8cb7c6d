"""Watch mode (read-only): every action that changes the run is refused and the control is never called."""

from __future__ import annotations

import contextlib
import os
import signal
import time

import pytest

from tests.engine_helpers import make_repo, write_epic
from tests.faults.helpers import final_state, kill9, start, wait_for
from tests.ui.helpers import SIZE, make_app, press, settle
from tests.ui.helpers import isolated_user_themes  # noqa: F401  (autouse: keeps your own themes out)
from waveui.executors.steps import read_json
from waveui.run.journal import Journal, list_runs
from waveui.frontends.tui.app import RUN_ACTIONS, WaveApp
from waveui.frontends.tui.keys import action_name
from waveui.frontends.tui.feeds import JournalFeed
from waveui.frontends.tui.sample_run import NOW, sample_events

RUN_KEYS = ["space", "p", "P", "r", "m", "c", "x", "plus", "minus"]


async def test_watch_mode_refuses_every_run_action(tmp_path):
    app, control = make_app(tmp_path, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        before = {t.id: (t.state, t.priority) for t in app.state.tasks.values()}
        for key in RUN_KEYS:
            await pilot.press(key)
        await press(pilot, app, "j", "j", "j", "r")  # even on a failed task
        assert control.calls == []
        assert {t.id: (t.state, t.priority) for t in app.state.tasks.values()} == before
        refusals = [n.message for n in app._notifications if "read-only" in n.message]
        assert len(refusals) == len(RUN_KEYS) + 1
        assert not app.state.paused


async def test_watch_mode_hides_run_actions_and_shows_the_badge(tmp_path):
    app, _ = make_app(tmp_path, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        for action in RUN_ACTIONS:
            assert app.check_action(action, ()) is False
        shown = {action_name(b.binding) for b in app.screen.active_bindings.values()}
        assert not shown & {"pause_task", "pause_run", "retry", "cancel"}
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert not titles & {"Pause/resume", "Pause run", "Retry", "Cancel", "Raise priority", "Lower priority"}
        assert "READ-ONLY" in app.main_screen.screen_header._summary.visual.plain


async def test_watch_mode_quits_without_asking_or_stopping(tmp_path):
    app, control = make_app(tmp_path, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running
    assert control.calls == []


async def test_watch_mode_follows_a_journal_that_appears_late_and_grows(tmp_path):
    run_dir = tmp_path / "run"
    events = sample_events()
    app = WaveApp(JournalFeed(run_dir / "events.jsonl", poll=0.02), None, read_only=True, clock=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.1)
        assert app.state.started is None  # no journal yet: still waiting, no error
        journal = Journal(run_dir)
        for event in events[:10]:
            journal.append(event)
        await settle(pilot, app, events=10)
        assert app.state.epic == "checkout-v2"
        for event in events[10:]:
            journal.append(event)
        journal.close()
        await settle(pilot, app, events=len(events))
        assert app.state.tasks["cart-service"].progress == pytest.approx(64)
        assert app.main_screen.timeline._order  # the panes were laid out from the journal


# ------------------------------------------------- a controller killed under a watcher

GONE_EPIC = """
[epic]
name = "left"
max_parallel = 2
adaptive = false

[[task]]
id = "quick"
command = 'sleep 2'

[[task]]
id = "slow"
command = 'sleep 2; echo "::waveui progress=40 message=\\"half way\\""; sleep 30'
"""


async def until(pilot, app: WaveApp, holds, rounds: int = 600) -> bool:
    """Flush the app until ``holds()`` (a bound on the rounds, not a timed assertion)."""
    for _ in range(rounds):
        app.flush()
        if holds():
            return True
        await pilot.pause(0.05)
    return False


def stop_supervisors(logs) -> None:
    """What the killed run left running: stopped, as a later `waveui run --fresh` would."""
    for pidfile in logs.glob("*.pid"):
        record = read_json(pidfile) or {}
        if record.get("supervisor"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(record["supervisor"], signal.SIGTERM)


async def test_watch_sees_the_controller_gone_and_what_its_steps_do_meanwhile(tmp_path):
    repo = make_repo(tmp_path / "repo")
    write_epic(repo, GONE_EPIC)
    controller = start(repo)
    try:
        assert wait_for(lambda: list_runs(repo) and {"quick", "slow"} <= {
            t.id for t in final_state(repo).tasks.values() if t.state == "running"}, timeout=60)
        kill9(controller)
        run_dir = list_runs(repo)[-1]
        journal_before = (run_dir / "events.jsonl").read_bytes()
        app = WaveApp(JournalFeed(run_dir / "events.jsonl", poll=0.02, repo_root=repo), None,
                      log_dir=run_dir / "logs", repo_root=repo, read_only=True)
        async with app.run_test(size=SIZE) as pilot:
            header = app.main_screen.screen_header._summary
            assert await until(pilot, app, lambda: "controller gone since" in header.visual.plain)
            last = time.strftime("%H:%M", time.localtime(final_state(repo).now))
            assert f"controller gone since {last} — `waveui run` to resume" in header.visual.plain
            assert "ETA — no controller" in header.visual.plain
            # the quick task's supervisor ends it after the kill: the watcher shows it finished, its clock stopped
            quick, slow = app.state.tasks["quick"], app.state.tasks["slow"]
            assert await until(pilot, app, lambda: quick.progress == 100)
            assert quick.clock_since is None and quick.exit_code == 0 and "ended well" in quick.message
            # the slow one goes on under its supervisor, and what it reports meanwhile is shown
            assert await until(pilot, app, lambda: slow.progress == 40)
            assert slow.clock_since is not None and slow.message == "half way"
            assert "100%" in app.main_screen.timeline._task_strip(quick, 160).text
        assert (run_dir / "events.jsonl").read_bytes() == journal_before  # the watcher wrote nothing to the run
    finally:
        if controller.poll() is None:
            kill9(controller)
        for run_dir in list_runs(repo):
            stop_supervisors(run_dir / "logs")
