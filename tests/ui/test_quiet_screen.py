"""A screen with nothing new to show sends nothing to the terminal; something new is sent once.

Headless, Textual still works out every screen update (the compositor's
update, handed to ``App._display``) and then drops it. The tests catch the
updates there and render them as the terminal would receive them. Over a
second of the app's timers (ten flushes, four polls of the log pane)
nothing may be sent when nothing changed: it once was the whole log pane
four times a second, and the timeline's running rows ten times a second.
"""

from __future__ import annotations

import pytest

from tests.ui.helpers import SIZE, PushFeed, make_app, settle
from tests.ui.helpers import isolated_user_themes  # noqa: F401  (autouse: keeps your own themes out)
from waveui.frontends.tui.sample_run import NOW, sample_events
from waveui.run.events import RunFinished, TaskProgress


def sent_to_terminal(app) -> list[int]:
    """The size in bytes of each screen update the app makes from now on (a list that fills as it goes)."""
    sizes: list[int] = []
    display = app._display

    def counting(screen, renderable) -> None:
        if renderable is not None:
            sizes.append(len(renderable.render_segments(app.console).encode()))
        display(screen, renderable)

    app._display = counting
    return sizes


@pytest.mark.parametrize("finished", [True, False], ids=["finished run", "running tasks, clock stopped"])
async def test_a_screen_with_nothing_new_sends_nothing(tmp_path, finished):
    events = sample_events() + ([RunFinished(t=NOW, ok=True, reason="complete")] if finished else [])
    feed = PushFeed(events)
    app, _ = make_app(tmp_path, feed=feed, with_control=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app, len(events))
        await pilot.pause(0.5)  # the first screen, drawn
        sent = sent_to_terminal(app)
        await pilot.pause(1.0)
        assert sent == []
        selected = app.main_screen.selected
        feed.push(TaskProgress(t=NOW, task=selected, progress=99.0, message="nearly there"))
        await pilot.pause(0.3)
        assert sent, "a change reached no screen update: the test sees nothing"
