"""The epic file: loading, writing, durations, and every validation error with its line."""

from __future__ import annotations

import re
import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import EXAMPLE_FILES
from waveui.core import spec
from waveui.core.spec import Epic, SpecError, Task


def problems_of(text: str, path: str = "waveui.toml") -> list[spec.Problem]:
    with pytest.raises(SpecError) as caught:
        spec.loads(textwrap.dedent(text).lstrip("\n"), path)
    assert caught.value.problems, "a SpecError must name at least one problem"
    return caught.value.problems


def only_problem(text: str) -> spec.Problem:
    problems = problems_of(text)
    assert len(problems) == 1, problems
    return problems[0]


def line_of(text: str, needle: str) -> int:
    """The 1-based line of the first line of ``text`` containing ``needle``."""
    for number, line in enumerate(textwrap.dedent(text).lstrip("\n").splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in text")


# ------------------------------------------------------------------ loading


def test_loads_reads_every_field():
    epic = spec.loads(textwrap.dedent("""
        [epic]
        name = "accounts"
        base = "main"
        max_parallel = 6
        min_parallel = 2
        adaptive = true
        cpu_high = 90
        cpu_low = 30
        min_free_memory = "1GB"
        conflicts = "lock"
        strategy = "waves"
        isolation = "none"
        setup = "npm ci"
        setup_inputs = ["package-lock.json"]
        command = "make"
        verify = "make test"
        timeout = "1h30m"
        retries = 2

        [[task]]
        id = "a"
        title = "First"
        prompt = "Do it"
        story_points = 2.5
        affected_files = ["src/a.py", "src/*.md"]
        command = "true"
        verify = "false"
        priority = 3
        timeout = "20m"
        retries = 1
        expect_changes = false

        [[task]]
        id = "b"
        requires = ["a"]
    """))
    assert epic.name == "accounts"
    assert (epic.base, epic.max_parallel, epic.min_parallel, epic.adaptive) == ("main", 6, 2, True)
    assert (epic.cpu_high, epic.cpu_low, epic.min_free_memory) == (90.0, 30.0, 2**30)
    assert (epic.conflicts, epic.strategy, epic.isolation) == ("lock", "waves", "none")
    assert (epic.setup, epic.setup_inputs, epic.command, epic.verify) == ("npm ci", ["package-lock.json"], "make", "make test")
    assert (epic.timeout, epic.retries) == (5400.0, 2)
    a, b = epic.tasks
    assert (a.id, a.title, a.prompt, a.story_points) == ("a", "First", "Do it", 2.5)
    assert a.affected_files == ["src/a.py", "src/*.md"]
    assert (a.command, a.verify, a.priority, a.timeout, a.retries, a.expect_changes) == ("true", "false", 3, 1200.0, 1, False)
    assert b.requires == ["a"] and b.story_points == 1 and b.expect_changes is True
    assert epic.task("b") is b
    assert (a.line, b.line) == (21, 34)  # where each [[task]] table starts


def test_epic_name_defaults_to_the_folder(tmp_path):
    folder = tmp_path / "My Project!"
    folder.mkdir()
    path = folder / "waveui.toml"
    path.write_text('[[task]]\nid = "a"\n', encoding="utf-8")
    epic = spec.load(path)
    assert epic.name == "My-Project"
    assert epic.path == path


def test_load_missing_file_says_so(tmp_path):
    with pytest.raises(SpecError) as caught:
        spec.load(tmp_path / "nope.toml")
    [problem] = caught.value.problems
    assert "no such file" in problem.message and "waveui init" in problem.message


# ----------------------------------------------------------------- round trip


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_examples_round_trip(path):
    epic = spec.load(path)
    assert epic.tasks, "an example must have tasks"
    again = spec.loads(spec.dumps(epic))
    assert again == epic
    # and the written text is stable
    assert spec.dumps(again) == spec.dumps(epic)


def test_dump_leaves_out_defaults_and_writes_durations(tmp_path):
    epic = Epic(name="e", tasks=[Task(id="a", timeout=5400.0), Task(id="b", requires=["a"])], timeout=90.0)
    target = tmp_path / "out.toml"
    text = spec.dump(epic, target)
    assert target.read_text(encoding="utf-8") == text
    assert 'timeout = "1h30m"' in text and 'timeout = "1m30s"' in text
    assert "story_points" not in text and "expect_changes" not in text and "conflicts" not in text
    assert spec.load(target) == epic


ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,10}", fullmatch=True).filter(
    lambda name: spec.name_problem("id", name) is None)  # git refuses "..", a trailing "." or ".lock"
texts = st.text(max_size=30)
relative_paths = st.from_regex(r"[a-z]{1,5}(/[a-z*]{1,5}){0,2}(\.py)?/?", fullmatch=True)
# Setup inputs are globbed by pathlib, which refuses "**" as part of a name ("a**").
setup_paths = relative_paths.filter(lambda p: all("**" not in part or part == "**" for part in p.split("/")))
durations = st.one_of(st.floats(min_value=1e-3, max_value=1e7, allow_nan=False),
                      st.integers(min_value=1, max_value=10**7).map(float))
points = st.one_of(st.integers(0, 100), st.floats(0, 1e6, allow_nan=False, allow_infinity=False))


commands = texts.filter(str.strip)  # a blank resolve command is refused


@st.composite
def conflict_settings(draw, epic_resolves: bool) -> dict:
    """A task's on_conflict and resolve, "resolve" only when the task or the epic gives a command."""
    resolve = draw(st.none() | commands)
    resolvable = resolve is not None or epic_resolves
    on_conflict = draw(st.none() | st.sampled_from(spec.CONFLICT_POLICIES if resolvable else ("retry", "stop")))
    return {"on_conflict": on_conflict, "resolve": resolve}


@st.composite
def epics(draw) -> Epic:
    task_ids = draw(st.lists(ids, min_size=1, max_size=6, unique=True))
    epic_resolve = draw(st.none() | commands)
    tasks = []
    for n, task_id in enumerate(task_ids):
        tasks.append(Task(
            id=task_id,
            title=draw(texts),
            prompt=draw(texts),
            requires=draw(st.lists(st.sampled_from(task_ids[:n]), unique=True)) if n else [],
            story_points=draw(points),
            affected_files=draw(st.lists(relative_paths, max_size=3)),
            command=draw(st.none() | texts),
            verify=draw(st.none() | texts),
            priority=draw(st.integers(-5, 5)),
            timeout=draw(st.none() | durations),
            retries=draw(st.none() | st.integers(0, 5)),
            expect_changes=draw(st.booleans()),
            **draw(conflict_settings(epic_resolve is not None)),
        ))
    cpu_low = draw(st.floats(0, 99, allow_nan=False))
    max_parallel = draw(st.none() | st.integers(1, 64))
    return Epic(
        name=draw(ids),
        tasks=tasks,
        base=draw(st.none() | texts),
        max_parallel=max_parallel,
        min_parallel=draw(st.integers(1, max_parallel or 64)),
        adaptive=draw(st.booleans()),
        cpu_high=draw(st.floats(cpu_low + 0.5, 100, allow_nan=False)),
        cpu_low=cpu_low,
        min_free_memory=float(draw(st.integers(0, 2**40))),
        conflicts=draw(st.sampled_from(spec.CONFLICT_MODES)),
        strategy=draw(st.sampled_from(spec.STRATEGIES)),
        isolation=draw(st.sampled_from(spec.ISOLATIONS)),
        setup=draw(st.none() | texts),
        setup_inputs=draw(st.lists(setup_paths, max_size=2)),
        command=draw(st.none() | texts),
        verify=draw(st.none() | texts),
        timeout=draw(st.none() | durations),
        retries=draw(st.integers(0, 5)),
        on_conflict=draw(st.sampled_from(spec.CONFLICT_POLICIES if epic_resolve else ("retry", "stop"))),
        resolve=epic_resolve,
    )


@given(epics())
def test_generated_epics_round_trip(epic):
    text = spec.dumps(epic)
    assert spec.loads(text) == epic


@given(st.lists(st.tuples(ids, texts), min_size=1, max_size=4, unique_by=lambda t: t[0]))
def test_line_numbers_survive_any_strings_before_them(rows):
    """Whatever the titles hold (brackets, quotes, newlines), a later error is reported at its own line."""
    epic = Epic(name="e", tasks=[Task(id=i, title=t, prompt=t + "[\n" + t + "\n[x") for i, t in rows])
    text = spec.dumps(epic) + '\n[[task]]\nid = "zz-last"\nstory_points = -1\n'
    expected = text.split("\n").index("story_points = -1") + 1
    [problem] = problems_of(text)
    assert problem.line == expected
    assert "story_points" in problem.message


# ------------------------------------------------------------------ durations


@pytest.mark.parametrize("text, seconds", [
    ("90", 90), ("90s", 90), ("20m", 1200), ("1h30m", 5400), ("1.5h", 5400), ("1h 30m", 5400),
    ("2d", 172800), ("500ms", 0.5), ("1H", 3600), (" 45s ", 45),
])
def test_parse_duration(text, seconds):
    assert spec.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "h", "soon", "1x", "-5m", "m20", "1h and 2m", "1e3s", "20 minutes"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        spec.parse_duration(text)


@pytest.mark.parametrize("seconds, text", [(45, "45s"), (1200, "20m"), (5400, "1h30m"), (3600, "1h"), (3661, "1h1m1s"), (0.5, "0.5s")])
def test_format_duration(seconds, text):
    assert spec.format_duration(seconds) == text


@given(st.floats(min_value=0, max_value=1e12, allow_nan=False) | st.integers(0, 10**9).map(float))
def test_format_duration_parses_back_exactly(seconds):
    text = spec.format_duration(seconds)
    assert re.fullmatch(r"[0-9.hms]+", text), text
    assert spec.parse_duration(text) == seconds


@pytest.mark.parametrize("text, size", [("2GB", 2 * 2**30), ("512M", 512 * 2**20), ("1.5GiB", 1.5 * 2**30), ("100", 100), ("4k", 4096)])
def test_parse_size(text, size):
    assert spec.parse_size(text) == size


def test_durations_in_the_file_become_seconds():
    epic = spec.loads('[epic]\ntimeout = "1.5h"\n[[task]]\nid = "a"\ntimeout = "90s"\n[[task]]\nid = "b"\ntimeout = 20\n')
    assert epic.timeout == 5400.0
    assert [t.timeout for t in epic.tasks] == [90.0, 20.0]


# --------------------------------------------------------------- validation


def test_toml_syntax_error_has_tomls_own_line():
    problem = only_problem("""
        [epic]
        name = "x"

        [[task]]
        id = "a"
        story_points =
    """)
    assert problem.line == 6
    assert problem.message.startswith("invalid TOML:")
    assert "(at line" not in problem.message  # the line is given once, in front


def test_toml_unclosed_string_line():
    problem = only_problem('[[task]]\nid = "a"\ntitle = "unclosed\n[[task]]\nid = "b"\n')
    assert problem.line == 3 and "invalid TOML" in problem.message


def test_toml_duplicate_key_line():
    problem = only_problem('[[task]]\nid = "a"\n\nid = "b"\n')
    assert problem.line == 4 and "invalid TOML" in problem.message


@pytest.mark.parametrize("text, needle, expected", [
    ('[epic]\nname = "x"\nmax_paralel = 3\n[[task]]\nid = "a"\n', "max_paralel", "did you mean 'max_parallel'"),
    ('[[task]]\nid = "a"\nstory_point = 3\n', "story_point", "did you mean 'story_points'"),
    ('[[task]]\nid = "a"\n\n[[task]]\nid = "b"\nrequire = ["a"]\n', "require", "did you mean 'requires'"),
    ('[[tasks]]\nid = "a"\n', "tasks", "did you mean 'task'"),
    ('[epic]\nname = "x"\nconflicts = "serialize"\n[[task]]\nid = "a"\n', "conflicts", "did you mean 'serialise'"),
])
def test_unknown_keys_suggest_the_right_one(text, needle, expected):
    problems = problems_of(text)
    hits = [p for p in problems if expected in p.message]
    assert len(hits) == 1, problems
    assert hits[0].line == line_of(text, needle)


def test_unknown_key_without_a_close_match_has_no_suggestion():
    problem = only_problem('[[task]]\nid = "a"\nzzzzzz = 1\n')
    assert problem.line == 3 and "zzzzzz" in problem.message and "did you mean" not in problem.message


@pytest.mark.parametrize("key_line, fragment", [
    ('story_points = "lots"', "story_points must be a number"),
    ("story_points = -2", "story_points must be a finite number of at least 0"),
    ("story_points = nan", "story_points must be a number"),
    ("story_points = inf", "story_points must be a finite number"),
    ("story_points = true", "story_points must be a number"),
    ('requires = "a"', "requires must be an array of strings"),
    ('requires = ["a", 3]', "requires must be an array of strings"),
    ("title = 3", "title must be a string"),
    ("prompt = [1]", "prompt must be a string"),
    ('expect_changes = "yes"', "expect_changes must be true or false"),
    ("priority = 1.5", "priority must be an integer"),
    ("retries = -1", "retries must be at least 0"),
    ('timeout = "soon"', "timeout is not a duration"),
    ('timeout = "20 minutes"', "timeout is not a duration"),
    ("timeout = -5", "timeout is not a duration"),
    ("timeout = inf", "timeout is not a duration"),
    ('affected_files = ["/etc/passwd"]', "not absolute"),
    ('affected_files = ["C:\\\\src\\\\a.py"]', "not absolute"),
    ('affected_files = ["../outside.py"]', "climbs out with '..'"),
    ('affected_files = ["src/../../outside.py"]', "climbs out with '..'"),
    ('affected_files = [""]', "empty path"),
    ('affected_files = "src/a.py"', "affected_files must be an array of strings"),
])
def test_task_value_errors_at_their_line(key_line, fragment):
    text = f'[epic]\nname = "x"\n\n[[task]]\nid = "first"\n\n[[task]]\nid = "a"\nverify = "ok"\n{key_line}\n'
    problem = only_problem(text)
    assert fragment in problem.message
    assert problem.line == 10
    assert "task 'a'" in problem.message


@pytest.mark.parametrize("key_line, fragment", [
    ("max_parallel = 0", "max_parallel must be at least 1"),
    ('max_parallel = "4"', "max_parallel must be an integer"),
    ("cpu_high = 150", "at most 100"),
    ('conflicts = "merge"', "conflicts must be one of serialise, lock, defer"),
    ('strategy = "fast"', "strategy must be one of eager, waves"),
    ("adaptive = 1", "adaptive must be true or false"),
    ('min_free_memory = "lots"', "min_free_memory is not a size"),
    ('setup_inputs = ["/abs"]', "not absolute"),
    ('timeout = "1 hour"', "timeout is not a duration"),
    ('name = "has space"', "epic name 'has space' must be"),
    ("name = 5", "epic name must be a string"),
])
def test_epic_value_errors_at_their_line(key_line, fragment):
    text = f'# comment\n[epic]\nbase = "main"\n{key_line}\n\n[[task]]\nid = "a"\n'
    problem = only_problem(text)
    assert fragment in problem.message
    assert problem.line == 4


def test_min_parallel_above_max_parallel():
    problem = only_problem('[epic]\nmax_parallel = 2\nmin_parallel = 3\n[[task]]\nid = "a"\n')
    assert problem.line == 3 and "min_parallel (3) is above max_parallel (2)" in problem.message


def test_missing_id():
    problem = only_problem('[[task]]\nid = "a"\n\n[[task]]\ntitle = "nameless"\n')
    assert problem.line == 4 and problem.message == "task has no id"


def test_id_of_the_wrong_type():
    problem = only_problem('[[task]]\nid = 7\n')
    assert problem.line == 2 and "task id must be a string" in problem.message


def test_duplicate_ids_name_the_first():
    problem = only_problem('[[task]]\nid = "a"\n\n[[task]]\ntitle = "again"\nid = "a"\n')
    assert problem.line == 6
    assert "duplicate task id 'a'" in problem.message and "line 1" in problem.message


@pytest.mark.parametrize("bad", ["-a", ".a", "_a", "a b", "a/b", "é", "a" * 65, "", "a:b"])
def test_bad_ids(bad):
    text = f'[[task]]\nid = "ok"\n[[task]]\nid = "{bad}"\n'
    problem = only_problem(text)
    assert problem.line == 4 and "must be 1-64 letters" in problem.message


@pytest.mark.parametrize("good", ["a", "A", "0", "001-user.model_x", "a" * 64, "9-"])
def test_good_ids(good):
    assert spec.loads(f'[[task]]\nid = "{good}"\n').tasks[0].id == good


@given(st.text(max_size=70))
def test_id_rule_matches_the_documented_regex(candidate):
    ok = (re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", candidate) is not None
          and ".." not in candidate and not candidate.endswith((".", ".lock")))
    text = spec.dumps(Epic(name="e", tasks=[Task(id=candidate)]))
    if ok:
        assert spec.loads(text).tasks[0].id == candidate
    else:
        with pytest.raises(SpecError):
            spec.loads(text)


def test_requires_unknown_task_suggests_a_close_one():
    text = '[[task]]\nid = "models"\n[[task]]\nid = "api"\nrequires = ["model"]\n'
    problem = only_problem(text)
    assert problem.line == 5
    assert "task 'api' requires unknown task 'model'" in problem.message
    assert "did you mean 'models'" in problem.message


def test_task_requiring_itself():
    problem = only_problem('[[task]]\nid = "a"\n\n[[task]]\nid = "b"\ntitle = "x"\nrequires = ["b"]\n')
    assert problem.line == 7 and problem.message == "task 'b' requires itself"


def test_cycle_is_named_in_order():
    text = """
        [[task]]
        id = "a"
        requires = ["b"]

        [[task]]
        id = "b"
        requires = ["c"]

        [[task]]
        id = "c"
        requires = ["a"]

        [[task]]
        id = "d"
        requires = ["a"]
    """
    problem = only_problem(text)
    assert "a -> b -> c -> a" in problem.message
    assert problem.line == 3  # the requires of the cycle's first task in the file


def test_cycle_named_from_its_first_task_in_the_file():
    text = '[[task]]\nid = "x"\nrequires = ["y"]\n[[task]]\nid = "y"\nrequires = ["x"]\n'
    problem = only_problem(text)
    assert "x -> y -> x" in problem.message and problem.line == 3


def test_two_separate_cycles_are_both_reported():
    text = """
        [[task]]
        id = "p"
        requires = ["q"]
        [[task]]
        id = "q"
        requires = ["p"]
        [[task]]
        id = "r"
        requires = ["s"]
        [[task]]
        id = "s"
        requires = ["r"]
    """
    problems = problems_of(text)
    assert [p.line for p in problems] == [3, 9]
    assert "p -> q -> p" in problems[0].message and "r -> s -> r" in problems[1].message


def test_no_tasks():
    problem = only_problem('[epic]\nname = "x"\n')
    assert "no tasks" in problem.message and problem.line == 1


def test_every_problem_is_reported_in_line_order():
    text = """
        [epic]
        name = "x"
        conflicts = "nope"

        [[task]]
        id = "a"
        story_points = -1
        colour = "red"

        [[task]]
        title = "nameless"

        [[task]]
        id = "b"
        requires = ["a", "ghost"]
        timeout = "soon"
        affected_files = ["/abs", "../up"]

        [[task]]
        id = "a"
    """
    problems = problems_of(text)
    expected = [
        (line_of(text, "conflicts"), "conflicts must be one of"),
        (line_of(text, "story_points"), "story_points"),
        (line_of(text, "colour"), "unknown key 'colour'"),
        (line_of(text, 'title = "nameless"') - 1, "task has no id"),
        (line_of(text, "ghost"), "unknown task 'ghost'"),
        (line_of(text, "soon"), "timeout is not a duration"),
        (line_of(text, "/abs"), "not absolute"),
        (line_of(text, "/abs"), "climbs out"),
        (len(textwrap.dedent(text).strip("\n").splitlines()), "duplicate task id 'a'"),
    ]
    assert len(problems) == len(expected), problems
    for problem, (line, fragment) in zip(problems, expected):
        assert problem.line == line and fragment in problem.message, (problem, line, fragment)
    assert [p.line for p in problems] == sorted(p.line for p in problems)
    assert all(p.path == "waveui.toml" for p in problems)


def test_too_many_problems_are_summarised():
    text = "".join(f'[[task]]\nid = "t{i}"\nstory_points = -1\n' for i in range(60))
    problems = problems_of(text)
    assert len(problems) == spec.MAX_PROBLEMS + 1
    assert problems[-1].message == f"... and {60 - spec.MAX_PROBLEMS} more problems"


def test_problem_text_is_file_colon_line():
    problem = only_problem('[[task]]\nid = "a"\nstory_points = -1\n')
    assert str(problem).startswith("waveui.toml:3: ")
    assert str(spec.Problem("f.toml", 0, "m")) == "f.toml: m"


# --------------------------------------------------------- line bookkeeping


def test_lines_after_multiline_strings_holding_brackets():
    text = '''
        [[task]]
        id = "a"
        prompt = """Fix list[int]
        and [more
        """
        title = """x""" # """ looks like an opening

        [[task]]
        id = "b"
        prompt = \'\'\'it's [here
        \'\'\'
        requires = [
            "a",  # a [comment
        ]
        story_points = "lots"
    '''
    problem = only_problem(text)
    assert problem.line == line_of(text, '"lots"')


def test_keys_inside_multiline_strings_are_not_keys():
    text = '''
        [[task]]
        id = "a"
        prompt = """
        story_points = 3
        [[task]]
        """
        story_points = -1
    '''
    problem = only_problem(text)
    assert problem.line == line_of(text, "-1")


def test_line_numbers_with_windows_line_endings():
    text = '[[task]]\r\nid = "a"\r\n\r\nstory_points = -1\r\n'
    [problem] = problems_of(text)
    assert problem.line == 4


def test_dotted_and_quoted_keys_are_found():
    text = '[[task]]\nid = "a"\n"bogus" = 1\nother.part = 2\n'
    problems = problems_of(text)
    assert [(p.line, "bogus" in p.message or "other" in p.message) for p in problems] == [(3, True), (4, True)]


def test_problem_path_is_the_given_path(tmp_path):
    path = tmp_path / "epic.toml"
    path.write_text('[[task]]\nid = "a"\nstory_points = -1\n', encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        spec.load(path)
    assert caught.value.problems[0].path == str(path)



def test_a_bad_id_is_reported_once_not_again_by_those_requiring_it():
    text = '[[task]]\nid = "bad id"\n[[task]]\nid = "b"\nrequires = ["bad id", "nope"]\n'
    problems = problems_of(text)
    assert [(p.line, "bad id" in p.message) for p in problems] == [(2, True), (5, False)]
    assert "unknown task 'nope'" in problems[1].message


def test_a_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "waveui.toml"
    path.write_bytes(b'\xef\xbb\xbf[epic]\nname = "bom"\n[[task]]\nid = "a"\n')
    assert spec.load(path).name == "bom"


def test_undecodable_file_is_one_problem(tmp_path):
    path = tmp_path / "waveui.toml"
    path.write_bytes(b'[[task]]\nid = "\xff"\n')
    with pytest.raises(SpecError) as caught:
        spec.load(path)
    [problem] = caught.value.problems
    assert "cannot read" in problem.message


@pytest.mark.parametrize("text, line, fragment", [
    ('epic = 3\n[[task]]\nid = "a"\n', 1, "epic must be an [epic] table"),
    ('# tasks\ntask = 3\n', 2, "tasks must be written as [[task]] tables"),
    ('[[task]]\nid = "a"\n[other]\nx = 1\n', 3, "unknown table or key 'other' at top level"),
])
def test_misshapen_tables(text, line, fragment):
    problems = problems_of(text)
    hits = [p for p in problems if fragment in p.message]
    assert [p.line for p in hits] == [line], problems


@pytest.mark.parametrize("prompt", ["one\ntwo\n", "windows\r\nline\r\n", "\r", 'quotes """ and \'\'\' inside\n'])
def test_multiline_text_round_trips_exactly(prompt):
    epic = Epic(name="e", tasks=[Task(id="a", prompt=prompt, title="t")])
    assert spec.loads(spec.dumps(epic)).tasks[0].prompt == prompt


@given(epics())
def test_dump_writes_epic_then_one_task_table_each(epic):
    text = spec.dumps(epic)
    lines = text.split("\n")
    assert lines[0] == "[epic]"
    headers = [n for n, line in enumerate(lines, start=1) if line == "[[task]]"]
    assert len(headers) == len(epic.tasks)
    # the loaded tasks know where their tables start
    assert [t.line for t in spec.loads(text).tasks] == headers


def test_only_newlines_end_lines():
    # U+2028 and U+0085 are line breaks to str.splitlines, but not to TOML
    text = '[[task]]\nid = "a"\ntitle = "one\u2028two\x85three"\nstory_points = -1\n'
    [problem] = problems_of(text)
    assert problem.line == 4


# ------------------------------------------------------------- merge conflicts


def test_a_tasks_conflict_policy_overrides_the_epics():
    epic = spec.loads(textwrap.dedent("""
        [epic]
        on_conflict = "resolve"
        resolve = "fix-it"

        [[task]]
        id = "inherits"

        [[task]]
        id = "own-command"
        resolve = "fix-mine"

        [[task]]
        id = "retries"
        on_conflict = "retry"
        resolve = "never-run"

        [[task]]
        id = "stops"
        on_conflict = "stop"
    """))
    assert (epic.on_conflict, epic.resolve) == ("resolve", "fix-it")
    assert [epic.conflict_policy(t) for t in epic.tasks] == [
        ("resolve", "fix-it"), ("resolve", "fix-mine"), ("retry", None), ("stop", None)]
    assert spec.loads(spec.dumps(epic)) == epic


def test_without_on_conflict_a_conflict_stops_as_before():
    epic = spec.loads('[[task]]\nid = "a"\nresolve = "fix-it"\n')
    assert epic.on_conflict == "stop" and epic.resolve is None
    assert epic.conflict_policy(epic.tasks[0]) == ("stop", None)
    assert "on_conflict" not in spec.dumps(spec.loads('[[task]]\nid = "a"\n'))  # the default is left out


def test_a_task_may_resolve_with_the_epics_command_without_resolving_by_default():
    epic = spec.loads('[epic]\nresolve = "fix-it"\n[[task]]\nid = "a"\non_conflict = "resolve"\n[[task]]\nid = "b"\n')
    assert [epic.conflict_policy(t) for t in epic.tasks] == [("resolve", "fix-it"), ("stop", None)]


def test_an_epic_resolving_with_every_tasks_own_command_needs_none_of_its_own():
    epic = spec.loads('[epic]\non_conflict = "resolve"\n[[task]]\nid = "a"\nresolve = "fix-a"\n'
                      '[[task]]\nid = "b"\non_conflict = "stop"\n')
    assert [epic.conflict_policy(t) for t in epic.tasks] == [("resolve", "fix-a"), ("stop", None)]


@pytest.mark.parametrize("text, line, message", [
    ('[epic]\nname = "x"\non_conflict = "merge"\n[[task]]\nid = "a"\n', 3,
     "[epic] on_conflict must be one of retry, resolve, stop, not 'merge'"),
    ('[epic]\non_conflict = "resolv"\nresolve = "x"\n[[task]]\nid = "a"\n', 2,
     "[epic] on_conflict must be one of retry, resolve, stop, not 'resolv' (did you mean 'resolve'?)"),
    ('[[task]]\nid = "a"\n\non_conflict = true\n', 4,
     "task 'a': on_conflict must be one of retry, resolve, stop, not True"),
    ('[epic]\non_conflict = "resolve"\n\n[[task]]\nid = "a"\n', 2,
     '[epic] on_conflict is "resolve" but no resolve command is given (set resolve in [epic])'),
    ('[epic]\nname = "x"\n\n[[task]]\nid = "a"\ntitle = "A"\non_conflict = "resolve"\n', 7,
     "task 'a': on_conflict is \"resolve\" but no resolve command is given (set resolve in this task or in [epic])"),
    ('[[task]]\nid = "a"\nresolve = ["fix"]\n', 3, "task 'a': resolve must be a string, not array"),
    ('[epic]\nresolve = " "\n[[task]]\nid = "a"\n', 2,
     "[epic] resolve is empty: give the command that resolves a conflict, or leave it out"),
])
def test_conflict_settings_errors_at_their_line(text, line, message):
    problem = only_problem(text)
    assert (problem.line, problem.message) == (line, message)
    assert str(problem) == f"waveui.toml:{line}: {message}"


def test_every_task_left_without_a_resolver_is_named_at_its_own_line():
    text = '[epic]\non_conflict = "resolve"\n[[task]]\nid = "a"\n[[task]]\nid = "b"\non_conflict = "resolve"\n'
    assert [(p.line, p.message.split(":")[0]) for p in problems_of(text)] == [
        (2, '[epic] on_conflict is "resolve" but no resolve command is given (set resolve in [epic])'),
        (7, "task 'b'")]


def test_a_dask_executor_needs_a_scheduler_address_that_reads_as_one():
    base = '[[task]]\nid = "a"\n'
    epic = spec.loads('[epic]\nexecutor = "dask"\ndask_scheduler = "tcp://10.0.0.5:8786"\n' + base)
    assert (epic.executor, epic.dask_scheduler) == ("dask", "tcp://10.0.0.5:8786")
    assert spec.loads('[epic]\nexecutor = "dask"\ndask_scheduler = "local:4x2"\n' + base).dask_scheduler == "local:4x2"
    missing = only_problem('[epic]\nexecutor = "dask"\n' + base)
    assert missing.line == 2 and "no dask_scheduler" in missing.message
    wrong = only_problem('[epic]\nexecutor = "dask"\ndask_scheduler = "scheduler:8786"\n' + base)
    assert wrong.line == 3 and "tcp://HOST:PORT" in wrong.message
    stray = only_problem('[epic]\ndask_scheduler = "local:2"\n' + base)
    assert stray.line == 2 and 'executor is not "dask"' in stray.message
    assert "executor" in only_problem('[epic]\nexecutor = "cloud"\n' + base).message


def test_a_dask_remote_is_a_git_url_that_is_not_empty():
    base = '[[task]]\nid = "a"\n'
    assert spec.loads('[epic]\ndask_remote = "file:///srv/repo.git"\n' + base).dask_remote == "file:///srv/repo.git"
    assert spec.loads('[epic]\n' + base).dask_remote is None
    empty = only_problem('[epic]\ndask_remote = " "\n' + base)
    assert empty.line == 2 and "dask_remote is empty" in empty.message
    assert "must be a string" in only_problem('[epic]\ndask_remote = 3\n' + base).message
