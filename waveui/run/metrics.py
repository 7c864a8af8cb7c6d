"""Figures the header shows that RunState does not hold: projected cost, and the formatting of figures.

The ETA, which needs the planner's scheduling, is :mod:`waveui.plan.eta`.
"""

from __future__ import annotations

from waveui.run.state import SLOT_STATES, Breakdown, RunState


def projected_cost(state: RunState) -> float | None:
    """The whole run's cost: spent so far, plus each unfinished task at the cost per point done so far."""
    done = [t for t in state.tasks.values() if t.state == "done"]
    points = sum(t.story_points for t in done)
    if not done or points <= 0:
        return None
    per_point = sum(t.cost for t in done) / points
    rest = sum(max(t.cost, t.story_points * per_point)
               for t in state.tasks.values() if t.state not in ("done", "cancelled"))
    return sum(t.cost for t in done) + rest


def committed_cost(state: RunState) -> float:
    """Money spent, plus what the running tasks are expected to spend still: what a run budget is checked against.

    A running task is expected to cost at least the cost per story point of
    the tasks done so far (none before any is done); what it has spent counts
    towards that.
    """
    done = [t for t in state.tasks.values() if t.state == "done"]
    points = sum(t.story_points for t in done)
    per_point = sum(t.cost for t in done) / points if points > 0 else 0.0
    ahead = sum(max(0.0, t.story_points * per_point - (t.cost - t.earlier_cost))
                for t in state.tasks.values() if t.state in SLOT_STATES)
    return state.cost + ahead


def plural(count: float, one: str, many: str | None = None) -> str:
    """``1 task``, ``2 tasks``, ``1.5 points``: a count with its noun (``many`` when not just ``one`` + s)."""
    return f"{count:g} {one if count == 1 else many or one + 's'}"


def tally(counts: Breakdown) -> list[str]:
    """The run's tasks as plain text, every one counted: ``3/12 done``, ``1 active``, then each other group there is."""
    parts = [f"{counts.done}/{counts.total} done", f"{counts.active} active"]
    return parts + [f"{number} {group}" for group, number in counts.parts()
                    if number and group not in ("done", "active")]


def duration(seconds: float | None) -> str:
    """A short human duration: 45s, 3m12s, 1h04m, 2d03h; an em dash when unknown."""
    if seconds is None:
        return "—"
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def size(nbytes: float | None) -> str:
    """Bytes as 512K, 34M, 1.2G; an em dash when unknown."""
    if nbytes is None:
        return "—"
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if nbytes >= scale:
            value = nbytes / scale
            return f"{value:.1f}{unit}" if value < 10 else f"{value:.0f}{unit}"
    return f"{nbytes:.0f}B"


def tokens(count: int | None) -> str:
    """A token count as 950, 12.3k, 4.1M; an em dash when unknown."""
    if count is None:
        return "—"
    for unit, scale in (("M", 1_000_000), ("k", 1_000)):
        if count >= scale:
            value = count / scale
            return f"{value:.1f}{unit}" if value < 100 else f"{value:.0f}{unit}"
    return str(count)


def money(amount: float | None) -> str:
    if amount is None:
        return "—"
    return f"${amount:,.2f}"
