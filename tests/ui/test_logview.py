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
