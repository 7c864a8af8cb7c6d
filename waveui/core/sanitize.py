"""Make untrusted task output safe to put on screen: escape sequences out, controls inert.

A task's output goes into its log file and from there onto our screen. Left
as is, it could move the cursor, recolour or clear the terminal, change its
title, or write to the clipboard (OSC 52). :func:`sanitize` removes every
escape sequence (CSI, OSC, DCS, SOS, PM, APC, in their 7-bit and 8-bit forms,
and the short ``ESC x`` ones), removes C1 controls and the bidirectional
overrides that reorder text, and shows the other C0 controls (BEL, BS, …) as
their visible Unicode pictures (``␇``). Tab and newline stay. CRLF becomes a
newline, and so does a lone CR: the line a progress bar meant to overwrite is
kept on screen instead.
"""

from __future__ import annotations

import re

_SEQUENCE = re.compile(
    r"""
      (?:\x1b\[|\x9b) [\x30-\x3f]* [\x20-\x2f]* [\x40-\x7e]?          # CSI; a torn one too
    | (?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])                          # OSC DCS SOS PM APC ...
      [^\x07\x18\x1a\x1b\x9c\n]*                                        # ... their text up to
      (?:\x07|\x1b\\|\x9c)?                                             # BEL or ST (or a newline: never span lines)
    | \x1b [\x20-\x2f]* [\x30-\x7e]                                     # ESC c, ESC 7, ESC ( B, ...
    | \x1b                                                              # a lone ESC
    """,
    re.VERBOSE,
)
_C1_AND_BIDI = re.compile("[\x80-\x9f\u202a-\u202e\u2066-\u2069]")
# C0 controls but tab and newline, and DEL: each is shown as its control picture.
_C0 = re.compile("[\x00-\x08\x0b-\x1f\x7f]")


def _picture(match: re.Match) -> str:
    code = ord(match.group())
    return "\u2421" if code == 0x7F else chr(0x2400 + code)


def sanitize(text: str) -> str:
    """``text`` with every escape sequence removed and every other control character made inert."""
    if text.isprintable():  # the usual case: no control, no format character, nothing to do
        return text
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _SEQUENCE.sub("", text)
    text = _C1_AND_BIDI.sub("", text)
    return _C0.sub(_picture, text)


def sanitize_line(text: str) -> str:
    """One line of text for a single-line cell: like :func:`sanitize`, newlines and tabs as spaces."""
    return sanitize(text).replace("\n", " ").replace("\t", " ")
