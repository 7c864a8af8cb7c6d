"""The task filter: state groups, text, and how it combines."""

from __future__ import annotations

from waveui.run.state import replay
from waveui.frontends.tui.look import STATE_GROUPS, TaskFilter
from waveui.frontends.tui.sample_run import sample_events


def tasks():
    return replay(sample_events()).tasks


def ids(task_filter: TaskFilter) -> set[str]:
    return {t.id for t in tasks().values() if task_filter.matches(t)}


def test_no_filter_matches_everything():
    assert ids(TaskFilter()) == set(tasks())
    assert not TaskFilter().active


def test_text_matches_id_title_and_message_ignoring_case():
    assert ids(TaskFilter("CART")) == {"cart-service", "cart-ui"}
    assert ids(TaskFilter("webhook")) == {"payment-client"}  # its progress message
    assert ids(TaskFilter("Release")) == {"release-notes"}


def test_groups_cycle_back_to_all():
    task_filter = TaskFilter()
    seen = []
    for _ in STATE_GROUPS:
        task_filter = task_filter.next_group()
        seen.append(task_filter.group)
    assert seen == ["running", "problems", "waiting", "done", "all"]


def test_group_and_text_combine():
    assert ids(TaskFilter("search", "problems")) == {"search-index", "search-ui"}
    assert ids(TaskFilter("", "running")) == {"cart-service", "payment-client", "rate-limits", "order-emails"}
    assert TaskFilter("x", "done").describe() == "done “x”"


def test_states_this_version_does_not_know_are_still_listed():
    task = tasks()["cart-service"]
    task.state = "warming-up"  # a state from a newer engine
    assert TaskFilter().matches(task)
    assert not TaskFilter("", "running").matches(task)
