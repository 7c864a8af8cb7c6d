"""The help screen: every key the app answers to, and what the marks and colours mean."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static

from waveui.frontends.tui.look import COLOUR, CRITICAL_MARK, HORIZONTAL_BREAKPOINTS, MARKS


PANE_KEYS = [
    ("j / k, ↓ / ↑", "next / previous task (graph: in the same wave)"),
    ("h / l, ← / →", "graph: nearest task in the previous / next wave"),
    ("g / G", "timeline: first / last task"),
    ("PgUp / PgDn", "timeline: a page up / down"),
    ("esc", "close a screen or the filter; restore a zoomed pane"),
    ("ctrl+p", "command palette: every action by name"),
]


def key_label(binding: Binding) -> str:
    names = {"plus": "+", "minus": "-", "equals_sign": "=", "question_mark": "?", "slash": "/"}
    return ", ".join(names.get(k.strip(), k.strip().upper() if k.strip()[:1] == "f" and k.strip()[1:].isdigit()
                                else k.strip()) for k in binding.key.split(","))


class HelpScreen(ModalScreen[None]):
    """The keys in a grid (a long description wraps beside its key) and the marks beside them, or below
    them in a narrow terminal; the dialog scrolls when the terminal is too short for it."""

    HORIZONTAL_BREAKPOINTS = HORIZONTAL_BREAKPOINTS  # narrow: the marks go under the keys
    BINDINGS = [Binding("escape,question_mark,q", "app.pop_screen", "Close", id="help.close")]

    def __init__(self, bindings: list[Binding], read_only: bool) -> None:
        super().__init__()
        self.bindings_shown = bindings
        self.read_only = read_only

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog help"):
            yield Static("waveui keys", classes="dialog-title")
            if self.read_only:
                yield Static(Content.assemble(("READ-ONLY", "bold $warning"),
                                              ": watching a run; the keys that change it are off."),
                             classes="dialog-text")
            with Horizontal(classes="help-columns"):
                with Grid(classes="help-keys"):
                    for key, text in self._keys():
                        yield Static(key, classes="help-key")
                        yield Static(text)
                with Vertical(classes="help-marks"):
                    yield Static("Marks", classes="dialog-title")
                    yield Static(self._legend())

    def _keys(self) -> list[tuple[str, str]]:
        return [(key_label(b), b.tooltip or b.description) for b in self.bindings_shown] + PANE_KEYS

    def _legend(self) -> Content:
        lines = [Content.assemble((f"{mark} ", f"$task-{COLOUR[state]}"), state) for state, mark in MARKS.items()]
        lines.append(Content.assemble((f"{CRITICAL_MARK} ", "$critical"), "critical path"))
        lines.append(Content.assemble(("  ", ""), ("(graph: heavy box)", "$text-muted")))
        return Content("\n").join(lines)
