"""Agent recipes: `waveui init --agent`, and reading Claude Code's stream-json result as cost and turns."""

from __future__ import annotations

import json
import os
import shlex
import sys

import pytest

from waveui import agents
from waveui.core import spec
from waveui.executors.local.runner import MESSAGE_MAX, parse_agent_json, start_task

RESULT = {"type": "result", "subtype": "success", "is_error": False, "duration_ms": 81234, "num_turns": 7,
          "result": "Added the User model and its tests.\nAll 12 tests pass.", "session_id": "5f1c",
          "total_cost_usd": 0.123, "usage": {"input_tokens": 1200, "output_tokens": 3400}}


def line(event: dict) -> str:
    return json.dumps(event, separators=(",", ":"))


# ------------------------------------------------------------ parse_agent_json


def test_result_event_gives_cost_turns_and_the_last_word():
    assert parse_agent_json(line(RESULT)) == {
        "cost": 0.123, "iterations": 7, "message": "Added the User model and its tests. All 12 tests pass."}
    assert parse_agent_json("  " + json.dumps(RESULT) + "\r\n")["cost"] == 0.123  # spaces after colons too


def test_other_events_and_other_lines_give_none():
    assistant = {"type": "assistant", "message": {"content": [{"type": "text", "text": '"type":"result"'}]}}
    system = {"type": "system", "subtype": "init", "tools": ["Edit"]}
    for text in (line(assistant), line(system), "plain output", "", "::waveui progress=5",
                 '{"type":"result", broken', '["type", "result"]', 'note: {"type":"result"}',
                 line({"type": "resultant"})):
        assert parse_agent_json(text) is None, text


def test_errors_say_why_and_bad_values_are_dropped():
    failed = dict(RESULT, subtype="error_max_turns", is_error=True, result=None, total_cost_usd=-1, num_turns=True)
    assert parse_agent_json(line(failed)) == {"message": "agent stopped: error_max_turns"}
    assert parse_agent_json(line({"type": "result", "is_error": True, "result": "API Error: 529"})) == {
        "message": "agent error: API Error: 529"}
    assert parse_agent_json(line({"type": "result", "total_cost_usd": "0.5", "num_turns": 2.5})) == {}
    assert parse_agent_json('{"type":"result","total_cost_usd":NaN}') == {}


def test_older_cost_field_and_message_cleaned_and_capped():
    assert parse_agent_json(line({"type": "result", "cost_usd": 0.5}))["cost"] == 0.5
    message = parse_agent_json(line({"type": "result", "result": "a\x1b[31mb\u202e" + "x" * 5000}))["message"]
    assert len(message) == MESSAGE_MAX and message.endswith("…") and "\x1b" not in message and "\u202e" not in message


async def test_runner_reads_the_result_line_without_waveui_directives(tmp_path):
    events = [{"type": "system", "subtype": "init"},
              {"type": "assistant", "message": {"content": [{"type": "text", "text": "Working"}]}},
              RESULT]
    script = tmp_path / "agent.py"
    script.write_text("import json, sys\n"
                      f"for event in {events!r}:\n"
                      "    print(json.dumps(event, separators=(',', ':')))\n")
    received: list[dict] = []
    task = await start_task(f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}; echo '::waveui progress=100'",
                            tmp_path, dict(os.environ), tmp_path / "task.log", received.append)
    await task.wait()
    assert received == [parse_agent_json(line(RESULT)), {"progress": 100.0}]
    assert (tmp_path / "task.log").read_text().count("\n") == 4  # everything is logged as it came


# ---------------------------------------------------------------- recipes


def test_every_recipe_runs_on_the_prompt_variable():
    assert set(agents.RECIPES) == {"claude", "codex", "aider", "shell"}
    for name, recipe in agents.RECIPES.items():
        assert "$WAVEUI_PROMPT" in recipe.command, name
        assert recipe.comment and "\n" not in recipe.comment
    assert agents.RECIPES["claude"].command == (
        'claude -p "$WAVEUI_PROMPT" --output-format stream-json --verbose --permission-mode acceptEdits')
    assert agents.RECIPES["codex"].command == 'codex exec --full-auto "$WAVEUI_PROMPT"'
    assert agents.RECIPES["aider"].command == 'aider --yes-always --no-auto-commits --message "$WAVEUI_PROMPT"'


def test_command_line_round_trips_through_toml():
    for command in ['claude -p "$WAVEUI_PROMPT"', "echo 'single' \"double\"", "printf 'a\\tb'"]:
        assert spec.loads(f"[epic]\n{agents.command_line(command)}\n[[task]]\nid = \"a\"\n").command == command


@pytest.mark.parametrize("agent", sorted(agents.RECIPES))
def test_init_with_an_agent_writes_a_loading_commented_starter(cli, tmp_path, agent):
    result = cli("init", "--agent", agent)
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "waveui.toml").read_text()
    epic = spec.loads(text)
    assert epic.command == agents.RECIPES[agent].command
    assert f"# {agents.RECIPES[agent].comment}\n" in text
    assert "# `waveui plan` shows how it will run" in text  # the starter's comments are kept
    assert text.count("command =") == 1  # the starter's other suggestion is gone
    plain = cli("init", "-f", "plain.toml")
    assert plain.returncode == 0
    assert [t.id for t in epic.tasks] == [t.id for t in spec.load(tmp_path / "plain.toml").tasks]


def test_init_claude_output_is_what_the_readme_promises(cli, tmp_path):
    assert cli("init", "--agent", "claude").returncode == 0
    epic = spec.load(tmp_path / "waveui.toml")
    assert epic.command.startswith('claude -p "$WAVEUI_PROMPT" --output-format stream-json')
    assert cli("plan").returncode == 0


def test_init_refuses_an_unknown_agent(cli, tmp_path):
    result = cli("init", "--agent", "clippy")
    assert result.returncode == 2
    [line_] = result.error_lines
    assert "invalid choice: 'clippy'" in line_
    assert not (tmp_path / "waveui.toml").exists()


def test_starter_without_a_command_line_gets_one_under_epic():
    text = agents.starter('[epic]\nname = "x"\n\n[[task]]\nid = "a"\n', "codex")
    assert spec.loads(text).command == agents.RECIPES["codex"].command
