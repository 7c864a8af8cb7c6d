"""Hostile input: fuzzed epic files, ids and paths that try to escape, task output that tries to drive the terminal.

* The loader's fuzz property (benchmarks/fuzz_spec.py) for a few seconds in
  process and on a handful of files through the real command line.
* Task ids, epic names, branch names and paths can never point outside
  ``.waveui/`` or make a ref outside ``refs/heads/waveui/``, even if the spec
  were bypassed.
* Escape sequences, 8-bit controls and bidi overrides printed by a task are
  shown inert: in headless output of real runs, in the app's panes (live and
  ``waveui watch``).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import json
import posixpath
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.engine_helpers import git, make_repo
from tests.ui.helpers import SIZE, PushFeed, make_app, press, settle
from tests.ui.helpers import isolated_user_themes  # noqa: F401  (autouse: keeps your own themes out)
from waveui.core import spec
from waveui.git import names, worktrees
from waveui.run.events import LimitChanged, RunFinished, RunStarted, TaskProgress, TaskStateChanged
from waveui.frontends.headless import HeadlessReporter
from waveui.run.journal import Journal
from waveui.git.worktrees import integration_branch, task_branch
from waveui.core.sanitize import sanitize, sanitize_line
from waveui.core.spec import SpecError
from waveui.frontends.tui.app import WaveApp
from waveui.frontends.tui.feeds import JournalFeed
from waveui.frontends.tui.sample_run import NOW, START, sample_events, task_infos

BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "fuzz_spec.py"
_loader = importlib.util.spec_from_file_location("fuzz_spec", BENCHMARK)
fuzz = importlib.util.module_from_spec(_loader)
sys.modules.setdefault("fuzz_spec", fuzz)  # its dataclasses look their module up there
_loader.loader.exec_module(fuzz)

# What a terminal would act on: C0 controls but tab and newline, DEL, C1 controls, bidi overrides.
TERMINAL_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
TERMINAL_BYTES = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]|\xc2[\x80-\x9f]|\xe2\x80[\xaa-\xae]|\xe2\x81[\xa6-\xa9]")

HOSTILE_OUTPUT = [
    "\x1b[2J\x1b[H",  # clear the screen, cursor home
    "\x1b]52;c;cm0gLXJmIH4=\x07",  # OSC 52: write the clipboard
    "\x1b]0;pwned\x07",  # window title
    "\x1b[10;20H\x1b[A\x1b[3D",  # cursor moves
    "\x1bP+q544e\x1b\\",  # DCS (a terminfo query that answers on stdin)
    "\x9b2J\x9d0;pwned\x9c\x85",  # 8-bit CSI, OSC, ST, NEL
    "\u202eexe.txt\u202c\u2066",  # bidi overrides and isolates
    "\x1bc\x07\x08",  # full reset, bell, backspace
]
HOSTILE = "".join(HOSTILE_OUTPUT)


def toml(text: str) -> str:
    return fuzz.toml_string(text)


# ----------------------------------------------------------------- fuzzing


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(fuzz.fuzz_inputs(large=False, quick_batch=3))
def test_the_loader_loads_or_refuses_every_fuzzed_input(cases):
    for case in cases:
        outcome, detail = fuzz.check_in_process(case)
        assert outcome != "failure", f"{detail}\ninput: {case.data[:500]!r}"


CLI_CASES = {
    "a valid example": (fuzz.EXAMPLES[0].read_bytes(), "valid"),
    "byte-order mark and CRLF": (b"\xef\xbb\xbf" + fuzz.FULL_SEED.replace("\n", "\r\n").encode(), "valid"),
    "nesting 5000 deep": (b'[[task]]\nid = "a"\nx = ' + b"[" * 5000 + b"]" * 5000 + b"\n", "rejected"),
    "an integer of 5000 digits": (b"[epic]\nmax_parallel = " + b"9" * 5000 + b'\n[[task]]\nid = "a"\n', "rejected"),
    "a hex integer too large to print": (b'[[task]]\nid = "a"\npriority = 0x' + b"f" * 5000 + b"\n", "rejected"),
    "keys and ids holding escape sequences": (
        f'[[task]]\nid = "a"\n{toml(HOSTILE)} = 1\nrequires = [{toml("b" + HOSTILE)}]\n'.encode(), "rejected"),
    "ids git refuses": (b'[epic]\nname = "e.lock"\n[[task]]\nid = "a..b"\n[[task]]\nid = "x."\n', "rejected"),
    "paths that escape or cannot be read": (
        b'[epic]\nsetup_inputs = [".", "a**", "../x"]\n[[task]]\nid = "a"\n'
        b'affected_files = ["[z-a]", "..\\\\x", "C:/x", "a\\u0000b"]\n', "rejected"),
    "random bytes": (bytes(range(256)) * 4, "rejected"),
    "10,000 tasks and a cycle": (
        "".join(f'[[task]]\nid = "t{i}"\nrequires = ["t{(i + 1) % 10_000}"]\n' for i in range(10_000)).encode(),
        "rejected"),
}


@pytest.mark.parametrize("name", CLI_CASES)
def test_the_command_line_plans_or_refuses_in_one_line_errors(name):
    data, expected = CLI_CASES[name]
    outcome, detail = fuzz.check_cli(data)
    assert (outcome, detail) == (expected, "")


# ------------------------------------------------- regressions the fuzzer found


def problems(text: str) -> list[spec.Problem]:
    with pytest.raises(SpecError) as caught:
        spec.loads(text)
    return caught.value.problems


@pytest.mark.parametrize("value", ["[" * 2_000 + "]" * 2_000, "{a = " * 2_000 + "1" + "}" * 2_000, "[" * 100_000])
def test_deep_nesting_is_one_problem_at_its_line(value):
    found = problems(f'[[task]]\nid = "a"\n\nx = {value}\n')
    assert len(found) == 1 and found[0].line == 4 and "invalid TOML" in found[0].message


@pytest.mark.parametrize("line, fragment", [
    ("max_parallel = " + "9" * 5_000, "more than 4300 digits"),
    ("priority = 0x" + "f" * 5_000, "too large"),
    ("story_points = " + "9" * 400, "finite number"),
    ("story_points = 0x" + "f" * 5_000, "finite number"),
    ("timeout = " + "9" * 400, "not a duration"),
    ("retries = 9223372036854775808", "too large"),
    ("requires = [0x" + "f" * 5_000 + "]", "array of strings"),
])
def test_numbers_too_large_are_problems_not_crashes(line, fragment):
    found = problems(f'[[task]]\nid = "a"\n{line}\n')
    assert len(found) == 1 and found[0].line == 3 and fragment in found[0].message
    assert len(str(found[0])) < 400  # a huge value is cut short, not printed whole


def test_min_free_memory_too_large_is_refused():
    for value in ["9" * 400, '"' + "9" * 400 + 'TB"']:
        assert "not a size" in problems(f'[epic]\nmin_free_memory = {value}\n[[task]]\nid = "a"\n')[0].message


@pytest.mark.parametrize("text", [
    '[[task]]\nid = "a"\n' + toml("x" + HOSTILE + "\n") + " = 1\n",
    '[[task]]\nid = "a"\nrequires = [' + toml("b" + HOSTILE + "\u2028c") + "]\n",
    f'{toml("top" + HOSTILE)} = 1\n[[task]]\nid = "a"\n',
    f'[{toml("table" + HOSTILE)}]\n[[task]]\nid = "a"\n',
    f'[[task]]\nid = "a"\ntimeout = {toml(HOSTILE)}\n',
])
def test_problems_show_names_and_values_escaped_on_one_line(text):
    for problem in problems(text):
        assert str(problem).isprintable(), str(problem)
    assert any("\\x1b" in str(p) for p in problems(text))  # shown, escaped, so the user can find it


def test_a_problem_path_is_shown_escaped_too():
    error = SpecError([spec.Problem("odd\nname\x1b[2J.toml", 3, "bad")])
    assert str(error.problems[0]) == "odd\\nname\\x1b[2J.toml:3: bad"


# ------------------------------------------------------------ hostile names

HOSTILE_IDS = [
    "../x", "..", ".", "a/b", "a\\b", "-rf", "--force", ".hidden", "x.lock", "a.lock", "a..b", "x.", "@{u}",
    "a@b", "HEAD@{1}", "a:b", "a b", "~x", "a*", "a?", "a[b]", "x\n", "x\x00", "x\x1b[2J",
    "t\u0430sk",  # Cyrillic a
    "\uff54ask",  # fullwidth t
    "x\u200b",  # zero-width space
    "\u202ex",  # right-to-left override
    "x" * 65, "", " ",
]


@pytest.mark.parametrize("bad", HOSTILE_IDS)
def test_spec_refuses_hostile_task_ids(bad):
    found = problems(f'[[task]]\nid = "ok"\n\n[[task]]\nid = {toml(bad)}\n')
    assert [p.line for p in found] == [5]
    assert "task id" in found[0].message


@pytest.mark.parametrize("bad", HOSTILE_IDS)
def test_spec_refuses_hostile_epic_names(bad):
    found = problems(f'[epic]\nname = {toml(bad)}\n[[task]]\nid = "ok"\n')
    assert [p.line for p in found] == [2] and "epic name" in found[0].message


@pytest.mark.parametrize("bad", HOSTILE_IDS)
def test_branch_names_refuse_hostile_names_even_without_the_spec(bad):
    with pytest.raises(ValueError):
        task_branch("ok", bad)
    with pytest.raises(ValueError):
        task_branch(bad, "ok")
    with pytest.raises(ValueError):
        integration_branch(bad)


@pytest.mark.parametrize("branch", ["waveui/../main", "waveui/a/b", "waveui/", "main", "waveui/a@{u}",
                                    "waveui/a\\b", "waveui//a", "refs/heads/waveui/a"])
def test_the_last_check_keeps_refs_under_refs_heads_waveui(branch):
    with pytest.raises(ValueError):
        names._checked_branch(branch)


@pytest.mark.parametrize("folder, name", [("x.lock", "x"), ("a..b", "a.b"), ("..weird..", "weird"),
                                          ("my.lock.lock", "my"), ("-.-", "epic"), ("ünïcode", "n-code")])
def test_the_default_epic_name_from_a_folder_is_a_safe_branch(tmp_path, folder, name):
    path = tmp_path / folder
    path.mkdir()
    (path / "waveui.toml").write_text('[[task]]\nid = "a"\n')
    epic = spec.load(path / "waveui.toml")
    assert epic.name == name
    assert integration_branch(epic.name) == f"waveui/{name}"


ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True)


@settings(max_examples=150, deadline=None)
@given(ids)
def test_every_id_the_spec_accepts_stays_inside_waveui(task_id):
    text = f'[epic]\nname = {toml(task_id)}\n[[task]]\nid = {toml(task_id)}\n'
    try:
        epic = spec.loads(text)
    except SpecError:
        # Refused by the spec, so it must be one git refuses too.
        assert ".." in task_id or task_id.endswith((".", ".lock"))
        with pytest.raises(ValueError):
            task_branch("e", task_id)
        return
    assert epic.name == task_id and epic.tasks[0].id == task_id
    logs = "/repo/.waveui/runs/run-1/logs"
    log = posixpath.normpath(posixpath.join(logs, f"{task_id}.log"))  # the engine's run_dir / "logs" / f"{id}.log"
    assert posixpath.dirname(log) == logs and posixpath.basename(log) == f"{task_id}.log"
    for branch in (task_branch(task_id, task_id), integration_branch(task_id)):
        ref = f"refs/heads/{branch}"
        assert posixpath.dirname(ref) == "refs/heads/waveui"
        # git itself agrees that it is one well-formed ref directly under refs/heads/waveui/
        assert subprocess.run(["git", "check-ref-format", ref]).returncode == 0


ESCAPING_PATHS = ["/etc/passwd", "/", "../x", "..", "a/../../x", "./../x", "..\\x", "a\\..\\..\\x", "\\x",
                  "\\\\server\\share\\x", "C:/x", "c:\\x", "Z:\\", "a/b/../../../x"]


@pytest.mark.parametrize("key", ["affected_files", "setup_inputs"])
@pytest.mark.parametrize("bad", ESCAPING_PATHS)
def test_spec_refuses_paths_that_escape_the_repository(key, bad):
    table = "[epic]" if key == "setup_inputs" else '[[task]]\nid = "a"'
    text = f"{table}\n{key} = [{toml(bad)}]\n" + ('[[task]]\nid = "a"\n' if key == "setup_inputs" else "")
    found = problems(text)
    assert len(found) == 1 and key in found[0].message


@pytest.mark.parametrize("bad", [p for p in ESCAPING_PATHS if not re.match(r"[A-Za-z]:", p)])
def test_the_worktree_pool_refuses_escaping_setup_inputs_even_without_the_spec(bad):
    # (Drive letters are only names on POSIX: "C:/x" is the folder "C:" inside the worktree.)
    with pytest.raises(ValueError):
        worktrees._check_input_pattern(bad)


@pytest.mark.parametrize("bad", ["a\x00b", "a\nb", "\x1b]0;x\x07", "a\x9bb", "a\u202eb"])
def test_paths_holding_control_characters_are_refused(bad):
    assert "control character" in problems(f'[[task]]\nid = "a"\naffected_files = [{toml(bad)}]\n')[0].message


@pytest.mark.parametrize("bad", [".", "./", "././", "a**", "**b/c", "a/b**"])
def test_setup_inputs_that_pathlib_cannot_glob_are_refused(bad):
    assert problems(f'[epic]\nsetup_inputs = [{toml(bad)}]\n[[task]]\nid = "a"\n')
    with pytest.raises(ValueError):
        worktrees._check_input_pattern(bad)


@pytest.mark.parametrize("bad", ["[z-a]", "[!]", "src/[^]x", "[[a]"])
def test_affected_file_sets_the_planner_cannot_read_are_refused(bad):
    assert "'[...]' set" in problems(f'[[task]]\nid = "a"\naffected_files = [{toml(bad)}]\n')[0].message


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A repository-like folder, with a secret beside it that no setup input may reach."""
    root = tmp_path_factory.mktemp("escape")
    repo = root / "repo"
    for name in ("package-lock.json", "a/b.cfg", "a/c/d.cfg", "C:/x", "x\\y"):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(name)
    (root / "secret.cfg").write_text("secret")
    return repo


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet="ab./\\*?[]!:C~-", min_size=1, max_size=10))
def test_setup_inputs_the_spec_accepts_only_ever_read_inside_the_worktree(tree, pattern):
    try:
        epic = spec.loads(f'[epic]\nsetup = "true"\nsetup_inputs = [{toml(pattern)}]\n[[task]]\nid = "a"\n')
    except SpecError:
        return
    [accepted] = epic.setup_inputs
    worktrees._check_input_pattern(accepted)  # the pool takes whatever the spec took
    for found in tree.glob(accepted):
        if found.is_file():  # what setup_hash reads
            assert tree.resolve() in found.resolve().parents
    # ... and the setup hash (which reads those files) is made without raising
    worktrees.WorktreePool.setup_hash(SimpleNamespace(setup="true", setup_inputs=[accepted]), tree)


# ----------------------------------------------- task output shown inert


@given(st.lists(st.sampled_from(HOSTILE_OUTPUT) | st.text(max_size=8), max_size=12).map("".join))
def test_sanitize_leaves_nothing_a_terminal_would_act_on(text):
    assert not TERMINAL_CONTROL.search(sanitize(text).replace("\n", "").replace("\t", ""))
    assert not TERMINAL_CONTROL.search(sanitize_line(text))


def _hostile_events() -> list:
    """The sample run with hostile text wherever a task or a tampered journal could put it."""
    events = sample_events()
    infos = task_infos()
    infos[0] = dataclasses.replace(infos[0], title="schema " + HOSTILE)
    infos.append(dataclasses.replace(infos[-1], id="../../etc/x\x1b[2J", title=HOSTILE, requires=[]))
    events[0] = dataclasses.replace(events[0], epic="checkout" + HOSTILE, tasks=infos)
    t = NOW - 10
    return events + [
        TaskProgress(t=t, task="cart-service", progress=70, message="msg " + HOSTILE),
        TaskStateChanged(t=t, task="search-index", state="failed", attempt=1, reason="why " + HOSTILE,
                         exit_code=1),
        TaskStateChanged(t=t, task="analytics-events", state="conflicted", attempt=1, reason="conflict " + HOSTILE,
                         files=["src/" + HOSTILE + ".py"]),
        LimitChanged(t=t, limit=3, reason="limit " + HOSTILE),
    ]


def _screen_text(app) -> str:
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def _assert_inert(text: str) -> None:
    found = TERMINAL_CONTROL.findall(text.replace("\n", ""))
    assert not found, f"controls reach the screen: {found!r}"


async def test_the_app_shows_hostile_output_inert_in_every_pane(tmp_path):
    events = _hostile_events()
    app, _ = make_app(tmp_path, feed=PushFeed(events))
    (tmp_path / "cart-service.log").write_text("before\n" + "\n".join(HOSTILE_OUTPUT) + "\nafter\n")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app, events=len(events))
        app.main_screen.select_task("cart-service")
        await press(pilot, app)
        log = app.main_screen.task_log
        # Each sequence is gone; what is left of a line is plain text ("\u2407\u2408": BEL and BS made visible).
        assert [line for line in log.lines if line] == ["before", "exe.txt", "\u2407\u2408", "after"]
        for line in log.lines:
            _assert_inert(line)
        _assert_inert(_screen_text(app))
        for task_id in ("search-index", "analytics-events", "api-schema", "../../etc/x\x1b[2J"):
            app.main_screen.select_task(task_id)
            await press(pilot, app)
            _assert_inert(_screen_text(app))
            await press(pilot, app, "enter")  # its detail screen: log, files, attempts, reason
            _assert_inert(_screen_text(app))
            await press(pilot, app, "escape")


async def test_watch_mode_shows_a_hostile_journal_and_log_inert(tmp_path):
    run_dir = tmp_path / "run"
    journal = Journal(run_dir)
    events = _hostile_events()
    for event in events:
        journal.append(event)
    journal.close()
    logs = run_dir / "logs"
    logs.mkdir()
    (logs / "cart-service.log").write_text(HOSTILE + "\nplain\n")
    (tmp_path / "x\x1b[2J.log").write_text("outside the logs folder\n")
    app = WaveApp(JournalFeed(run_dir / "events.jsonl", poll=0.02), None, log_dir=logs, read_only=True,
                  clock=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app, events=len(events))
        assert app.state.epic.startswith("checkout\x1b")  # the hostile text did arrive ...
        app.main_screen.select_task("cart-service")
        await press(pilot, app)
        log = app.main_screen.task_log
        assert [line for line in log.lines if line][-1] == "plain"
        _assert_inert(_screen_text(app))  # ... and reaches the screen inert
        app.main_screen.select_task("../../etc/x\x1b[2J")  # an id from the journal never names a file
        await press(pilot, app)
        assert log._follower.path is None and log.line_count == 0
        _assert_inert(_screen_text(app))
        await press(pilot, app, "enter")
        _assert_inert(_screen_text(app))


@pytest.mark.parametrize("args", [["watch", "--list"], ["watch", "--list", "--json"], ["status"],
                                  ["status", "--json"]])
def test_run_listings_show_a_hostile_journal_inert(tmp_path, args):
    run_dir = tmp_path / ".waveui" / "runs" / "20250101-000000-x"
    journal = Journal(run_dir)
    for event in _hostile_events():
        journal.append(event)
    journal.append(RunFinished(t=NOW, ok=False, reason="stopped " + HOSTILE))
    journal.close()
    done = subprocess.run([sys.executable, "-m", "waveui", *args], cwd=tmp_path, capture_output=True, timeout=60,
                          env=fuzz.cli_env(), stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert b"checkout" in done.stdout
    assert not TERMINAL_BYTES.search(done.stdout), done.stdout


def test_headless_prints_hostile_text_inert():
    out = io.StringIO()
    reporter = HeadlessReporter(out, summary_every=0)
    infos = [dataclasses.replace(i, title=HOSTILE) for i in task_infos()]
    for event in [
        RunStarted(t=START, run_id="r", epic="e" + HOSTILE, branch="waveui/e" + HOSTILE, tasks=infos, limit=2),
        TaskStateChanged(t=START + 1, task="api-schema", state="running", attempt=1, reason=HOSTILE),
        TaskProgress(t=START + 2, task="api-schema", message=HOSTILE),
        TaskStateChanged(t=START + 3, task="api-schema", state="done", attempt=1, files=[HOSTILE],
                         undeclared=[HOSTILE]),
        TaskStateChanged(t=START + 4, task="db-migration", state="failed", attempt=1, reason=HOSTILE),
        TaskStateChanged(t=START + 5, task="ci-cache", state="conflicted", attempt=1, reason=HOSTILE),
        LimitChanged(t=START + 6, limit=1, reason=HOSTILE),
    ]:
        reporter(event)
    reporter(RunFinished(t=START + 7, ok=False, reason="finished " + HOSTILE))
    assert out.getvalue().count("\n") > 8
    assert not TERMINAL_BYTES.search(out.getvalue().encode())


# A task that prints every kind of hostile sequence, reports a hostile message, and (in a
# repository) makes a file whose name holds them, so failure reasons and file lists carry them too.
HOSTILE_COMMAND = r"""
printf 'out \033[2J\033[H \033]52;c;cm0gLXJmIH4=\007 \033]0;pwned\007 \033P+q544e\033\\ \302\2332J \342\200\256 \007\n'
printf '::waveui progress=50 message="\033]52;c;cm0gLXJmIH4=\007\302\233 \342\200\256 clear"\n'
printf 'err \033]0;pwned\007\n' >&2
"""
HOSTILE_FILE = r"""name="$(printf 'f\033]0;pwn\007\302\233\342\200\256.txt')"; """


def _run_headless(folder: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "waveui", "run", "--headless"], cwd=folder, capture_output=True,
                          timeout=180, env={**fuzz.cli_env(), **env}, stdin=subprocess.DEVNULL)


def test_a_real_headless_run_prints_hostile_task_output_inert(tmp_path):
    (tmp_path / "waveui.toml").write_text(textwrap.dedent(f"""\
        [epic]
        name = "hostile"
        isolation = "none"
        [[task]]
        id = "noisy"
        title = {toml("title " + HOSTILE)}
        command = '''{HOSTILE_COMMAND}'''
        [[task]]
        id = "fails"
        command = '''{HOSTILE_COMMAND} exit 3'''
    """))
    done = _run_headless(tmp_path)
    assert done.returncode == 1, done.stderr
    assert b"noisy" in done.stdout and b"fails" in done.stdout and b"failed" in done.stdout
    assert not TERMINAL_BYTES.search(done.stdout), done.stdout
    assert not TERMINAL_BYTES.search(done.stderr), done.stderr
    [run] = (tmp_path / ".waveui" / "runs").iterdir()
    assert b"\x1b]52;" in (run / "logs" / "noisy.log").read_bytes()  # the log keeps what the task printed
    messages = [json.loads(line).get("message") for line in (run / "events.jsonl").read_text().split("\n") if line]
    assert any(m and "clear" in m and m.isprintable() for m in messages)  # stored made printable


def test_a_real_git_run_prints_hostile_file_names_and_reasons_inert(tmp_path):
    repo = make_repo(tmp_path / "repo")
    (repo / "waveui.toml").write_text(textwrap.dedent(f"""\
        [epic]
        name = "hostile"
        conflicts = "defer"
        max_parallel = 2
        [[task]]
        id = "first"
        affected_files = ["declared.txt"]
        command = '''{HOSTILE_FILE} printf 'one\\n' > "$name"; {HOSTILE_COMMAND}'''
        [[task]]
        id = "second"
        command = '''{HOSTILE_FILE} sleep 1; printf 'two\\n' > "$name"'''
    """))
    git(repo, "add", "waveui.toml")
    git(repo, "commit", "-q", "-m", "epic")
    done = _run_headless(repo)
    assert b"conflicted" in done.stdout and b"undeclared" in done.stdout, done.stdout + done.stderr
    assert not TERMINAL_BYTES.search(done.stdout), done.stdout
    assert not TERMINAL_BYTES.search(done.stderr), done.stderr
    # The hostile name did reach the journal (the reason and file lists), so the clean output is sanitising at work.
    [run] = (repo / ".waveui" / "runs").iterdir()
    reasons = [json.loads(line).get("reason", "") for line in (run / "events.jsonl").read_text().split("\n") if line]
    assert any("\x1b]0;pwn" in reason for reason in reasons)
