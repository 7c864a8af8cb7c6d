"""Make untrusted task output inert before it reaches a terminal.

A task (often an AI agent) prints whatever it likes. Escape sequences could
clear the screen, retitle the window, move the cursor or write the user's
clipboard (OSC 52), so every sequence is removed and every other control
character but tab and newline is shown as a visible placeholder.
"""

from __future__ import annotations

import re

# CSI, OSC (ended by BEL or ST), DCS/SOS/PM/APC strings, and two-character escapes.
_ESCAPES = re.compile(
    r"""
    \x1b\[[0-?]*[ -/]*[@-~]          # CSI ... final byte
  | \x9b[0-?]*[ -/]*[@-~]            # 8-bit CSI
  | (?:\x1b\]|\x9d).*?(?:\x07|\x1b\\|\x9c|$)      # OSC ... BEL or ST (or the end: never let it through)
  | (?:\x1b[PX^_]|[\x90\x98\x9e\x9f]).*?(?:\x1b\\|\x9c|$)  # DCS, SOS, PM, APC strings
  | \x1b[ -/]*[0-~]?                 # other escapes, or a lone ESC
    """,
    re.VERBOSE | re.DOTALL,
)
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def sanitize(text: str) -> str:
    """``text`` with escape sequences removed and other control characters shown as ``�``."""
    text = _ESCAPES.sub("", text)
    return _CONTROLS.sub("\ufffd", text.replace("\r\n", "\n"))
