"""The app over the real engine: keys reach the engine and change the run (real subprocesses)."""

from __future__ import annotations

import asyncio
import textwrap

from tests.ui.helpers import SIZE
from tests.ui.helpers import isolated_user_themes  # noqa: F401  (autouse: keeps your own themes out)
from waveui.core import spec
from waveui.engine.engine import Engine, RunOptions
from waveui.frontends.tui.app import WaveApp
from waveui.frontends.tui.live import EngineFeed

EPIC = """
[epic]
name = "live"
isolation = "none"
max_parallel = 2
command = 'for i in $(seq 40); do sleep 0.05; done'

[[task]]
id = "long"
story_points = 5
[[task]]
id = "breaks"
command = 'exit 7'
[[task]]
id = "after-long"
requires = ["long"]
"""


async def wait_for(condition, seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the run never got there: {condition.__doc__ or ''}")


async def test_keys_drive_the_real_engine(tmp_path):
    (tmp_path / "waveui.toml").write_text(textwrap.dedent(EPIC))
    engine = Engine(spec.load(tmp_path / "waveui.toml"), tmp_path, RunOptions(grace=0.5, backoff=0.05))
    run_dir = engine.choose_run()
    finished = asyncio.get_running_loop().create_future()
    feed = EngineFeed(engine, finished)
    app = WaveApp(feed, engine, log_dir=run_dir / "logs", repo_root=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        running = asyncio.create_task(engine.run())
        await wait_for(lambda: engine.state.tasks and engine.state.tasks["long"].state == "running"
                       and engine.state.tasks["breaks"].state == "failed")
        tasks = engine.state.tasks

        await pilot.press("P")  # the whole run: no new task starts
        assert engine.state.paused
        await pilot.pause(0.3)
        assert app.state.paused  # and the screen's state followed

        app.main_screen.select_task("long")
        await pilot.press("space")
        assert tasks["long"].state == "paused"
        await pilot.press("space")
        assert tasks["long"].state == "running"
        await pilot.press("P")
        assert not engine.state.paused

        app.main_screen.select_task("breaks")
        await pilot.press("r")  # retried: it fails again, but it did run a second time
        await wait_for(lambda: tasks["breaks"].attempt == 2 and tasks["breaks"].state == "failed")

        app.main_screen.select_task("after-long")
        await pilot.press("plus")
        assert tasks["after-long"].priority == 1
        await wait_for(lambda: engine.state.finished, seconds=20)
        assert tasks["after-long"].state == "done"
        await pilot.pause(0.3)
        assert app.state.done == engine.state.done == 2
    await running
    finished.set_result(None)
