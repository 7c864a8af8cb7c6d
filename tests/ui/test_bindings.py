"""Every key binding, driven as a user would, against the sample run and a recording control."""

from __future__ import annotations

from textual.widgets import DataTable

from tests.ui.helpers import SIZE, make_app, press, settle
from tests.ui.helpers import isolated_user_themes  # noqa: F401  (autouse: keeps your own themes out)
from waveui.frontends.tui.screens.detail import TaskDetailScreen
from waveui.frontends.tui.screens.dialogs import ConfirmCancel, QuitLiveRun
from waveui.frontends.tui.screens.help import HelpScreen
from waveui.frontends.tui.widgets.graph import DependencyGraph
from waveui.frontends.tui.widgets.logview import TaskLog
from waveui.frontends.tui.widgets.timeline import WaveTimeline


async def test_starts_on_the_first_running_task(tmp_path):
    app, _ = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        assert app.main_screen.selected == "cart-service"
        assert app.focused is app.main_screen.timeline


async def test_j_k_and_arrows_move_the_selection_everywhere(tmp_path):
    app, _ = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await press(pilot, app, "j")
        assert app.main_screen.selected == "payment-client"
        await press(pilot, app, "down", "down")
        assert app.main_screen.selected == "search-index"
        await press(pilot, app, "k", "up")
        assert app.main_screen.selected == "payment-client"
        assert app.main_screen.graph.selected == app.main_screen.timeline.selected == "payment-client"
        assert app.query_one("#log", TaskLog).task_id == "payment-client"
        await press(pilot, app, "G")
        assert app.main_screen.selected == "release-notes"
        await press(pilot, app, "g")
        assert app.main_screen.selected == "api-schema"


async def test_space_and_p_pause_and_resume_the_selected_task(tmp_path):
    app, control = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await press(pilot, app, "space")
        assert control.calls == [("pause_task", "cart-service")]
        assert app.state.tasks["cart-service"].state == "paused"
        await press(pilot, app, "p")
        assert control.calls[-1] == ("resume_task", "cart-service")
        assert app.state.tasks["cart-service"].state == "running"


async def test_pausing_a_task_that_does_not_run_only_explains(tmp_path):
    app, control = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await press(pilot, app, "g", "p")  # api-schema is done
        assert control.calls == []
        assert any("only a running task" in n.message for n in app._notifications)


async def test_shift_p_pauses_and_resumes_the_run(tmp_path):
    app, control = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await press(pilot, app, "P")
        assert control.calls == [("pause_run",)]
        assert app.state.paused
        assert "paused" in app.main_screen.screen_header._summary.visual.plain
        await press(pilot, app, "P")
        assert control.calls[-1] == ("resume_run",)
        assert not app.state.paused


async def test_r_retries_a_failed_task_but_not_a_running_one(tmp_path):
    app, control = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await press(pilot, app, "r")  # cart-service is running
        assert control.calls == []
        await press(pilot, app, "j", "j", "j")
        assert app.main_screen.selected == "search-index"
        await press(pilot, app, "r")
        assert control.calls == [("retry", "search-index", None)]
        assert app.state.tasks["search-index"].state == "ready"


async def test_c_cancels_after_confirmation(tmp_path):
    app, control = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await press(pilot, app, "c")
        assert isinstance(app.screen, ConfirmCancel)
        await press(pilot, app, "y")
        assert control.calls == [("cancel", "cart-service")]
        assert app.state.tasks["cart-service"].state == "cancelled"


async def test_x_cancels_too_and_n_keeps_the_task(tmp_path):
    app, control = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await press(pilot, app, "x")
        assert isinstance(app.screen, ConfirmCancel)
        await press(pilot, app, "n")
        assert not isinstance(app.screen, ConfirmCancel)
        assert control.calls == []
        assert app.state.tasks["cart-service"].state == "running"


async def test_plus_and_minus_change_priority(tmp_path):
    app, control = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await press(pilot, app, "plus")
        assert control.calls == [("set_priority", "cart-service", 1)]
        await press(pilot, app, "plus")
        assert app.state.tasks["cart-service"].priority == 2
        await press(pilot, app, "minus")
        assert control.calls[-1] == ("set_priority", "cart-service", 1)
        assert app.state.tasks["cart-service"].priority == 1


async def test_plus_on_a_finished_task_says_it_has_no_effect(tmp_path):
    app, control = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await press(pilot, app, "g")
        assert app.state.tasks["api-schema"].state == "done"
        await press(pilot, app, "plus", "minus")
        assert control.calls == []
        assert app.state.tasks["api-schema"].priority == 0
        assert any("api-schema is done" in n.message for n in app._notifications)


async def test_tab_and_shift_tab_move_between_panes(tmp_path):
    app, _ = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        seen = [app.focused.id]
        for _ in range(4):
            await press(pilot, app, "tab")
            seen.append(app.focused.id)
        assert seen == ["timeline", "log", "graph", "workers", "conflicts"]
        await press(pilot, app, "shift+tab")
        assert app.focused.id == "workers"


async def test_graph_keys_move_within_and_across_waves(tmp_path):
    app, _ = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        app.query_one(DependencyGraph).focus()
        await press(pilot, app, "l")
        wave = app.state.tasks[app.main_screen.selected].wave
        assert wave == app.state.tasks["cart-service"].wave + 1
        await press(pilot, app, "h", "h")
        assert app.state.tasks[app.main_screen.selected].wave == 0
        before = app.main_screen.selected
        column = app.main_screen.graph.layout_.columns[0]
        await press(pilot, app, "j" if column.index(before) < len(column) - 1 else "k")
        assert app.main_screen.selected != before and app.state.tasks[app.main_screen.selected].wave == 0
        assert app.main_screen.timeline.selected == app.main_screen.selected


async def test_worker_table_selects_the_task_under_its_cursor(tmp_path):
    app, _ = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        table = app.query_one("#workers", DataTable)
        table.focus()
        await press(pilot, app, "down")
        assert app.main_screen.selected == "rate-limits"
        assert app.main_screen.timeline.selected == "rate-limits"


async def test_enter_opens_the_detail_screen_and_escape_closes_it(tmp_path):
    app, _ = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await press(pilot, app, "enter")
        assert isinstance(app.screen, TaskDetailScreen)
        assert app.screen.task_id == "cart-service"
        await press(pilot, app, "space")  # the run's keys still act on the task
        assert app.state.tasks["cart-service"].state == "paused"
        await press(pilot, app, "escape")
        assert not isinstance(app.screen, TaskDetailScreen)


async def test_slash_filters_by_text(tmp_path):
    app, _ = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await press(pilot, app, "slash")
        assert app.focused is app.main_screen.filter_bar
        await press(pilot, app, *"cart")
        timeline = app.query_one(WaveTimeline)
        assert timeline._order == ["cart-service", "cart-ui"]
        assert app.state.tasks["cart-service"].state == "running"  # typing "p" or "c" changed nothing
        await press(pilot, app, "enter")
        assert app.focused is timeline
        assert timeline._order == ["cart-service", "cart-ui"]
        await press(pilot, app, "slash", "escape")
        assert len(timeline._order) == len(app.state.tasks)


async def test_escape_clears_a_filter_kept_with_enter(tmp_path):
    app, _ = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await press(pilot, app, "f", "slash", *"cart", "enter")
        timeline = app.query_one(WaveTimeline)
        assert timeline._order == ["cart-service"]  # running and matching "cart"
        assert app.focused is timeline
        await press(pilot, app, "escape")
        assert not app.main_screen.task_filter.active
        assert app.main_screen.filter_bar.value == ""
        assert len(timeline._order) == len(app.state.tasks)
        assert "filter" not in app.main_screen.screen_header._summary.visual.plain


async def test_escape_without_a_filter_still_restores_a_zoomed_pane(tmp_path):
    app, _ = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await press(pilot, app, "slash", *"cart", "enter", "z")
        await press(pilot, app, "escape")
        assert app.screen.maximized is None
        assert app.main_screen.task_filter.text == "cart"  # the first escape restores the pane only
        await press(pilot, app, "escape")
        assert not app.main_screen.task_filter.active


async def test_a_filter_moves_the_selection_to_a_shown_task_and_the_keys_act_on_it(tmp_path):
    app, control = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        assert app.main_screen.selected == "cart-service"
        await press(pilot, app, "slash", *"search", "enter")
        timeline = app.query_one(WaveTimeline)
        assert timeline._order == ["search-index", "search-ui"]
        assert app.main_screen.selected == "search-index"
        assert app.main_screen.graph.selected == timeline.selected == "search-index"
        await press(pilot, app, "r")  # on the failed task shown, not on the hidden running one
        assert control.calls == [("retry", "search-index", None)]


async def test_a_filter_that_shows_nothing_leaves_nothing_to_act_on(tmp_path):
    app, control = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await press(pilot, app, "slash", *"no such task", "enter")
        assert app.main_screen.selected is None
        await press(pilot, app, "space", "c")
        assert control.calls == []
        assert app.state.tasks["cart-service"].state == "running"
        await press(pilot, app, "escape")
        assert app.main_screen.selected is not None


async def test_f_cycles_the_state_filter(tmp_path):
    app, _ = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        timeline = app.query_one(WaveTimeline)
        await press(pilot, app, "f")
        assert app.main_screen.task_filter.group == "running"
        assert set(timeline._order) == {"cart-service", "payment-client", "rate-limits", "order-emails"}
        await press(pilot, app, "f")
        assert set(timeline._order) == {"search-index", "analytics-events", "search-ui"}
        for _ in range(3):
            await press(pilot, app, "f")
        assert app.main_screen.task_filter.group == "all"
        assert len(timeline._order) == len(app.state.tasks)


async def test_filtered_rows_follow_state_changes(tmp_path):
    app, _ = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await press(pilot, app, "f", "f")  # problems
        timeline = app.query_one(WaveTimeline)
        assert app.main_screen.selected == "search-index"  # cart-service, running, is hidden
        await press(pilot, app, "r")  # retried: it leaves the problems
        assert "search-index" not in timeline._order


async def test_z_zooms_the_focused_pane(tmp_path):
    app, _ = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await press(pilot, app, "z")
        assert app.screen.maximized is app.main_screen.timeline
        await press(pilot, app, "z")
        assert app.screen.maximized is None


async def test_t_switches_theme_and_the_state_colours_follow(tmp_path):
    app, _ = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        assert app.theme == "waveui-dark"
        dark_running = app.theme_variables["task-running"]
        await press(pilot, app, "t")
        assert app.theme == "waveui-light"
        assert app.theme_variables["task-running"] != dark_running
        await press(pilot, app, "t", "t")
        assert app.theme == "waveui-dark"


async def test_question_mark_opens_help(tmp_path):
    app, _ = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await press(pilot, app, "question_mark")
        assert isinstance(app.screen, HelpScreen)
        await press(pilot, app, "escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_q_asks_then_leaves_the_run_resumable(tmp_path):
    app, control = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await press(pilot, app, "q")
        assert isinstance(app.screen, QuitLiveRun)
        await pilot.press("l")
        await pilot.pause()
    assert control.calls == [("stop", True)]


async def test_q_then_s_stops_the_run(tmp_path):
    app, control = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await press(pilot, app, "ctrl+q")
        assert isinstance(app.screen, QuitLiveRun)
        await pilot.press("s")
        await pilot.pause()
    assert control.calls == [("stop", False)]


async def test_q_then_escape_stays(tmp_path):
    app, control = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await press(pilot, app, "q", "escape")
        assert not isinstance(app.screen, QuitLiveRun)
        assert app.is_running
        assert control.calls == []


async def test_every_binding_has_an_id_and_a_palette_command(tmp_path):
    app, _ = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await press(pilot, app, "f")  # a filter, so that clearing it is one of the commands
        assert all(binding.id for binding in [*app.screen.BINDINGS, *app.BINDINGS])
        titles = {command.title for command in app.get_system_commands(app.screen)}
        for binding in [*app.screen.BINDINGS, *app.BINDINGS]:
            if binding.id != "waveui.quit-now":
                assert binding.description in titles


async def test_the_palette_lists_each_command_once_with_its_keys_as_shown(tmp_path):
    app, _ = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        commands = list(app.get_system_commands(app.screen))
        titles = [command.title for command in commands]
        assert len(titles) == len(set(titles)), titles
        assert "Keys" not in titles and "Maximize" not in titles  # Textual's own, doing what Help and Zoom do
        help_text = next(command.help for command in commands if command.title == "Help")
        assert help_text.endswith("(?, F1)")
        assert not any("question_mark" in command.help or "plus" in command.help for command in commands)


async def test_a_screenshot_is_saved_in_the_current_folder_and_the_app_says_where(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home-without-downloads"))
    monkeypatch.chdir(tmp_path)
    app, _ = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        command = next(c for c in app.get_system_commands(app.screen) if c.title == "Screenshot")
        command.callback()
        await pilot.pause()
        saved = list(tmp_path.glob("waveui-*.svg"))
        assert len(saved) == 1 and "<svg" in saved[0].read_text()
        assert any(n.message == str(saved[0]) for n in app._notifications)


async def test_a_palette_command_runs_its_action(tmp_path):
    app, control = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        command = next(c for c in app.get_system_commands(app.screen) if c.title == "Pause run")
        await command.callback()
        await pilot.pause()
        assert control.calls == [("pause_run",)]
