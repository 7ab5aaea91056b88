"""The dashboard's task rules, the same for the command, the daemon and the playbooks."""

from __future__ import annotations

import pytest

from agent import dashboard
from agent.store import open_store


@pytest.fixture
def store_and_settings(settings_factory):
    settings = settings_factory()
    with open_store(settings) as store:
        yield store, settings


@pytest.mark.parametrize("status", ["ready", "running", "blocked"])
def test_reopen_refuses_a_task_that_is_still_open(store_and_settings, status) -> None:
    store, settings = store_and_settings
    task = store.add_task("build", status=status)
    with pytest.raises(dashboard.Refused, match=f"task {task.id} is {status}: only a failed"):
        dashboard.reopen(store, settings, task.id)
    assert store.get_task(task.id).status == status


def test_reopen_refuses_an_answered_needs_you_task(store_and_settings) -> None:
    # Reopened as "ready", a question for a person would be handed to a session.
    store, settings = store_and_settings
    question, _ = dashboard.raise_needs_you(store, "Pick a domain")
    dashboard.mark_done(store, settings, question.id, "a.com")
    with pytest.raises(dashboard.Refused, match="is a needs-you task"):
        dashboard.reopen(store, settings, question.id)
    assert store.get_task(question.id).status == "done"


def test_reopen_puts_a_failed_or_done_task_back_in_the_queue(store_and_settings) -> None:
    store, settings = store_and_settings
    failed = store.add_task("flaky", status="failed")
    done = store.add_task("again")
    dashboard.mark_done(store, settings, done.id)
    for task in (failed, done):
        assert dashboard.reopen(store, settings, task.id, "fixed").status == "ready"


def test_reopen_of_a_task_that_does_not_exist_says_so(store_and_settings) -> None:
    store, settings = store_and_settings
    with pytest.raises(dashboard.Refused, match="no task 42"):
        dashboard.reopen(store, settings, 42)


def test_a_needs_you_task_is_raised_once_until_answered(store_and_settings) -> None:
    store, settings = store_and_settings
    first, new = dashboard.raise_needs_you(store, "Re-authorise", "run X", priority=100)
    again, new_again = dashboard.raise_needs_you(store, "Re-authorise", "run X")
    third, _ = dashboard.raise_needs_you(store, "Re-authorise", "run Y")
    assert (new, new_again) == (True, False)
    assert first.id == again.id == third.id
    assert [n["text"] for n in third.notes] == ["raised again", "raised again: run Y"]
    dashboard.mark_done(store, settings, first.id)
    fresh, new = dashboard.raise_needs_you(store, "Re-authorise", "run Y")
    assert new and fresh.id != first.id


def test_an_ordinary_task_of_the_same_title_is_not_taken_for_the_question(
    store_and_settings,
) -> None:
    store, _settings = store_and_settings
    work = store.add_task("Re-authorise")
    question, new = dashboard.raise_needs_you(store, "Re-authorise")
    assert new and question.id != work.id and question.kind == "needs_you"
