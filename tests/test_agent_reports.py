"""What agents report, acted on by real runs: failures in their own words, denied tool calls, tokens, budgets, notify.

Each test runs a real epic in a real git repository. Agents are stand-in
executables on a PATH the test builds: they print what the real CLI prints.
Claude Code's result line follows ``SDKResultMessage`` as its documentation
gives it (repository patrickcarmichael/claude-docs, path
docs/ai-platforms/anthropic/formatted/229-message-types.md: ``type``,
``subtype`` ``success``/``error_max_turns``/``error_during_execution``,
``is_error``, ``num_turns``, ``result``, ``total_cost_usd``, ``usage``,
``permission_denials`` of ``{tool_name, tool_use_id, tool_input}``; an
error result carries its words in an ``errors`` list rather than ``result``).
Until every agent reader reports ``failed``, ``denied`` and tokens, the
tasks here also say so through ``::waveui`` lines, which any command may print.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests import agent_standins
from tests.engine_helpers import git, make_repo, run_engine, write_epic
from tests.faults.helpers import run as run_cli
from waveui.agents import claude
from waveui.engine.engine import EXIT_BUDGET
from waveui.run.events import TaskProgress, from_json, to_json
from waveui.run.journal import list_runs, read_events
from waveui.run.state import replay


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "repo", {"README.md": "hi\n", "out/.keep": ""})


@pytest.fixture
def agents_on_path(tmp_path, monkeypatch):
    """A folder put first on PATH, where a test writes its stand-in agents."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return folder


def stand_in(folder: Path, name: str, lines: list[dict], exit_code: int = 0, then: str = "") -> Path:
    """An executable ``name`` printing ``lines`` as JSON, one a line, running the shell code ``then``, exiting so."""
    script = folder / name
    body = "\n".join(f"printf '%s\\n' {_sh_quote(json.dumps(line))}" for line in lines)
    script.write_text(f"#!/bin/sh\n{then}\n{body}\nexit {exit_code}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


CLAUDE_INIT = {"type": "system", "subtype": "init", "session_id": "5d1c", "model": "claude-sonnet-4-5",
               "tools": ["Bash", "Edit", "Read"], "permissionMode": "acceptEdits"}
CLAUDE_USAGE = {"input_tokens": 1200, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 8000,
                "output_tokens": 340}


def claude_result(subtype: str = "success", **fields) -> dict:
    result = {"type": "result", "subtype": subtype, "is_error": subtype != "success", "duration_ms": 5321,
              "duration_api_ms": 4999, "num_turns": 4, "session_id": "5d1c", "total_cost_usd": 0.0731,
              "usage": CLAUDE_USAGE, "permission_denials": []}
    if subtype == "success":
        result["result"] = "Done."
    result.update(fields)
    return result


def epic_text(command: str, tasks: str, **epic) -> str:
    """An epic running ``command`` for ``tasks``, one at a time unless ``epic`` says otherwise."""
    epic = {"name": "reports", "max_parallel": 1, "adaptive": False, "command": command} | epic
    settings = "\n".join(f"{key} = {json.dumps(value)}" for key, value in epic.items())
    return f"[epic]\n{settings}\n{tasks}"


# ------------------------------------------------------------------ failures in the agent's own words


def test_a_task_whose_agent_says_it_failed_fails_with_its_words_though_it_exits_0(repo):
    epic = write_epic(repo, epic_text(
        'echo work > out/a.txt; echo "::waveui failed=\\"Reached maximum number of turns (4)\\""; exit 0',
        '[[task]]\nid = "a"\nretries = 1\n'))
    state = run_engine(epic, repo).state
    task = state.tasks["a"]
    assert task.state == "failed"
    assert task.reason == "agent failed: Reached maximum number of turns (4)"
    assert len(task.attempts) == 2  # retried as configured, like any failure
    assert not state.ok


def test_a_claude_error_result_fails_the_task_though_claude_exits_0(repo, agents_on_path):
    result = claude_result("error_max_turns", errors=["Reached maximum number of turns (4)"])
    stand_in(agents_on_path, "claude", [CLAUDE_INIT, result], then="echo half > out/a.txt")
    epic = write_epic(repo, epic_text('claude -p "$WAVEUI_PROMPT" --output-format stream-json --verbose',
                                      '[[task]]\nid = "a"\n'))
    task = run_engine(epic, repo).state.tasks["a"]
    assert task.state == "failed"
    assert task.reason.startswith("agent failed: ") and "maximum number of turns" in task.reason


# ------------------------------------------------------------------ denied tool calls


def test_an_agent_denied_tool_calls_that_changed_nothing_fails_denied(repo):
    epic = write_epic(repo, epic_text(
        'echo "::waveui denied=\\"Bash(npm test),Bash(git diff)\\""; echo "::waveui denied=\\"Bash(npm test)\\""',
        '[[task]]\nid = "a"\n'))
    state = run_engine(epic, repo).state
    task = state.tasks["a"]
    assert task.state == "failed"
    assert task.reason == "the agent was denied: Bash(npm test), Bash(git diff)"  # not "changed nothing"
    assert task.denied == ["Bash(npm test)", "Bash(git diff)"]  # each once
    assert [n.text for n in state.notices if n.kind == "denied"] == [
        "a: the agent was denied Bash(npm test), Bash(git diff); allow them in the recipe if the task needs them"]


def test_claude_denied_in_print_mode_fails_denied_through_its_real_recipe(repo, agents_on_path):
    """The stand-in prints what Claude Code prints when its Bash calls are denied: exit 0, no change."""
    agent_standins.install(agents_on_path, "claude", "denied")
    epic = write_epic(repo, epic_text(claude.COMMAND, '[[task]]\nid = "a"\n'))
    task = run_engine(epic, repo).state.tasks["a"]
    assert task.state == "failed" and task.reason.startswith("the agent was denied: "), task.reason
    assert task.denied and all(entry.startswith("Bash") for entry in task.denied), task.denied


def test_an_agent_denied_tool_calls_that_did_its_work_is_done_with_a_warning(repo):
    epic = write_epic(repo, epic_text('echo done > out/a.txt; echo "::waveui denied=WebFetch"',
                                      '[[task]]\nid = "a"\n'))
    state = run_engine(epic, repo).state
    assert state.tasks["a"].state == "done"
    assert any(n.kind == "denied" and n.level == "warning" and "WebFetch" in n.text for n in state.notices)


# ------------------------------------------------------------------ tokens


def test_tokens_reach_status_json_per_task_and_in_total(repo):
    write_epic(repo, epic_text(
        'echo "$WAVEUI_TASK_ID" > "out/$WAVEUI_TASK_ID.txt";'
        ' echo "::waveui cost=0.05 tokens_in=1000 tokens_out=200 tokens_cached=50";'
        ' echo "::waveui cost=0.1 tokens_in=1500 tokens_out=300 tokens_cached=80"',  # totals so far, not additions
        '[[task]]\nid = "a"\n[[task]]\nid = "b"\n'))
    code, out = run_cli(repo)
    assert code == 0, out
    shown = subprocess.run([sys.executable, "-m", "waveui", "status", "--json"], cwd=repo, capture_output=True,
                           text=True, check=True)
    info = json.loads(shown.stdout)
    assert (info["tokens_in"], info["tokens_out"], info["tokens_cached"]) == (3000, 600, 160)
    assert {row["id"]: (row["tokens_in"], row["tokens_out"]) for row in info["tasks"]} == {
        "a": (1500, 300), "b": (1500, 300)}
    text = subprocess.run([sys.executable, "-m", "waveui", "status"], cwd=repo, capture_output=True, text=True,
                          check=True).stdout
    assert "tokens 3.0k in / 600 out" in text


def test_tokens_of_a_retried_task_count_every_attempt_and_old_journals_still_read():
    from waveui.run.events import RunStarted, TaskInfo, TaskStateChanged

    events = [RunStarted(t=0, tasks=[TaskInfo("a", "", [], 1, [], 0, 0, False)]),
              TaskStateChanged(t=1, task="a", state="running", attempt=1),
              TaskProgress(t=2, task="a", tokens_in=100, tokens_out=10, denied=["Bash"]),
              TaskStateChanged(t=3, task="a", state="pending", attempt=1),
              TaskStateChanged(t=4, task="a", state="running", attempt=2),
              TaskProgress(t=5, task="a", tokens_in=40, tokens_out=4, failed="boom")]
    task = replay(from_json(to_json(e)) for e in events).tasks["a"]
    assert (task.tokens_in, task.tokens_out, task.failed, task.denied) == (140, 14, "boom", [])
    old = from_json('{"type":"task_progress","t":1,"task":"a","cost":0.5}')  # written before tokens existed
    assert isinstance(old, TaskProgress) and old.tokens_in is None and old.denied is None


# ------------------------------------------------------------------ budgets


THREE_TASKS = '[[task]]\nid = "a"\n[[task]]\nid = "b"\n[[task]]\nid = "c"\n'
SPENDS_60_CENTS = 'echo "$WAVEUI_TASK_ID" > "out/$WAVEUI_TASK_ID.txt"; echo "::waveui cost=0.6"'


def test_the_run_budget_stops_new_tasks_and_a_raised_budget_resumes_the_run(repo, tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    notify = f'echo "$WAVEUI_MESSAGE" > "{notes}/$WAVEUI_EVENT"'
    write_epic(repo, epic_text(SPENDS_60_CENTS, THREE_TASKS, max_cost=1.0, notify=notify))
    code, out = run_cli(repo)
    assert code == EXIT_BUDGET == 3, out
    assert "budget reached" in out
    state = replay(read_events(list_runs(repo)[-1] / "events.jsonl"))
    assert state.finish_reason == "budget reached" and not state.ok
    assert sorted(t.state for t in state.tasks.values()) == ["done", "done", "pending"]
    never = next(t for t in state.tasks.values() if t.state == "pending")
    assert never.attempts == []  # it never started
    assert state.max_cost == 1.0 and round(state.cost, 2) == 1.2
    assert "$1.20" in (notes / "budget_reached").read_text()
    assert "budget reached" in (notes / "run_finished").read_text()

    write_epic(repo, epic_text(SPENDS_60_CENTS, THREE_TASKS, max_cost=5.0))
    code, out = run_cli(repo)
    assert code == 0, out
    runs = list_runs(repo)
    assert len(runs) == 1  # the same run went on
    state = replay(read_events(runs[0] / "events.jsonl"))
    assert state.ok and state.max_cost == 5.0 and round(state.cost, 2) == 1.8
    assert git(repo, "show", f"{state.branch}:out/{never.id}.txt") == never.id


def test_a_task_over_its_own_budget_is_stopped_and_not_retried(repo, tmp_path):
    finished = tmp_path / "finished"
    epic = write_epic(repo, epic_text(
        f'echo "::waveui cost=0.2"; echo "::waveui cost=0.7"; sleep 30; touch "{finished}"',
        '[[task]]\nid = "a"\nmax_cost = 0.5\nretries = 2\n'))
    task = run_engine(epic, repo).state.tasks["a"]
    assert task.state == "failed"
    assert task.reason == "over its budget ($0.70 of $0.50)"
    assert len(task.attempts) == 1
    assert not finished.exists()  # stopped, not left to run on


def test_budgets_reach_the_agent_through_its_environment(repo, agents_on_path):
    # claude takes --max-budget-usd and --max-turns: the stand-in writes the arguments it was given.
    stand_in(agents_on_path, "claude", [CLAUDE_INIT, claude_result()],
             then='echo "$@" > "out/$WAVEUI_TASK_ID.txt"')
    command = ('claude -p "$WAVEUI_PROMPT" ${WAVEUI_MAX_COST:+--max-budget-usd "$WAVEUI_MAX_COST"}'
               ' ${WAVEUI_MAX_TURNS:+--max-turns "$WAVEUI_MAX_TURNS"}')
    epic = write_epic(repo, epic_text(command, '[[task]]\nid = "a"\nprompt = "p"\nmax_cost = 0.5\n'
                                               '[[task]]\nid = "b"\nprompt = "p"\nmax_turns = 3\n',
                                      max_cost=20.0, max_turns=12))
    state = run_engine(epic, repo).state
    assert state.ok
    assert git(repo, "show", f"{state.branch}:out/a.txt") == "-p p --max-budget-usd 0.5 --max-turns 12"
    # the epic's max_cost is the whole run's budget, never handed to one task
    assert git(repo, "show", f"{state.branch}:out/b.txt") == "-p p --max-turns 3"


# ------------------------------------------------------------------ notify


def test_notify_runs_for_each_event_with_the_task_variables(repo, tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    notify = f'env | grep ^WAVEUI_ | sort > "{notes}/$WAVEUI_EVENT-$WAVEUI_TASK_ID"'
    # left and right start together from the same tip (defer lets them): the second to merge conflicts
    tasks = ('[[task]]\nid = "left"\ncommand = "echo left > out/same.txt; sleep 0.5"\n'
             'affected_files = ["out/same.txt"]\n'
             '[[task]]\nid = "right"\ncommand = "echo right > out/same.txt; sleep 0.5"\n'
             'affected_files = ["out/same.txt"]\n'
             '[[task]]\nid = "broken"\ntitle = "Breaks"\ncommand = "exit 4"\n'
             '[[task]]\nid = "nosy"\ncommand = "echo x > out/nosy.txt; echo ::waveui denied=WebFetch"\n')
    epic = write_epic(repo, epic_text("true", tasks, conflicts="defer", notify=notify, max_parallel=2))
    state = run_engine(epic, repo).state
    assert state.tasks["broken"].state == "failed"
    conflicted = next(t for t in ("left", "right") if state.tasks[t].state == "conflicted")
    written = sorted(p.name for p in notes.iterdir())
    assert written == sorted(["task_failed-broken", f"task_conflicted-{conflicted}", "task_denied-nosy",
                              "run_finished-"])
    failed = dict(line.split("=", 1) for line in (notes / "task_failed-broken").read_text().splitlines())
    assert failed["WAVEUI_EVENT"] == "task_failed"
    assert failed["WAVEUI_TASK_ID"] == "broken" and failed["WAVEUI_TITLE"] == "Breaks"
    assert failed["WAVEUI_MESSAGE"] == "command failed (exit 4)"
    assert failed["WAVEUI_EPIC"] == "reports" and failed["WAVEUI_RUN_ID"] == state.run_id
    denied = (notes / "task_denied-nosy").read_text()
    assert "WAVEUI_MESSAGE=the agent was denied: WebFetch" in denied
    finished = (notes / "run_finished-").read_text()
    assert "WAVEUI_MESSAGE=reports: run finished with tasks not done, 2/4 done" in finished


@pytest.mark.parametrize("notify, said", [("sleep 600", "was killed"), ("exit 7", "failed (exit 7)"),
                                          ("kill -9 $$", "failed")])
def test_a_notify_command_that_hangs_or_fails_does_not_harm_the_run(repo, notify, said):
    epic = write_epic(repo, epic_text('echo "$WAVEUI_TASK_ID" > "out/$WAVEUI_TASK_ID.txt"',
                                      '[[task]]\nid = "a"\n[[task]]\nid = "b"\ncommand = "exit 1"\n',
                                      notify=notify))
    state = run_engine(epic, repo, notify_timeout=0.5).state
    assert state.tasks["a"].state == "done" and state.tasks["b"].state == "failed"
    assert state.finished and state.finish_reason == "finished with tasks not done"
    trouble = [n.text for n in state.notices if n.kind == "notify"]
    assert trouble and all(said in text for text in trouble)


def test_bad_budget_and_notify_settings_are_one_line_each_naming_file_and_line(repo):
    (repo / "waveui.toml").write_text('[epic]\nname = "x"\nmax_cost = "lots"\nnotify = ["a"]\n'
                                      'bell = "no"\n[[task]]\nid = "a"\nmax_turns = 0\nmax_cost = 0\n')
    code, out = run_cli(repo)
    assert code == 2
    assert [line.replace(f"{repo}/", "") for line in out.splitlines()] == [
        "waveui: error: waveui.toml:3: [epic] max_cost must be a number, not string 'lots'",
        "waveui: error: waveui.toml:4: [epic] notify must be a string, not array",
        "waveui: error: waveui.toml:5: [epic] bell must be true or false, not string 'no'",
        "waveui: error: waveui.toml:8: task 'a': max_turns must be at least 1, not 0",
        "waveui: error: waveui.toml:9: task 'a': max_cost must be above 0 (leave it out for no budget)",
    ]
