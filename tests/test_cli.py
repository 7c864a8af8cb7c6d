"""The `waveui` command, run for real as a subprocess in an empty folder."""

from __future__ import annotations

import argparse
import json
import re
import textwrap

import pytest

import waveui
from conftest import EXAMPLES, finish_cli, start_cli
from waveui.frontends.cli import build_parser

ERROR_LINE = re.compile(r"waveui: error: (?P<file>[^:\n]+):(?P<line>\d+): (?P<message>.+)")


def subcommands() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(action.choices)


def files_in(folder) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


# Each case: the epic text, then (line, part of the message) for every problem, in line order.
ERROR_CASES = {
    "toml-syntax": ('[epic]\nname = "x"\n\n[[task]]\nid = "a"\nstory_points = = 3\n', [(6, "invalid TOML")]),
    "toml-unclosed-string": ('[[task]]\nid = "a\n', [(2, "invalid TOML")]),
    "unknown-key": ('[[task]]\nid = "a"\nstory_point = 3\n', [(3, "did you mean 'story_points'")]),
    "unknown-epic-key": ('[epic]\nnmae = "x"\n[[task]]\nid = "a"\n', [(2, "did you mean 'name'")]),
    "wrong-type": ('[[task]]\nid = "a"\nrequires = "b"\n[[task]]\nid = "b"\n', [(3, "must be an array of strings")]),
    "missing-id": ('[[task]]\nid = "a"\n[[task]]\ntitle = "t"\n', [(3, "task has no id")]),
    "duplicate-id": ('[[task]]\nid = "a"\n[[task]]\nid = "a"\n', [(4, "duplicate task id 'a' (first defined at line 1)")]),
    "bad-id": ('[[task]]\nid = "no spaces"\n', [(2, "must be 1-64 letters")]),
    "unknown-requirement": ('[[task]]\nid = "a"\nrequires = ["b"]\n', [(3, "requires unknown task 'b'")]),
    "requires-itself": ('[[task]]\nid = "a"\nrequires = ["a"]\n', [(3, "task 'a' requires itself")]),
    "cycle": ('[[task]]\nid = "a"\nrequires = ["b"]\n[[task]]\nid = "b"\nrequires = ["c"]\n'
              '[[task]]\nid = "c"\nrequires = ["a"]\n', [(3, "dependency cycle: a -> b -> c -> a")]),
    "negative-points": ('[[task]]\nid = "a"\nstory_points = -3\n', [(3, "story_points must be a finite number")]),
    "text-points": ('[[task]]\nid = "a"\nstory_points = "big"\n', [(3, "story_points must be a number")]),
    "absolute-file": ('[[task]]\nid = "a"\naffected_files = ["/etc/hosts"]\n', [(3, "not absolute")]),
    "climbing-file": ('[[task]]\nid = "a"\naffected_files = ["../x.py"]\n', [(3, "climbs out with '..'")]),
    "bad-duration": ('[[task]]\nid = "a"\ntimeout = "a while"\n', [(3, "is not a duration")]),
    "many-at-once": (
        '[epic]\nconflicts = "never"\n\n[[task]]\nid = "a"\nstory_points = -1\n\n'
        '[[task]]\nid = "b"\nrequires = ["zz"]\ntimeout = "later"\n\n[[task]]\nid = "a"\n',
        [(2, "conflicts must be one of"), (6, "story_points"), (10, "unknown task 'zz'"), (11, "not a duration"),
         (14, "duplicate task id 'a'")],
    ),
}


# Every case runs through `plan`; a few also through the other commands, which load the same way.
ERROR_RUNS = [(case, ("plan",)) for case in sorted(ERROR_CASES)] + [
    ("many-at-once", ("plan", "--json")),
    ("cycle", ("graph", "--format", "dot")),
    ("toml-syntax", ("graph",)),
]


@pytest.fixture(scope="module")
def error_runs(tmp_path_factory):
    """Every run of ERROR_RUNS, started all at once, each in a folder of its own."""
    started = {}
    for number, (case, command) in enumerate(ERROR_RUNS):
        folder = tmp_path_factory.mktemp(f"error-{number}")
        (folder / "waveui.toml").write_text(ERROR_CASES[case][0], encoding="utf-8")
        started[case, command] = (folder, files_in(folder), start_cli(command, folder))
    return {key: (finish_cli(process), before, folder) for key, (folder, before, process) in started.items()}


@pytest.mark.parametrize("case, command", ERROR_RUNS)
def test_errors_are_one_line_each_with_file_and_line(error_runs, case, command):
    result, before, folder = error_runs[case, command]
    expected = ERROR_CASES[case][1]
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    lines = result.error_lines
    assert len(lines) == len(expected), lines
    for line, (number, fragment) in zip(lines, expected):
        match = ERROR_LINE.fullmatch(line)
        assert match, line
        assert match["file"] == "waveui.toml"
        assert int(match["line"]) == number, line
        assert fragment in match["message"], line
    assert files_in(folder) == before  # nothing written


def test_error_names_the_file_given_with_f(cli, tmp_path):
    (tmp_path / "epics").mkdir()
    (tmp_path / "epics" / "big.toml").write_text('[[task]]\nid = "a"\nstory_points = -1\n', encoding="utf-8")
    result = cli("plan", "-f", "epics/big.toml")
    assert result.returncode == 2
    [line] = result.error_lines
    match = ERROR_LINE.fullmatch(line)
    assert match and match["file"] == "epics/big.toml" and match["line"] == "3"


def test_missing_epic_file(cli, tmp_path):
    result = cli("plan")
    assert result.returncode == 2
    [line] = result.error_lines
    assert line.startswith("waveui: error: waveui.toml: no such file")
    assert "Traceback" not in result.stderr
    assert files_in(tmp_path) == set()


def test_epic_file_that_is_a_folder(cli, tmp_path):
    (tmp_path / "waveui.toml").mkdir()
    result = cli("plan")
    assert result.returncode == 2
    [line] = result.error_lines
    assert line.startswith("waveui: error: waveui.toml: cannot read")


# ------------------------------------------------------------------- help


@pytest.mark.parametrize("command", subcommands())
def test_help_of_every_subcommand(cli, command):
    result = cli(command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: waveui {command}")
    assert result.stderr == ""


def test_main_help_lists_the_subcommands(cli):
    result = cli("--help")
    assert result.returncode == 0
    for command in subcommands():
        assert command in result.stdout
    assert cli().stdout == result.stdout  # no command: the same help


def test_version(cli):
    result = cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"waveui {waveui.__version__}"


@pytest.mark.parametrize("args, fragment", [
    (["plan", "--workers", "0"], "must be at least 1, not 0"),
    (["plan", "--workers", "-3"], "must be at least 1"),
    (["plan", "--workers", "many"], "not a whole number"),
    (["graph", "--format", "png"], "invalid choice"),
    (["plan", "--bogus"], "unrecognized arguments"),
    (["fly"], "invalid choice"),
])
def test_bad_arguments_are_one_line(cli, tmp_path, args, fragment):
    (tmp_path / "waveui.toml").write_text('[[task]]\nid = "a"\n', encoding="utf-8")
    result = cli(*args)
    assert result.returncode == 2
    [line] = result.error_lines
    assert line.startswith("waveui: error: ") and fragment in line
    assert result.stdout == ""


# ------------------------------------------------------------------- plan


CLASSIC = textwrap.dedent("""
    [epic]
    name = "classic"

    [[task]]
    id = "001"
    story_points = 3
    affected_files = ["src/a.py"]

    [[task]]
    id = "002"
    story_points = 2
    affected_files = ["src/*.py"]

    [[task]]
    id = "003"
    requires = ["001", "002"]
    story_points = 4

    [[task]]
    id = "004"
    story_points = 6
    affected_files = ["docs/"]

    [[task]]
    id = "005"
    requires = ["003", "004"]
    story_points = 1
    affected_files = ["docs/index.md"]
""")


def test_plan_json(cli, tmp_path):
    (tmp_path / "waveui.toml").write_text(CLASSIC, encoding="utf-8")
    result = cli("plan", "--json", "--workers", "3")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    data = json.loads(result.stdout)  # one object, nothing else
    assert isinstance(data, dict)
    assert data["epic"] == "classic"
    assert data["graph_type"] in ("chain", "broad", "hybrid")
    # 001 and 002 share src/a.py. Either order makes a path of 10 (3 + 2 + 4 + 1), two more
    # than 8; the tie goes to the first in topological order, so 002 moves to the second wave.
    # 004 and 005 are ordered by a dependency: docs/ against docs/index.md is no conflict.
    assert data["conflicts"] == [{"tasks": ["001", "002"], "files": ["src/a.py"], "resolution": "serialise",
                                  "serialise": {"before": "001", "after": "002", "critical_path_growth": 2}}]
    assert data["waves"] == [["001", "004"], ["002"], ["003"], ["005"]]
    assert data["critical_path"] == {"tasks": ["001", "002", "003", "005"], "length": 10}
    assert data["lower_bound"] == 10
    assert set(data["estimated_makespan"]) >= {"eager", "waves"}
    # story points and makespans are floats every time, whole or not: one type per field for typed readers
    raw = json.loads(result.stdout, parse_int=lambda text: f"int {text}")
    assert raw["critical_path"]["length"] == raw["lower_bound"] == 10.0
    figures = [*raw["slack"].values(), raw["conflicts"][0]["serialise"]["critical_path_growth"],
               *(raw["estimated_makespan"][key] for key in ("eager", "waves", "fifo"))]
    assert all(isinstance(figure, float) for figure in figures)
    assert data["estimated_makespan"]["eager"] >= data["lower_bound"]
    assert data["workers"] == 3


def test_plan_json_without_conflicts(cli, tmp_path):
    (tmp_path / "waveui.toml").write_text(CLASSIC.replace('affected_files = ["src/*.py"]', ""), encoding="utf-8")
    data = json.loads(cli("plan", "--json", "-w", "2").stdout)
    assert data["conflicts"] == []
    assert data["waves"] == [["001", "002", "004"], ["003"], ["005"]]
    assert data["critical_path"] == {"tasks": ["001", "003", "005"], "length": 8}
    assert data["lower_bound"] == 8
    assert data["estimated_makespan"]["eager"] == 9
    assert data["estimated_makespan"]["waves"] == 11


def test_plan_text(cli, tmp_path):
    (tmp_path / "waveui.toml").write_text(CLASSIC, encoding="utf-8")
    result = cli("plan", "-w", "2")
    assert result.returncode == 0 and result.stderr == ""
    assert "Critical path (10 points): 001 → 002 → 003 → 005" in result.stdout
    assert "Waves (4)" in result.stdout
    assert "serialised: 001 before 002" in result.stdout
    assert "\033[" not in result.stdout  # no colour into a pipe


def test_plan_in_lock_mode_says_every_estimate_keeps_locked_tasks_apart(cli, tmp_path):
    # 001 and 002 share src/a.py and take turns: 5 points, after which 003 and 005 take 5 more,
    # so nothing ends before 10 (the critical path is 8). Waves: 004 takes the first wave to 6
    # while 002 waits for 001 (3 to 5), then 4 and 1: 11. FIFO: 001 and 004 first, 002 at 3, 10.
    # Deferred, 001 and 002 run together: 8, and FIFO reaches it.
    (tmp_path / "waveui.toml").write_text(CLASSIC.replace('name = "classic"', 'name = "classic"\nconflicts = "lock"'),
                                          encoding="utf-8")
    data = json.loads(cli("plan", "--json", "-w", "3").stdout)
    assert data["conflict_mode"] == "lock" and data["estimates_honour_locks"] is True
    assert data["lower_bound"] == 10
    assert {key: data["estimated_makespan"][key] for key in ("eager", "waves", "fifo")} == \
        {"eager": 10, "waves": 11, "fifo": 10}
    text = cli("plan", "-w", "3").stdout
    assert "Makespan on 3 workers (story points; locked tasks never run at the same time in any of them)" in text
    assert re.search(r"^  lower bound +10$", text, re.M)
    assert "workers busy on average, the locks counted" in text

    (tmp_path / "waveui.toml").write_text(CLASSIC.replace('name = "classic"', 'name = "classic"\nconflicts = "defer"'),
                                          encoding="utf-8")
    data = json.loads(cli("plan", "--json", "-w", "3").stdout)
    assert data["estimates_honour_locks"] is False
    assert data["lower_bound"] == 8
    assert {key: data["estimated_makespan"][key] for key in ("eager", "waves", "fifo")} == \
        {"eager": 8, "waves": 11, "fifo": 8}
    assert "locked tasks never run" not in cli("plan", "-w", "3").stdout


def test_plan_example_needs_no_file(cli, tmp_path):
    result = cli("plan", "--example", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["epic"] == "user-accounts" and data["graph_type"] == "hybrid"
    assert data["workers"] == 4  # the example's max_parallel
    assert files_in(tmp_path) == set()


# ------------------------------------------------------------------- graph


def test_graph_dot_marks_the_critical_path(cli, tmp_path):
    (tmp_path / "waveui.toml").write_text(CLASSIC, encoding="utf-8")
    result = cli("graph", "--format", "dot")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith('digraph "classic" {')
    red = {line.split()[0].strip('"') for line in out.splitlines() if "[label=" in line and "color=red" in line}
    assert red == {"001", "002", "003", "005"}
    assert '"001" -> "002" [color=red, penwidth=2, style=dashed, label="serialised"];' in out
    assert sum(1 for line in out.splitlines() if "->" in line) == 5


def test_graph_mermaid_marks_the_critical_path(cli, tmp_path):
    (tmp_path / "waveui.toml").write_text(CLASSIC, encoding="utf-8")
    result = cli("graph")  # mermaid is the default
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "flowchart LR"
    node = {line.split("[")[0].strip(): line.split('"')[1] for line in lines if '["' in line}
    [marked] = [line.split()[1] for line in lines if line.strip().startswith("class ")]
    assert [node[n] for n in marked.split(",")] == ["001", "002", "003", "005"]
    assert any("serialised" in line for line in lines)
    assert cli("graph", "--format", "mermaid").stdout == result.stdout


# -------------------------------------------------------------------- init


def test_plan_text_counts_in_the_singular_too(cli, tmp_path):
    (tmp_path / "waveui.toml").write_text('[epic]\nname = "one"\nmax_parallel = 1\n\n[[task]]\nid = "a"\n'
                                          'story_points = 1\n', encoding="utf-8")
    out = cli("plan").stdout
    assert "1 task, 0 dependencies, 1 worker" in out
    assert "Critical path (1 point): a" in out and "Makespan on 1 worker " in out


def test_init_writes_a_starter_that_plans_cleanly(cli, tmp_path):
    result = cli("init")
    assert result.returncode == 0, result.stderr
    assert files_in(tmp_path) == {"waveui.toml"}
    assert "waveui.toml" in result.stdout
    planned = cli("plan", "--json")
    assert planned.returncode == 0 and planned.stderr == ""
    data = json.loads(planned.stdout)
    assert data["epic"] == "my-epic" and len(data["dispatch_order"]) >= 2
    assert cli("graph").returncode == 0


def test_the_starter_runs_as_written(cli, tmp_path):
    """`waveui init`, commit, `waveui run`: every task done, with no edit in between."""
    from engine_helpers import git, make_repo

    repo = make_repo(tmp_path / "project")
    assert cli("init", cwd=repo).returncode == 0
    git(repo, "add", "waveui.toml")
    git(repo, "commit", "-q", "-m", "epic")
    result = cli("run", "--headless", cwd=repo)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "run complete: 3/3 done" in result.stdout
    assert git(repo, "show", "waveui/my-epic:notes/api.md") == "Add the API endpoints over the models"


def test_init_refuses_to_overwrite(cli, tmp_path):
    target = tmp_path / "waveui.toml"
    target.write_text("# mine\n", encoding="utf-8")
    result = cli("init")
    assert result.returncode == 2
    [line] = result.error_lines
    assert line.startswith("waveui: error: ") and "--force" in line
    assert target.read_text(encoding="utf-8") == "# mine\n"
    forced = cli("init", "--force")
    assert forced.returncode == 0
    assert target.read_text(encoding="utf-8") == (EXAMPLES / "starter.toml").read_text(encoding="utf-8")


def test_init_to_another_file(cli, tmp_path):
    assert cli("init", "-f", "other.toml").returncode == 0
    assert files_in(tmp_path) == {"other.toml"}
    assert cli("plan", "-f", "other.toml").returncode == 0


def test_init_into_a_missing_folder_is_one_line(cli, tmp_path):
    result = cli("init", "-f", "no/such/folder/waveui.toml")
    assert result.returncode == 2
    [line] = result.error_lines
    assert line.startswith("waveui: error: ") and "no/such/folder/waveui.toml" in line
    assert "Traceback" not in result.stderr
    assert files_in(tmp_path) == set()
