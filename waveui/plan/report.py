"""A plan as text for a terminal, as JSON for scripts, and as DOT or Mermaid for docs.

JSON schema of ``waveui plan --json`` (times are in story points)::

    {
      "epic": str, "tasks": int, "dependencies": int, "workers": int,
      "graph_type": "chain" | "broad" | "hybrid",
      "parallelism": float, "parallelism_level": "none" | "low" | "medium" | "high",
      "useful_workers": int, "strategy": str, "verdict": str,
      "waves": [[task id, ...], ...],
      "critical_path": {"tasks": [task id, ...], "length": float},
      "slack": {task id: float},
      "lower_bound": float,
      "estimated_makespan": {"eager": float, "waves": float, "fifo": float, "rule": str},
      "estimates_honour_locks": bool,
      "dispatch_order": [task id, ...],
      "conflict_mode": "serialise" | "lock" | "defer",
      "conflicts": [{"tasks": [a, b], "files": [str, ...],
                     "resolution": "serialise" | "lock" | "defer",
                     "serialise": {"before": id, "after": id, "critical_path_growth": float}}],
      "added_edges": [[before, after], ...],
      "split_suggestions": [{"file": str, "tasks": [task id, ...]}]
    }
"""

from __future__ import annotations

import json
from typing import Any

from waveui.plan import Plan
from waveui.run.metrics import plural

RESOLUTION_WORDS = {
    "serialise": "serialised",
    "lock": "locked: never at the same time",
    "defer": "deferred: run in parallel, merge by hand",
}


def _points(value: float) -> str:
    return f"{value:g}" if value == int(value) else f"{value:.2f}"


def to_json(plan: Plan) -> dict[str, Any]:
    ids = plan.graph.ids
    mode = plan.epic.conflicts
    serialise_of = {(s.before, s.after) if s.before < s.after else (s.after, s.before): s for s in plan.serialised}
    conflicts = []
    for c in plan.conflicts:
        s = serialise_of[(c.a, c.b)]
        conflicts.append({
            "tasks": [ids[c.a], ids[c.b]],
            "files": list(c.files),
            "resolution": mode,
            "serialise": {"before": ids[s.before], "after": ids[s.after], "critical_path_growth": float(s.growth)},
        })
    return {
        "epic": plan.epic.name,
        "tasks": len(plan.graph),
        "dependencies": plan.declared.edge_count,
        "workers": plan.workers,
        "graph_type": plan.shape.kind,
        "parallelism": float(round(plan.shape.parallelism, 4)),
        "parallelism_level": plan.shape.level,
        "useful_workers": plan.shape.useful_workers,
        "strategy": plan.shape.strategy,
        "verdict": plan.shape.verdict,
        "waves": [plan.ids(w) for w in plan.waves],
        "critical_path": {"tasks": plan.ids(plan.critical.tasks), "length": float(plan.critical.length)},
        "slack": {task_id: float(plan.critical.slack[i]) for i, task_id in enumerate(ids)},
        "lower_bound": float(plan.lower_bound),
        "estimated_makespan": {
            "eager": float(plan.eager.makespan),
            "waves": float(plan.wave_barriers.makespan),
            "fifo": float(plan.fifo.makespan),
            "rule": plan.eager.rule,
        },
        "estimates_honour_locks": plan.locked,
        "dispatch_order": plan.ids(plan.eager.order),
        "conflict_mode": mode,
        "conflicts": conflicts,
        "added_edges": [[ids[s.before], ids[s.after]] for s in plan.serialised] if mode == "serialise" else [],
        "split_suggestions": [{"file": s.file, "tasks": plan.ids(s.tasks)} for s in plan.splits],
    }


def json_text(plan: Plan) -> str:
    return json.dumps(to_json(plan), indent=2)


def _clip(words: list[str], width: int) -> str:
    """Words joined by spaces, cut to ``width`` with a count of what was left out."""
    out, used = [], 0
    for i, word in enumerate(words):
        rest = len(words) - i
        if used + len(word) + 1 > width - (12 if rest > 1 else 0) and out:
            return " ".join(out) + f" … (+{rest} more)"
        out.append(word)
        used += len(word) + 1
    return " ".join(out)


def text(plan: Plan, width: int = 100, style=lambda s, _tag: s) -> str:
    """The plan for a terminal. ``style(text, tag)`` may colour parts (tags: title, head, dim, warn)."""
    ids = plan.graph.ids
    lines = []
    add = lines.append
    add(style(f"{plan.epic.name}", "title") + f"  {plural(len(plan.graph), 'task')}, "
        f"{plural(plan.declared.edge_count, 'dependency', 'dependencies')}, {plural(plan.workers, 'worker')}")
    add(plan.shape.verdict)
    add("")
    add(style(f"Waves ({len(plan.waves)})", "head"))
    shown_waves = plan.waves if len(plan.waves) <= 40 else plan.waves[:20] + [None] + plan.waves[-19:]
    for number, wave in enumerate(shown_waves, start=1):
        if wave is None:
            add(style(f"  … {len(plan.waves) - 39} more waves", "dim"))
            continue
        index = number if number <= 20 or len(plan.waves) <= 40 else len(plan.waves) - (len(shown_waves) - number)
        add(f"  {index:>3}  " + _clip([ids[t] for t in wave], width - 7))
    add("")
    path = [ids[t] for t in plan.critical.tasks]
    if len(path) > 12:
        path = path[:6] + [f"… {len(path) - 11} more"] + path[-5:]
    length = _points(plan.critical.length) + (" point" if plan.critical.length == 1 else " points")
    add(style("Critical path", "head") + f" ({length}): " + " → ".join(path))
    add("")
    best = plan.eager.makespan
    honoured = "; locked tasks never run at the same time in any of them" if plan.locked else ""
    add(style(f"Makespan on {plural(plan.workers, 'worker')}", "head") + f" (story points{honoured})")
    add(f"  lower bound      {_points(plan.lower_bound):>8}")
    add(f"  eager (waveui)   {_points(best):>8}   dispatch rule: {plan.eager.rule}")

    def versus(value: float) -> str:
        return f"   {100 * (value / best - 1):+.0f}% against eager" if best > 0 else ""

    add(f"  wave barriers    {_points(plan.wave_barriers.makespan):>8}" + versus(plan.wave_barriers.makespan))
    add(f"  FIFO             {_points(plan.fifo.makespan):>8}" + versus(plan.fifo.makespan))
    add("")
    mode = plan.epic.conflicts
    if not plan.conflicts:
        add(style("Conflicts", "head") + ": none, no two unordered tasks declare the same files")
    else:
        add(style(f"Conflicts ({len(plan.conflicts)})", "head") + f", handled by conflicts = \"{mode}\"")
        by_pair = {(min(s.before, s.after), max(s.before, s.after)): s for s in plan.serialised}
        shown = plan.conflicts[:30]
        for c in shown:
            s = by_pair[(c.a, c.b)]
            files = _clip(list(c.files), 40)
            if mode == "serialise":
                how = f"serialised: {ids[s.before]} before {ids[s.after]} (+{_points(s.growth)} critical path)"
            else:
                how = RESOLUTION_WORDS[mode] + f"; or serialise {ids[s.before]} first (+{_points(s.growth)})"
            add(f"  {ids[c.a]} ↔ {ids[c.b]}  {style(files, 'warn')}  {how}")
        if len(plan.conflicts) > len(shown):
            add(style(f"  … {len(plan.conflicts) - len(shown)} more (see --json)", "dim"))
    for s in plan.splits[:10]:
        add(f"  split {style(s.file, 'warn')}: {len(s.tasks)} tasks touch it ("
            + _clip([ids[t] for t in s.tasks], 50) + "); split it so each owns a part and they can run at once")
    return "\n".join(lines)


def _dot_id(task_id: str) -> str:
    return json.dumps(task_id)


def dot(plan: Plan) -> str:
    """Graphviz DOT; critical-path tasks and edges bold red, serialisation edges dashed."""
    ids = plan.graph.ids
    on_path = plan.critical.members
    path_edges = set(zip(plan.critical.tasks, plan.critical.tasks[1:]))
    added = {(s.before, s.after) for s in plan.serialised} if plan.epic.conflicts == "serialise" else set()
    out = [f"digraph {_dot_id(plan.epic.name)} {{", "  rankdir=LR;", "  node [shape=box, style=rounded];"]
    for i, task in enumerate(plan.epic.tasks):
        label = f"{task.id}\n{task.title}" if task.title else task.id
        label = label.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        extra = ", color=red, penwidth=2" if i in on_path else ""
        out.append(f'  {_dot_id(ids[i])} [label="{label} ({_points(task.story_points)})"{extra}];')
    for i, nexts in enumerate(plan.graph.succ):
        for j in nexts:
            attrs = []
            if (i, j) in path_edges:
                attrs.append("color=red, penwidth=2")
            if (i, j) in added:
                attrs.append('style=dashed, label="serialised"')
            suffix = f" [{', '.join(attrs)}]" if attrs else ""
            out.append(f"  {_dot_id(ids[i])} -> {_dot_id(ids[j])}{suffix};")
    out.append("}")
    return "\n".join(out)


def mermaid(plan: Plan) -> str:
    """Mermaid flowchart; critical-path tasks in the ``critical`` class, serialisation edges dotted."""
    ids = plan.graph.ids
    node = {i: f"t{i}" for i in range(len(ids))}
    added = {(s.before, s.after) for s in plan.serialised} if plan.epic.conflicts == "serialise" else set()
    out = ["flowchart LR"]
    for i, task in enumerate(plan.epic.tasks):
        label = (f"{task.id}: {task.title}" if task.title else task.id).replace('"', "'")
        label = " ".join(label.splitlines())  # a node is one line of the flowchart
        out.append(f'  {node[i]}["{label}"]')
    for i, nexts in enumerate(plan.graph.succ):
        for j in nexts:
            arrow = "-. serialised .->" if (i, j) in added else "-->"
            out.append(f"  {node[i]} {arrow} {node[j]}")
    out.append("  classDef critical stroke:#d33,stroke-width:3px")
    if plan.critical.tasks:
        out.append("  class " + ",".join(node[i] for i in plan.critical.tasks) + " critical")
    return "\n".join(out)
