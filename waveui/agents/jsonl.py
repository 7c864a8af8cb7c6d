"""Reading agents' newline-delimited JSON events: a cheap test before decoding, and the shared result shape.

Several agents print one JSON object per line and end with a result event
in the shape Claude Code made common (``{"type": "result", "subtype": ...,
"is_error": ..., "result": ..., "num_turns": ...}``); the readers here turn
such values into the fields of :func:`waveui.run.directives.parse_directive`.
"""

from __future__ import annotations

import json

from waveui.agents.base import count, dollars, one_line  # noqa: F401  (the readers' helpers, in one place)


def decode(line: bytes, *markers: bytes) -> dict | None:
    """The JSON object on ``line`` if it starts with ``{`` and holds one of ``markers``; None, cheaply, otherwise."""
    if line[:64].lstrip()[:1] != b"{" or not any(marker in line for marker in markers):
        return None
    try:
        event = json.loads(line.decode("utf-8", "replace"))
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


def put(fields: dict, key: str, value: object) -> None:
    """Set ``fields[key]`` only when there is a value to report."""
    if value is not None and value != "" and value != []:
        fields[key] = value


def result_fields(event: dict) -> dict:
    """The fields of a Claude-style result event: turns, cost, tokens, last word, failure and denials.

    A result fails when ``is_error`` is true or its ``subtype`` is not
    ``success``; its own words are in ``error`` (Amp), ``errors`` (Claude
    Code) or ``result``, else the subtype names why.
    """
    fields: dict = {}
    put(fields, "iterations", count(event.get("num_turns")))
    put(fields, "cost", dollars(event.get("total_cost_usd")))
    usage = event.get("usage")
    if isinstance(usage, dict):  # snake_case (Anthropic's usage) or camelCase (Cursor's)
        put(fields, "tokens_in", count(usage.get("input_tokens", usage.get("inputTokens"))))
        put(fields, "tokens_out", count(usage.get("output_tokens", usage.get("outputTokens"))))
        put(fields, "tokens_cached", count(usage.get("cache_read_input_tokens", usage.get("cacheReadTokens"))))
    subtype = event.get("subtype")
    said = one_line(event.get("result"))
    if event.get("is_error") is True or (isinstance(subtype, str) and subtype != "success"):
        errors = event.get("errors")
        words = one_line(event.get("error")) or (
            one_line("; ".join(e for e in errors if isinstance(e, str))) if isinstance(errors, list) else "")
        words = words or said or (one_line(subtype) if isinstance(subtype, str) else "") or "agent error"
        fields["failed"] = words
        fields["message"] = words
    else:
        put(fields, "message", said)
    denials = event.get("permission_denials")
    if isinstance(denials, list):
        put(fields, "denied", [name for name in (denied_name(d) for d in denials) if name])
    return fields


def denied_name(denial: object) -> str:
    """One line naming a denied tool call: ``Bash: npm test`` from ``{"tool_name": ..., "tool_input": {...}}``."""
    if isinstance(denial, str):
        return one_line(denial)
    if not isinstance(denial, dict):
        return ""
    name = one_line(denial.get("tool_name")) or "tool"
    tool_input = denial.get("tool_input")
    detail = ""
    if isinstance(tool_input, dict):
        detail = one_line(tool_input.get("command") or tool_input.get("file_path") or "")
    return f"{name}: {detail}" if detail else name
