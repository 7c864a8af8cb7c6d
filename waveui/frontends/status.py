"""`waveui status`: a run summed up on one screen, or as one JSON object, from its journal.

Task reasons, ids and file names come from the journal, which holds whatever
tasks printed: every one is passed through :func:`waveui.core.sanitize.sanitize`
before it reaches the terminal.
"""

from __future__ import annotations

from waveui.plan.eta import estimate_remaining
from waveui.run.metrics import duration, money, projected_cost, tally, tokens
from waveui.run.state import Breakdown, RunState
from waveui.core.sanitize import sanitize_line

TROUBLE = ("failed", "conflicted", "blocked")
LISTED = (*TROUBLE, "cancelled")  # the tasks listed one by one, with why
SHOWN_PER_LIST = 10  # tasks listed per kind of trouble: the summary has to fit one screen


def report(state: RunState, summary: dict, now: float) -> dict:
    """What `waveui status --json` prints: the `waveui watch --list` row of the run, and more."""
    running = summary["status"] == "running"
    out = dict(summary)
    for key in ("epic", "status", "run"):
        out[key] = sanitize_line(out[key])
    out["active"] = state.active
    out["tokens_in"], out["tokens_out"], out["tokens_cached"] = state.tokens_in, state.tokens_out, state.tokens_cached
    out["max_cost"] = state.max_cost
    out["tasks"] = [{"id": sanitize_line(t.id), "state": t.state, "cost": round(t.cost, 4),
                     "tokens_in": t.tokens_in, "tokens_out": t.tokens_out, "tokens_cached": t.tokens_cached,
                     "denied": [sanitize_line(tool) for tool in t.denied], "sandboxed": t.sandboxed,
                     "kept_attempts": [{"attempt": a.number, "outcome": a.outcome, "ref": sanitize_line(a.ref),
                                        "commit": sanitize_line(a.commit), "base": sanitize_line(a.base)}
                                       for a in t.kept_attempts()],
                     "undeclared": [sanitize_line(f) for f in t.undeclared]}
                    for t in state.tasks.values()]
    out["efficiency"] = round(state.efficiency(now if running else None), 3)
    if running:
        out["elapsed"] = round(state.elapsed(now), 1)  # the journal's last event may be a while ago
    projected = projected_cost(state) if not state.finished else None
    out["projected_cost"] = round(projected, 4) if projected is not None else None
    eta = estimate_remaining(state, now) if running else None
    out["eta"] = round(eta, 1) if eta is not None else None
    for kind in LISTED:
        rows = []
        for task in state.tasks.values():
            if task.state != kind:
                continue
            row = {"id": sanitize_line(task.id), "reason": sanitize_line(task.reason)}
            if kind == "failed":
                row["attempt"], row["exit_code"] = task.attempt, task.exit_code
            if kind == "conflicted":
                row["files"] = [sanitize_line(f) for f in task.files]
            if kind == "blocked":  # the requirements it waits on that will not get done by themselves
                row["waiting_on"] = [sanitize_line(dep) for dep in task.requires
                                     if dep in state.tasks and state.tasks[dep].state in LISTED]
            rows.append(row)
        out[f"{kind}_tasks"] = rows
    # "nothing left to run" spoke to the user at the app while it was open; it says nothing afterwards
    out["notices"] = [{"kind": n.kind, "level": n.level, "message": sanitize_line(n.text)} for n in state.notices
                      if n.kind != "idle"]
    return out


def _cut(text: str, width: int | None) -> str:
    return text if width is None or len(text) <= width else text[:max(0, width - 1)] + "…"


def text(info: dict, width: int | None = 100, style=lambda s, _tag: s) -> str:
    """The report as a few lines of text, each cut to ``width`` (None: whole); ``style(text, tag)`` may colour it."""
    lines = [style(_cut(f"{info['epic']}  run {info['run']}  {info['status']}", width), "title")]
    lines.append(", ".join(tally(Breakdown(**info["breakdown"]))))
    figures = []
    if info["cost"] or info.get("max_cost") is not None:  # no task reports a cost and there is no budget: no word of it
        cost = f"cost {money(info['cost'])}"
        if info.get("max_cost") is not None:
            cost += f" of budget {money(info['max_cost'])}"
        if info["projected_cost"] is not None and info["status"] != "complete":
            cost += f" (projected {money(info['projected_cost'])})"
        figures.append(cost)
    if info.get("tokens_in") or info.get("tokens_out"):
        figures.append(f"tokens {tokens(info['tokens_in'])} in / {tokens(info['tokens_out'])} out")
    figures += [f"efficiency {100 * info['efficiency']:.0f}%", f"elapsed {duration(info['elapsed'])}"]
    if info["status"] == "running":
        figures.append(f"ETA {duration(info['eta'])}")
    lines.append(", ".join(figures))
    sandboxed = [row["id"] for row in info.get("tasks", []) if row.get("sandboxed")]
    if sandboxed:
        lines.append(_cut(f"sandboxed: {', '.join(sandboxed)}", width))
    notices = info.get("notices", [])
    if notices:
        lines.append(style("notices", "warn"))
        for notice in notices[:SHOWN_PER_LIST]:
            lines.append(_cut(f"  {notice['message']}", width))
        _more(lines, len(notices), style)
    tasks = info.get("tasks", [])
    denied = [row for row in tasks if row["denied"]]
    if denied:
        lines.append(style("denied tool calls", "warn"))
        for row in denied[:SHOWN_PER_LIST]:
            lines.append(_cut(f"  {row['id']}  {', '.join(row['denied'])}", width))
        _more(lines, len(denied), style)
    undeclared = [row for row in tasks if row.get("undeclared")]
    if undeclared:
        lines.append(style("changed but not declared", "warn"))
        for row in undeclared[:SHOWN_PER_LIST]:
            lines.append(_cut(f"  {row['id']}  {', '.join(row['undeclared'])}", width))
        _more(lines, len(undeclared), style)
    for kind in LISTED:
        rows = info[f"{kind}_tasks"]
        if not rows:
            continue
        lines.append(style(kind, "warn"))
        name_width = min(32, max(len(r["id"]) for r in rows[:SHOWN_PER_LIST]))
        for row in rows[:SHOWN_PER_LIST]:
            reason = row["reason"]
            if row.get("files"):
                reason = (reason + ": " if reason else "") + ", ".join(row["files"])
            lines.append(_cut(f"  {row['id']:<{name_width}}  {reason}".rstrip(), width))
        _more(lines, len(rows), style)
    # A merged task's work is on the integration branch; the others' is only in what their attempts kept.
    kept = [(row["id"], attempt) for row in tasks if row["state"] != "done" for attempt in row.get("kept_attempts", [])]
    if kept:
        lines.append(style("kept attempts of unmerged tasks (`git diff BASE COMMIT` shows one's work)", "warn"))
        for task_id, attempt in kept[:SHOWN_PER_LIST]:
            lines.append(_cut(f"  {task_id} #{attempt['attempt']}  {attempt['outcome'] or 'kept'}  "
                              f"{attempt['commit'][:12]}  {attempt['ref']}", width))
        _more(lines, len(kept), style)
    return "\n".join(lines)


def _more(lines: list[str], count: int, style) -> None:
    """Say how many rows a list left out to fit one screen."""
    if count > SHOWN_PER_LIST:
        lines.append(style(f"  … and {count - SHOWN_PER_LIST} more (`waveui status --json` lists all)", "dim"))

