"""Watch mode (read-only): every action that changes the run is refused and the control is never called."""

from __future__ import annotations

import pytest

from tests.ui.helpers import SIZE, make_app, press, settle
from tests.ui.helpers import isolated_user_themes  # noqa: F401  (autouse: keeps your own themes out)
from waveui.run.journal import Journal
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
