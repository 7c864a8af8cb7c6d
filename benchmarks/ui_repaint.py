"""How fast the app repaints under load, and how quickly it answers a key.

Run it from the repository root::

    python benchmarks/ui_repaint.py                 # 2,000 tasks, 200 events/s, 30 s
    python benchmarks/ui_repaint.py --seconds 10 --tasks 500

The real app runs headless at 160×48 on a random epic, fed by a simulated
engine: every task runs through progress reports to done, the worker limit
stays full, a metrics sample comes every second. Printed:

* flush: the 10 Hz tick that moves the folded state into the widgets;
* paint: Textual's screen update that follows (layout, render, write);
* repaint: a flush plus the paints before the next flush;
* the start: the first flush, and how long the graph layout (made in a
  thread) takes; the other figures are measured after it;
* key latency: from a key press (``j``/``k``, the selection moving in every
  pane) to the end of the first paint that shows it, every 0.5 s.

Targets: repaint median under 30 ms; key latency under 100 ms. A pure-Python
baseline loop is timed too, to compare figures between machines.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from collections import deque

from textual import events
from textual.screen import Screen

from waveui.run.events import Event, MetricsSample, RunStarted, TaskProgress, TaskStateChanged
from waveui.frontends.tui.app import WaveApp
from waveui.frontends.tui.sample_run import START, large_run_started

SIZE = (160, 48)
TARGET_REPAINT_MEDIAN = 0.030
TARGET_KEY_LATENCY = 0.100
KEY_EVERY = 0.5


class Simulation:
    """A stand-in engine: keeps ``limit`` tasks running, each reporting progress until it is done."""

    def __init__(self, start: RunStarted, seed: int = 7):
        self.rng = random.Random(seed)
        self.limit = start.limit
        self.requires = {t.id: set(t.requires) for t in start.tasks}
        self.waiting_on = {t.id: len(set(t.requires)) for t in start.tasks}
        self.dependents: dict[str, list[str]] = {}
        for t in start.tasks:
            for dep in set(t.requires):
                self.dependents.setdefault(dep, []).append(t.id)
        self.ready = deque(t.id for t in sorted(start.tasks, key=lambda t: t.rank) if not t.requires)
        self.running: dict[str, float] = {}
        self.slots = list(range(self.limit, 0, -1))
        self.slot_of: dict[str, int] = {}
        self.count = 0

    def events(self, now: float, n: int) -> list[Event]:
        out: list[Event] = []
        while len(out) < n:
            out += self._fill(now)
            if not self.running:
                break
            task = self.rng.choice(list(self.running))
            self.running[task] = min(100.0, self.running[task] + self.rng.uniform(2, 12))
            out.append(TaskProgress(t=now, task=task, progress=self.running[task], cost=self.running[task] / 100))
            if self.running[task] >= 100:
                out += self._finish(now, task)
            self.count += 1
            if self.count % 200 == 0:
                out.append(MetricsSample(t=now, cpu=self.rng.uniform(30, 95), memory_percent=self.rng.uniform(40, 80)))
        return out

    def _fill(self, now: float) -> list[Event]:
        out = []
        while self.ready and len(self.running) < self.limit:
            task = self.ready.popleft()
            self.running[task] = 0.0
            self.slot_of[task] = self.slots.pop()
            out.append(TaskStateChanged(t=now, task=task, state="running", attempt=1, worker=self.slot_of[task],
                                        worktree=f".waveui/worktrees/w{self.slot_of[task]}"))
        return out

    def _finish(self, now: float, task: str) -> list[Event]:
        del self.running[task]
        self.slots.append(self.slot_of.pop(task))
        for dependent in self.dependents.get(task, []):
            self.waiting_on[dependent] -= 1
            if self.waiting_on[dependent] == 0:
                self.ready.append(dependent)
        return [TaskStateChanged(t=now, task=task, state="merging", attempt=1),
                TaskStateChanged(t=now, task=task, state="done", attempt=1)]


class LoadFeed:
    """Emits the run's start, then ``rate`` simulated events a second for ``seconds``."""

    def __init__(self, tasks: int, rate: int, seconds: float):
        self.start = large_run_started(tasks)
        self.rate, self.seconds = rate, seconds
        self.emitted = 0
        self.finished = asyncio.Event()

    async def run(self, emit) -> None:
        simulation = Simulation(self.start)
        emit(self.start)
        began = time.perf_counter()
        while (elapsed := time.perf_counter() - began) < self.seconds:
            due = int(elapsed * self.rate) - self.emitted
            for event in simulation.events(START + elapsed, due) if due > 0 else ():
                emit(event)
            self.emitted += max(0, due)
            await asyncio.sleep(0.005)
        self.finished.set()


class PaintClock:
    """Times every screen update (Textual's own repaint) by wrapping Screen._on_timer_update."""

    def __init__(self) -> None:
        self.paints: list[tuple[float, float]] = []  # (ended at, seconds)
        self._original = Screen._on_timer_update
        clock = self

        def timed(screen: Screen) -> None:
            started = time.perf_counter()
            clock._original(screen)
            ended = time.perf_counter()
            clock.paints.append((ended, ended - started))

        Screen._on_timer_update = timed

    def restore(self) -> None:
        Screen._on_timer_update = self._original


async def key_latency(app: WaveApp, paints: PaintClock, key: str) -> float | None:
    """Seconds from posting ``key`` to the end of the first paint after the selection moved."""
    before = app.selected
    pressed = time.perf_counter()
    app.post_message(events.Key(key, key))
    moved_at = None
    while time.perf_counter() - pressed < 2.0:
        await asyncio.sleep(0.001)
        if moved_at is None and app.selected != before:
            moved_at = time.perf_counter()
        if moved_at is not None:
            after = [ended for ended, _ in paints.paints if ended >= moved_at]
            if after:
                return after[0] - pressed
    return None


def repaints(flushes: list[tuple[float, float]], paints: list[tuple[float, float]]) -> list[float]:
    """Each flush plus the paints that ended before the next flush began."""
    out = []
    for i, (ended, seconds) in enumerate(flushes):
        next_start = flushes[i + 1][0] - flushes[i + 1][1] if i + 1 < len(flushes) else float("inf")
        out.append(seconds + sum(s for e, s in paints if ended <= e < next_start))
    return out


def baseline() -> float:
    """A fixed pure-Python loop, to compare machines."""
    started = time.perf_counter()
    total = 0
    for i in range(1_000_000):
        total += i * i
    return time.perf_counter() - started


async def measure(tasks: int, rate: int, seconds: float) -> dict:
    feed = LoadFeed(tasks, rate, seconds)
    app = WaveApp(feed, None)
    paints = PaintClock()
    flushes: list[tuple[float, float]] = []
    latencies: list[float] = []
    original_flush = app.flush

    def timed_flush() -> None:
        started = time.perf_counter()
        original_flush()
        ended = time.perf_counter()
        flushes.append((ended, ended - started))

    app.flush = timed_flush
    try:
        async with app.run_test(size=SIZE) as pilot:
            opened = time.perf_counter()
            while app.graph.layout_ is None:  # the start: a big layout, made in a thread
                await asyncio.sleep(0.01)
            ready = time.perf_counter()
            key = "j"
            while not feed.finished.is_set():
                await asyncio.sleep(KEY_EVERY)
                latency = await key_latency(app, paints, key)
                if latency is not None:
                    latencies.append(latency)
                key = "k" if key == "j" else "j"
            events_folded = app.state.events
            done = app.state.done
    finally:
        paints.restore()
    steady = [f for f in flushes if f[0] > ready], [p for p in paints.paints if p[0] > ready]
    return {"flushes": steady[0], "paints": steady[1], "latencies": latencies, "events": events_folded,
            "done": done, "startup": ready - opened,
            "first_flush": max((s for e, s in flushes if e <= ready), default=0)}


def line(label: str, values: list[float], target: float | None = None, stat=statistics.median) -> str:
    if not values:
        return f"{label:<30} no samples"
    text = f"{label:<30} median {statistics.median(values) * 1000:6.1f} ms   worst {max(values) * 1000:6.1f} ms"
    text += f"   ({len(values)} samples)"
    if target is not None:
        verdict = "OK" if stat(values) < target else "SLOW"
        text += f"   target < {target * 1000:.0f} ms: {verdict}"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--rate", type=int, default=200, help="events a second")
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    result = asyncio.run(measure(args.tasks, args.rate, args.seconds))
    flush_times = [s for _, s in result["flushes"]]
    paint_times = [s for _, s in result["paints"]]
    print(f"waveui UI under load: {args.tasks} tasks, {args.rate} events/s for {args.seconds:g} s, "
          f"{SIZE[0]}x{SIZE[1]} headless")
    print(f"events folded {result['events']}, tasks done {result['done']}")
    print(f"start: first flush (all rows laid out) {result['first_flush'] * 1000:.0f} ms, "
          f"graph laid out (in a thread) after {result['startup']:.1f} s; figures below are from then on")
    print(line("flush (state → widgets)", flush_times))
    print(line("paint (widgets → screen)", paint_times))
    print(line("repaint (flush + its paints)", repaints(result["flushes"], result["paints"]), TARGET_REPAINT_MEDIAN))
    print(line("key press → screen change", result["latencies"], TARGET_KEY_LATENCY, stat=max))
    print(f"baseline: a 1M-step Python loop takes {baseline() * 1000:.0f} ms on this machine")


if __name__ == "__main__":
    main()
