"""Adaptive parallelism: move the worker limit with the machine's CPU and memory."""

from __future__ import annotations

from dataclasses import dataclass

from waveui.executors.local.processes import Sample

COOL_DOWN_SECONDS = 10.0  # after a change, wait this long so the load can settle


@dataclass
class AdaptiveLimit:
    """Decides the worker limit from samples; pure, so tests feed it numbers.

    Above ``cpu_high`` the limit goes down one; below ``cpu_low`` with more
    than ``min_free_memory`` available it goes up one; memory running short
    also lowers it. A change is followed by a cool-down so it never oscillates.
    """

    minimum: int
    maximum: int
    limit: int
    cpu_high: float = 80.0
    cpu_low: float = 40.0
    min_free_memory: float = 2 * 2**30
    cool_down: float = COOL_DOWN_SECONDS
    _last_change: float = float("-inf")

    def decide(self, sample: Sample, now: float) -> str | None:
        """Apply one sample; return the reason when the limit changed, else None."""
        if now - self._last_change < self.cool_down:
            return None
        free_gb = sample.memory_available / 2**30
        if sample.cpu > self.cpu_high and self.limit > self.minimum:
            return self._set(self.limit - 1, now, f"CPU {sample.cpu:.0f}% > {self.cpu_high:.0f}%")
        if sample.memory_available < self.min_free_memory / 2 and self.limit > self.minimum:
            return self._set(self.limit - 1, now, f"memory low: {free_gb:.1f} GB free")
        if (sample.cpu < self.cpu_low and sample.memory_available > self.min_free_memory
                and self.limit < self.maximum):
            return self._set(self.limit + 1, now, f"CPU {sample.cpu:.0f}% < {self.cpu_low:.0f}%, {free_gb:.1f} GB free")
        return None

    def _set(self, limit: int, now: float, reason: str) -> str:
        self.limit = limit
        self._last_change = now
        return reason
