"""A big run stays usable: the timeline scrolls to the end, the graph is laid out off the event loop."""

from __future__ import annotations

from tests.ui.helpers import SIZE, PushFeed, make_app, press, settle
from tests.ui.helpers import isolated_user_themes  # noqa: F401  (autouse: keeps your own themes out)
from waveui.frontends.tui.screens.main import LAYOUT_IN_THREAD_FROM
from waveui.frontends.tui.sample_run import large_run_started

TASKS = LAYOUT_IN_THREAD_FROM * 2


async def test_a_large_run_scrolls_and_gets_its_graph(tmp_path):
    app, _ = make_app(tmp_path, feed=PushFeed([large_run_started(TASKS)]))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app, events=1)
        assert len(app.main_screen.timeline._order) == TASKS
        await press(pilot, app, "G")
        last = app.main_screen.timeline._order[-1]
        assert app.main_screen.selected == last
        assert app.main_screen.timeline.scroll_y > 0
        strip = app.main_screen.timeline.render_line(app.main_screen.timeline.scrollable_content_region.height - 1)
        assert last in strip.text
        for _ in range(300):
            if app.main_screen.graph.layout_ is not None:
                break
            await pilot.pause(0.02)
        assert app.main_screen.graph.layout_ is not None and len(app.main_screen.graph.layout_.boxes) == TASKS
