"""Snapshots of the main screen, the zoomed graph, the detail view and watch mode: scripted events, frozen clock.

The main screen, the help and the detail view are also taken at three terminal sizes, small to large.
"""

from __future__ import annotations

import pytest

from tests.ui.helpers import SIZE, make_app, settle
from tests.ui.helpers import isolated_user_themes  # noqa: F401  (autouse: keeps your own themes out)
from waveui.run.journal import Journal
from waveui.frontends.tui.app import WaveApp
from waveui.frontends.tui.feeds import JournalFeed
from waveui.frontends.tui.sample_run import NOW, sample_events, write_sample_logs


def settled(*keys: str):
    async def run_before(pilot) -> None:
        await settle(pilot, pilot.app)
        for key in keys:
            await pilot.press(key)
            await pilot.pause()
        pilot.app.flush()
        await pilot.pause()

    return run_before


def test_main_screen(snap_compare, tmp_path):
    app, _ = make_app(tmp_path)
    assert snap_compare(app, terminal_size=SIZE, run_before=settled())


def test_graph_zoomed(snap_compare, tmp_path):
    app, _ = make_app(tmp_path)
    assert snap_compare(app, terminal_size=SIZE, run_before=settled("tab", "tab", "z"))


def test_detail_view(snap_compare, tmp_path):
    app, _ = make_app(tmp_path)
    assert snap_compare(app, terminal_size=SIZE, run_before=settled("enter"))


def test_watch_mode(snap_compare, tmp_path):
    journal = Journal(tmp_path / "run")
    for event in sample_events():
        journal.append(event)
    journal.close()
    write_sample_logs(tmp_path)
    app = WaveApp(JournalFeed(journal.path, poll=0.01), None, log_dir=tmp_path, read_only=True, clock=lambda: NOW)
    assert snap_compare(app, terminal_size=SIZE, run_before=settled())


TERMINAL_SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40"),
                  pytest.param((250, 70), id="250x70")]


@pytest.mark.parametrize("size", TERMINAL_SIZES)
def test_main_screen_at(snap_compare, tmp_path, size):
    app, _ = make_app(tmp_path)
    assert snap_compare(app, terminal_size=size, run_before=settled())


@pytest.mark.parametrize("size", TERMINAL_SIZES)
def test_help_at(snap_compare, tmp_path, size):
    app, _ = make_app(tmp_path)
    assert snap_compare(app, terminal_size=size, run_before=settled("question_mark"))


@pytest.mark.parametrize("size", TERMINAL_SIZES)
def test_detail_view_at(snap_compare, tmp_path, size):
    app, _ = make_app(tmp_path)
    assert snap_compare(app, terminal_size=size, run_before=settled("enter"))
