"""Fuzz the epic loader: every generated or mutated epic file must load, or be refused in clean one-line problems.

Run it from the repository root::

    python benchmarks/fuzz_spec.py                  # 120 seconds
    python benchmarks/fuzz_spec.py --seconds 30
    python benchmarks/fuzz_spec.py --atheris        # coverage-guided by libFuzzer instead (pip install atheris)

Inputs are drawn by hypothesis: random bytes; TOML-ish text from the
characters TOML gives meaning to; the bundled examples (and a seed using every
key) mutated by deleting, duplicating, swapping and inserting lines, random
keys and values, hostile ids and paths, deep nesting, huge numbers, unicode,
NUL bytes, very long strings and dependency cycles; and generated epics of up
to 10,000 tasks. Each goes to ``waveui.core.spec.loads`` in this process, which
must return an epic that holds its invariants (safe ids and paths, known and
acyclic requirements, finite numbers; it plans, and survives ``dumps`` and
``loads`` unchanged), or raise ``SpecError`` whose problems each render as one
printable line. Anything else is a failure: another exception, a multi-line
or control-character problem, or a load slower than ``--timeout`` seconds.

A sample of the inputs also goes through the real command line,
``python -m waveui plan -f waveui.toml``, in a fresh temporary folder: a valid
epic must exit 0 with nothing on stderr, an invalid one exit 2 with only
``waveui: error: `` lines, never a traceback, never past the timeout, and the
folder must hold nothing but the epic file afterwards. The command's verdict
must agree with ``spec.load`` on the same file.

``--atheris`` runs the same in-process check under atheris (libFuzzer guided
by coverage of waveui and tomllib), starting from the bundled examples; it
runs no command lines. It needs ``pip install atheris``, which ships wheels
for CPython on Linux and macOS; without it the option says so and exits 2.

Prints the inputs tried, valid, rejected, failures (each failure's kind and
input) and the rate per second; the exit status is 1 if anything failed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "waveui" / "examples").glob("*.toml"))
TIMEOUT_SECONDS = 20.0
CLI_TIMEOUT_SECONDS = 60.0
PLAN_MAX_TASKS = 2_000  # planning in-process beyond this costs more than it finds
CLI_MAX_BYTES = 4_000_000
ERROR_PREFIX = "waveui: error: "
# Bytes a terminal would act on: ESC, BEL, CSI/OSC/DCS in their 8-bit forms (as UTF-8), bidi overrides.
TERMINAL_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")

# A seed that sets every key, so mutations reach every check.
FULL_SEED = """\
[epic]
name = "full-seed"
base = "main"
max_parallel = 4
min_parallel = 1
adaptive = true
cpu_high = 80
cpu_low = 40
min_free_memory = "2GB"
conflicts = "lock"
strategy = "waves"
isolation = "worktree"
setup = "npm ci"
setup_inputs = ["package-lock.json", "tools/**/*.cfg"]
command = 'echo "$WAVEUI_TASK_ID"'
verify = "true"
timeout = "30m"
retries = 1

[[task]]
id = "task-001"
title = "User model"
prompt = \"\"\"Add a User model
with [brackets] and "quotes\"\"\"
requires = []
story_points = 3
affected_files = ["src/models/user.py", "src/models/*.py", "docs/"]
command = "true"
verify = "true"
priority = 2
timeout = "1h30m"
retries = 0
expect_changes = false

[[task]]
id = "task-002"
title = 'Session store'
requires = ["task-001"]
story_points = 0.5
affected_files = ["src/**/session.py", "src/[ab].py"]

[[task]]
id = "task.003_x"
requires = ["task-001", "task-002"]
affected_files = ["src/models/user.py"]
"""

SEEDS = [path.read_text(encoding="utf-8") for path in EXAMPLES] + [FULL_SEED]

HOSTILE_NAMES = [
    "../x", "a/b", "-rf", ".hidden", "x.lock", "a..b", "@{u}", "HEAD", "a@b", "x.", "a b", "a\\b", "~x",
    "t\u0430sk",  # Cyrillic a: looks like "task"
    "\uff54ask", "x\u200b", "\u202etxt.exe", "x" * 64, "x" * 65, "", " ", "\n", "refs/heads/main", "a:b",
    "\x00", "\x1b]52;c;cHduZWQ=\x07", "\x9b2J", "ok-1", "0", "a.b-c_d",
]
HOSTILE_PATHS = [
    "/etc/passwd", "../secret", "a/../../b", "..\\x", "a\\..\\..\\b", "C:/x", "c:\\x", "\\\\server\\share",
    "~/.ssh/id_rsa", ".", "./", "./a", "a//b", "**", "a**", "**/x", "[z-a]", "[!]", "[[a]", "[a-]", "a\x00b",
    "a\nb", "\x1b[2Jx", "a\u202eb", "src/", "*", "?", "x" * 5000, "\u00e9/\u4e2d.py",
]
HOSTILE_TEXT = [
    "\x1b[2J", "\x1b]0;pwn\x07", "\x1b]52;c;cHduZWQ=\x07", "\x1bP+q\x1b\\", "\x9b31m", "\u202e", "\ufeff",
    "\r\n", "\r", "\u2028", "\x85", "\ud7ff", "\U0010ffff", "\x7f", "'''", '"""', "\\", "\\u0000",
]
NUMBERS = [
    "0", "-1", "1", "64", "65", "9223372036854775807", "9223372036854775808", "-9223372036854775809",
    "9" * 400, "9" * 4299, "9" * 4301, "0x" + "f" * 5000, "0o777", "0b1010", "1_000", "+5", "-0", "-0.0",
    "1e308", "1e309", "-1e999", "inf", "-inf", "+inf", "nan", "-nan", "0.5", "1e-320", "3.14159", "1e2",
    "00", "01", "1__0", "1.", ".5", "0x", "1979-05-27", "1979-05-27T07:32:00Z", "07:32:00", "1979-02-30",
    "true", "false", "True",
]
DURATIONS = ["90s", "20m", "1h30m", "1.5h", "0s", "-5m", "1d", "100ms", "99999999999999999999h",
             "9" * 400 + "h", "1h 30m", "h", "", "30", "1e3s", "1 h", "20 minutes"]
SIZES = ["2GB", "512MB", "1.5GiB", "100", "0", "-1GB", "9" * 400 + "TB", "1e999", "2 GB", "GB", "2XB"]
HEADERS = ["[[task]]", "[epic]", "[task]", "[[epic]]", "[epic.extra]", "[x]", "[[task.sub]]", "[ epic ]",
           '["epic"]', '[[ "task" ]]', '["a\\nb"]', "[a.b.c]", "[[task]] # note", "[", "[[task]", "[]"]
TOML_CHARS = "[]{}=\"',.#\n\r\t \\-_+:0123456789abcdefinrtuxADEFTZ\x00\x1b\u00e9\u202e\ufeff"


def _epic_keys() -> list[str]:
    from waveui.core import spec

    return list(spec._EPIC_KEYS)


def _task_keys() -> list[str]:
    from waveui.core import spec

    return list(spec._TASK_KEYS)


# ------------------------------------------------------------------- inputs


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string, control characters escaped (a raw one is a TOML error)."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


_words = st.one_of(
    st.text(max_size=20),
    st.sampled_from(HOSTILE_NAMES + HOSTILE_PATHS + HOSTILE_TEXT),
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,8}", fullmatch=True),
)
_strings = st.one_of(
    _words.map(toml_string),
    st.sampled_from(DURATIONS + SIZES).map(toml_string),
    st.text(alphabet=st.characters(blacklist_characters="'\n\r", blacklist_categories=("Cs",)),
            max_size=20).map(lambda s: f"'{s}'"),
    st.text(max_size=40).map(lambda s: '"""' + s.replace('"""', "") + '"""'),
    st.text(max_size=40).map(lambda s: "'''" + s.replace("'''", "") + "'''"),
    st.sampled_from([1_000, 70_000, 300_000]).map(lambda n: toml_string("x" * n)),
)
_scalars = st.one_of(
    st.sampled_from(NUMBERS),
    st.integers().map(str),
    st.floats().map(repr),  # "inf", "nan", "-0.0", "1e+300": all TOML
    _strings,
)


@st.composite
def _deep(draw) -> str:
    depth = draw(st.sampled_from([2, 10, 50, 100, 200, 300, 500, 1_000, 10_000]))
    kind = draw(st.sampled_from(["array", "table", "mixed", "open"]))
    if kind == "array":
        return "[" * depth + "]" * depth
    if kind == "table":
        return "{a = " * depth + "1" + "}" * depth
    if kind == "mixed":
        return "[{a = " * depth + "1" + "}]" * depth
    return "[" * depth


def _values():
    return st.recursive(
        _scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4).map(lambda vs: "[" + ", ".join(vs) + "]"),
            st.lists(st.tuples(st.sampled_from(["a", "id", "x", '"q"', "b.c"]), inner), max_size=3).map(
                lambda kvs: "{" + ", ".join(f"{k} = {v}" for k, v in kvs) + "}"),
        ),
        max_leaves=8,
    ) | _deep()


@st.composite
def _keys(draw) -> str:
    kind = draw(st.integers(0, 4))
    if kind <= 1:
        return draw(st.sampled_from(_epic_keys() + _task_keys()))
    if kind == 2:
        return draw(st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True))
    if kind == 3:
        return toml_string(draw(_words))
    return draw(st.sampled_from(["a.b", "epic.name", "task", "epic", "id.x", "'lit'", '""', "name "]))


@st.composite
def mutated_epics(draw) -> str:
    """A seed epic with a few mutations: line edits, random keys and values, hostile names, cycles."""
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 6))):
        lines = text.split("\n")
        at = draw(st.integers(0, max(0, len(lines) - 1)))
        op = draw(st.sampled_from(["delete", "duplicate", "swap", "insert", "insert", "value", "value",
                                   "header", "chars", "truncate", "id", "files", "cycle", "tasks"]))
        if op == "delete" and lines:
            del lines[at]
        elif op == "duplicate" and lines:
            lines.insert(at, lines[at])
        elif op == "swap" and lines:
            other = draw(st.integers(0, len(lines) - 1))
            lines[at], lines[other] = lines[other], lines[at]
        elif op == "insert":
            lines.insert(at, f"{draw(_keys())} = {draw(_values())}")
        elif op == "value":
            assigned = [i for i, line in enumerate(lines) if "=" in line]
            if assigned:
                i = draw(st.sampled_from(assigned))
                lines[i] = lines[i].split("=", 1)[0] + "= " + draw(_values())
        elif op == "header":
            lines.insert(at, draw(st.sampled_from(HEADERS)))
        elif op == "chars":
            line = lines[at] if lines else ""
            pos = draw(st.integers(0, len(line)))
            lines[at:at + 1] = [line[:pos] + draw(st.text(alphabet=TOML_CHARS, max_size=6)) + line[pos:]]
        elif op == "truncate":
            joined = "\n".join(lines)
            lines = joined[:draw(st.integers(0, len(joined)))].split("\n")
        elif op == "id":
            ids = [i for i, line in enumerate(lines) if re.match(r"\s*(id|name)\s*=", line)]
            if ids:
                i = draw(st.sampled_from(ids))
                lines[i] = lines[i].split("=", 1)[0] + "= " + toml_string(draw(st.sampled_from(HOSTILE_NAMES)))
        elif op == "files":
            key = draw(st.sampled_from(["affected_files", "setup_inputs"]))
            paths = draw(st.lists(st.sampled_from(HOSTILE_PATHS) | _words, min_size=1, max_size=3))
            lines.insert(at, f"{key} = [{', '.join(map(toml_string, paths))}]")
        elif op == "cycle":
            text = "\n".join(lines)
            ids = re.findall(r'^id = "([^"]+)"', text, re.M)
            if len(ids) >= 2:
                a, b = draw(st.sampled_from(ids)), draw(st.sampled_from(ids))
                text = text.replace(f'id = "{a}"', f'id = "{a}"\nrequires = ["{b}"]', 1)
                text = text.replace(f'id = "{b}"', f'id = "{b}"\nrequires = ["{a}"]', 1)
            lines = text.split("\n")
        elif op == "tasks":
            for n in range(draw(st.integers(1, 5))):
                lines.append(f'[[task]]\nid = "extra-{n}"\nrequires = [{toml_string(draw(_words))}]')
        text = "\n".join(lines)
    return text


def _quick_value(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.3:
        return rng.choice(NUMBERS)
    if roll < 0.6:
        return toml_string(rng.choice(HOSTILE_NAMES + HOSTILE_PATHS + HOSTILE_TEXT + DURATIONS + SIZES))
    if roll < 0.75:
        return toml_string("".join(chr(rng.randrange(0x110000)) for _ in range(rng.randrange(8))).encode(
            "utf-8", "replace").decode("utf-8"))
    if roll < 0.9:
        return "[" + ", ".join(_quick_value(rng) for _ in range(rng.randrange(4))) + "]"
    depth = rng.choice([5, 100, 400, 2_000])
    return "[" * depth + "]" * depth


def quick_mutation(rng: random.Random, text: str) -> str:
    """Like :func:`mutated_epics` but driven by one random seed: many times quicker to make."""
    lines = text.split("\n")
    keys = _epic_keys() + _task_keys()
    for _ in range(1 + (rng.random() < 0.5) + (rng.random() < 0.25) + (rng.random() < 0.1) * 4):
        at = rng.randrange(len(lines)) if lines else 0
        op = rng.randrange(8)
        if op == 0 and lines:
            del lines[at]
        elif op == 1 and lines:
            lines.insert(at, lines[at])
        elif op == 2 and lines:
            other = rng.randrange(len(lines))
            lines[at], lines[other] = lines[other], lines[at]
        elif op == 3:
            lines.insert(at, f"{rng.choice(keys)} = {_quick_value(rng)}")
        elif op == 4:
            assigned = [i for i, line in enumerate(lines) if "=" in line]
            if assigned:
                i = rng.choice(assigned)
                lines[i] = lines[i].split("=", 1)[0] + "= " + _quick_value(rng)
        elif op == 5:
            lines.insert(at, rng.choice(HEADERS))
        elif op == 6 and lines:
            line = lines[at]
            pos = rng.randrange(len(line) + 1)
            lines[at] = line[:pos] + "".join(rng.choice(TOML_CHARS) for _ in range(rng.randrange(1, 4))) + line[pos:]
        elif op == 7:
            joined = "\n".join(lines)
            lines = joined[:rng.randrange(len(joined) + 1)].split("\n")
    return "\n".join(lines)


QUICK_BATCH = 50  # quick mutants per draw: hypothesis's own drawing costs more than checking them


@st.composite
def quickly_mutated_epics(draw, count: int = QUICK_BATCH) -> list[str]:
    rng = random.Random(draw(st.integers(0, 2**64)))
    return [quick_mutation(rng, rng.choice(SEEDS)) for _ in range(count)]


@st.composite
def generated_epics(draw) -> str:
    """A well-formed epic written by ``spec.dumps`` from random (sometimes hostile) values."""
    from waveui.core import spec

    n = draw(st.integers(1, 12))
    ids = draw(st.lists(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,12}", fullmatch=True) | st.sampled_from(
        HOSTILE_NAMES), min_size=n, max_size=n, unique=True))
    tasks = []
    for i, task_id in enumerate(ids):
        tasks.append(spec.Task(
            id=task_id, title=draw(_words), prompt=draw(st.text(max_size=60)),
            requires=draw(st.lists(st.sampled_from(ids), max_size=3, unique=True)),
            story_points=draw(st.sampled_from([0, 0.5, 1, 3, 1e300, 1e308]) | st.floats(0, 100)),
            affected_files=draw(st.lists(st.sampled_from(HOSTILE_PATHS) | st.from_regex(
                r"[a-z]{1,4}(/[a-z*?\[\]!-]{1,5}){0,2}/?", fullmatch=True), max_size=3)),
            priority=draw(st.integers(-5, 5)), timeout=draw(st.none() | st.sampled_from([1.0, 90.0, 1e300])),
            retries=draw(st.none() | st.integers(0, 3)), expect_changes=draw(st.booleans()),
        ))
    epic = spec.Epic(name=draw(st.sampled_from(HOSTILE_NAMES) | st.just("gen")), tasks=tasks,
                     max_parallel=draw(st.none() | st.integers(1, 10**6)),
                     conflicts=draw(st.sampled_from(spec.CONFLICT_MODES)),
                     strategy=draw(st.sampled_from(spec.STRATEGIES)),
                     setup_inputs=draw(st.lists(st.sampled_from(HOSTILE_PATHS), max_size=2)))
    try:
        return spec.dumps(epic)
    except Exception:  # tomli_w refuses some values (e.g. a NaN it cannot write): still a fair input
        return FULL_SEED


@st.composite
def large_epics(draw) -> str:
    """Hundreds to 10,000 tasks, written directly (drawing each task would be slow); maybe a cycle or a bad id."""
    n = draw(st.sampled_from([100, 1_000, 10_000]))
    rng = random.Random(draw(st.integers(0, 2**32)))
    out = ['[epic]\nname = "large"\nconflicts = "%s"\n' % rng.choice(["serialise", "lock", "defer"])]
    for i in range(n):
        deps = ", ".join(f'"t{j}"' for j in sorted({rng.randrange(max(0, i - 40), i) for _ in range(3)})) if i else ""
        out.append(f'[[task]]\nid = "t{i}"\nrequires = [{deps}]\nstory_points = {rng.choice([1, 2, 3, 5])}\n'
                   f'affected_files = ["src/f{rng.randrange(200)}.py", "lib/m{rng.randrange(50)}/"]\n')
    flaw = draw(st.sampled_from(["none", "cycle", "duplicate", "bad-id", "unknown"]))
    if flaw == "cycle":
        out.append(f'[[task]]\nid = "loop-a"\nrequires = ["loop-b"]\n[[task]]\nid = "loop-b"\nrequires = ["loop-a"]\n')
    elif flaw == "duplicate":
        out.append('[[task]]\nid = "t0"\n')
    elif flaw == "bad-id":
        out.append('[[task]]\nid = "../escape"\n')
    elif flaw == "unknown":
        out.append('[[task]]\nid = "orphan"\nrequires = ["nowhere"]\n')
    return "".join(out)


@dataclass
class Case:
    """One input: text for ``loads``, and the bytes written to the file the command line reads."""

    kind: str
    data: bytes
    text: str


def _from_text(kind: str):
    return lambda text: [Case(kind, text.encode("utf-8", "surrogatepass"), text)]


def fuzz_inputs(large: bool = True, quick_batch: int = QUICK_BATCH):
    """Lists of inputs of every kind, most of them mutated epics.

    ``large``: now and then a file of up to 10,000 tasks; ``quick_batch``: how many quick mutants per draw.
    """
    kinds = [
        mutated_epics().map(_from_text("mutated")),
        mutated_epics().map(_from_text("mutated")),
        quickly_mutated_epics(quick_batch).map(lambda texts: [_from_text("quick-mutated")(t)[0] for t in texts]),
        generated_epics().map(_from_text("generated")),
        st.binary(max_size=2_000).map(lambda b: [Case("bytes", b, b.decode("utf-8", "replace"))]),
        st.text(alphabet=TOML_CHARS, max_size=400).map(_from_text("toml-ish")),
        st.text(max_size=200).map(_from_text("text")),
    ]
    strategy = st.one_of(*kinds)
    if large:
        # About one input in two hundred: each costs up to a second or so.
        strategy = st.randoms(use_true_random=True).flatmap(
            lambda rng: large_epics().map(_from_text("large")) if rng.random() < 0.005 else st.one_of(*kinds))
    return strategy


# ----------------------------------------------------------------- the check


class Failure(Exception):
    """An input handled in a way the loader promises never to."""


class Hang(BaseException):
    """Raised by the alarm when one input takes too long (BaseException: nothing under test may catch it)."""


SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")


def unsafe_name(name: str) -> bool:
    """Whether a name could leave ``.waveui/`` as a file name or ``refs/heads/waveui/`` as a branch.

    Written out here rather than taken from waveui, so the fuzzer checks the loader against the rule
    and not against itself: the documented characters, and what git refuses in a ref component.
    """
    return not SAFE_NAME.match(name) or ".." in name or name.endswith((".", ".lock"))


def check_epic(epic) -> None:
    """The invariants of any epic ``loads`` returns."""
    from waveui.core import spec
    from waveui.git.worktrees import integration_branch, task_branch

    def bad(message: str) -> Failure:
        return Failure(message)

    if unsafe_name(epic.name):
        raise bad(f"unsafe epic name accepted: {epic.name!r}")
    ids = [t.id for t in epic.tasks]
    if len(set(ids)) != len(ids):
        raise bad("duplicate task ids accepted")
    if not ids:
        raise bad("an epic without tasks accepted")
    known = set(ids)
    logs = PurePosixPath("/r/.waveui/runs/run/logs")
    integration_branch(epic.name)
    for task in epic.tasks:
        if unsafe_name(task.id):
            raise bad(f"unsafe task id accepted: {task.id!r}")
        log = logs / f"{task.id}.log"
        if log.parent != logs or log.name != f"{task.id}.log":
            raise bad(f"log path of {task.id!r} leaves the logs folder")
        if not task_branch(epic.name, task.id).startswith(f"waveui/{epic.name}@"):
            raise bad(f"branch of {task.id!r} outside waveui/")
        if task.id in task.requires or not set(task.requires) <= known:
            raise bad(f"task {task.id!r} requires itself or an unknown task")
        if not (isinstance(task.story_points, (int, float)) and 0 <= task.story_points < math.inf):
            raise bad(f"story_points {task.story_points!r} accepted")
        if task.timeout is not None and not 0 < task.timeout < math.inf:
            raise bad(f"timeout {task.timeout!r} accepted")
        for path in task.affected_files:
            _check_path(path, bad)
    for path in epic.setup_inputs:
        _check_path(path, bad)
    edges = [(t.id, d) for t in epic.tasks for d in t.requires]
    if not spec._acyclic(ids, edges):
        raise bad("a dependency cycle accepted")
    for number in (epic.cpu_high, epic.cpu_low, epic.min_free_memory):
        if not math.isfinite(number):
            raise bad(f"a non-finite [epic] value accepted: {number!r}")


def _check_path(path: str, bad) -> None:
    posix = path.replace("\\", "/")
    parts = PurePosixPath(posix).parts
    if (not path.strip() or posix.startswith("/") or re.match(r"[A-Za-z]:/", posix) or ".." in parts
            or TERMINAL_CONTROL.search(path) or "\n" in path):
        raise bad(f"path {path!r} accepted")


def check_text(text: str, plan: bool = True) -> str:
    """'valid' or 'rejected' for one input; Failure (or whatever escaped ``loads``) otherwise."""
    from waveui.core import spec

    try:
        epic = spec.loads(text, "fuzz.toml")
    except spec.SpecError as error:
        if not error.problems:
            raise Failure("SpecError without problems") from None
        lines = text.count("\n") + 1
        for problem in error.problems:
            shown = str(problem)
            if not shown.isprintable():
                raise Failure(f"problem is not one printable line: {shown!r}") from None
            if not 0 <= problem.line <= lines:
                raise Failure(f"problem at line {problem.line} of a {lines}-line file: {shown!r}") from None
        return "rejected"
    check_epic(epic)
    if len(epic.tasks) > PLAN_MAX_TASKS:
        return "valid"
    if spec.loads(spec.dumps(epic)) != epic:
        raise Failure("dumps then loads changed the epic")
    if plan:
        from waveui.plan import make_plan, report

        result = make_plan(epic)
        shown = report.text(result, width=100)
        if TERMINAL_CONTROL.search(shown.replace("\n", "").replace("\t", "")):
            raise Failure("the plan's text holds terminal control characters")
        json.loads(report.json_text(result))
    return "valid"


def _raise_hang(signum, frame):
    raise Hang()


def check_in_process(case: Case, timeout: float = TIMEOUT_SECONDS, plan: bool = True) -> tuple[str, str]:
    """(outcome, detail): outcome is 'valid', 'rejected' or 'failure'. Main thread only (SIGALRM)."""
    previous = signal.signal(signal.SIGALRM, _raise_hang)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        return check_text(case.text, plan), ""
    except Hang:
        return "failure", f"hang: more than {timeout:g}s"
    except Failure as failure:
        return "failure", str(failure)
    except Exception:
        return "failure", "exception: " + "".join(traceback.format_exc(limit=-3).splitlines(True)[-6:]).strip()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def cli_env() -> dict[str, str]:
    env = dict(os.environ, NO_COLOR="1", COLUMNS="100", PYTHONIOENCODING="utf-8")
    env.pop("PYTHONWARNINGS", None)
    return env


def check_cli(data: bytes, timeout: float = CLI_TIMEOUT_SECONDS) -> tuple[str, str]:
    """Run ``python -m waveui plan -f waveui.toml`` on ``data`` in a fresh folder: (outcome, detail)."""
    from waveui.core import spec

    with tempfile.TemporaryDirectory(prefix="waveui-fuzz-") as tmp:
        folder = Path(tmp)
        epic_file = folder / "waveui.toml"
        epic_file.write_bytes(data)
        try:
            spec.load(epic_file)
            expected = "valid"
        except spec.SpecError:
            expected = "rejected"
        except Exception:
            return "failure", "spec.load raised: " + traceback.format_exc(limit=-1).strip().splitlines()[-1]
        try:
            done = subprocess.run([sys.executable, "-m", "waveui", "plan", "-f", "waveui.toml"], cwd=folder,
                                  env=cli_env(), capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return "failure", f"cli hang: more than {timeout:g}s"
        err = done.stderr.decode("utf-8", "replace")
        out = done.stdout.decode("utf-8", "replace")
        left = sorted(p.name for p in folder.iterdir())
        if left != ["waveui.toml"]:
            return "failure", f"cli left files behind: {left}"
        if "Traceback" in err:
            return "failure", "cli traceback: " + err.strip().splitlines()[-1]
        if done.returncode == 0:
            if err:
                return "failure", f"cli exit 0 with stderr: {err[:200]!r}"
            if TERMINAL_CONTROL.search(out.replace("\n", "").replace("\t", "")):
                return "failure", "cli plan output holds terminal control characters"
            outcome = "valid"
        elif done.returncode == 2:
            lines = err.split("\n")
            if lines[-1] == "":
                lines.pop()
            if not lines:
                return "failure", "cli exit 2 with nothing on stderr"
            for line in lines:
                if not line.startswith(ERROR_PREFIX) or not line.isprintable():
                    return "failure", f"cli stderr line not a one-line error: {line[:200]!r}"
            outcome = "rejected"
        else:
            return "failure", f"cli exit {done.returncode}: {err[-300:]!r}"
        if outcome != expected:
            return "failure", f"cli says {outcome}, spec.load says {expected}"
        return outcome, ""


# ------------------------------------------------------------------- running


def _signature(detail: str) -> str:
    """What tells failures apart: the last line of the detail, quoted values and numbers left out."""
    last = detail.strip().splitlines()[-1] if detail.strip() else ""
    return re.sub(r"'[^']*'|\"[^\"]*\"|\d+", "_", last)[:120]


@dataclass
class Tally:
    tried: int = 0
    valid: int = 0
    rejected: int = 0
    cli_runs: int = 0
    cli_valid: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    failures: list[tuple[str, str, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, case: Case, outcome: str, detail: str, cli: bool = False) -> None:
        with self.lock:
            if cli:
                self.cli_runs += 1
                self.cli_valid += outcome == "valid"
            else:
                self.tried += 1
                self.kinds[case.kind] = self.kinds.get(case.kind, 0) + 1
                if outcome == "valid":
                    self.valid += 1
                elif outcome == "rejected":
                    self.rejected += 1
            if outcome == "failure":
                self.failures.append(((" cli" if cli else "") + case.kind, detail, case.data))

    def report(self, seconds: float, out=sys.stdout) -> None:
        rate = self.tried / seconds if seconds else 0.0
        print(f"inputs tried: {self.tried} in {seconds:.1f}s ({rate:.0f}/s)", file=out)
        print(f"  valid: {self.valid}, rejected: {self.rejected}, failures: {len(self.failures)}", file=out)
        print("  by kind: " + ", ".join(f"{k} {n}" for k, n in sorted(self.kinds.items())), file=out)
        if self.cli_runs:
            print(f"  through the command line: {self.cli_runs} ({self.cli_valid} valid)", file=out)
        seen: dict[str, int] = {}
        for _, detail, _ in self.failures:
            seen[_signature(detail)] = seen.get(_signature(detail), 0) + 1
        shown = set()
        for kind, detail, data in self.failures:  # the first input of each distinct failure
            if _signature(detail) in shown:
                continue
            shown.add(_signature(detail))
            print(f"FAILURE ({kind.strip()}, {seen[_signature(detail)]} like it): {detail}\n"
                  f"  input: {data[:300]!r}", file=out)


def run_timed(seconds: float, cli_workers: int, save: Path | None, large: bool = True) -> Tally:
    """Fuzz for ``seconds``: in-process on this thread, a sample through the command line beside it."""
    tally = Tally()
    deadline = time.monotonic() + seconds
    pool = ThreadPoolExecutor(max_workers=max(1, cli_workers)) if cli_workers else None
    running: set[Future] = set()

    def through_cli(case: Case) -> None:
        outcome, detail = check_cli(case.data)
        tally.add(case, outcome, detail, cli=True)

    @settings(max_examples=100, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(fuzz_inputs(large))
    def batch(cases: list[Case]) -> None:
        for case in cases:
            if time.monotonic() > deadline:
                return
            outcome, detail = check_in_process(case)
            tally.add(case, outcome, detail)
            if pool is not None and len(case.data) <= CLI_MAX_BYTES:
                running.difference_update({f for f in running if f.done()})
                if len(running) < cli_workers:
                    running.add(pool.submit(through_cli, case))

    started = time.monotonic()
    while time.monotonic() < deadline:
        batch()
    elapsed = time.monotonic() - started
    if pool is not None:
        pool.shutdown(wait=True)
    if save is not None:
        save.mkdir(parents=True, exist_ok=True)
        for n, (_, _, data) in enumerate(tally.failures):
            (save / f"failure-{n:03d}.toml").write_bytes(data)
    tally.report(elapsed)
    return tally


def run_atheris(seconds: float) -> int:
    """Coverage-guided fuzzing of ``spec.loads`` (in-process only) with atheris, seeded with the examples."""
    try:
        import atheris
    except ImportError:
        print("--atheris needs atheris: pip install atheris (wheels for CPython on Linux and macOS)",
              file=sys.stderr)
        return 2
    atheris.instrument_all()  # waveui and tomllib are imported by now: their code is what gets measured
    tally = Tally()
    started = time.monotonic()
    deadline = started + seconds
    corpus = Path(tempfile.mkdtemp(prefix="waveui-atheris-"))
    for n, seed in enumerate(SEEDS):
        (corpus / f"seed-{n}.toml").write_text(seed, encoding="utf-8")

    def one_input(data: bytes) -> None:
        if time.monotonic() > deadline:
            tally.report(time.monotonic() - started)
            sys.stdout.flush()
            shutil.rmtree(corpus, ignore_errors=True)
            os._exit(1 if tally.failures else 0)  # libFuzzer's own exit would skip Python's clean-up
        case = Case("atheris", data, data.decode("utf-8", "replace"))
        outcome, detail = check_in_process(case, plan=len(data) < 20_000)
        tally.add(case, outcome, detail)

    atheris.Setup([sys.argv[0], f"-max_total_time={int(seconds) + 5}", f"-timeout={int(TIMEOUT_SECONDS) + 5}",
                   "-rss_limit_mb=4096", "-print_final_stats=0", str(corpus)], one_input)
    atheris.Fuzz()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="how long to fuzz (default: 120)")
    parser.add_argument("--cli-workers", type=int, default=1,
                        help="command lines running beside the in-process fuzzing (default: 1; 0 for none)")
    parser.add_argument("--no-large", action="store_true", help="leave out the 10,000-task inputs")
    parser.add_argument("--save", type=Path, metavar="DIR", help="write each failing input into DIR")
    parser.add_argument("--atheris", action="store_true", help="coverage-guided, in-process only (needs atheris)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    if args.atheris:
        import waveui.plan  # noqa: F401  (imported before instrumenting, so it is instrumented too)
        from waveui import spec  # noqa: F401

        return run_atheris(args.seconds)
    tally = run_timed(args.seconds, args.cli_workers, args.save, large=not args.no_large)
    return 1 if tally.failures else 0


if __name__ == "__main__":
    sys.exit(main())
