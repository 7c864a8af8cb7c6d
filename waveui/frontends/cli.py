"""The `waveui` command line: subcommands, argument parsing, one-line errors."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from importlib import resources
from pathlib import Path

from waveui import __version__

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        self.exit(EXIT_USAGE, f"waveui: error: {message} (see `{self.prog} --help`)\n")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def example_path(name: str) -> Path:
    return Path(str(resources.files("waveui") / "examples" / f"{name}.toml"))


def _colour_enabled(stream) -> bool:
    return stream.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


_STYLES = {"title": "1", "head": "1;36", "dim": "2", "warn": "33"}


def _styler(stream):
    if not _colour_enabled(stream):
        return lambda s, _tag: s
    return lambda s, tag: f"\033[{_STYLES[tag]}m{s}\033[0m"


def _load(path: str):
    from waveui.core import spec

    return spec.load(path)


def _check_sandbox(epic) -> None:
    """Refuse an epic that asks for a sandbox bubblewrap cannot give here, before anything is planned or run."""
    from waveui.engine.sandboxing import refusal

    refused = refusal(epic)
    if refused:
        raise UsageError(refused)


def cmd_plan(args) -> int:
    from waveui.plan import make_plan
    from waveui.plan import report

    epic = _load(str(example_path("hybrid")) if args.example else args.file)
    _check_sandbox(epic)
    plan = make_plan(epic, args.workers)
    if args.json:
        print(report.json_text(plan))
    else:
        width = shutil.get_terminal_size((100, 24)).columns
        print(report.text(plan, width=width, style=_styler(sys.stdout)))
    return 0


def cmd_graph(args) -> int:
    from waveui.plan import make_plan
    from waveui.plan import report

    plan = make_plan(_load(args.file))
    print(report.dot(plan) if args.format == "dot" else report.mermaid(plan))
    return 0


def cmd_init(args) -> int:
    target = Path(args.file)
    if target.exists() and not args.force:
        raise UsageError(f"{target} already exists (use --force to overwrite it)")
    text = example_path("starter").read_text(encoding="utf-8")
    if args.agent:
        from waveui.agents import starter

        text = starter(text, args.agent)
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as error:
        raise UsageError(f"{target}: cannot write: {error.strerror or error}") from None
    print(f"wrote {target}: edit its tasks, then run `waveui plan`")
    return 0


def _repo_root(epic_path: Path, isolation: str) -> Path:
    """The git repository holding the epic file (or, without isolation, its folder)."""
    from waveui.git.command import GitError, discover

    folder = epic_path.resolve().parent
    if isolation == "none":
        return folder
    try:
        found = discover(folder)
    except GitError as error:
        raise UsageError(error.message) from None
    if found is None:
        raise UsageError(f"{epic_path}: not inside a git repository (run `git init`, or set isolation = \"none\")")
    return found.root


EPIC_FILE = "waveui.toml"


def _find_epic_file() -> Path | None:
    """The nearest ``waveui.toml`` from the current folder upward, no higher than its repository's top folder.

    Outside a git repository only the current folder counts: an epic file
    in some folder above is not this project's.
    """
    from waveui.git.command import GitError, discover

    here = Path.cwd()
    try:
        repo = discover(here)
    except GitError:
        repo = None
    folders = [here]
    if repo is not None and (repo.root == here or repo.root in here.parents):
        folders = [here, *here.parents[:len(here.relative_to(repo.root).parts)]]
    return next((folder / EPIC_FILE for folder in folders if (folder / EPIC_FILE).is_file()), None)


def cmd_run(args) -> int:
    from waveui.engine.engine import RunOptions

    if args.file is None:
        args.file = str(_find_epic_file() or EPIC_FILE)  # none found: the error names ./waveui.toml
    epic = _load(args.file)
    _check_sandbox(epic)
    root = _repo_root(Path(args.file), epic.isolation)
    options = RunOptions(max_parallel=args.max_parallel, fresh=args.fresh)
    address = args.dask or (epic.dask_scheduler if epic.executor == "dask" else None)
    if address:
        options.executor = _dask_executor(address, epic.isolation)
    return _run_epic(epic, root, options, args.headless)


def _dask_executor(address: str, isolation: str):
    """The executor factory of a run on the Dask cluster at ``address``; UsageError when it cannot be."""
    from waveui.core.spec import scheduler_problem
    from waveui.engine.remote import dask_executor

    problem = scheduler_problem(address)
    if problem:
        raise UsageError(f"--dask {problem}")
    if isolation != "worktree":
        raise UsageError('--dask needs isolation = "worktree": tasks on a cluster run in clones, never in place')
    try:
        import distributed  # noqa: F401  (only to say clearly that it is missing)
    except ImportError:
        raise UsageError("--dask needs the distributed package: pip install 'waveui[dask]'") from None
    return dask_executor(address)


def cmd_demo(args) -> int:
    import tempfile

    from waveui.frontends import demo
    from waveui.engine.engine import RunOptions

    if args.path:
        target = Path(args.path)
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise UsageError(f"{target} exists and is not an empty folder: give a new path")
    else:
        target = Path(tempfile.mkdtemp(prefix="waveui-demo-"))
    epic_path = demo.make_demo(target, speed=args.speed)
    where = f"demo repository at {target.resolve()}"
    print(f"waveui: {where}", file=sys.stderr)
    return _run_epic(_load(str(epic_path)), target.resolve(), RunOptions(), args.headless,
                     greeting=f"The {where}; it stays there after you quit.")


def _run_epic(epic, root: Path, options, headless: bool, greeting: str | None = None) -> int:
    """Run in the full-screen app on a terminal, else headless; the exit status.

    ``greeting``: a notice the app shows as it starts (the line printed before it is hidden by its screen).
    """
    import asyncio
    import signal

    from waveui.engine.engine import BUDGET_REACHED, EXIT_BUDGET, Engine, EngineError, RunAlreadyComplete
    from waveui.frontends.headless import HeadlessReporter

    engine = Engine(epic, root, options)
    try:
        engine.claim()
        engine.choose_run()
    except RunAlreadyComplete as done:
        print(f"waveui: {done}", file=sys.stderr)
        return 0
    except EngineError as error:
        raise UsageError(str(error)) from None
    except OSError as error:  # an unreadable journal of an earlier run, a file where a folder belongs
        from waveui.core.errors import describe

        raise UsageError(describe(error)) from None

    if not (headless or not sys.stdout.isatty()):
        from waveui.frontends.tui.live import run_live

        return run_live(engine, greeting)
    reporter = HeadlessReporter(sys.stdout)
    options.listeners.append(reporter)
    reporter.catch_up(engine.previous_events or [])

    async def main() -> int:
        loop = asyncio.get_running_loop()
        # Ctrl-C or a dropped connection: leave the tasks running for the next `waveui run` to
        # adopt; SIGTERM (a service manager stopping us): stop them, the run stays resumable.
        for signum in (signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(signum, lambda: engine.stop(leave_resumable=True))
        loop.add_signal_handler(signal.SIGTERM, lambda: engine.stop(leave_resumable=False))
        state = await engine.run()
        if engine.set_aside:
            print(f"waveui: the earlier integration branch is kept as {engine.set_aside}", file=sys.stderr)
        if state.finish_reason == "interrupted":
            running = state.count("preparing", "running", "verifying", "paused")  # a step may start unrecorded
            left = f"{running} task{'s' * (running != 1)} left running; " if running else ""
            print(f"waveui: {left}run `waveui run` again to resume", file=sys.stderr)
            return 130
        if state.finish_reason == "stopped":
            print("waveui: stopped; run `waveui run` again to resume", file=sys.stderr)
            return 130
        if state.finish_reason == BUDGET_REACHED:
            print("waveui: budget reached; raise [epic] max_cost and run `waveui run` again to go on",
                  file=sys.stderr)
            return EXIT_BUDGET
        return 0 if state.ok else 1

    try:
        return asyncio.run(main())
    except EngineError as error:
        raise UsageError(str(error)) from None
    except OSError as error:  # one not caught where it happened: still one line, not a traceback
        from waveui.core.errors import describe

        raise UsageError(describe(error, resumable=True)) from None


def _find_repo_root() -> Path:
    """The repository (or folder) holding ``.waveui/``: the current folder or the nearest parent with one."""
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / ".waveui" / "runs").is_dir():
            return folder
    raise UsageError("no waveui runs here: run `waveui run` (or `waveui demo`) first")


def _run_summary(run_dir: Path, state=None) -> dict:
    from waveui.run.journal import read_events
    from waveui.run.state import replay

    if state is None:
        state = replay(read_events(run_dir / "events.jsonl"))
    if state.finished:
        status = "complete" if state.ok else state.finish_reason
    else:
        status = "running" if _controller_alive(run_dir) else "stopped without an end (resumable)"
    return {"run": run_dir.name, "epic": state.epic, "status": status, "done": state.done, "total": state.total,
            "failed": state.count("failed", "conflicted"), "breakdown": state.breakdown().as_dict(),
            "cost": round(state.cost, 4),
            "started": state.started, "elapsed": round(state.elapsed(), 1)}


def _controller_alive(run_dir: Path) -> bool:
    """Whether a waveui process is running in this repository (read only: never takes its lock for long)."""
    from waveui.engine.locks import controller_holder

    return controller_holder(run_dir.parents[2]) is not None


def _pick_run(root: Path, wanted: str | None) -> Path:
    from waveui.run.journal import list_runs

    runs = list_runs(root)
    if not runs:
        raise UsageError("no waveui runs here: run `waveui run` (or `waveui demo`) first")
    if not wanted:
        return runs[-1]
    matches = [r for r in runs if r.name == wanted] or [r for r in runs if r.name.startswith(wanted)]
    if len(matches) != 1:
        hint = "no run" if not matches else f"{len(matches)} runs"
        raise UsageError(f"{hint} named {wanted!r} (see `waveui watch --list`)")
    return matches[0]


def cmd_watch(args) -> int:
    import json
    import time

    from waveui.run.journal import list_runs

    root = _find_repo_root()
    if args.list:
        rows = [_run_summary(r) for r in list_runs(root)]
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        from waveui.core.sanitize import sanitize_line
        from waveui.run.metrics import tally
        from waveui.run.state import Breakdown

        table = [("run", "epic", "started", "tasks", "status")]
        for row in rows:
            started = time.strftime("%Y-%m-%d %H:%M", time.localtime(row["started"])) if row["started"] else ""
            # The run's name, epic and end reason come from its folder and journal: never raw to the terminal.
            run, epic, status = (sanitize_line(str(row[key])) for key in ("run", "epic", "status"))
            table.append((run, epic, started, ", ".join(tally(Breakdown(**row["breakdown"]))), status))
        widths = [max(len(line[column]) for line in table) for column in range(4)]
        for line in table:
            print("  ".join(f"{cell:<{width}}" for cell, width in zip(line, widths)) + "  " + line[4])
        return 0
    run_dir = _pick_run(root, args.run)
    from waveui.frontends.tui.app import WaveApp
    from waveui.frontends.tui.feeds import JournalFeed

    WaveApp(JournalFeed(run_dir / "events.jsonl", repo_root=root), None, log_dir=run_dir / "logs", repo_root=root,
            read_only=True).run()
    return 0


def cmd_status(args) -> int:
    import json
    import time

    from waveui.frontends import status
    from waveui.run.journal import read_events
    from waveui.run.state import replay

    run_dir = _pick_run(_find_repo_root(), args.run)
    state = replay(read_events(run_dir / "events.jsonl"))
    info = status.report(state, _run_summary(run_dir, state), time.time())
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        # Cut to the terminal's width; piped, whole lines (a script or a file wants every reason in full).
        width = shutil.get_terminal_size((100, 24)).columns if sys.stdout.isatty() else None
        print(status.text(info, width=width, style=_styler(sys.stdout)))
    return 0


def cmd_resolve(args) -> int:
    import subprocess

    from waveui.engine.errors import EngineError
    from waveui.engine.resolving import hand_over, open_resolution
    from waveui.git.command import clean_env

    root = _find_repo_root()
    run_dir = _pick_run(root, args.run)
    try:
        resolution, message = open_resolution(root, run_dir, args.task)
    except EngineError as error:
        raise UsageError(str(error)) from None
    files = ", ".join(resolution.conflicted) or "none left"
    if args.print:
        merge, how = hand_over(root, resolution, message)
        if merge is None:  # not resolved yet: where to do it
            print(resolution.path)
            return 0
    else:
        print(f"waveui: resolve the conflict of {args.task} in {files}, then commit (or `git add` the files) "
              f"and exit the shell; here: {resolution.path}", file=sys.stderr)
        env = clean_env(os.environ)
        env.update({"WAVEUI_TASK_ID": args.task, "WAVEUI_CONFLICT_FILES": "\n".join(resolution.conflicted),
                    "WAVEUI_WORKTREE": str(resolution.path)})
        subprocess.run([os.environ.get("SHELL") or "/bin/sh"], cwd=resolution.path, env=env, check=False)
        merge, how = hand_over(root, resolution, message)
        if merge is None:
            print(f"waveui: {args.task} stays in conflict: {how}; `waveui resolve {args.task}` goes on where "
                  "you left it", file=sys.stderr)
            return 1
    after = ("the running waveui merges it within seconds" if _controller_alive(run_dir)
             else "`waveui run` merges it and goes on with the run")
    print(f"waveui: {args.task} resolved ({how}, {merge[:12]}): {after}")
    return 0


def cmd_import(args) -> int:
    from waveui import agents, importers

    target = Path(args.output)
    if target.exists() and not args.force:
        raise UsageError(f"{target} already exists (use --force to overwrite it)")
    try:
        text, imported = importers.convert(args.source, agents.epic_command_lines(args.agent), target, args.tag)
    except importers.SourceError as error:
        raise UsageError(str(error)) from None
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as error:
        raise UsageError(f"{target}: cannot write: {error.strerror or error}") from None
    count = len(imported.epic.tasks)
    done = f" ({len(imported.skipped)} done already, skipped)" if imported.skipped else ""
    unmapped = "; what could not be mapped is listed at its top" if imported.not_mapped else ""
    print(f"wrote {target}: {count} task{'s' * (count != 1)} from {imported.source}{done}{unmapped}. "
          f"Check it with `waveui plan -f {target}`")
    return 0


def cmd_completion(args) -> int:
    from waveui.frontends.completion import script

    sys.stdout.write(script(args.shell, build_parser()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="waveui",
        description="Plan, run and watch an epic of coding tasks in parallel git worktrees.",
    )
    parser.add_argument("--version", action="version", version=f"waveui {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(name: str, help_text: str, handler, *, epic_file: bool = True, search_upward: bool = False):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        if epic_file and search_upward:
            sub.add_argument("-f", "--file", default=None, metavar="PATH",
                             help="the epic file (default: the nearest waveui.toml in this folder or above it, "
                                  "within the repository)")
        elif epic_file:
            sub.add_argument("-f", "--file", default=EPIC_FILE, metavar="PATH",
                             help="the epic file (default: ./waveui.toml)")
        return sub

    plan = add("plan", "Show how an epic will run: waves, critical path, makespan, conflicts.", cmd_plan)
    plan.add_argument("--workers", "-w", type=_positive, metavar="N",
                      help="plan for N workers (default: the epic's max_parallel, else the CPU count)")
    plan.add_argument("--json", action="store_true", help="print one JSON object (schema in the README)")
    plan.add_argument("--example", action="store_true", help="plan the bundled example epic instead of a file")

    graph = add("graph", "Print the dependency graph for docs and pull requests, critical path marked.", cmd_graph)
    graph.add_argument("--format", choices=("dot", "mermaid"), default="mermaid",
                       help="Graphviz DOT or a Mermaid flowchart (default: mermaid)")

    run = add("run", "Run the epic: every task in its own git worktree, merged into waveui/<epic>.", cmd_run,
              search_upward=True)
    run.add_argument("--max-parallel", "-j", type=_positive, metavar="N", help="run at most N tasks at once")
    run.add_argument("--headless", action="store_true",
                     help="print one line per change instead of the full-screen app (automatic when not a terminal)")
    run.add_argument("--fresh", action="store_true", help="start a new run instead of resuming an unfinished one")
    run.add_argument("--dask", metavar="ADDRESS",
                     help="run the tasks on a Dask cluster: its scheduler's tcp://HOST:PORT, or local:N to start "
                          "N worker processes here (local:NxS: S tasks each); overrides [epic] dask_scheduler")

    watch = add("watch", "Follow a run read-only (also over ssh): the same screen, nothing can be changed.",
                cmd_watch, epic_file=False)
    watch.add_argument("run", nargs="?", help="the run's id or a prefix of it (default: the latest run)")
    watch.add_argument("--list", action="store_true", help="list the runs of this repository instead")
    watch.add_argument("--json", action="store_true", help="with --list: print JSON")

    demo = add("demo", "Make a small git repository with a sample epic and run it, to see waveui at work.",
               cmd_demo, epic_file=False)
    demo.add_argument("path", nargs="?", help="where to make the repository (default: a new temporary folder)")
    demo.add_argument("--headless", action="store_true", help="print progress lines instead of the full-screen app")
    demo.add_argument("--speed", type=float, default=1.0, help="how fast the simulated agents work (default: 1)")

    init = add("init", "Write a commented starter waveui.toml.", cmd_init)
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    from waveui.agents import RECIPES

    init.add_argument("--agent", choices=sorted(RECIPES),
                      help="make [epic] command run this coding agent on each task (see the README's Agent recipes)")

    status = add("status", "Sum up a run on one screen: progress, failures and why, cost, ETA.",
                 cmd_status, epic_file=False)
    status.add_argument("run", nargs="?", help="the run's id or a prefix of it (default: the latest run)")
    status.add_argument("--json", action="store_true", help="print one JSON object")

    resolve = add("resolve", "Resolve a task's merge conflict by hand: a shell in a worktree with the merge under way.",
                  cmd_resolve, epic_file=False)
    resolve.add_argument("task", metavar="TASK", help="the conflicted task's id")
    resolve.add_argument("run", nargs="?", help="the run's id or a prefix of it (default: the latest run)")
    resolve.add_argument("--print", action="store_true",
                         help="print the worktree's path instead of opening $SHELL there; once you committed the "
                              "merge, the same command hands it to the run")

    imports = add("import", "Make a waveui.toml from CCPM epics, Taskmaster tasks or a Claudio plan.",
                  cmd_import, epic_file=False)
    imports.add_argument("source", metavar="SOURCE",
                         help="a CCPM epic folder (.claude/epics/NAME), a project holding .taskmaster/ or "
                              ".claude/epics/, or a tasks.json or Claudio plan file")
    imports.add_argument("-o", "--output", default="waveui.toml", metavar="PATH",
                         help="the epic file to write (default: ./waveui.toml)")
    imports.add_argument("--force", action="store_true", help="overwrite an existing file")
    imports.add_argument("--agent", choices=sorted(RECIPES), help="set [epic] command to run this coding agent")
    imports.add_argument("--tag", metavar="NAME",
                         help="the Taskmaster tag to import (default: the current one in .taskmaster/state.json)")

    from waveui.frontends.completion import SHELLS

    completion = add("completion", "Print a shell completion script, e.g. eval \"$(waveui completion bash)\".",
                     cmd_completion, epic_file=False)
    completion.add_argument("shell", choices=SHELLS, help="bash, zsh or fish")
    return parser


def main(argv: list[str] | None = None) -> int:
    from waveui.core.spec import SpecError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        if _find_epic_file() is None:
            parser.print_help()
            return 0
        args = parser.parse_args(["run"])  # bare `waveui` in a folder with an epic runs it
    try:
        return args.handler(args)
    except SpecError as error:
        for problem in error.problems:
            print(f"waveui: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except UsageError as error:
        print(f"waveui: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # `waveui plan | head`: the reader left; say nothing more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130


def run() -> None:
    sys.exit(main())
