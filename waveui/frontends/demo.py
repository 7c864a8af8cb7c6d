"""`waveui demo`: a small git repository with a sample epic, and the simulated agent its tasks run.

The sample has twelve tasks in the hybrid shape: two foundations, branches
that fan out and join, one file shared by several tasks (serialised), and one
task that fails on its first attempt and succeeds on the retry. Each task runs
:func:`agent`, which works for a few seconds, prints progress and cost as an
agent would, and writes the files its task declares.
"""

from __future__ import annotations

import os
import random
import shlex
import sys
import time
from pathlib import Path

import tomli_w

from waveui.git.command import init_repository

# id, title, story points, requires, files
TASKS = [
    ("models", "Data models", 3, [], ["src/models.py"]),
    ("config", "Settings loader", 1, [], ["src/settings.py"]),
    ("db", "Database layer", 3, ["models", "config"], ["src/db.py"]),
    ("auth", "Login and sessions", 5, ["db"], ["src/auth.py", "src/routes.py"]),
    ("search", "Full-text search", 3, ["db"], ["src/search.py", "src/routes.py"]),
    ("billing", "Billing with retries", 3, ["db"], ["src/billing.py"]),
    ("email", "Email sender", 2, ["config"], ["src/email.py"]),
    ("notify", "Notifications", 2, ["email", "auth"], ["src/notify.py"]),
    ("admin", "Admin pages", 2, ["auth"], ["src/admin.py", "src/routes.py"]),
    ("api-docs", "API documentation", 1, ["search", "billing"], ["docs/api.md"]),
    ("e2e", "End-to-end tests", 3, ["notify", "admin", "billing"], ["tests/test_e2e.py"]),
    ("release", "Release notes", 1, ["e2e", "api-docs"], ["CHANGELOG.md"]),
]
FLAKY_TASK = "billing"
SECONDS_PER_POINT = 1.6


def make_demo(path: Path, speed: float = 1.0) -> Path:
    """Create the demo repository at ``path`` (which must not exist or be empty); the epic file's path."""
    path.mkdir(parents=True, exist_ok=True)
    if any(path.iterdir()):
        raise FileExistsError(f"{path} is not empty")
    (path / "src").mkdir()
    (path / "src" / "__init__.py").write_text("")
    (path / "src" / "routes.py").write_text("ROUTES = []\n")
    (path / "README.md").write_text("# demo shop\n\nA sample project for `waveui demo`.\n")
    (path / ".gitignore").write_text(".venv/\nnode_modules/\n")
    repository = init_repository(path)
    identity = ["-c", "user.name=waveui demo", "-c", "user.email=demo@waveui.invalid"]
    repository.run("add", "-A")
    repository.run(*identity, "commit", "-q", "-m", "Start of the demo shop")
    agent = f"{shlex.quote(sys.executable)} -m waveui.frontends.demo --speed {speed:g}"
    epic = {
        "epic": {
            "name": "demo-shop",
            "max_parallel": 4,
            "conflicts": "serialise",
            "command": agent,
            "retries": 0,
        },
        "task": [],
    }
    for task_id, title, points, requires, files in TASKS:
        row = {"id": task_id, "title": title, "prompt": f"{title} for the demo shop", "story_points": points,
               "requires": requires, "affected_files": files}
        if task_id == FLAKY_TASK:
            row["retries"] = 1
        epic["task"].append(row)
    target = path / "waveui.toml"
    target.write_text("# The sample epic of `waveui demo`; every task runs a simulated agent.\n"
                      + tomli_w.dumps(epic))
    return target


def agent(speed: float = 1.0) -> int:
    """A stand-in for a coding agent: works a while, reports progress and cost, edits its files."""
    task_id = os.environ.get("WAVEUI_TASK_ID", "task")
    attempt = int(os.environ.get("WAVEUI_ATTEMPT", "1"))
    points = next((p for t, _, p, _, _ in TASKS if t == task_id), 1)
    files = [f for f in os.environ.get("WAVEUI_AFFECTED_FILES", "").splitlines() if f]
    rng = random.Random(f"{task_id}-{attempt}")
    steps = 5
    cost = 0.0
    print(f"agent: working on {task_id!r} (attempt {attempt})", flush=True)
    for step in range(1, steps + 1):
        time.sleep(points * SECONDS_PER_POINT / steps / speed * rng.uniform(0.7, 1.3))
        cost += points * rng.uniform(0.01, 0.03)
        print(f"thinking about step {step} of {steps}…", flush=True)
        print(f'::waveui progress={100 * step // steps} cost={cost:.3f} iteration={step} '
              f'message="step {step}/{steps}"', flush=True)
        if task_id == FLAKY_TASK and attempt == 1 and step == 3:
            print("agent: the payment sandbox timed out; giving up on this attempt", flush=True)
            return 1
    for name in files:
        target = Path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("a", encoding="utf-8") as out:
            out.write(f"# {task_id}: {os.environ.get('WAVEUI_TITLE', '')}\n")
    print(f"agent: wrote {', '.join(files) or 'nothing'}", flush=True)
    return 0


if __name__ == "__main__":
    speed = float(sys.argv[sys.argv.index("--speed") + 1]) if "--speed" in sys.argv else 1.0
    sys.exit(agent(speed))
