"""Agents: the registry, recipes, resolvers and `waveui init --agent`, and reading Claude Code's stream-json result."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys

import pytest

from waveui import agents
from waveui.agents import base, claude
from waveui.agents.claude import parse_result
from waveui.core import spec
from waveui.executors.local.runner import start_task
from waveui.run.directives import MESSAGE_MAX, read_directive

RESULT = {"type": "result", "subtype": "success", "is_error": False, "duration_ms": 81234, "num_turns": 7,
          "result": "Added the User model and its tests.\nAll 12 tests pass.", "session_id": "5f1c",
          "total_cost_usd": 0.123, "usage": {"input_tokens": 1200, "output_tokens": 3400}}


def line(event: dict) -> str:
    return json.dumps(event, separators=(",", ":"))


# ------------------------------------------------------------ parse_result


def test_result_event_gives_cost_turns_and_the_last_word():
    assert parse_result(line(RESULT)) == {
        "cost": 0.123, "iterations": 7, "tokens_in": 1200, "tokens_out": 3400,
        "message": "Added the User model and its tests. All 12 tests pass."}
    assert parse_result("  " + json.dumps(RESULT) + "\r\n")["cost"] == 0.123  # spaces after colons too


def test_other_events_and_other_lines_give_none():
    assistant = {"type": "assistant", "message": {"content": [{"type": "text", "text": '"type":"result"'}]}}
    system = {"type": "system", "subtype": "init", "tools": ["Edit"]}
    for text in (line(assistant), line(system), "plain output", "", "::waveui progress=5",
                 '{"type":"result", broken', '["type", "result"]', 'note: {"type":"result"}',
                 line({"type": "resultant"})):
        assert parse_result(text) is None, text


def test_errors_say_why_and_bad_values_are_dropped():
    failed = dict(RESULT, subtype="error_max_turns", is_error=True, result=None, total_cost_usd=-1, num_turns=True)
    assert parse_result(line(failed)) == {"tokens_in": 1200, "tokens_out": 3400, "failed": "error_max_turns",
                                          "message": "agent stopped: error_max_turns"}
    assert parse_result(line({"type": "result", "is_error": True, "result": "API Error: 529"})) == {
        "failed": "error: API Error: 529", "message": "agent stopped: error: API Error: 529"}
    assert parse_result(line({"type": "result", "total_cost_usd": "0.5", "num_turns": 2.5})) == {}
    assert parse_result('{"type":"result","total_cost_usd":NaN}') == {}


def test_older_cost_field_and_message_cleaned_and_capped():
    assert parse_result(line({"type": "result", "cost_usd": 0.5}))["cost"] == 0.5
    message = parse_result(line({"type": "result", "result": "a\x1b[31mb\u202e" + "x" * 5000}))["message"]
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
    command = f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}; echo '::waveui progress=100'"
    task = await start_task(command, tmp_path, dict(os.environ), tmp_path / "task.log", received.append,
                            read_line=agents.line_reader(command))
    await task.wait()
    assert received == [parse_result(line(RESULT)), {"progress": 100.0}]
    assert (tmp_path / "task.log").read_text().count("\n") == 4  # everything is logged as it came


def test_read_line_is_parse_result_on_raw_bytes():
    assert claude.read_line(line(RESULT).encode() + b"\n") == parse_result(line(RESULT))
    assert claude.read_line(b"  " + line(RESULT).encode()) == parse_result(line(RESULT))
    assert claude.read_line(b"::waveui progress=5") is None
    assert claude.read_line(b'{"type":"assistant"}') is None
    assert claude.read_line(b"x" * 100 + line(RESULT).encode()) is None  # not a JSON line


# --------------------------------------------------------------- the registry


def test_every_agent_module_offers_the_same_names():
    for name, agent in agents.AGENTS.items():
        assert agent.NAME == name
        assert isinstance(agent.COMMAND, str) and isinstance(agent.COMMENT, str)
        assert callable(agent.matches) and callable(agent.read_line)
        assert isinstance(agent.GRANTS, str) and agent.GRANTS and "\n" not in agent.GRANTS
        assert isinstance(agent.KEEP_OUT, tuple) and all(isinstance(p, str) and p for p in agent.KEEP_OUT)
        assert isinstance(agent.SUMS, tuple)
        assert agents.RECIPES[name] == (agent.COMMAND, agent.COMMENT, agent.RESOLVE)
    assert [name for name in agents.AGENTS] == ["claude", "codex", "aider", "gemini", "cursor-agent", "opencode", "amp",
                                                "goose", "shell"]  # --agent's order


def test_an_agent_is_recognised_by_the_program_its_command_runs():
    assert agents.agent_for(claude.COMMAND) is claude
    assert agents.agent_for("cd sub && /usr/local/bin/claude -p 'x'") is claude
    assert agents.agent_for(agents.RECIPES["codex"].command) is agents.AGENTS["codex"]
    assert agents.agent_for(agents.RECIPES["aider"].command) is agents.AGENTS["aider"]
    assert agents.agent_for(agents.RECIPES["shell"].command) is None  # a plain command runs no agent
    assert agents.agent_for("make test") is None
    assert agents.agent_for("echo 'claudette'") is None
    assert agents.agent_for("claude -p 'unbalanced") is claude
    assert base.read_line(line(RESULT).encode()) is None


def test_line_reader_reads_directives_first_then_the_agents_output():
    result = line(RESULT).encode()
    for command in (claude.COMMAND, "./run-agent.sh", "make test"):  # a script may run Claude Code
        read = agents.line_reader(command)
        assert read(result) == parse_result(line(RESULT)), command
        assert read(b"::waveui progress=5") == {"progress": 5.0}
        assert read(b"plain output") is None
    for name in ("codex", "aider"):  # an agent that is not Claude Code: its output is not Claude's
        read = agents.line_reader(agents.RECIPES[name].command)
        assert read(result) is None
        assert read(b"::waveui progress=5") == {"progress": 5.0}
    assert agents.line_reader(agents.RECIPES["shell"].command)(result) == parse_result(line(RESULT))
    assert agents.line_reader("true; :") is not read_directive  # any command may run an agent


# ---------------------------------------------------------------- recipes


def test_every_recipe_runs_on_the_prompt_variable():
    assert {"claude", "codex", "aider", "shell"} <= set(agents.RECIPES)
    for name, recipe in agents.RECIPES.items():
        assert "$WAVEUI_PROMPT" in recipe.command, name
        assert recipe.comment and "\n" not in recipe.comment
    assert agents.RECIPES["claude"].command.startswith(
        'claude -p "$WAVEUI_PROMPT" --output-format stream-json --verbose --permission-mode bypassPermissions')
    assert "acceptEdits" not in agents.RECIPES["claude"].command  # every Bash call would be denied
    assert agents.RECIPES["codex"].command == 'codex exec --json --sandbox workspace-write "$WAVEUI_PROMPT"'
    assert "--full-auto" not in agents.RECIPES["codex"].command  # removed from codex exec
    for flag in ("--yes-always", "--no-auto-commits", "--no-check-update", "--no-analytics", "--no-gitignore"):
        assert flag in agents.RECIPES["aider"].command.split()


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


# ---------------------------------------------------------------- resolvers

RESOLVERS = {name: agent for name, agent in agents.AGENTS.items() if agent.RESOLVE is not None}
CONFLICT_ENV = {"WAVEUI_PROMPT": 'Add a "User" model; keep $HOME and `x` as they are',
                "WAVEUI_CONFLICT_FILES": "src/user model.py\nsrc/app.py"}


def test_every_agent_but_the_plain_shell_has_a_resolver_that_runs_it():
    assert set(RESOLVERS) == set(agents.AGENTS) - {"shell"}
    assert agents.RECIPES["shell"].resolve is None  # a plain command cannot know what both sides meant
    for name, agent in RESOLVERS.items():
        assert isinstance(agent.RESOLVE, str) and "\n" not in agent.RESOLVE, name
        assert agent.matches(agent.RESOLVE), name
        assert agents.agent_for(agent.RESOLVE) is agent, name
        assert agents.RECIPES[name].resolve == agent.RESOLVE
        assert "'" not in agent.RESOLVE  # written as a literal string in the epic file, quotes as typed


@pytest.mark.parametrize("name", sorted(RESOLVERS))
def test_a_resolver_runs_its_agent_as_the_recipe_does_on_a_prompt_naming_the_task_and_the_files(tmp_path, name):
    """Both commands run by a real shell, the agent a stand-in printing its arguments: they differ only in the
    prompt, which arrives as one argument holding the task's prompt and the conflicted files, unexpanded."""
    agent = agents.AGENTS[name]
    program = tmp_path / "bin" / agent.NAME
    program.parent.mkdir()
    program.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    program.chmod(0o755)
    env = {key: value for key, value in os.environ.items() if not key.startswith("WAVEUI_")}
    env.update(CONFLICT_ENV, PATH=f"{program.parent}{os.pathsep}{env['PATH']}")

    def arguments(command: str) -> list[str]:
        run = subprocess.run(["sh", "-c", command], env=env, cwd=tmp_path, capture_output=True, text=True, check=True)
        return json.loads(run.stdout)

    task_arguments, resolver_arguments = arguments(agent.COMMAND), arguments(agent.RESOLVE)
    assert len(resolver_arguments) == len(task_arguments)
    [prompt_at] = [i for i, (a, b) in enumerate(zip(task_arguments, resolver_arguments)) if a != b]
    assert task_arguments[prompt_at] == CONFLICT_ENV["WAVEUI_PROMPT"]
    prompt = resolver_arguments[prompt_at]
    assert prompt.startswith("Resolve the git merge conflicts in this worktree, keeping the intent of both sides")
    assert f"made for this task: {CONFLICT_ENV['WAVEUI_PROMPT']} --" in prompt
    assert "Leave no conflict markers" in prompt and "Do not commit" in prompt
    assert prompt.endswith("The files in conflict: src/user model.py\nsrc/app.py")


def uncommented_conflict_lines(text: str) -> str:
    return re.sub(r"^# ((?:on_conflict|resolve) = )", r"\1", text, flags=re.M)


@pytest.mark.parametrize("agent", sorted(agents.RECIPES))
def test_init_with_an_agent_offers_its_resolver_commented_out(cli, tmp_path, agent):
    assert cli("init", "--agent", agent).returncode == 0
    text = (tmp_path / "waveui.toml").read_text()
    assert len(re.findall(r"^# on_conflict = ", text, re.M)) == 1  # the starter's own suggestion is replaced
    assert len(re.findall(r"^# resolve = ", text, re.M)) == 1
    assert spec.loads(text).on_conflict == "stop"  # off until the user switches it on
    switched_on = spec.loads(uncommented_conflict_lines(text))
    resolver = agents.RECIPES[agent].resolve
    if resolver is None:  # the starter's placeholder, for a script of the user's own
        assert (switched_on.on_conflict, switched_on.resolve) == ("retry", "./resolve.sh")
    else:
        assert (switched_on.on_conflict, switched_on.resolve) == ("resolve", resolver)
        assert switched_on.conflict_policy(switched_on.tasks[0]) == ("resolve", resolver)
    assert switched_on.command == agents.RECIPES[agent].command


def test_the_plain_starter_suggests_conflict_handling_too(cli, tmp_path):
    assert cli("init").returncode == 0
    switched_on = spec.loads(uncommented_conflict_lines((tmp_path / "waveui.toml").read_text()))
    assert (switched_on.on_conflict, switched_on.resolve) == ("retry", "./resolve.sh")
