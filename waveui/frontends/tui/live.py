"""The interactive session: the engine and the app in one asyncio loop."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import sys
from collections.abc import Callable

from waveui.engine.engine import BUDGET_REACHED, EXIT_BUDGET, Engine, EngineError
from waveui.executors.local.processes import ProcessSampler
from waveui.run.events import Event


class EngineFeed:
    """Hands the app every event of the run: the journal of a resumed run, then what the engine emits.

    It listens from construction, before the engine starts, and keeps what
    comes until the app is ready for it, so the app misses nothing.
    """

    def __init__(self, engine: Engine, finished: asyncio.Future):
        self.finished = finished
        self._backlog: list[Event] = list(engine.previous_events or [])
        self._emit: Callable[[Event], None] = self._backlog.append
        engine.options.listeners.append(lambda event: self._emit(event))

    async def run(self, emit: Callable[[Event], None]) -> None:
        backlog, self._backlog = self._backlog, []
        for event in backlog:
            emit(event)
        self._emit = emit
        await asyncio.shield(self.finished)


# How long the last line waits for the terminal to take it.
TELL_SECONDS = 0.5


def tell(line: str) -> None:
    """Print ``line`` on stderr if the terminal takes it: one that is gone or stalled is not waited on for good."""
    try:
        _, writable, _ = select.select([], [sys.stderr], [], TELL_SECONDS)
        if writable:
            print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):  # EIO: the terminal hung up; a closed stderr
        pass


def run_live(engine: Engine, greeting: str | None = None) -> int:
    """Run the engine's epic under the full-screen app, which shows ``greeting`` as it starts; the exit status."""
    from waveui.frontends.tui.app import WaveApp

    engine.options.stay_open = True  # the run is the user's until they quit
    run_dir = engine.choose_run()
    repo_root = engine.repo_root
    outcome: dict[str, BaseException] = {}

    async def main() -> int:
        loop = asyncio.get_running_loop()
        finished = loop.create_future()
        feed = EngineFeed(engine, finished)
        engine_task = loop.create_task(engine.run())
        engine_task.add_done_callback(lambda _: finished.done() or finished.set_result(None))
        bell = engine.epic.bell and os.environ.get("WAVEUI_BELL") != "0"
        app = WaveApp(feed, engine, log_dir=run_dir / "logs", repo_root=repo_root, process_sampler=ProcessSampler,
                      bell=bell, greeting=greeting)

        def engine_ended(task: asyncio.Task) -> None:
            if not task.cancelled() and isinstance(task.exception(), EngineError):
                outcome["error"] = task.exception()
                app.exit()

        engine_task.add_done_callback(engine_ended)
        # SIGHUP and SIGTERM: the app's terminal driver hands them to the app, which stops the run
        # or leaves it resumable (WaveApp.on_terminal_lost, on_terminate_requested).
        # SIGINT from outside (the keyboard's Ctrl-C reaches the app as a key): ask, as `q` does.
        loop.add_signal_handler(signal.SIGINT, lambda: app.call_later(app.run_action, "quit"))
        await app.run_async()
        if not engine_task.done():
            if engine.idle:  # quit with nothing left running: the run ends here, as it stands
                engine.close()
            elif not engine.stopping:  # the app closed without an answer; an answer given stands
                engine.stop(leave_resumable=True)
        try:
            state = await engine_task
        except EngineError as error:
            outcome["error"] = error
            return 2
        if state.finish_reason == "interrupted":
            tell("waveui: left resumable; run `waveui run` again to go on")
            return 130
        if state.finish_reason == "stopped":  # as headless: the tasks were stopped, the run resumes
            tell("waveui: stopped; run `waveui run` again to resume")
            return 130
        tell(f"waveui: run {state.finish_reason}: {state.done}/{state.total} done")
        if state.finish_reason == BUDGET_REACHED:
            return EXIT_BUDGET
        return 0 if state.ok else 1

    status = asyncio.run(main())
    if "error" in outcome:
        tell(f"waveui: error: {outcome['error']}")
        return 2
    return status
