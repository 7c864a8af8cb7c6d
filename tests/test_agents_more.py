"""gemini, cursor-agent, opencode, amp and goose: recipes, `waveui init --agent`, and their output read.

Fixtures under tests/fixtures/agents/<name>/ copy the shapes of each agent's real output:

* gemini: google-gemini/gemini-cli, packages/core/src/output/types.ts (``JsonStreamEvent``: ``init``,
  ``message``, ``tool_use``, ``tool_result``, ``error``, ``result`` with ``status``, ``error`` and
  ``stats``) and geminicli.com/docs/cli/headless (exit code 1 on an API failure, 53 past the turn limit);
* cursor-agent: cursor.com/docs/cli/reference/output-format (``system``/``user``/``tool_call``/
  ``assistant`` events and the terminal ``result``; on failure a non-zero exit and maybe no result);
* amp: ampcode.com/news/streaming-json (the Claude Code compatible ``--stream-json`` events), with the
  error result (``is_error``, ``error_max_turns``, ``error``) of the Amp SDK's stream;
* opencode: anomalyco/opencode, packages/opencode/src/cli/cmd/run.ts (``emit(type, {part})`` with
  ``timestamp`` and ``sessionID``; ``error`` events carry ``{name, data: {message}}``; ``done`` carries
  the ``rejected`` permissions) and packages/opencode/src/session/message-v2.ts for the parts.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.engine_helpers import git, make_repo, write_epic
from waveui import agents
from waveui.agents import amp, cursor, gemini, goose, opencode
from waveui.core import spec
from waveui.run.directives import MESSAGE_MAX
from waveui.run.journal import list_runs, read_events
from waveui.run.state import replay

FIXTURES = Path(__file__).parent / "fixtures" / "agents"
MINE = {"gemini": gemini, "cursor-agent": cursor, "opencode": opencode, "amp": amp, "goose": goose}


def fixture_lines(agent: str, name: str) -> list[bytes]:
    return (FIXTURES / agent / f"{name}.jsonl").read_bytes().splitlines()


def read_all(agent, lines: list[bytes]) -> list[dict]:
    return [fields for fields in map(agent.read_line, lines) if fields is not None]


# ---------------------------------------------------------------- readers


def test_gemini_result_gives_tokens_and_a_success_says_no_failure():
    assert read_all(gemini, fixture_lines("gemini", "success")) == [
        {"tokens_in": 14532, "tokens_out": 288, "tokens_cached": 12001}]


def test_gemini_error_result_fails_in_its_own_words_and_a_warning_is_only_a_message():
    warning, result = read_all(gemini, fixture_lines("gemini", "error"))
    assert warning == {"message": "Loop detected, stopping execution"}
    words = ("Reached max session turns for this session. "
             "Increase the number of turns by specifying maxSessionTurns in settings.json.")
    assert result == {"tokens_in": 3250, "tokens_out": 60, "tokens_cached": 0, "failed": words, "message": words}
    assert gemini.read_line(b'{"type":"result","status":"error"}') == {"failed": "agent error", "message": "agent error"}


def test_cursor_result_gives_the_last_word_and_usage_when_present():
    assert read_all(cursor, fixture_lines("cursor-agent", "success")) == [{"message": "Added the User model."}]
    with_usage = {"type": "result", "subtype": "success", "is_error": False, "result": "ok",
                  "usage": {"inputTokens": 900, "outputTokens": 40, "cacheReadTokens": 700}}
    assert cursor.read_line(json.dumps(with_usage).encode()) == {
        "message": "ok", "tokens_in": 900, "tokens_out": 40, "tokens_cached": 700}


def test_amp_result_gives_turns_and_its_error_result_fails_in_its_words():
    assert read_all(amp, fixture_lines("amp", "success")) == [{"iterations": 3, "message": "Added the User model."}]
    assert read_all(amp, fixture_lines("amp", "error")) == [
        {"iterations": 25, "failed": "Maximum number of turns reached", "message": "Maximum number of turns reached"}]


def test_a_claude_style_result_lists_its_permission_denials():
    denied = {"type": "result", "subtype": "success", "is_error": False, "num_turns": 2, "result": "Could not test.",
              "permission_denials": [{"tool_name": "Bash", "tool_use_id": "toolu_1",
                                      "tool_input": {"command": "npm test"}}]}
    assert amp.read_line(json.dumps(denied).encode())["denied"] == ["Bash: npm test"]


def test_opencode_reads_text_errors_and_refused_permissions_not_per_step_costs():
    assert read_all(opencode, fixture_lines("opencode", "rejected")) == [
        {"message": "I could not run the tests."}, {"denied": ["bash"]}]
    assert read_all(opencode, fixture_lines("opencode", "error")) == [
        {"failed": "API key is missing or invalid", "message": "API key is missing or invalid"}]
    done = b'{"type":"done","timestamp":1,"sessionID":"s","reason":"idle","rejected":[]}'
    assert opencode.read_line(done) is None


@pytest.mark.parametrize("name", sorted(MINE))
def test_readers_ignore_other_lines_and_bad_values(name):
    agent = MINE[name]
    for line in (b"", b"plain output", b"::waveui progress=5", b'note: {"type":"result"}', b'{"type":"result", broken',
                 b'["type", "result"]', b'{"type":"resultant"}', b"x" * 100 + b'{"type":"result"}'):
        assert agent.read_line(line) is None, line
    bad = {"type": "result", "status": "success", "num_turns": True, "stats": {"input_tokens": -3, "cached": 1.5},
           "usage": {"input_tokens": "9"}}
    assert agent.read_line(json.dumps(bad).encode()) in (None, {}), name


def test_messages_are_one_capped_printable_line():
    long = {"type": "result", "subtype": "success", "is_error": False, "result": "a\nb\x1b[31m\u202e" + "x" * 5000}
    message = amp.read_line(json.dumps(long).encode())["message"]
    assert len(message) == MESSAGE_MAX and message.endswith("…") and message.startswith("a b")
    assert "\x1b" not in message and "\u202e" not in message


# ---------------------------------------------------------------- recipes


@pytest.mark.parametrize("name", sorted(MINE))
def test_each_agent_is_in_the_table_with_a_recipe_on_the_prompt_and_what_it_grants(name):
    agent = agents.AGENTS[name]
    assert agent is MINE[name] and agent.NAME == name
    assert '"$WAVEUI_PROMPT"' in agent.COMMAND
    assert agent.GRANTS and "\n" not in agent.GRANTS and "`" in agent.GRANTS  # names the flag
    assert agent.KEEP_OUT == ()
    assert agents.agent_for(agent.COMMAND) is agent
    assert agents.line_reader(agent.COMMAND)(b"::waveui progress=5") == {"progress": 5.0}


def test_goose_takes_the_turn_limit_only_when_there_is_one(tmp_path):
    """The recipe's shell expansion, run by a real shell with a stand-in goose that prints its arguments."""
    bin_dir = stand_in(tmp_path, "goose", 'printf "%s|" "$GOOSE_MODE" "$@"\n')
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "WAVEUI_PROMPT": "say 'hi' $HOME"}
    env.pop("WAVEUI_MAX_TURNS", None)
    out = subprocess.run(["/bin/sh", "-c", goose.COMMAND], env=env, capture_output=True, text=True, check=True).stdout
    assert out == "auto|run|--no-session|--text|say 'hi' $HOME|"
    out = subprocess.run(["/bin/sh", "-c", goose.COMMAND], env={**env, "WAVEUI_MAX_TURNS": "12"},
                         capture_output=True, text=True, check=True).stdout
    assert out == "auto|run|--no-session|--text|say 'hi' $HOME|--max-turns|12|"


@pytest.mark.parametrize("name", sorted(MINE))
def test_init_with_each_agent_writes_an_epic_that_plans(cli, tmp_path, name):
    result = cli("init", "--agent", name)
    assert result.returncode == 0, result.stderr
    epic = spec.load(tmp_path / "waveui.toml")
    assert epic.command == MINE[name].COMMAND
    assert f"# {MINE[name].COMMENT}\n" in (tmp_path / "waveui.toml").read_text()
    assert cli("plan").returncode == 0


def test_completion_offers_the_new_agents(cli):
    script = cli("completion", "bash").stdout
    for name in MINE:
        assert name in script


# ---------------------------------------------------------------- a real run through a stand-in gemini


def stand_in(tmp_path: Path, program: str, body: str) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / program
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return bin_dir


# Prints the fixture named by the task's id; does the work only on success and exits as Gemini CLI does
# (1 on an API error, per geminicli.com/docs/cli/headless). It checks it was called as the recipe calls it.
GEMINI = f"""
[ "$1" = -p ] && [ "$2" = "$WAVEUI_PROMPT" ] && [ "$3 $4 $5 $6" = "--output-format stream-json --approval-mode yolo" ] \\
  || {{ echo "unexpected arguments: $*" >&2; exit 42; }}
cat "{FIXTURES}/gemini/$WAVEUI_TASK_ID.jsonl"
case "$WAVEUI_TASK_ID" in
  success) echo "$WAVEUI_PROMPT" > "out/$WAVEUI_TASK_ID.txt" ;;
  *) exit 1 ;;
esac
"""


def test_a_run_through_gemini_records_its_failure_in_its_own_words(tmp_path):
    repo = make_repo(tmp_path / "repo", {"README.md": "hi\n", "out/.keep": ""})
    write_epic(repo, f"""
        [epic]
        name = "gem"
        adaptive = false
        {agents.command_line(gemini.COMMAND)}

        [[task]]
        id = "success"
        prompt = "Add a User model"
        affected_files = ["out/success.txt"]

        [[task]]
        id = "error"
        prompt = "Add an Order model"
        affected_files = ["out/error.txt"]
        """)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "epic")
    bin_dir = stand_in(tmp_path, "gemini", GEMINI)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    run = subprocess.run([sys.executable, "-m", "waveui", "run", "--headless"], cwd=repo, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode != 0, run.stdout  # a task failed
    state = replay(read_events(list_runs(repo)[-1] / "events.jsonl"))
    assert state.tasks["success"].state == "done"
    assert git(repo, "show", "waveui/gem:out/success.txt") == "Add a User model"
    failed = state.tasks["error"]
    assert failed.state == "failed"
    assert failed.message.startswith("Reached max session turns for this session.")
