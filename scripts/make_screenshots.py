"""Make the SVG screenshots in screenshots/ from the real app, fed the scripted sample run.

Run it from the repository root (again after any change to the look)::

    python scripts/make_screenshots.py               # writes screenshots/*.svg
    python scripts/make_screenshots.py --out elsewhere  # another folder

The clock is frozen and the events are scripted, so the same code gives the
same pictures on every machine.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from waveui.run.journal import Journal
from waveui.frontends.tui.app import WaveApp
from waveui.frontends.tui.feeds import JournalFeed, ScriptedFeed
from waveui.frontends.tui.sample_run import NOW, sample_events, write_sample_logs

SIZE = (160, 48)
# name: (keys pressed before the picture, watch mode)
SHOTS = {
    "main": ((), False),
    "graph": (("tab", "tab", "z"), False),
    "detail": (("j", "enter"), False),
    "watch": (("p",), True),
}


class ShowOnlyControl:
    """Accepts every command and does nothing: the footer then shows the live run's keys."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def make_app(folder: Path, watch: bool) -> WaveApp:
    write_sample_logs(folder)
    if not watch:
        return WaveApp(ScriptedFeed(sample_events()), ShowOnlyControl(), log_dir=folder, clock=lambda: NOW)
    journal = Journal(folder / "run")
    for event in sample_events():
        journal.append(event)
    journal.close()
    return WaveApp(JournalFeed(journal.path, poll=0.01), None, log_dir=folder, read_only=True, clock=lambda: NOW)


async def shoot(name: str, keys: tuple[str, ...], watch: bool, out: Path) -> Path:
    with tempfile.TemporaryDirectory() as folder:
        app = make_app(Path(folder), watch)
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            while app.state.events < len(sample_events()):
                await pilot.pause(0.01)
            app.flush()
            await pilot.pause()
            for key in keys:
                await pilot.press(key)
                await pilot.pause()
            app.flush()
            await pilot.pause(0.2)
            return Path(app.save_screenshot(f"{name}.svg", str(out)))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, (keys, watch) in SHOTS.items():
        print(await shoot(name, keys, watch, args.out))


if __name__ == "__main__":
    asyncio.run(main())
