"""Deterministic scripted runs, for previews, screenshots, tests and benchmarks.

:func:`sample_events` is a small epic caught mid-run: some tasks done, some running,
one paused, one verifying, a failure with a blocked dependent, a merge
conflict, a retried task, declared file overlaps and an undeclared change.
Times start at :data:`START`; give the app ``clock=lambda: NOW`` to see it
exactly as the screenshots do. :func:`large_run_started` makes the start of
a big random epic (thousands of tasks) for load tests.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

from waveui.run.events import (
    Event,
    LimitChanged,
    MetricsSample,
    RunStarted,
    TaskInfo,
    TaskProgress,
    TaskStateChanged,
)
from waveui.plan.critical import critical_path
from waveui.plan.graph import TaskGraph

START = 1_750_000_000.0
NOW = START + 1_500.0
GIB = 1 << 30

# id, title, story points, requires, affected files
TASKS: list[tuple[str, str, float, list[str], list[str]]] = [
    ("api-schema", "OpenAPI schema for checkout", 3, [], ["api/openapi.yaml"]),
    ("db-migration", "Orders and payments tables", 5, [], ["src/db/migrations/*"]),
    ("design-tokens", "Colour and spacing tokens", 2, [], ["web/tokens.css"]),
    ("ci-cache", "Cache dependencies in CI", 1, [], [".github/workflows/ci.yml"]),
    ("user-model", "User model and repository", 3, ["db-migration"], ["src/models/user.py"]),
    ("cart-service", "Cart service with pricing rules", 5, ["api-schema", "db-migration"], ["src/cart/"]),
    ("payment-client", "Payment provider client", 3, ["api-schema"], ["src/payments/", "src/api/middleware.py"]),
    ("rate-limits", "Rate limits on public endpoints", 2, ["api-schema"], ["src/api/middleware.py"]),
    ("search-index", "Product search index", 2, ["api-schema"], ["src/search/"]),
    ("analytics-events", "Emit checkout analytics events", 2, ["ci-cache"], ["src/events/bus.py"]),
    ("theme-switch", "Light and dark theme switch", 2, ["design-tokens"], ["web/theme.ts"]),
    ("checkout-api", "Checkout endpoints", 5, ["cart-service", "user-model", "payment-client"],
     ["src/api/checkout.py"]),
    ("cart-ui", "Cart page", 3, ["cart-service", "theme-switch"], ["web/cart/"]),
    ("order-emails", "Order confirmation emails", 2, ["user-model"], ["src/emails/", "src/events/bus.py"]),
    ("search-ui", "Search box and results", 2, ["search-index", "theme-switch"], ["web/search/"]),
    ("checkout-ui", "Checkout page", 5, ["checkout-api", "cart-ui"], ["web/checkout/"]),
    ("e2e-tests", "End-to-end checkout tests", 3, ["checkout-api"], ["e2e/"]),
    ("api-docs", "API reference pages", 1, ["checkout-api"], ["docs/api/"]),
    ("release-notes", "Release notes", 1, ["checkout-ui", "e2e-tests", "api-docs"], ["CHANGELOG.md"]),
]

CONFLICTS = [
    {"tasks": ["payment-client", "rate-limits"], "files": ["src/api/middleware.py"], "handling": "lock"},
    {"tasks": ["analytics-events", "order-emails"], "files": ["src/events/bus.py"], "handling": "defer"},
]


def task_infos(tasks: list[tuple[str, str, float, list[str], list[str]]] = TASKS) -> list[TaskInfo]:
    """Tasks (the sample epic's by default) with waves, dispatch ranks and the critical path worked out."""
    ids = [t[0] for t in tasks]
    index = {tid: i for i, tid in enumerate(ids)}
    graph = TaskGraph.from_edges(ids, [t[2] for t in tasks], [[index[d] for d in t[3]] for t in tasks])
    order = graph.topological_order()
    levels = graph.levels(order)
    critical = critical_path(graph, order)
    return [
        TaskInfo(tid, title, list(requires), points, list(files), levels[i], i, i in critical.members)
        for i, (tid, title, points, requires, files) in enumerate(tasks)
    ]


def large_run_started(n: int, seed: int = 1, limit: int = 16) -> RunStarted:
    """The start of a random epic of ``n`` tasks: up to 3 dependencies each, among the 40 tasks before it."""
    rng = random.Random(seed)
    tasks = []
    for i in range(n):
        window = range(max(0, i - 40), i)
        requires = [f"task-{j:05d}" for j in rng.sample(window, min(len(window), rng.choice((0, 1, 1, 2, 3))))]
        tasks.append((f"task-{i:05d}", f"Generated task number {i}", rng.choice((1, 2, 3, 5, 8)), requires,
                      [f"src/module{i % 97}/file{i % 13}.py"]))
    return RunStarted(t=START, run_id="generated", epic=f"generated-{n}", branch=f"waveui/generated-{n}",
                      max_parallel=limit, limit=limit, tasks=task_infos(tasks))


def _state(t: float, task: str, state: str, **fields) -> TaskStateChanged:
    return TaskStateChanged(t=START + t, task=task, state=state, **fields)


def _run(t: float, task: str, slot: int, attempt: int = 1) -> TaskStateChanged:
    # Made-up pids: their start time never matches a real process, so they read as gone.
    return _state(t, task, "running", attempt=attempt, worker=slot, worktree=f".waveui/worktrees/w{slot}",
                  pid=41000 + int(t) % 7919, pid_started=START + t)


def _finish(t: float, task: str, cost: float, files: list[str], undeclared: list[str] | None = None) -> list[Event]:
    return [
        TaskProgress(t=START + t - 1, task=task, progress=100.0, cost=cost),
        _state(t - 0.5, task, "merging", attempt=1),
        _state(t, task, "done", attempt=1, files=files, undeclared=undeclared or [], commit="c0ffee"),
    ]


def _samples() -> list[Event]:
    return [
        MetricsSample(t=START + 25.0 * i, cpu=55 + 30 * math.sin(i / 5) + 8 * math.sin(i * 1.7),
                      memory_available=(6 + 2 * math.cos(i / 7)) * GIB,
                      memory_percent=58 + 14 * math.sin(i / 9))
        for i in range(60)
    ]


def _story() -> list[Event]:
    events: list[Event] = [
        _run(1, "api-schema", 1), _run(1, "db-migration", 2), _run(2, "design-tokens", 3), _run(2, "ci-cache", 4),
        *_finish(150, "ci-cache", 0.21, [".github/workflows/ci.yml"]),
        _run(151, "analytics-events", 4),
        *_finish(300, "design-tokens", 0.34, ["web/tokens.css"]),
        _run(301, "theme-switch", 3),
        *_finish(420, "api-schema", 0.62, ["api/openapi.yaml"]),
        _run(421, "payment-client", 1),
        _state(430, "analytics-events", "verifying", attempt=1, worker=4),
        _state(440, "analytics-events", "merging", attempt=1),
        _state(445, "analytics-events", "conflicted", attempt=1, reason="merge conflict",
               files=["src/events/bus.py", "src/events/schema.py"]),
        _run(446, "search-index", 4),
        *_finish(600, "theme-switch", 0.40, ["web/theme.ts", "web/tokens.css"], ["web/tokens.css"]),
        _run(601, "rate-limits", 3),
        *_finish(700, "db-migration", 1.05, ["src/db/migrations/0042_orders.sql"]),
        _run(701, "cart-service", 2),
        _state(760, "search-index", "failed", attempt=1, exit_code=1, reason="verify failed: 3 tests failed"),
        _state(760.5, "search-ui", "blocked", reason="search-index failed"),
        _run(761, "user-model", 4),
        _state(820, "payment-client", "failed", attempt=1, exit_code=2, reason="timeout after 20m"),
        _run(830, "payment-client", 1, attempt=2),
        *_finish(1000, "user-model", 0.71, ["src/models/user.py", "src/db/seed.sql"], ["src/db/seed.sql"]),
        _run(1001, "order-emails", 4),
        LimitChanged(t=START + 1100, limit=4, reason="memory 86%: lowered"),
        TaskProgress(t=START + 1200, task="order-emails", progress=20, cost=0.12, iterations=2, message="templates"),
        _state(1210, "order-emails", "paused", attempt=1, worker=4),
        TaskProgress(t=START + 1300, task="rate-limits", progress=90, cost=0.44, iterations=6),
        _state(1310, "rate-limits", "verifying", attempt=1, worker=3),
        TaskProgress(t=START + 1400, task="payment-client", progress=40, cost=0.38, iterations=4,
                     message="retrying the webhook signature check"),
        TaskProgress(t=START + 1450, task="cart-service", progress=64, cost=0.93, iterations=9,
                     message="writing tests for discounts"),
    ]
    return events


def sample_events() -> list[Event]:
    """The whole scripted run, in time order."""
    start = RunStarted(t=START, run_id="20250615-demo", epic="checkout-v2", branch="waveui/checkout-v2",
                       base="main", max_parallel=6, limit=4, tasks=task_infos(), conflicts=CONFLICTS,
                       critical_length=19.0)
    story = sorted([*_story(), *_samples()], key=lambda e: e.t)
    return [start, *story]


SAMPLE_LOGS = {
    "cart-service": (
        "$ claude -p \"$WAVEUI_PROMPT\"\n"
        "::waveui progress=10 message=\"reading the cart module\"\n"
        "Reading src/cart/service.py, src/cart/pricing.py\n"
        "Plan: 1. pricing rules as data  2. apply in order  3. tests for stacking\n"
        "::waveui progress=35 cost=0.41 iteration=4 message=\"pricing rules\"\n"
        "Edited src/cart/pricing.py (+84 -12)\n"
        "Edited src/cart/service.py (+23 -5)\n"
        "\x1b[1m$ pytest -q tests/cart\x1b[0m\n"
        "....F...\n"
        "FAILED tests/cart/test_pricing.py::test_stacked_percentages - assert 81.0 == 90.0\n"
        "Stacked percentages must compound, not add: fixing apply_rules()\n"
        "Edited src/cart/pricing.py (+6 -3)\n"
        "$ pytest -q tests/cart\n"
        "........                                                    [100%]\n"
        "8 passed in 0.42s\n"
        "::waveui progress=64 cost=0.93 iteration=9 message=\"writing tests for discounts\"\n"
        "Writing tests/cart/test_discounts.py\n"
    ),
    "payment-client": (
        "── attempt 2 ──\n"
        "::waveui progress=5 message=\"reading the provider's webhook docs\"\n"
        "Attempt 1 timed out waiting on the sandbox; using the recorded fixtures this time.\n"
        "Edited src/payments/client.py (+120 -0)\n"
        "Edited src/payments/webhooks.py (+64 -0)\n"
        "$ pytest -q tests/payments\n"
        "...F\n"
        "FAILED tests/payments/test_webhooks.py::test_signature - InvalidSignature\n"
        "::waveui progress=40 cost=0.38 iteration=4 message=\"retrying the webhook signature check\"\n"
    ),
    "search-index": (
        "$ pytest -q tests/search\n"
        "..FF.F\n"
        "FAILED tests/search/test_index.py::test_prefix_match - KeyError: 'sku'\n"
        "FAILED tests/search/test_index.py::test_reindex - TimeoutError\n"
        "FAILED tests/search/test_ranking.py::test_boost - assert 0.4 > 0.7\n"
        "3 failed, 3 passed in 12.31s\n"
    ),
}


def write_sample_logs(folder: Path) -> None:
    """Write the sample run's task logs into ``folder`` (a ``log_dir`` for the app)."""
    for task, text in SAMPLE_LOGS.items():
        (Path(folder) / f"{task}.log").write_text(text, encoding="utf-8")
