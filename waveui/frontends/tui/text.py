"""Small helpers for laying text out in terminal cells."""

from __future__ import annotations

from rich.cells import cell_len, set_cell_size


def fit(text: str, width: int) -> str:
    """``text`` padded or cut (with an ellipsis) to exactly ``width`` cells."""
    if width <= 0:
        return ""
    if cell_len(text) > width:
        return set_cell_size(text, width - 1) + "…"
    return set_cell_size(text, width)


def fit_right(text: str, width: int) -> str:
    """``text`` right-aligned in ``width`` cells (cut on the left if too long)."""
    length = cell_len(text)
    if length >= width:
        return fit(text, width)
    return " " * (width - length) + text


def bar(fraction: float, width: int) -> tuple[str, str]:
    """A progress bar as its filled and empty parts, in half-cell steps."""
    if width <= 0:
        return "", ""
    halves = round(max(0.0, min(1.0, fraction)) * width * 2)
    full, half = divmod(halves, 2)
    filled = "━" * full + ("╸" if half else "")
    empty = "━" * (width - full - half)
    return filled, empty
