"""The app's layout adapts to the terminal: at 80×24 nothing wraps or vanishes, at 250×70 the graph uses the rows."""

from __future__ import annotations

from tests.ui.helpers import make_app, press, settle
from tests.ui.helpers import isolated_user_themes  # noqa: F401  (autouse: keeps your own themes out)
from waveui.frontends.tui.screens.detail import TaskDetailScreen
from waveui.frontends.tui.screens.help import HelpScreen
from waveui.frontends.tui.widgets.graph import make_layout

SMALL = (80, 24)
LARGE = (250, 70)


async def test_at_80_by_24_the_header_is_one_line_and_the_graph_keeps_rows(tmp_path):
    app, _ = make_app(tmp_path)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot, app)
        screen = app.screen
        header = screen.screen_header
        assert header.size.height == 1
        summary = header.query_one("#summary")
        assert "\n" not in str(summary.render()) and "done" in str(summary.render())
        assert screen.query_one("#load").display is False  # no room for the sparklines
        assert screen.graph.scrollable_content_region.height > 0
        for pane in (screen.timeline, screen.task_log, screen.workers_table, screen.conflict_list):
            assert pane.scrollable_content_region.height > 0, pane.id


async def test_the_header_has_two_lines_again_in_a_wide_terminal(tmp_path):
    app, _ = make_app(tmp_path)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot, app)
        await pilot.resize_terminal(120, 40)
        await pilot.pause()
        app.flush()
        await pilot.pause()
        header = app.screen.screen_header
        assert header.size.height == 2
        assert "elapsed" in str(header.query_one("#summary").render())


async def test_at_80_by_24_the_help_scrolls_to_its_last_key(tmp_path):
    app, _ = make_app(tmp_path)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot, app)
        await press(pilot, app, "question_mark")
        assert isinstance(app.screen, HelpScreen)
        dialog = app.screen.query_one(".dialog")
        assert app.screen.region.contains_region(dialog.region)  # not cut off at the sides or the bottom
        last_key = app.screen.query(".help-key").last()
        assert not dialog.scrollable_content_region.contains_region(last_key.region)
        await press(pilot, app, "end")
        assert dialog.scrollable_content_region.contains_region(last_key.region)


async def test_at_80_by_24_the_detail_log_keeps_its_width(tmp_path):
    app, _ = make_app(tmp_path)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot, app)
        await press(pilot, app, "enter")
        assert isinstance(app.screen, TaskDetailScreen)
        log = app.screen.log_view
        assert log.scrollable_content_region.width >= 60
        assert log.scrollable_content_region.height > 0
        assert app.screen.files_table.scrollable_content_region.height > 0


async def test_at_250_by_70_a_graph_wider_than_its_pane_folds_into_its_rows(tmp_path):
    app, _ = make_app(tmp_path)
    async with app.run_test(size=LARGE) as pilot:
        await settle(pilot, app)
        graph = app.screen.graph
        room_width, room_height = graph.room
        assert make_layout(app.state).width > room_width  # drawn in one band, it would not fit
        assert graph.layout_.room == graph.room
        assert graph.max_scroll_x == 0 and graph.max_scroll_y == 0  # all of it shows
        assert room_height - graph.layout_.height <= 5  # the free rows went to the graph


async def test_zooming_the_graph_lays_it_out_for_the_whole_screen(tmp_path):
    app, _ = make_app(tmp_path)
    async with app.run_test(size=LARGE) as pilot:
        await settle(pilot, app)
        graph = app.screen.graph
        before = graph.room
        graph.focus()
        await press(pilot, app, "z")
        assert graph.room != before and graph.layout_.room == graph.room
