"""sanitize: untrusted task output loses its escape sequences; other controls become inert."""

from __future__ import annotations

import pytest

from waveui.core.sanitize import sanitize, sanitize_line

ESC = "\x1b"


@pytest.mark.parametrize("raw, clean", [
    (f"{ESC}[31mred{ESC}[0m plain", "red plain"),  # SGR colours
    (f"{ESC}[2J{ESC}[H{ESC}[?1049hscreen", "screen"),  # clear, home, alternate screen
    (f"{ESC}[10;20Hmoved", "moved"),  # cursor position
    (f"a{ESC}[", "a"),  # a CSI torn at the end
    (f"{ESC}]0;pwned title{ESC}\\after", "after"),  # window title, ST-terminated
    (f"{ESC}]2;title\x07after", "after"),  # window title, BEL-terminated
    (f"{ESC}]52;c;cm0gLXJmIH4=\x07text", "text"),  # OSC 52: write to the clipboard
    (f"{ESC}]8;;https://evil.example{ESC}\\link{ESC}]8;;{ESC}\\", "link"),  # hyperlink
    (f"{ESC}Pq#0;2;0;0;0#1~~{ESC}\\x", "x"),  # DCS (sixel)
    (f"{ESC}_apc{ESC}\\{ESC}^pm{ESC}\\{ESC}Xsos{ESC}\\y", "y"),  # APC, PM, SOS
    (f"{ESC}]0;no end\nnext line", "\nnext line"),  # an unterminated OSC ends at the line
    (f"{ESC}c{ESC}7{ESC}8{ESC}(Bz", "z"),  # reset, save/restore cursor, charset
    (f"lone {ESC}", "lone "),
    (f"\x9b31mC1 CSI", "C1 CSI"),  # 8-bit CSI
    (f"\x9d0;title\x9cC1 OSC", "C1 OSC"),  # 8-bit OSC and ST
    ("\x85\x8dC1", "C1"),  # other C1 controls
])
def test_escape_sequences_are_removed(raw, clean):
    assert sanitize(raw) == clean


def test_other_c0_controls_are_shown_as_pictures():
    assert sanitize("bell\x07 back\x08 nul\x00 del\x7f ff\x0c") == "bell␇ back␈ nul␀ del␡ ff␌"


def test_tab_and_newline_stay_and_carriage_returns_become_newlines():
    assert sanitize("a\tb\r\nc\rd\n") == "a\tb\nc\nd\n"


def test_bidirectional_overrides_are_removed():
    assert sanitize("file\u202egnp.exe \u2066x\u2069") == "filegnp.exe x"


def test_plain_text_and_unicode_pass_through():
    text = "✓ done — 100% naïve 日本語 🎉\n"
    assert sanitize(text) == text


def test_sanitize_line_keeps_to_one_line():
    assert sanitize_line(f"a\nb\tc{ESC}[1m") == "a b c"
