"""The epic file: Epic and Task dataclasses, loading with FILE:LINE errors, writing.

An epic is read from TOML (``[epic]`` plus ``[[task]]`` tables). Every problem
found is collected as a :class:`Problem` naming the file and line, so a user
sees all of them at once; :func:`load` raises :class:`SpecError` holding them.
TOML parsers do not report positions, so :class:`_KeyLines` scans the text once
to learn on which line each table and key starts.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import sys
import tomllib
from decimal import Decimal
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import tomli_w

from waveui.core._gc import paused as gc_paused
from waveui.core.paths import TASK_ID, name_problem  # noqa: F401  (TASK_ID: part of the loader's rules)

MAX_PROBLEMS = 50


CONFLICT_MODES = ("serialise", "lock", "defer")
STRATEGIES = ("eager", "waves")
ISOLATIONS = ("worktree", "none")
EXECUTORS = ("local", "dask")
LOCAL_CLUSTER = re.compile(r"local:([1-9][0-9]*)(?:x([1-9][0-9]*))?")  # N worker processes here, S tasks each
# What happens to a task whose merge conflicts: "stop" leaves it conflicted for you, "retry" runs it
# again on the new tip of the integration branch, "resolve" runs the ``resolve`` command on the merge.
CONFLICT_POLICIES = ("retry", "resolve", "stop")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an epic file, at a line of it."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.message}"


class SpecError(Exception):
    """An epic file that cannot be used; ``problems`` says every reason found."""

    def __init__(self, problems: list[Problem]):
        # Each problem is printed as one line of a terminal: names and values from the file
        # (a key "a\nb", an id holding an escape sequence) are shown escaped, never raw.
        self.problems = [Problem(_printable(p.path), p.line, _printable(p.message)) for p in problems]
        super().__init__("\n".join(map(str, self.problems)))


def _printable(text: str) -> str:
    """``text`` with every character that is not printable (newlines, ESC, bidi overrides, ...) escaped."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


@dataclass
class Task:
    id: str
    title: str = ""
    prompt: str = ""
    requires: list[str] = field(default_factory=list)
    story_points: float = 1
    affected_files: list[str] = field(default_factory=list)
    command: str | None = None
    verify: str | None = None
    priority: int = 0
    timeout: float | None = None  # seconds
    retries: int | None = None
    expect_changes: bool = True
    max_cost: float | None = None  # dollars this task may spend (the agent is told; waveui stops it past that)
    max_turns: int | None = None  # turns its agent may take, for agents that take a limit
    on_conflict: str | None = None  # one of CONFLICT_POLICIES; None: the epic's
    resolve: str | None = None  # the command that resolves a conflicting merge; None: the epic's
    sandbox: bool | str | None = None  # True, False or "auto"; None: the epic's
    sandbox_network: bool | None = None  # None: the epic's
    sandbox_writable: list[str] = field(default_factory=list)  # more paths its steps may write, besides the epic's
    line: int = field(default=0, compare=False)  # where its [[task]] table starts


@dataclass
class Epic:
    name: str
    tasks: list[Task] = field(default_factory=list)
    base: str | None = None
    max_parallel: int | None = None
    min_parallel: int = 1
    adaptive: bool = False
    cpu_high: float = 80.0  # percent: above it, adaptive mode lowers the limit
    cpu_low: float = 40.0  # percent: below it (and memory free), it raises the limit
    min_free_memory: float = 2 * 2**30  # bytes free needed to raise the limit
    conflicts: str = "serialise"
    strategy: str = "eager"
    isolation: str = "worktree"
    setup: str | None = None
    setup_inputs: list[str] = field(default_factory=list)
    command: str | None = None
    verify: str | None = None
    timeout: float | None = None
    retries: int = 0
    max_cost: float | None = None  # dollars the whole run may spend: no task starts past it
    max_turns: int | None = None  # turns each task's agent may take, unless the task says otherwise
    notify: str | None = None  # a shell command run when a task fails, conflicts, is denied, or the run ends
    bell: bool = True  # the app rings the terminal bell on those events
    on_conflict: str = "stop"  # one of CONFLICT_POLICIES, for tasks that name none
    resolve: str | None = None  # the resolving command of tasks that give none
    sandbox: bool | str = False  # True, False or "auto" (sandboxed where bubblewrap works), for tasks that say none
    sandbox_network: bool = True  # whether sandboxed steps reach the network
    sandbox_writable: list[str] = field(default_factory=list)  # paths every sandboxed step may write ("~" expanded)
    sandbox_line: int = field(default=0, compare=False)  # where the first `sandbox = true` is, 0 if nowhere
    executor: str = "local"  # one of EXECUTORS: where tasks run
    dask_scheduler: str | None = None  # with executor = "dask": tcp://HOST:PORT, or local:N for a cluster here
    dask_remote: str | None = None  # a git URL the controller and the workers reach: history goes through it
    path: Path | None = field(default=None, compare=False)

    def task(self, task_id: str) -> Task:
        return self._by_id()[task_id]

    def conflict_policy(self, task: Task) -> tuple[str, str | None]:
        """What to do when ``task``'s merge conflicts, and the command that resolves it.

        The task's own ``on_conflict`` and ``resolve`` win over the epic's. The
        command is given only with "resolve" (the loader makes sure there is one
        then); with "retry" or "stop" there is nothing to run, so it is None.
        """
        policy = task.on_conflict or self.on_conflict
        if policy != "resolve":
            return policy, None
        return policy, task.resolve or self.resolve

    def sandbox_of(self, task: Task) -> tuple[bool | str, bool, list[str]]:
        """Whether ``task`` runs sandboxed (True, False or "auto"), with network, and the paths it may write.

        The task's own ``sandbox`` and ``sandbox_network`` win over the epic's;
        its ``sandbox_writable`` adds to the epic's.
        """
        mode = self.sandbox if task.sandbox is None else task.sandbox
        network = self.sandbox_network if task.sandbox_network is None else task.sandbox_network
        return mode, network, self.sandbox_writable + task.sandbox_writable

    def _by_id(self) -> dict[str, Task]:
        return {t.id: t for t in self.tasks}


# ---------------------------------------------------------------- durations

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Seconds in "90", "90s", "20m", "1h30m", "1.5h"; ValueError otherwise."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos and text[pos : m.start()].strip():
            raise ValueError(text)
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if pos == 0 or text[pos:].strip():
        raise ValueError(text)
    return total


def format_duration(seconds: float) -> str:
    """The shortest of "45s", "20m", "1h30m" that parses back to ``seconds``."""
    exact = format(Decimal(repr(float(seconds))), "f").removesuffix(".0") + "s"  # no exponent
    if seconds != int(seconds):
        return exact
    s = int(seconds)
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    parts = [f"{h}h" if h else "", f"{m}m" if m else "", f"{sec}s" if sec else ""]
    text = "".join(parts) or "0s"
    return text if parse_duration(text) == seconds else exact


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\Z", re.I)


def parse_size(text: str) -> float:
    """Bytes in "2GB", "512M", "1.5GiB", "100"; ValueError otherwise."""
    m = _SIZE.fullmatch(text.strip())
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * 1024 ** "_kmgt".index(m.group(2).lower() or "_")


# ------------------------------------------------------------- line finding


class _KeyLines:
    """Line numbers of tables and keys, found by scanning the TOML text.

    Tracks multi-line strings and arrays so that text inside them is never
    mistaken for a key or a header. Only the positions matter here: the values
    come from tomllib, which has already accepted the file.
    """

    _HEADER = re.compile(r"\s*(\[\[?)\s*([^\]]+?)\s*\]\]?")
    _KEY = re.compile(r"""\s*("[^"]*"|'[^']*'|[A-Za-z0-9_-]+)\s*[.=]""")
    _PLAIN = re.compile(r"[^\"'#]+")
    # a multi-line string's opening quotes (group 1), or a whole one-line string, maybe unterminated
    _STRING = re.compile(r"""(\"\"\"|''')|"(?:[^"\\]|\\.)*(?:"|\\)?|'[^']*'?""", re.S)
    _STRING_OR_COMMENT = re.compile(r"""(?:"(?:[^"\\]|\\.)*(?:"|\\)?|'[^']*'?|#.*)""", re.S)
    # the rest of a multi-line string, its closing quotes (and any right after them) in group 1
    _MULTILINE_END = {
        '"""': re.compile(r'(?:[^"\\]|\\.|"(?!""))*("""\"*)?', re.S),
        "'''": re.compile(r"(?:[^']|'(?!''))*(''''*)?", re.S),
    }

    def __init__(self, text: str):
        # Only "\n" ends a TOML line: str.splitlines would also split at "\x85", "\u2028", ...
        self.epic_line = 0
        self.epic_keys: dict[str, int] = {}
        self.task_lines: list[int] = []
        self.task_keys: list[dict[str, int]] = []
        self.top_keys: dict[str, int] = {}
        self.other_tables: list[tuple[str, int]] = []
        current: dict[str, int] = self.top_keys
        depth = 0
        in_multiline: str | None = None
        for number, line in enumerate(text.split("\n"), start=1):
            if in_multiline is None and depth == 0:
                header = self._HEADER.match(line)
                key = self._KEY.match(line)
                if header and not key:
                    name = header.group(2).strip().strip("\"'")
                    if header.group(1) == "[[" and name == "task":
                        current = {}
                        self.task_lines.append(number)
                        self.task_keys.append(current)
                    elif header.group(1) == "[" and name == "epic":
                        current = self.epic_keys
                        self.epic_line = number
                    else:
                        current = {}
                        self.other_tables.append((name, number))
                elif key:
                    current.setdefault(key.group(1).strip("\"'"), number)
            if in_multiline is None and "[" not in line and "]" not in line and '"""' not in line and "'''" not in line:
                continue  # most lines: no bracket to count, no multi-line string to open
            code, in_multiline = self._code(line, in_multiline)
            depth = max(0, depth + code.count("[") - code.count("]"))

    @staticmethod
    def _code(line: str, in_multiline: str | None) -> tuple[str, str | None]:
        """The line without its strings and comment, and the multi-line string still open after it."""
        if in_multiline is None and '"' not in line and "'" not in line and "#" not in line:
            return line, None
        if in_multiline is None and '"""' not in line and "'''" not in line:
            return _KeyLines._STRING_OR_COMMENT.sub("", line), None
        # Regexes step over runs of code and whole strings: a loop per character was a
        # third of the time `waveui plan` took on large epics.
        out, i, n = [], 0, len(line)
        while i < n:
            if in_multiline:
                end = _KeyLines._MULTILINE_END[in_multiline].match(line, i)
                if end.group(1) is None:  # the string goes on past this line
                    break
                i, in_multiline = end.end(), None
                continue
            plain = _KeyLines._PLAIN.match(line, i)
            if plain:
                out.append(plain.group())
                i = plain.end()
            elif line[i] == "#":
                break
            else:  # at a quote: a string, or the start of a multi-line one
                string = _KeyLines._STRING.match(line, i)
                in_multiline = string.group(1)
                i = string.end()
        return "".join(out), in_multiline

    def epic_key(self, key: str) -> int:
        return self.epic_keys.get(key, self.epic_line or 1)

    def task_key(self, index: int, key: str | None = None) -> int:
        if index >= len(self.task_lines):
            return 1
        if key is None:
            return self.task_lines[index]
        return self.task_keys[index].get(key, self.task_lines[index])


# --------------------------------------------------------------- validation


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _type_name(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "table"}.get(
        type(value), type(value).__name__
    )


_DRIVE = re.compile(r"[A-Za-z]:[\\/]")
# Integers beyond this are refused: far past any sensible count, and every smaller one can be
# printed, stored as JSON and turned into a float.
INT_LIMIT = 2**63
SHOWN_MAX = 200  # characters of a bad value quoted in a problem


def _show(value: Any) -> str:
    """A bad value for a problem's text: its repr, cut short when long."""
    try:
        text = repr(value)
    except ValueError:  # an integer of more digits than Python will print (see sys.get_int_max_str_digits)
        return "(too large to show)"
    return text if len(text) <= SHOWN_MAX else text[:SHOWN_MAX - 1] + "…"


def _float(value: int | float) -> float:
    """``value`` as a float; an integer too large for one counts as infinite."""
    try:
        return float(value)
    except OverflowError:
        return math.inf


class _Checker:
    """Collects problems while turning parsed TOML into an Epic."""

    def __init__(self, path: str, lines: _KeyLines):
        self.path = path
        self.lines = lines
        self.problems: list[Problem] = []

    def add(self, line: int, message: str) -> None:
        self.problems.append(Problem(self.path, line, message))

    def string(self, value: Any, line: int, what: str) -> str | None:
        if value is None or isinstance(value, str):
            return value
        self.add(line, f"{what} must be a string, not {_type_name(value)}")
        return None

    def string_list(self, value: Any, line: int, what: str) -> list[str]:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        if isinstance(value, list):
            bad = next(v for v in value if not isinstance(v, str))
            self.add(line, f"{what} must be an array of strings, but holds {_type_name(bad)} {_show(bad)}")
        else:
            self.add(line, f"{what} must be an array of strings, not {_type_name(value)}")
        return []

    def integer(self, value: Any, line: int, what: str, minimum: int | None = None) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(line, f"{what} must be an integer, not {_type_name(value)} {_show(value)}")
            return None
        if minimum is not None and value < minimum:
            self.add(line, f"{what} must be at least {minimum}, not {_show(value)}")
            return None
        if abs(value) >= INT_LIMIT:
            self.add(line, f"{what} is too large: {_show(value)}")
            return None
        return value

    def number(self, value: Any, line: int, what: str, minimum: float = 0) -> float | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(_float(value)):
            self.add(line, f"{what} must be a number, not {_type_name(value)} {_show(value)}")
            return None
        if value < minimum or math.isinf(_float(value)):
            self.add(line, f"{what} must be a finite number of at least {minimum:g}, not {_show(value)}")
            return None
        return value

    def boolean(self, value: Any, line: int, what: str) -> bool | None:
        if isinstance(value, bool):
            return value
        self.add(line, f"{what} must be true or false, not {_type_name(value)} {_show(value)}")
        return None

    def choice(self, value: Any, line: int, what: str, choices: tuple[str, ...]) -> str | None:
        if isinstance(value, str) and value in choices:
            return value
        options = ", ".join(choices)
        hint = _did_you_mean(value, list(choices)) if isinstance(value, str) else ""
        self.add(line, f"{what} must be one of {options}, not {_show(value)}{hint}")
        return None

    def duration(self, value: Any, line: int, what: str) -> float | None:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < _float(value) < math.inf:
            return float(value)
        if isinstance(value, str):
            try:
                seconds = parse_duration(value)
            except ValueError:
                pass
            else:
                if 0 < seconds < math.inf:
                    return seconds
        self.add(line, f"{what} is not a duration: {_show(value)} (write e.g. \"90s\", \"20m\", \"1h30m\")")
        return None

    def size(self, value: Any, line: int, what: str) -> float | None:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= _float(value) < math.inf:
            return float(value)
        if isinstance(value, str):
            try:
                size = parse_size(value)
            except ValueError:
                pass
            else:
                if size < math.inf:  # "1e999" digits parse as infinity
                    return size
        self.add(line, f"{what} is not a size: {_show(value)} (write e.g. \"2GB\", \"512MB\")")
        return None

    def relative_paths(self, value: Any, line: int, what: str, setup: bool = False) -> list[str]:
        """Paths or globs inside the repository; ``setup``: setup inputs, which pathlib's glob reads."""
        paths = self.string_list(value, line, what)
        good = []
        for p in paths:
            if not p.strip():
                self.add(line, f"{what} holds an empty path")
            elif p.startswith(("/", "\\")) or _DRIVE.match(p):
                self.add(line, f"{what} must be relative to the repository, not absolute: {_show(p)}")
            elif ".." in p and ".." in p.replace("\\", "/").split("/"):  # as PurePosixPath(...).parts, quicker
                self.add(line, f"{what} must stay inside the repository, but {_show(p)} climbs out with '..'")
            elif _CONTROL.search(p):
                self.add(line, f"{what} holds a control character: {_show(p)}")
            elif (problem := _pattern_problem(p, setup)) is not None:
                self.add(line, f"{what}: {_show(p)} {problem}")
            else:
                good.append(p)
        return good


# C0 and C1 controls and the bidirectional overrides: `waveui plan` prints file names as they are,
# and a terminal would obey these (a NUL in a path would even stop the task's command from starting).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _pattern_problem(path: str, setup: bool) -> str | None:
    """Why a glob cannot be used, or None: the planner turns affected files into regexes, and
    pathlib's glob (which reads setup inputs) refuses some patterns by raising."""
    if setup:
        parts = PurePosixPath(path).parts  # as pathlib globs on POSIX: a backslash is part of a name
        if not parts:
            return "names no file"
        if any("**" in part and part != "**" for part in parts):
            return "has '**' inside a name: it must be a whole path component, as in 'a/**/b'"
    elif "[" in path:
        import warnings

        from waveui.core.paths import glob_regex, normalise

        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a FutureWarning here would be noise on stderr later
            try:
                glob_regex(normalise(path))
            except (re.error, FutureWarning):
                return "has a '[...]' set waveui cannot read (empty, a range running backwards, or '[' inside it)"
    return None


def _unknown_keys(check: _Checker, table: dict, known: list[str], where: str, line_of) -> None:
    for key in table:
        if key not in known:
            check.add(line_of(key), f"unknown key '{key}' in {where}{_did_you_mean(key, known)}")


_TASK_KEYS = [f.name for f in dataclasses.fields(Task) if f.name != "line"]
_EPIC_KEYS = [f.name for f in dataclasses.fields(Epic) if f.name not in ("tasks", "path", "sandbox_line")]


def _epic_settings(check: _Checker, raw: dict, default_name: str) -> Epic:
    lines = check.lines
    at = lines.epic_key
    _unknown_keys(check, raw, _EPIC_KEYS, "[epic]", at)
    epic = Epic(name=default_name)
    if "name" in raw:
        name = check.string(raw["name"], at("name"), "epic name")
        problem = name_problem("epic name", name) if name is not None else None
        if problem:
            check.add(at("name"), problem)
        elif name is not None:
            epic.name = name
    for key in ("base", "setup", "command", "verify"):
        if key in raw:
            setattr(epic, key, check.string(raw[key], at(key), f"[epic] {key}"))
    for key in ("max_parallel", "min_parallel"):
        if key in raw:
            value = check.integer(raw[key], at(key), f"[epic] {key}", minimum=1)
            if value is not None:
                setattr(epic, key, value)
    if epic.max_parallel is not None and epic.min_parallel > epic.max_parallel:
        check.add(at("min_parallel"), f"[epic] min_parallel ({epic.min_parallel}) is above max_parallel ({epic.max_parallel})")
    for key in ("cpu_high", "cpu_low"):
        if key in raw:
            value = check.number(raw[key], at(key), f"[epic] {key}")
            if value is not None and value > 100:
                check.add(at(key), f"[epic] {key} is a CPU percentage, at most 100, not {_show(value)}")
            elif value is not None:
                setattr(epic, key, float(value))
    if epic.cpu_low >= epic.cpu_high:
        check.add(at("cpu_low"), f"[epic] cpu_low ({epic.cpu_low:g}) must be below cpu_high ({epic.cpu_high:g})")
    if "min_free_memory" in raw:
        value = check.size(raw["min_free_memory"], at("min_free_memory"), "[epic] min_free_memory")
        if value is not None:
            epic.min_free_memory = value
    if "adaptive" in raw:
        value = check.boolean(raw["adaptive"], at("adaptive"), "[epic] adaptive")
        if value is not None:
            epic.adaptive = value
    for key, choices in (("conflicts", CONFLICT_MODES), ("strategy", STRATEGIES), ("isolation", ISOLATIONS)):
        if key in raw:
            value = check.choice(raw[key], at(key), f"[epic] {key}", choices)
            if value is not None:
                setattr(epic, key, value)
    if "setup_inputs" in raw:
        epic.setup_inputs = check.relative_paths(raw["setup_inputs"], at("setup_inputs"), "[epic] setup_inputs",
                                                 setup=True)
    if "timeout" in raw:
        epic.timeout = check.duration(raw["timeout"], at("timeout"), "[epic] timeout")
    if "retries" in raw:
        epic.retries = check.integer(raw["retries"], at("retries"), "[epic] retries", minimum=0) or 0
    _budget(check, epic, raw, at, "[epic]")
    if "notify" in raw:
        epic.notify = check.string(raw["notify"], at("notify"), "[epic] notify")
    if "bell" in raw:
        value = check.boolean(raw["bell"], at("bell"), "[epic] bell")
        epic.bell = True if value is None else value
    _conflict_settings(check, epic, raw, at, "[epic]")
    _sandbox_settings(check, epic, raw, at, "[epic]")
    _executor_settings(check, epic, raw, at)
    return epic


def _executor_settings(check: _Checker, epic: Epic, raw: dict, at) -> None:
    """``executor`` and, for a Dask cluster, ``dask_scheduler`` (which needs the other) and ``dask_remote``."""
    if "executor" in raw:
        epic.executor = check.choice(raw["executor"], at("executor"), "[epic] executor", EXECUTORS) or epic.executor
    if "dask_scheduler" in raw:
        address = check.string(raw["dask_scheduler"], at("dask_scheduler"), "[epic] dask_scheduler")
        problem = scheduler_problem(address) if address is not None else None
        if problem:
            check.add(at("dask_scheduler"), f"[epic] dask_scheduler {problem}")
        epic.dask_scheduler = address
        if epic.executor != "dask":
            check.add(at("dask_scheduler"), '[epic] dask_scheduler is set but executor is not "dask"')
    elif epic.executor == "dask":
        check.add(at("executor"), '[epic] executor is "dask" but no dask_scheduler is given '
                                  '(tcp://HOST:PORT, or local:N)')
    if "dask_remote" in raw:  # for `--dask` too, so it needs no executor = "dask"
        url = check.string(raw["dask_remote"], at("dask_remote"), "[epic] dask_remote")
        if url is not None and not url.strip():
            check.add(at("dask_remote"), "[epic] dask_remote is empty: give a git URL the workers reach")
        epic.dask_remote = url or None


def scheduler_problem(address: str) -> str | None:
    """What is wrong with a Dask scheduler's address, as ``--dask`` or ``dask_scheduler`` gives it; None if nothing."""
    if LOCAL_CLUSTER.fullmatch(address):
        return None
    scheme, sep, rest = address.partition("://")
    if not sep or scheme not in ("tcp", "tls", "ws", "wss", "inproc") or not rest:
        return (f"{address!r} is no scheduler address: give tcp://HOST:PORT (as `dask scheduler` prints it), "
                "or local:N (N worker processes here), local:NxS (S tasks each)")
    return None


def _conflict_settings(check: _Checker, owner: Epic | Task, raw: dict, at, what: str) -> None:
    """``on_conflict`` (one of CONFLICT_POLICIES) and ``resolve`` (a command) of the epic or a task."""
    if "on_conflict" in raw:
        value = check.choice(raw["on_conflict"], at("on_conflict"), f"{what} on_conflict", CONFLICT_POLICIES)
        if value is not None:
            owner.on_conflict = value
    if "resolve" in raw:
        command = check.string(raw["resolve"], at("resolve"), f"{what} resolve")
        if command is not None and not command.strip():
            check.add(at("resolve"), f"{what} resolve is empty: give the command that resolves a conflict, or leave it out")
        elif command is not None:
            owner.resolve = command


def _sandbox_settings(check: _Checker, owner: Epic | Task, raw: dict, at, what: str) -> None:
    """``sandbox`` (true, false or "auto"), ``sandbox_network`` and ``sandbox_writable`` of the epic or a task."""
    if "sandbox" in raw:
        value = raw["sandbox"]
        if isinstance(value, bool) or value == "auto":
            owner.sandbox = value
        else:
            check.add(at("sandbox"), f"{what} sandbox must be true, false or \"auto\", not {_show(value)}")
    if "sandbox_network" in raw:
        owner.sandbox_network = check.boolean(raw["sandbox_network"], at("sandbox_network"), f"{what} sandbox_network")
    if "sandbox_writable" in raw:
        paths = check.string_list(raw["sandbox_writable"], at("sandbox_writable"), f"{what} sandbox_writable")
        for path in paths:
            if not (path.startswith(("/", "~/")) or path == "~") or "\0" in path:
                check.add(at("sandbox_writable"), f"{what} sandbox_writable holds {_show(path)}: give absolute "
                                                  "paths, or paths under ~/")
        owner.sandbox_writable = paths


def _sandbox_line(check: _Checker, epic: Epic, index_of: dict[str, int]) -> int:
    """The line of the first `sandbox = true` some task runs by, for the error when bubblewrap cannot run; 0 if none."""
    for task in epic.tasks:
        if task.sandbox is True:
            return check.lines.task_key(index_of[task.id], "sandbox")
        if task.sandbox is None and epic.sandbox is True:
            return check.lines.epic_key("sandbox")
    return 0


def _check_resolvers(check: _Checker, epic: Epic, index_of: dict[str, int]) -> None:
    """Every task that resolves its conflicts has a command to do it with, reported where "resolve" was asked for."""
    epic_asks_alone = False
    for task in epic.tasks:
        policy, command = epic.conflict_policy(task)
        if policy != "resolve" or command is not None:
            continue
        if task.on_conflict == "resolve":
            check.add(check.lines.task_key(index_of[task.id], "on_conflict"),
                      f"task '{task.id}': on_conflict is \"resolve\" but no resolve command is given "
                      "(set resolve in this task or in [epic])")
        else:
            epic_asks_alone = True
    if epic_asks_alone:
        check.add(check.lines.epic_key("on_conflict"),
                  "[epic] on_conflict is \"resolve\" but no resolve command is given (set resolve in [epic])")


def _budget(check: _Checker, owner: Epic | Task, raw: dict, at, what: str) -> None:
    """``max_cost`` (dollars, above 0) and ``max_turns`` (at least 1) of the epic or a task."""
    if "max_cost" in raw:
        value = check.number(raw["max_cost"], at("max_cost"), f"{what} max_cost")
        if value == 0:
            check.add(at("max_cost"), f"{what} max_cost must be above 0 (leave it out for no budget)")
        elif value is not None:
            owner.max_cost = float(value)
    if "max_turns" in raw:
        owner.max_turns = check.integer(raw["max_turns"], at("max_turns"), f"{what} max_turns", minimum=1)


def _task(check: _Checker, index: int, raw: Any) -> Task | None:
    lines = check.lines
    header = lines.task_key(index)
    if not isinstance(raw, dict):
        check.add(header, f"each task must be a [[task]] table, not {_type_name(raw)}")
        return None

    def at(key: str) -> int:
        return lines.task_key(index, key)

    _unknown_keys(check, raw, _TASK_KEYS, "[[task]]", at)
    if "id" not in raw:
        check.add(header, "task has no id")
        return None
    task_id = check.string(raw["id"], at("id"), "task id")
    if task_id is None:
        return None
    problem = name_problem("task id", task_id)
    if problem:
        check.add(at("id"), problem)
        return None
    task = Task(id=task_id, line=header)
    for key in ("title", "prompt", "command", "verify"):
        if key in raw:
            value = check.string(raw[key], at(key), f"task '{task_id}': {key}")
            setattr(task, key, value if value is not None or key in ("command", "verify") else "")
    if "requires" in raw:
        task.requires = check.string_list(raw["requires"], at("requires"), f"task '{task_id}': requires")
    if "story_points" in raw:
        value = check.number(raw["story_points"], at("story_points"), f"task '{task_id}': story_points")
        if value is not None:
            task.story_points = value
    if "affected_files" in raw:
        task.affected_files = check.relative_paths(raw["affected_files"], at("affected_files"), f"task '{task_id}': affected_files")
    if "priority" in raw:
        task.priority = check.integer(raw["priority"], at("priority"), f"task '{task_id}': priority") or 0
    if "timeout" in raw:
        task.timeout = check.duration(raw["timeout"], at("timeout"), f"task '{task_id}': timeout")
    if "retries" in raw:
        task.retries = check.integer(raw["retries"], at("retries"), f"task '{task_id}': retries", minimum=0)
    if "expect_changes" in raw:
        value = check.boolean(raw["expect_changes"], at("expect_changes"), f"task '{task_id}': expect_changes")
        task.expect_changes = True if value is None else value
    _budget(check, task, raw, at, f"task '{task_id}':")
    _conflict_settings(check, task, raw, at, f"task '{task_id}':")
    _sandbox_settings(check, task, raw, at, f"task '{task_id}':")
    return task


def _acyclic(ids: list[str], edges: list[tuple[str, str]]) -> bool:
    """Whether the requirements form no cycle: Kahn's algorithm on numbers, much quicker than networkx."""
    index = {task_id: i for i, task_id in enumerate(ids)}
    required_by: list[list[int]] = [[] for _ in ids]
    waiting = [0] * len(ids)
    for task_id, dep in edges:
        required_by[index[dep]].append(index[task_id])
        waiting[index[task_id]] += 1
    done = [i for i, count in enumerate(waiting) if count == 0]
    for i in done:  # ``done`` grows while it is walked
        for j in required_by[i]:
            waiting[j] -= 1
            if waiting[j] == 0:
                done.append(j)
    return len(done) == len(ids)


def _check_graph(check: _Checker, tasks: list[Task], index_of: dict[str, int], rejected: set[str] = frozenset()) -> None:
    """Unknown requirements, self-requirements and cycles. ``rejected``: ids already reported as bad."""
    ids = [t.id for t in tasks]
    known = set(ids)
    edges: list[tuple[str, str]] = []
    for i, task in enumerate(tasks):
        line = check.lines.task_key(index_of[task.id], "requires")
        for dep in task.requires:
            if dep == task.id:
                check.add(line, f"task '{task.id}' requires itself")
            elif dep in rejected:
                continue  # its task is reported already; naming it again would be noise
            elif dep not in known:
                check.add(line, f"task '{task.id}' requires unknown task '{dep}'{_did_you_mean(dep, ids)}")
            else:
                edges.append((task.id, dep))
    if _acyclic(ids, edges):
        return  # the usual case, settled without networkx
    import networkx as nx  # only to report cycles: importing it costs more than planning most epics

    graph = nx.DiGraph()
    graph.add_nodes_from(ids)
    graph.add_edges_from(edges)
    position = {task_id: i for i, task_id in enumerate(ids)}
    cycles = []
    for component in nx.strongly_connected_components(graph):
        if len(component) > 1:
            start = min(component, key=position.__getitem__)
            edges = nx.find_cycle(graph.subgraph(component), source=start)
            cycles.append([u for u, _ in edges])
    for cycle in sorted(cycles, key=lambda c: position[c[0]]):
        first = cycle[0]
        shown = " -> ".join(cycle + [first])
        check.add(check.lines.task_key(index_of[first], "requires"), f"dependency cycle: {shown} (each requires the next)")


def loads(text: str, path: str | Path = "waveui.toml") -> Epic:
    """Parse and validate an epic; raise SpecError listing every problem found."""
    shown = str(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        line = getattr(error, "lineno", None)
        message = getattr(error, "msg", None) or str(error)
        if line is None:
            found = re.search(r"line (\d+)", str(error))
            line = int(found.group(1)) if found else max(1, text.count("\n") + 1 - text.endswith("\n"))
            message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(error))
        raise SpecError([Problem(shown, line, f"invalid TOML: {message}")]) from None
    except RecursionError:  # tomllib parses nested arrays and tables by recursion
        raise SpecError([Problem(shown, _deepest_line(text), "invalid TOML: arrays or tables nested too deeply")]) from None
    except ValueError as error:  # int() refuses a number of thousands of digits, and tomllib lets that through
        limit = sys.get_int_max_str_digits() or 4300
        too_long = re.search(r"[0-9_]{%d,}" % limit, text)
        line = text.count("\n", 0, too_long.start()) + 1 if too_long else 1
        message = f"a number of more than {limit} digits" if "digits" in str(error) else str(error).split(";")[0]
        raise SpecError([Problem(shown, line, f"invalid TOML: {message}")]) from None
    lines = _KeyLines(text)
    check = _Checker(shown, lines)
    for key in data:
        if key not in ("epic", "task"):
            check.add(lines.top_keys.get(key) or next((n for t, n in lines.other_tables if t.split(".")[0] == key), 1),
                      f"unknown table or key '{key}' at top level{_did_you_mean(key, ['epic', 'task'])}")
    raw_epic = data.get("epic", {})
    if not isinstance(raw_epic, dict):
        check.add(lines.top_keys.get("epic", 1), "epic must be an [epic] table")
        raw_epic = {}
    default_name = _default_name(path)
    epic = _epic_settings(check, raw_epic, default_name)
    raw_tasks = data.get("task", [])
    if not isinstance(raw_tasks, list):
        check.add(lines.top_keys.get("task", 1), "tasks must be written as [[task]] tables")
        raw_tasks = []
    index_of: dict[str, int] = {}
    for index, raw in enumerate(raw_tasks):
        task = _task(check, index, raw)
        if task is None:
            continue
        if task.id in index_of:
            first = lines.task_key(index_of[task.id])
            check.add(lines.task_key(index, "id"), f"duplicate task id '{task.id}' (first defined at line {first})")
            continue
        index_of[task.id] = index
        epic.tasks.append(task)
    if not raw_tasks:
        check.add(lines.epic_line or 1, "the epic has no tasks: add [[task]] tables")
    written = {raw.get("id") for raw in raw_tasks if isinstance(raw, dict) and isinstance(raw.get("id"), str)}
    _check_graph(check, epic.tasks, index_of, written - set(index_of))
    _check_resolvers(check, epic, index_of)
    epic.sandbox_line = _sandbox_line(check, epic, index_of)
    if check.problems:
        problems = sorted(check.problems, key=lambda p: p.line)
        if len(problems) > MAX_PROBLEMS:
            rest = len(problems) - MAX_PROBLEMS
            problems = problems[:MAX_PROBLEMS] + [Problem(shown, problems[MAX_PROBLEMS].line, f"... and {rest} more problems")]
        raise SpecError(problems)
    epic.path = Path(path)
    return epic


def _deepest_line(text: str) -> int:
    """The first line where arrays and tables are nested deepest (strings and comments left out)."""
    depth = deepest = 0
    where, in_multiline = 1, None
    for number, line in enumerate(text.split("\n"), start=1):
        code, in_multiline = _KeyLines._code(line, in_multiline)
        for ch in code:
            if ch in "[{":
                depth += 1
                if depth > deepest:
                    deepest, where = depth, number
            elif ch in "]}":
                depth = max(0, depth - 1)
    return where


def _default_name(path: str | Path) -> str:
    folder = Path(path).resolve().parent.name
    slug = re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9._-]+", "-", folder))  # git refuses ".." in a branch
    slug = slug.strip("-._")[:64].rstrip("-._")
    while slug.endswith(".lock"):  # nor may a branch name end in ".lock" (a folder "x.lock" gives "x")
        slug = slug.removesuffix(".lock").rstrip("-._")
    return slug or "epic"


def load(path: str | Path) -> Epic:
    """Read and validate the epic file at ``path``."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")  # a byte-order mark is no TOML error
    except FileNotFoundError:
        raise SpecError([Problem(str(path), 0, "no such file (run `waveui init` to write a starter epic)")]) from None
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise SpecError([Problem(str(path), 0, f"cannot read: {reason}")]) from None
    with gc_paused():  # parsing allocates much and frees little: see waveui.core._gc
        return loads(text, path)


# ------------------------------------------------------------------ writing


def to_dict(epic: Epic) -> dict[str, Any]:
    """The epic as TOML-ready data, leaving out every value equal to its default."""
    defaults = Epic(name=epic.name)
    head: dict[str, Any] = {"name": epic.name}
    for f in dataclasses.fields(Epic):
        if f.name in ("name", "tasks", "path"):
            continue
        value = getattr(epic, f.name)
        if value == getattr(defaults, f.name) or value is None:
            continue
        if f.name == "timeout":
            value = format_duration(value)
        head[f.name] = value
    tasks = []
    blank = Task(id="")
    for task in epic.tasks:
        row: dict[str, Any] = {"id": task.id}
        for f in dataclasses.fields(Task):
            if f.name in ("id", "line"):
                continue
            value = getattr(task, f.name)
            if value is None or value == getattr(blank, f.name):
                continue
            if f.name == "timeout":
                value = format_duration(value)
            row[f.name] = value
        tasks.append(row)
    return {"epic": head, "task": tasks}


def _strings(value: Any):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def dumps(epic: Epic) -> str:
    """The epic as TOML: ``[epic]`` first, then one ``[[task]]`` table per task, in order."""
    data = to_dict(epic)
    # tomli_w writes "\r\n" inside a multi-line string as a bare newline: such text is kept escaped
    readable = not any("\r" in text for text in _strings(data))

    def table(header: str, values: dict[str, Any]) -> str:
        # written table by table: left to itself, tomli_w inlines short arrays of tables
        return f"{header}\n" + tomli_w.dumps(values, multiline_strings=readable)

    return "\n".join([table("[epic]", data["epic"])] + [table("[[task]]", row) for row in data["task"]])


def dump(epic: Epic, path: str | Path | None = None) -> str:
    """The epic as TOML text; also written to ``path`` when one is given."""
    text = dumps(epic)
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text
