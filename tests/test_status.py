"""`waveui status`, colour only on terminals that want it, and `waveui completion`."""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import WAVEUI, cli_env
from waveui.frontends.cli import build_parser
from waveui.run.events import AttemptKept, RunFinished, TaskStateChanged
from waveui.run.journal import Journal
from waveui.engine.locks import ControllerLock
from waveui.frontends.status import SHOWN_PER_LIST
from waveui.frontends.tui.sample_run import START, sample_events

RUN_ID = "20250615-093000-checkout-v2-ab12"
NASTY = "verify failed: \x1b[2J\x1b]0;owned\x07tests \x1b[31mred\x1b[0m\nsecond line"


def write_run(root: Path, run_id: str = RUN_ID, events=None) -> Path:
    run_dir = root / ".waveui" / "runs" / run_id
    journal = Journal(run_dir)
    for event in sample_events() if events is None else events:
        journal.append(event)
    journal.close()
    return run_dir


def nasty_events(finished: bool = False):
    events = sample_events()
    events.append(TaskStateChanged(t=START + 1460, task="rate-limits", state="failed", attempt=1, exit_code=1,
                                   reason=NASTY))
    if finished:
        events.append(RunFinished(t=START + 1500, ok=False, reason="failed tasks"))
    return events


@pytest.fixture
def repo(tmp_path):
    write_run(tmp_path, events=nasty_events())
    return tmp_path


# ----------------------------------------------------------------- text


def test_status_sums_up_the_latest_run(cli, repo):
    result = cli("status")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    lines = out.splitlines()
    assert lines[0] == f"checkout-v2  run {RUN_ID}  stopped without an end (resumable)"
    assert lines[1].startswith("6/19 done, 3 active, ")
    assert "2 failed, 1 conflicted, 1 blocked" in lines[1]
    assert "cost $" in lines[2] and "efficiency " in lines[2] and "elapsed 24m35s" in lines[2]
    assert "ETA" not in out  # nothing runs: no one will finish it
    assert "  search-index" in out and "verify failed: 3 tests failed" in out
    assert "analytics-events" in out and "merge conflict: src/events/bus.py, src/events/schema.py" in out
    assert "search-ui" in out and "search-index failed" in out
    assert len(lines) < 24  # one screen


def test_task_reasons_are_sanitised(cli, repo):
    for args in (("status",), ("status", "--json")):
        out = cli(*args).stdout
        assert "\x1b" not in out and "\x07" not in out and "owned" not in out
    text = cli("status").stdout
    reason = next(line for line in text.splitlines() if line.lstrip().startswith("rate-limits"))
    assert reason.endswith("verify failed: tests red second line")


def test_status_json(cli, repo):
    result = cli("status", "--json")
    assert result.returncode == 0
    info = json.loads(result.stdout)
    assert info["run"] == RUN_ID and info["epic"] == "checkout-v2"
    assert (info["done"], info["total"], info["active"]) == (6, 19, 3)
    assert info["status"] == "stopped without an end (resumable)"
    assert info["eta"] is None and info["elapsed"] == 1475.0
    assert 0 < info["efficiency"] <= 1 and info["cost"] > 0 and info["projected_cost"] > info["cost"]
    assert sorted(t["id"] for t in info["failed_tasks"]) == ["rate-limits", "search-index"]
    assert info["failed_tasks"][1] == {"id": "search-index", "reason": "verify failed: 3 tests failed",
                                       "attempt": 1, "exit_code": 1}
    assert info["conflicted_tasks"] == [{"id": "analytics-events", "reason": "merge conflict",
                                        "files": ["src/events/bus.py", "src/events/schema.py"]}]
    assert info["blocked_tasks"] == [{"id": "search-ui", "reason": "search-index failed",
                                      "waiting_on": ["search-index"]}]
    assert sum(info["breakdown"].values()) == info["total"]  # every task counted once
    assert info["breakdown"]["failed"] == 2 and info["breakdown"]["blocked"] == 1


def test_a_running_run_has_an_eta(cli, repo):
    controller = ControllerLock(repo)  # this process holds the repository as a running waveui would
    controller.acquire()
    try:
        result = cli("status")
        info = json.loads(cli("status", "--json").stdout)
    finally:
        controller.release()
    assert f"run {RUN_ID}  running" in result.stdout
    assert "ETA " in result.stdout and "ETA —" not in result.stdout
    assert info["status"] == "running" and info["eta"] > 0 and info["elapsed"] > 1475


def test_a_finished_run(cli, tmp_path):
    write_run(tmp_path, events=nasty_events(finished=True))
    out = cli("status").stdout
    assert out.splitlines()[0].endswith("failed tasks")
    assert "ETA" not in out


def test_run_chosen_by_prefix_from_a_subfolder(cli, repo):
    write_run(repo, "20250616-080000-other-cd34", events=sample_events()[:1])
    (repo / "src" / "deep").mkdir(parents=True)
    assert cli("status", cwd=repo / "src" / "deep").stdout.splitlines()[0].endswith("20250616-080000-other-cd34"
                                                                                    "  stopped without an end (resumable)")
    assert RUN_ID in cli("status", "20250615", cwd=repo / "src").stdout
    result = cli("status", "2025")
    assert result.returncode == 2
    assert result.error_lines == ["waveui: error: 2 runs named '2025' (see `waveui watch --list`)"]


def test_no_runs_is_one_error_line(cli, tmp_path):
    result = cli("status")
    assert result.returncode == 2
    assert result.error_lines == ["waveui: error: no waveui runs here: run `waveui run` (or `waveui demo`) first"]


def test_long_lists_are_cut_to_fit_one_screen(cli, tmp_path):
    events = sample_events()
    ids = list(next(iter(events)).tasks)
    events += [TaskStateChanged(t=START + 1490, task=info.id, state="failed", reason="boom") for info in ids]
    write_run(tmp_path, events=events)
    out = cli("status").stdout
    assert f"… and {len(ids) - SHOWN_PER_LIST} more" in out
    assert len(json.loads(cli("status", "--json").stdout)["failed_tasks"]) == len(ids)


def kept_events():
    """The sample run with a failed attempt's work kept, and a merged one's: the engine keeps every attempt."""
    def kept(task: str, commit: str) -> AttemptKept:
        return AttemptKept(t=START + 1460, task=task, attempt=1, ref=f"refs/waveui/checkout-v2/{task}/1",
                           commit=commit * 40, base="b" * 40)

    return [*sample_events(), kept("search-index", "1"), kept("api-schema", "2")]


def test_status_lists_kept_attempts_and_undeclared_files(cli, tmp_path):
    write_run(tmp_path, events=kept_events())
    out = cli("status").stdout
    lines = out.splitlines()
    kept_at = lines.index("kept attempts of unmerged tasks (`git diff BASE COMMIT` shows one's work)")
    assert lines[kept_at + 1:] == [f"  search-index #1  failed  {'1' * 12}  refs/waveui/checkout-v2/search-index/1"]
    undeclared_at = lines.index("changed but not declared")
    assert lines[undeclared_at + 1:undeclared_at + 3] == ["  user-model  src/db/seed.sql",  # the epic's order
                                                          "  theme-switch  web/tokens.css"]
    assert len(lines) < 24

    tasks = {row["id"]: row for row in json.loads(cli("status", "--json").stdout)["tasks"]}
    assert tasks["search-index"]["kept_attempts"] == [{
        "attempt": 1, "outcome": "failed", "ref": "refs/waveui/checkout-v2/search-index/1",
        "commit": "1" * 40, "base": "b" * 40}]
    assert tasks["api-schema"]["kept_attempts"][0]["outcome"] == "done"  # JSON lists every task's
    assert tasks["cart-service"]["kept_attempts"] == []
    assert tasks["user-model"]["undeclared"] == ["src/db/seed.sql"]
    assert tasks["cart-service"]["undeclared"] == []


def test_piped_reasons_are_whole_and_cancelled_tasks_are_listed(cli, tmp_path):
    long_reason = "verify failed: " + "x" * 300
    events = sample_events()
    events += [TaskStateChanged(t=START + 1490, task="rate-limits", state="failed", attempt=1, reason=long_reason),
               TaskStateChanged(t=START + 1491, task="search-index", state="cancelled", reason="cancelled by the user")]
    write_run(tmp_path, events=events)
    out = cli("status").stdout  # a pipe, 100 columns in COLUMNS
    assert long_reason in out and "…" not in out
    counts = out.splitlines()[1]
    assert "1 cancelled" in counts and "search-index" in out.split("cancelled\n", 1)[1]
    assert sum(int(part.split()[0].split("/")[0]) for part in counts.split(", ")) == 19  # every task counted


def test_no_word_of_cost_when_no_task_reports_one(cli, tmp_path):
    events = [event for event in sample_events() if not getattr(event, "cost", None)]
    write_run(tmp_path, events=events)
    assert "cost" not in cli("status").stdout


def test_watch_list_columns_line_up(cli, repo):
    write_run(repo, "20250616-080000-x-cd34", events=sample_events()[:1])
    lines = cli("watch", "--list").stdout.splitlines()
    assert lines[0].split() == ["run", "epic", "started", "tasks", "status"]
    for column in ("epic", "started", "tasks", "status"):
        start = lines[0].index(column)
        assert all(line[start - 2:start] == "  " and line[start] != " " for line in lines[1:]), column
    assert "6/19 done, 3 active, " in lines[1] and "2 failed" in lines[1]


def test_a_failed_verify_keeps_its_exit_code_and_each_attempt_is_headed_in_the_log(cli, tmp_path):
    from engine_helpers import make_repo, write_epic

    repo = make_repo(tmp_path / "repo")
    write_epic(repo, """
        [epic]
        name = "checked"
        [[task]]
        id = "t"
        command = 'echo work > out.txt; echo "did the work"'
        verify = 'echo "checking"; exit 3'
        retries = 1
    """)
    result = cli("run", "--headless", cwd=repo)
    assert result.returncode == 1, result.stdout + result.stderr
    info = json.loads(cli("status", "--json", cwd=repo).stdout)
    assert info["failed_tasks"] == [{"id": "t", "reason": "verify failed (exit 3)", "attempt": 2, "exit_code": 3}]
    [run_dir] = (repo / ".waveui" / "runs").iterdir()
    log = (run_dir / "logs" / "t.log").read_text()
    assert log.splitlines() == ["--- attempt 1 (running) ---", "did the work", "--- attempt 1 (verifying) ---",
                                "checking", "--- attempt 2 (running) ---", "did the work",
                                "--- attempt 2 (verifying) ---", "checking"]


# ------------------------------------------------- colour and terminals


def run_in_terminal(args, cwd: Path, no_color: bool) -> str:
    """`waveui ARGS` with stdout on a pseudo-terminal: what it printed there."""
    env = cli_env()
    env.pop("NO_COLOR", None)
    env["TERM"] = "xterm-256color"
    if no_color:
        env["NO_COLOR"] = "1"
    primary, secondary = pty.openpty()
    process = subprocess.Popen([*WAVEUI, *args], cwd=cwd, env=env, stdout=secondary, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL)
    os.close(secondary)
    chunks = []
    while True:
        ready, _, _ = select.select([primary], [], [], 60)
        if not ready:
            break
        try:
            data = os.read(primary, 65536)
        except OSError:  # the other side closed: all read
            break
        if not data:
            break
        chunks.append(data)
    os.close(primary)
    assert process.wait(timeout=60) == 0, process.stderr.read()
    process.stderr.close()
    return b"".join(chunks).decode()


@pytest.mark.parametrize("args", [("plan", "--example"), ("status",)])
def test_colour_only_on_a_terminal_without_no_color(cli, repo, args):
    assert "\x1b[" in run_in_terminal(args, repo, no_color=False)
    assert "\x1b[" not in run_in_terminal(args, repo, no_color=True)
    env_free = cli(*args)  # a pipe: never colour, NO_COLOR or not
    assert env_free.returncode == 0 and "\x1b" not in env_free.stdout
    env = cli_env()
    env.pop("NO_COLOR")
    piped = subprocess.run([*WAVEUI, *args], cwd=repo, env=env, capture_output=True, text=True)
    assert piped.returncode == 0 and "\x1b" not in piped.stdout


# ------------------------------------------------------------ completion


def subcommands() -> list[str]:
    parser = build_parser()
    return sorted(next(a for a in parser._actions if hasattr(a, "choices") and isinstance(a.choices, dict)).choices)


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_names_every_subcommand(cli, shell):
    result = cli("completion", shell)
    assert result.returncode == 0 and result.stderr == ""
    for command in subcommands():
        assert command in result.stdout
    for option in ("--workers", "--max-parallel", "--agent", "--json"):
        assert option.lstrip("-") in result.stdout


def test_bash_completion_completes(cli, tmp_path):
    script = tmp_path / "waveui.bash"
    script.write_text(cli("completion", "bash").stdout)
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0

    def complete(*words: str) -> list[str]:
        line = " ".join(words)
        program = (f"source {script}; COMP_WORDS=(waveui {line}); COMP_CWORD={len(words)}; "
                   "_waveui; printf '%s\\n' \"${COMPREPLY[@]}\"")
        out = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True).stdout
        return out.split()

    assert "import" in complete("im") and "status" in complete("st")
    assert complete("graph", "--format", "") == ["dot", "mermaid"]
    assert complete("init", "--agent", "c") == ["claude", "codex", "cursor-agent"]
    assert "--max-parallel" in complete("run", "--m")
    assert complete("completion", "") == ["bash", "zsh", "fish"]
    assert complete("import", "") == []  # a path: the shell's own file completion


@pytest.mark.skipif(not shutil.which("fish"), reason="fish is not installed")
def test_fish_completion_parses(cli, tmp_path):
    script = tmp_path / "waveui.fish"
    script.write_text(cli("completion", "fish").stdout)
    assert subprocess.run(["fish", "--no-execute", str(script)]).returncode == 0


def test_the_apps_idle_word_is_not_a_notice_of_the_run(cli, tmp_path):
    from waveui.run.events import Notice

    events = [*sample_events(), Notice(t=START + 1500, level="info", kind="idle",
                                       text="nothing left to run (3 not done): retry, un-cancel or quit")]
    write_run(tmp_path, events=events)
    assert "nothing left to run" not in cli("status").stdout
    assert all(n["kind"] != "idle" for n in json.loads(cli("status", "--json").stdout)["notices"])
