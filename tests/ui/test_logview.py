"""Following a task's log: whole lines only, files that appear late or start over, text sanitised."""

from __future__ import annotations

from tests.ui.helpers import SIZE, make_app, press, settle
from tests.ui.helpers import isolated_user_themes  # noqa: F401  (autouse: keeps your own themes out)
from waveui.frontends.tui.widgets.logview import TAIL_BYTES, LogFollower, TaskLog


def test_follower_reads_whole_lines_and_keeps_the_rest(tmp_path):
    path = tmp_path / "t.log"
    follower = LogFollower(path)
    assert follower.read() == ("", False)  # not there yet
    path.write_bytes(b"one\ntw")
    assert follower.read() == ("one\n", False)
    with open(path, "ab") as f:
        f.write("o \u00e9".encode()[:-1])  # half of a two-byte character
    assert follower.read() == ("", False)
    with open(path, "ab") as f:
        f.write("o \u00e9".encode()[-1:] + b"\n")
    assert follower.read() == ("two \u00e9\n", False)


def test_follower_notices_a_log_that_started_over(tmp_path):
    path = tmp_path / "t.log"
    path.write_text("first attempt, a long line\n")
    follower = LogFollower(path)
    follower.read()
    path.write_text("second\n")
    assert follower.read() == ("second\n", True)


def test_follower_starts_near_the_end_of_a_big_log(tmp_path):
    path = tmp_path / "t.log"
    path.write_text("x" * 99 + "\n" * 1 + ("y" * 99 + "\n") * (TAIL_BYTES // 50))
    text, _ = LogFollower(path).read()
    assert len(text) <= TAIL_BYTES and "x" not in text


async def test_the_log_pane_follows_the_selection_and_sanitises(tmp_path):
    app, _ = make_app(tmp_path)
    (tmp_path / "payment-client.log").write_text("\x1b]0;evil title\x07hello \x1b[31mred\x1b[0m\x07\n")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        log = app.query_one("#log", TaskLog)
        assert "Writing tests/cart/test_discounts.py" in log.lines
        await press(pilot, app, "j")
        assert log.task_id == "payment-client"
        assert log.lines[0] == "hello red␇"
        with open(tmp_path / "payment-client.log", "a") as f:
            f.write("more\n")
        log.poll()
        assert log.lines[1] == "more"


def directive_rows(log: TaskLog) -> list[int]:
    return [y for y, line in enumerate(log.lines) if line.startswith("::waveui")]


def shown(log: TaskLog) -> list[str]:
    return log.lines[:log.line_count]  # not the empty line after the last newline


async def test_progress_lines_are_dimmed_and_v_hides_them_and_shows_them_again(tmp_path):
    app, _ = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        log = app.query_one("#log", TaskLog)
        everything = shown(log)
        last_directive = directive_rows(log)[-1]
        strip = log.render_line(last_directive - int(log.scroll_y))
        assert strip.text.startswith("::waveui progress=64")
        assert all(segment.style.dim for segment in strip if segment.text.strip())
        task_line = log.render_line(last_directive + 1 - int(log.scroll_y))
        assert task_line.text.startswith("Writing tests") and not any(s.style.dim for s in task_line)
        await press(pilot, app, "v")
        assert directive_rows(log) == []
        assert shown(log) == [line for line in everything if not line.startswith("::waveui")]
        with open(tmp_path / "cart-service.log", "a") as f:
            f.write('::waveui progress=80 message="nearly"\nDone writing\n')
        log.poll()
        assert shown(log)[-1] == "Done writing" and directive_rows(log) == []
        await press(pilot, app, "v")
        assert shown(log) == [*everything, '::waveui progress=80 message="nearly"', "Done writing"]


async def test_the_progress_lines_key_is_in_the_footer_and_the_help(tmp_path):
    app, _ = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        footer_keys = {binding.key for _, binding, _, _ in app.screen.active_bindings.values() if binding.show}
        assert "v" in footer_keys
        await press(pilot, app, "question_mark")
        assert any(binding.key == "v" for binding in app.screen.bindings_shown)


async def test_the_log_pane_ends_on_the_last_line_not_a_blank_row(tmp_path):
    app, _ = make_app(tmp_path)
    (tmp_path / "cart-service.log").write_text("".join(f"line {i}\n" for i in range(60)))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.pause()
        log = app.query_one("#log", TaskLog)
        assert log.render_line(log.size.height - 1).text.rstrip() == "line 59"
        assert log.scrollable_content_region.height == log.size.height  # no row kept for a scrollbar
