"""Agent recipes and readers against stand-ins that print each agent's real output (see tests/agent_standins.py).

The output formats and their sources are in the stand-ins' docstring: Claude
Agent SDK ``SDKResultMessage``; openai/codex ``codex-rs/exec/src/exec_events.rs``
and ``cli.rs``; Aider-AI/aider ``aider/coders/base_coder.py``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests import agent_standins
from tests.faults.helpers import git, make_repo, run, write_epic
from waveui import agents
from waveui.agents import aider, claude, codex
from waveui.git.worktrees import _glob_pathspecs
from waveui.run.journal import list_runs, read_events
from waveui.run.state import replay


def read_all(command: str, lines: list[bytes]) -> list[dict]:
    """What one task's reader reports for ``lines``, in order, lines reporting nothing left out."""
    read = agents.line_reader(command)
    return [fields for fields in map(read, lines) if fields is not None]


# ------------------------------------------------------------------ claude


def test_claude_success_gives_cost_turns_tokens_and_the_last_word():
    [fields] = read_all(claude.COMMAND, agent_standins.output_lines("claude", "success"))
    assert fields == {"cost": 0.4213, "iterations": 7, "tokens_in": 38 + 9412 + 118230, "tokens_cached": 118230,
                      "tokens_out": 2871, "message": "Added the User model and its tests. All 12 tests pass."}


def test_claude_denied_tool_calls_are_named_though_the_result_says_success():
    [fields] = read_all(claude.COMMAND, agent_standins.output_lines("claude", "denied"))
    assert fields["denied"] == ["Bash: npm test", "Bash: npm install left-pad"]
    assert "failed" not in fields  # Claude Code calls it a success and exits 0: the engine decides


@pytest.mark.parametrize("scenario, words", [
    ("error_max_turns", "error_max_turns: Reached maximum number of turns (10)"),
    ("error_max_budget_usd", "error_max_budget_usd: Reached maximum budget ($2.5)"),
    ("error_during_execution", "error_during_execution: API Error: 529 Overloaded"),
])
def test_claude_error_results_fail_with_the_words_of_their_errors_list(scenario, words):
    [fields] = read_all(claude.COMMAND, agent_standins.output_lines("claude", scenario))
    assert fields["failed"] == words
    assert fields["message"] == f"agent stopped: {words}"
    assert "cost" in fields and "denied" not in fields


def test_claude_denials_are_one_line_each_and_bounded():
    line = ('{"type":"result","subtype":"success","is_error":false,"permission_denials":['
            '{"tool_name":"Write","tool_use_id":"t1","tool_input":{"file_path":"/etc/x\\nrm -rf /","content":"x"}},'
            '{"tool_name":"WebFetch","tool_use_id":"t2","tool_input":{"url":"https://example.com/' + "a" * 500 + '"}},'
            '{"tool_name":"mcp__github__create_issue","tool_use_id":"t3","tool_input":{"title":"x"}},'
            '{"tool_use_id":"t4"}, "Bash"]}')
    denied = claude.read_line(line.encode())["denied"]
    assert denied[0] == "Write: /etc/x rm -rf /"
    assert denied[1].startswith("WebFetch: https://example.com/aaa") and len(denied[1]) == 200
    assert denied[2] == "mcp__github__create_issue"
    assert len(denied) == 3  # entries without a tool name are not denials anyone can act on


# ------------------------------------------------------------------- codex


def test_codex_turns_are_added_up_and_no_cost_is_made_up():
    lines = agent_standins.output_lines("codex", "success")
    turn = next(line for line in lines if b"turn.completed" in line)
    reported = read_all(codex.COMMAND, lines + [turn])  # a second turn (codex exec resume) reports its own usage
    assert reported[0] == {"message": "Added the User model and its tests."}
    assert reported[1] == {"iterations": 1, "tokens_in": 26549, "tokens_cached": 22272, "tokens_out": 1590}
    assert reported[2] == {"iterations": 2, "tokens_in": 2 * 26549, "tokens_cached": 2 * 22272, "tokens_out": 2 * 1590}
    assert not any("cost" in fields for fields in reported)
    fresh = read_all(codex.COMMAND, [turn])  # each task's reader starts from nothing
    assert fresh == [reported[1]]


def test_codex_failed_turn_and_stream_error_fail_with_its_words():
    reported = read_all(codex.COMMAND, agent_standins.output_lines("codex", "turn_failed"))
    words = "stream disconnected before completion: Rate limit reached for gpt-5-codex. Please try again in 11.054s."
    assert reported == [{"failed": words, "message": f"agent stopped: {words}"}] * 2  # the `error`, then turn.failed


def test_codex_declined_command_is_denied_and_other_events_say_nothing():
    declined = (b'{"type":"item.completed","item":{"id":"item_4","type":"command_execution",'
                b'"command":"bash -lc \'curl https://example.com\'","aggregated_output":"","exit_code":null,'
                b'"status":"declined"}}')
    assert codex.read_line(declined) == {"denied": ["command: bash -lc 'curl https://example.com'"]}
    for line in (b'{"type":"item.started","item":{"id":"i","type":"command_execution","command":"ls"}}',
                 b'{"type":"thread.started","thread_id":"x"}', b'{"type":"turn.completed","usage":',
                 b"plain text", b'{"type":"item.completed","item":{"id":"i","type":"reasoning","text":"x"}}'):
        assert codex.read_line(line) is None, line


# ------------------------------------------------------------------- aider


def test_aider_tokens_are_added_up_and_the_cost_is_the_sessions():
    reported = read_all(aider.COMMAND, agent_standins.output_lines("aider", "success"))
    assert reported == [
        {"tokens_in": 9600, "tokens_cached": 2100, "tokens_out": 489, "cost": 0.04},
        {"tokens_in": 9600 + 12000, "tokens_cached": 2100 + 8400, "tokens_out": 489 + 1200, "cost": 0.10},
    ]


def test_aider_report_without_prices_or_cache_and_other_lines():
    assert aider.read_line(b"Tokens: 1,250 sent, 520 received.") == {"tokens_in": 1250, "tokens_out": 520}
    assert aider.read_line(b"Tokens: 1.2M sent, 3.4k cache write, 0 received. Cost: $0.0012 message, "
                           b"$0.0034 session.") == {"tokens_in": 1_200_000, "tokens_out": 0, "cost": 0.0034}
    assert aider.read_line(b"> Tokens: 4.5k sent, 429 received. Cost: $0.0018 message, $0.0018 session.  ")["cost"] \
        == 0.0018
    for line in (b"Applied edit to src/x.py", b"Tokens are counted", b"", b"Aider v0.86.1"):
        assert aider.read_line(line) is None


# ----------------------------------------------------- recipes run through a shell


def run_recipe(command: str, bin_dir: Path, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("WAVEUI_")}
    environment.update(PATH=agent_standins.path_with(bin_dir), WAVEUI_PROMPT="Add a User model", **env)
    return subprocess.run(["sh", "-c", command], cwd=cwd, env=environment, capture_output=True, text=True)


def test_claude_recipe_passes_budgets_only_when_set(tmp_path):
    agent_standins.install(tmp_path / "bin", "claude")
    assert run_recipe(claude.COMMAND, tmp_path / "bin", tmp_path).returncode == 0
    assert run_recipe(claude.COMMAND, tmp_path / "bin", tmp_path, WAVEUI_MAX_COST="2.5",
                      WAVEUI_MAX_TURNS="30").returncode == 0
    plain, budgeted = agent_standins.calls(tmp_path / "bin", "claude")
    assert plain["argv"] == ["-p", "Add a User model", "--output-format", "stream-json", "--verbose",
                             "--permission-mode", "bypassPermissions"]
    assert budgeted["argv"][-4:] == ["--max-budget-usd", "2.5", "--max-turns", "30"]


def test_codex_refuses_the_old_full_auto_recipe_and_runs_the_new_one(tmp_path):
    agent_standins.install(tmp_path / "bin", "codex")
    old = run_recipe('codex exec --full-auto "$WAVEUI_PROMPT"', tmp_path / "bin", tmp_path)
    assert old.returncode == 2 and "unexpected argument '--full-auto'" in old.stderr
    new = run_recipe(codex.COMMAND, tmp_path / "bin", tmp_path)
    assert new.returncode == 0
    assert read_all(codex.COMMAND, new.stdout.encode().splitlines())[-1]["tokens_out"] == 1590


# ------------------------------------------------------- keeping agent files out


def test_keep_out_follows_the_agent_a_command_runs():
    assert agents.keep_out(aider.COMMAND) == (".aider*",)
    assert agents.keep_out("cd sub && aider --message x") == (".aider*",)
    assert agents.keep_out(claude.COMMAND) == ()
    assert agents.keep_out("make test") == ()


def test_gitignore_patterns_become_pathspecs_for_files_and_folders():
    assert _glob_pathspecs(".aider*") == ["**/.aider*", "**/.aider*/**"]
    assert _glob_pathspecs("/build") == ["build", "build/**"]
    assert _glob_pathspecs("cache/") == ["**/cache/**"]
    assert _glob_pathspecs("docs/*.tmp") == ["docs/*.tmp", "docs/*.tmp/**"]


EPIC = """
[epic]
name = "agents"
max_parallel = 2
adaptive = false
command = '{command}'

[[task]]
id = "model"
prompt = "Add a User model"

[[task]]
id = "api"
prompt = "Add the API"
requires = ["model"]
"""


def run_epic(tmp_path: Path, name: str, scenario: str, command: str) -> tuple[Path, int, str]:
    repo = make_repo(tmp_path / "repo", {"README.md": "hi\n", ".aider.conf.yml": "model: sonnet\n"})
    write_epic(repo, EPIC.format(command=command))
    git(repo, "add", "waveui.toml")
    git(repo, "commit", "-q", "-m", "epic")
    agent_standins.install(tmp_path / "bin", name, scenario)
    code, out = run(repo, env=dict(os.environ, PATH=agent_standins.path_with(tmp_path / "bin")))
    return repo, code, out


def test_a_run_through_aider_commits_its_work_but_not_its_own_files(tmp_path):
    repo, code, out = run_epic(tmp_path, "aider", "success", aider.COMMAND)
    assert code == 0, out
    files = git(repo, "ls-tree", "-r", "--name-only", "waveui/agents").splitlines()
    assert "agent-work/model.txt" in files and "agent-work/api.txt" in files
    assert ".aider.conf.yml" in files  # the user's own aider settings, tracked before, stay as they were
    assert not [f for f in files if f.startswith(".aider.") and f != ".aider.conf.yml"], files
    assert [len(call["argv"]) for call in agent_standins.calls(tmp_path / "bin", "aider")] == [7, 7]
    state = replay(read_events(list_runs(repo)[-1] / "events.jsonl"))
    assert state.tasks["api"].cost == pytest.approx(0.10)  # the session's cost, not the sum of the lines


def test_a_run_through_claude_reads_cost_and_turns(tmp_path):
    repo, code, out = run_epic(tmp_path, "claude", "success", claude.COMMAND)
    assert code == 0, out
    state = replay(read_events(list_runs(repo)[-1] / "events.jsonl"))
    for task in ("model", "api"):
        assert state.tasks[task].cost == pytest.approx(0.4213)
        assert state.tasks[task].iterations == 7
        assert state.tasks[task].message == "Added the User model and its tests. All 12 tests pass."
    assert state.cost == pytest.approx(2 * 0.4213)


def test_the_readme_table_shows_every_recipe_and_what_it_grants():
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for name, agent in agents.AGENTS.items():
        assert f"| `{name}` | `{agent.COMMAND}` | {agent.GRANTS} |" in readme, name
