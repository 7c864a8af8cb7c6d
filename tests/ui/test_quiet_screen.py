"""A screen with nothing new to show sends nothing to the terminal; something new is sent once, and alone.

Headless, Textual still works out every screen update (the compositor's
update, handed to ``App._display``) and then drops it. The tests catch the
updates there and render them as the terminal would receive them. Over a
second of the app's timers (ten flushes, four polls of the log pane)
nothing may be sent when nothing changed: it once was the whole log pane
four times a second, and the timeline's running rows ten times a second.
What changes is repainted alone: the clocks on screen tick together on
whole seconds, and a tick repaints the cells showing the time, not the
rows or the table around them; a task's progress repaints its box in the
graph, not the rows across the graph.
"""

from __future__ import annotations

import re

import pytest

from tests.ui.helpers import SIZE, PushFeed, make_app, settle
from tests.ui.helpers import isolated_user_themes  # noqa: F401  (autouse: keeps your own themes out)
from waveui.frontends.tui.graph_layout import BOX_HEIGHT
from waveui.frontends.tui.sample_run import NOW, sample_events
from waveui.run.events import RunFinished, TaskProgress, TaskStateChanged


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


class Clock:
    """A clock the test moves on by hand."""

    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def header_clocks(app) -> tuple[str, str]:
    """The run's elapsed time and its ETA, as the header shows them."""
    figures = app.main_screen.screen_header._summary.visual.plain.splitlines()[1]
    return re.search(r"elapsed (\S+)", figures).group(1), re.search(r"ETA (\S+)", figures).group(1)


async def test_the_header_clocks_tick_together_on_whole_seconds(tmp_path):
    clock = Clock(NOW + 0.4)  # the ETA is worked out first at a fraction of a second
    app, _ = make_app(tmp_path, clock=clock, with_control=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        first = header_clocks(app)
        clock.now = NOW + 0.95
        app.flush()
        assert header_clocks(app) == first
        clock.now = NOW + 1.0
        app.flush()
        elapsed, eta = header_clocks(app)
        assert elapsed != first[0] and eta != first[1]  # both moved on, at the same flush
        clock.now = NOW + 1.9
        app.flush()
        assert header_clocks(app) == (elapsed, eta)


def refreshes_of(widget) -> list[tuple]:
    """The regions ``widget`` is asked to repaint from now on (an empty tuple: all of it)."""
    calls: list[tuple] = []
    refresh = widget.refresh

    def recording(*regions, **options):
        calls.append(regions)
        return refresh(*regions, **options)

    widget.refresh = recording
    return calls


async def test_a_second_ticking_repaints_the_cells_that_show_it_and_nothing_else(tmp_path):
    clock = Clock(NOW)
    app, _ = make_app(tmp_path, clock=clock, with_control=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.pause(0.3)
        screen = app.main_screen
        workers, timeline = refreshes_of(screen.workers_table), refreshes_of(screen.timeline)
        running = [t for t in app.state.tasks.values() if t.clock_since is not None]
        clock.now = NOW + 1
        app.flush()
        # One time cell in the table for each running task, one span of each running task's row in the timeline.
        assert len(workers) == len(running) and all(len(regions) == 1 for regions in workers)
        table = screen.workers_table
        assert {region.width for (region,) in workers} == {table.columns["elapsed"].get_render_width(table)}
        assert len(timeline) == len(running)
        width = screen.timeline.size.width
        assert all(len(regions) == 1 and regions[0].width < width for regions in timeline)


async def test_the_workers_table_shows_a_task_at_the_flush_that_shows_it_in_the_header(tmp_path):
    feed = PushFeed()
    app, _ = make_app(tmp_path, feed=feed, with_control=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        table = app.main_screen.workers_table
        worker = app.state.tasks["cart-service"].worker
        feed.push(TaskStateChanged(t=NOW, task="cart-service", state="done", attempt=1))
        feed.push(TaskStateChanged(t=NOW, task="checkout-api", state="running", attempt=1, worker=worker,
                                   worktree="/repo/.waveui/worktrees/slot-7", pid=4242))
        await pilot.pause()
        app.flush()  # at once after the last: a table refreshed at most twice a second would still show cart-service
        row = [cell.plain for cell in table.get_row(str(worker))]
        assert "checkout-api" in row[1] and row[3] == "4242"
        # One numbering: the number of the worktree the task works in, as its folder is named.
        assert row[0] == "7" and row[2] == "slot-7"
        assert all(cell.plain != "7" for key in table.rows if key.value != str(worker)
                   for cell in [table.get_row(key)[0]])


async def test_a_task_reporting_progress_repaints_its_box_in_the_graph_not_the_rows_across_it(tmp_path):
    feed = PushFeed()
    app, _ = make_app(tmp_path, feed=feed, with_control=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        graph = app.main_screen.graph
        repaints = refreshes_of(graph)
        feed.push(TaskProgress(t=NOW, task="payment-client", progress=55.0))
        await pilot.pause()
        app.flush()
        x, y = graph.layout_.boxes["payment-client"]
        box = (x - graph.scroll_x, y - graph.scroll_y, graph.layout_.box_width, BOX_HEIGHT)
        assert [region for (region,) in repaints] == [box]


async def test_with_nothing_left_to_run_the_open_app_is_quiet_while_its_clock_moves(tmp_path):
    """The run stays open for the user after its last task: its clock stands still and nothing is sent."""
    from waveui.run.events import Notice

    events = [event for event in sample_events()]
    settled = [TaskStateChanged(t=NOW, task=task.task, state="failed", reason="stopped for the test")
               for task in events if isinstance(task, TaskStateChanged)]
    idle = Notice(t=NOW, level="info", kind="idle", text="nothing left to run: retry, un-cancel or quit")
    clock = Clock(NOW)
    feed = PushFeed(events + settled + [idle])
    app, _ = make_app(tmp_path, feed=feed, clock=clock, with_control=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app, len(feed.events))
        await pilot.pause(0.5)
        assert app.state.idle and "ETA" not in app.main_screen.screen_header._summary.visual.plain
        sent = sent_to_terminal(app)
        for _ in range(3):  # three seconds of the wall clock pass
            clock.now += 1
            await pilot.pause(0.4)
        assert sent == []
