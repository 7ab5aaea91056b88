"""The store contract: every backend (SQLite, DynamoDB on moto) passes these same tests."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from agent.store import StoreError, SyncRun

T0 = datetime(2026, 5, 13, 12, 0, tzinfo=UTC)


def test_next_task_is_highest_priority_then_oldest_with_dependencies_done(store) -> None:
    a = store.add_task("a", priority=1, now=T0)
    b = store.add_task("b", priority=5, depends_on=[a.id], now=T0 + timedelta(seconds=1))
    c = store.add_task("c", priority=1, now=T0 + timedelta(seconds=2))
    assert store.next_ready_task().id == a.id  # b waits for a; a is older than c
    store.set_task_status(a.id, "done")
    assert store.next_ready_task().id == b.id
    store.set_task_status(b.id, "done")
    assert store.next_ready_task().id == c.id
    store.set_task_status(c.id, "running")
    assert store.next_ready_task() is None


def test_reopening_a_dependency_makes_its_dependents_wait_again(store) -> None:
    a = store.add_task("a", now=T0)
    b = store.add_task("b", depends_on=[a.id], now=T0 + timedelta(seconds=1))
    store.set_task_status(a.id, "done")
    assert store.next_ready_task().id == b.id
    store.set_task_status(a.id, "ready")
    assert store.next_ready_task().id == a.id


def test_a_dependency_on_a_done_task_does_not_block(store) -> None:
    a = store.add_task("a", now=T0)
    store.set_task_status(a.id, "done")
    b = store.add_task("b", depends_on=[a.id], now=T0 + timedelta(seconds=1))
    assert store.next_ready_task().id == b.id
    assert store.get_task(b.id).depends_on == [a.id]


def test_needs_you_tasks_are_never_picked(store) -> None:
    store.add_task("answer me", kind="needs_you", status="needs_you")
    assert store.next_ready_task() is None


def test_a_blocked_task_resumes_when_its_question_is_answered(store) -> None:
    work = store.add_task("work", now=T0)
    question = store.add_task("which port?", kind="needs_you", status="needs_you", now=T0)
    store.add_dependency(work.id, question.id)
    store.set_task_status(work.id, "blocked", note="asked which port")
    assert store.next_ready_task() is None
    store.set_task_status(question.id, "done")
    resumed = store.get_task(work.id)
    assert resumed.status == "ready"
    assert [n["text"] for n in resumed.notes] == ["asked which port"]
    assert store.next_ready_task().id == work.id


def test_a_dependency_cycle_is_refused(store) -> None:
    a = store.add_task("a")
    b = store.add_task("b", depends_on=[a.id])
    with pytest.raises(StoreError, match="cycle"):
        store.add_dependency(a.id, b.id)


def test_unknown_dependency_is_refused(store) -> None:
    with pytest.raises(StoreError, match="dependency 99"):
        store.add_task("x", depends_on=[99])


def test_bad_task_fields_are_refused_with_the_field_named(store) -> None:
    with pytest.raises(StoreError, match="title"):
        store.add_task("  ")
    with pytest.raises(StoreError, match="status"):
        store.add_task("x", status="later")
    with pytest.raises(StoreError, match="priority"):
        store.add_task("x", priority=10**12)
    with pytest.raises(StoreError, match="no task 42"):
        store.set_task_status(42, "done")


def test_notes_keep_their_order_and_update_the_task(store) -> None:
    t = store.add_task("t", now=T0)
    store.add_note(t.id, "first", now=T0 + timedelta(minutes=1))
    store.set_task_status(t.id, "ready", note="second", now=T0 + timedelta(minutes=2))
    got = store.get_task(t.id)
    assert [n["text"] for n in got.notes] == ["first", "second"]
    assert got.updated == T0 + timedelta(minutes=2)


def test_list_tasks_filters_by_status_in_id_order(store) -> None:
    a = store.add_task("a")
    b = store.add_task("b")
    c = store.add_task("c")
    store.set_task_status(b.id, "done")
    assert [t.id for t in store.list_tasks()] == [a.id, b.id, c.id]
    assert [t.id for t in store.list_tasks(["ready"])] == [a.id, c.id]


def test_sessions_are_listed_by_start_within_the_window(store) -> None:
    t = store.add_task("t")
    s1 = store.start_session(t.id, now=T0, owner="me")
    s2 = store.start_session(t.id, now=T0 + timedelta(hours=1))
    store.update_session(s1.id, turns=7, input_tokens=100, output_tokens=20)
    store.finish_session(
        s1.id,
        "max_turns",
        turns=30,
        input_tokens=900,
        output_tokens=80,
        exit_code=1,
        now=T0 + timedelta(minutes=5),
    )
    got = store.list_sessions(since=T0, until=T0 + timedelta(hours=1))
    assert [s.id for s in got] == [s1.id]
    assert (got[0].outcome, got[0].turns, got[0].exit_code, got[0].owner) == (
        "max_turns",
        30,
        1,
        "me",
    )
    assert got[0].input_tokens == 900 and got[0].output_tokens == 80
    assert [s.id for s in store.list_sessions(outcomes=["running"])] == [s2.id]
    assert [s.id for s in store.list_sessions()] == [s1.id, s2.id]


def test_a_running_session_keeps_its_recorded_progress(store) -> None:
    s = store.start_session(None, now=T0)
    store.update_session(s.id, turns=12, input_tokens=5, output_tokens=6)
    (got,) = store.list_sessions()
    assert (got.outcome, got.turns, got.input_tokens, got.output_tokens) == ("running", 12, 5, 6)


def test_an_unknown_outcome_is_refused(store) -> None:
    s = store.start_session(None)
    with pytest.raises(StoreError, match="outcome"):
        store.finish_session(s.id, "exploded")


def test_only_one_owner_holds_the_lease_until_it_expires(store) -> None:
    assert store.acquire_lease("sessions", "a", ttl=60, now=T0) is not None
    assert store.acquire_lease("sessions", "b", ttl=60, now=T0 + timedelta(seconds=30)) is None
    renewed = store.acquire_lease("sessions", "a", ttl=60, now=T0 + timedelta(seconds=30))
    assert renewed.expires == T0 + timedelta(seconds=90) and renewed.acquired == T0
    assert store.acquire_lease("sessions", "b", ttl=60, now=T0 + timedelta(seconds=89)) is None
    taken = store.acquire_lease("sessions", "b", ttl=60, now=T0 + timedelta(seconds=90))
    assert taken.owner == "b"
    assert store.get_lease("sessions").owner == "b"


def test_a_lease_of_a_dead_holder_can_be_replaced_and_released(store) -> None:
    store.acquire_lease("sessions", "dead", ttl=600, now=T0)
    assert store.acquire_lease("sessions", "new", ttl=60, now=T0, replace="someone-else") is None
    assert store.acquire_lease("sessions", "new", ttl=60, now=T0, replace="dead").owner == "new"
    assert store.release_lease("sessions", "dead") is False
    assert store.release_lease("sessions", "new") is True
    assert store.get_lease("sessions") is None


def test_sync_runs_newest_first(store) -> None:
    for i in range(3):
        store.record_sync_run(SyncRun(started=T0 + timedelta(minutes=30 * i), outcome="ok", rows=i))
    runs = store.list_sync_runs(limit=2)
    assert [r.rows for r in runs] == [2, 1]


def test_incident_lifecycle(store) -> None:
    inc = store.open_incident("sheet-sync-token", {"status": "400"}, "3 failures in 90m")
    inc = store.update_incident(
        inc.id, status="remediating", remediation={"status": "successful", "seconds": 3.5}
    )
    inc = store.update_incident(inc.id, status="resolved", cause="revoked_or_expired")
    assert inc.status == "resolved" and inc.resolved is not None
    assert inc.remediations == [{"status": "successful", "seconds": 3.5}]
    assert inc.group == {"status": "400"}
    assert store.list_incidents(["open"]) == []
    assert [i.id for i in store.list_incidents()] == [inc.id]


def test_purge_keeps_open_work_and_what_it_waits_for(store) -> None:
    old = datetime(2020, 1, 1, tzinfo=UTC)
    done = store.add_task("old done", now=old)
    store.set_task_status(done.id, "done", now=old)
    needed = store.add_task("old done, still needed", now=old)
    store.set_task_status(needed.id, "done", now=old)
    keep = store.add_task("old open", depends_on=[needed.id], now=old)
    store.record_sync_run(SyncRun(started=old, finished=old, outcome="ok"))
    s = store.start_session(keep.id, now=old)
    store.finish_session(s.id, "completed", now=old)
    running = store.start_session(keep.id, now=old)
    removed = store.purge(datetime(2021, 1, 1, tzinfo=UTC))
    assert removed == 3
    assert store.get_task(done.id) is None
    assert store.get_task(keep.id) is not None and store.get_task(needed.id) is not None
    assert [x.id for x in store.list_sessions()] == [running.id]


def test_two_writers_finishing_both_dependencies_at_once_release_the_waiting_task(
    store, open_another
) -> None:
    def finish(task_id: int, start: threading.Barrier, errors: list) -> None:
        handle = open_another()  # its own connection, in its own thread
        try:
            start.wait()
            handle.set_task_status(task_id, "done")
        except Exception as exc:
            errors.append(exc)
        finally:
            handle.close()

    for _ in range(5):
        a = store.add_task("a")
        b = store.add_task("b")
        c = store.add_task("c", depends_on=[a.id, b.id])
        start, errors = threading.Barrier(2), []
        writers = [threading.Thread(target=finish, args=(t, start, errors)) for t in (a.id, b.id)]
        for w in writers:
            w.start()
        for w in writers:
            w.join(30)
        assert errors == []
        assert store.next_ready_task().id == c.id
        store.set_task_status(c.id, "done")


def test_a_task_that_yields_goes_behind_the_other_ready_tasks_of_its_priority(store):
    a = store.add_task("endless")
    b = store.add_task("b")
    c = store.add_task("c")
    urgent = store.add_task("urgent", priority=5)
    store.set_task_status(urgent.id, "done")
    assert store.next_ready_task().id == a.id
    store.set_task_status(a.id, "running")
    store.yield_task(a.id)
    store.set_task_status(a.id, "ready")
    assert store.next_ready_task().id == b.id
    store.set_task_status(b.id, "running")
    store.yield_task(b.id)  # b hits the cap too: behind a
    store.set_task_status(b.id, "ready")
    assert store.next_ready_task().id == c.id
    store.set_task_status(c.id, "done")
    assert store.next_ready_task().id == a.id  # round robin: a, then b
    store.set_task_status(a.id, "running")
    store.yield_task(a.id)
    store.set_task_status(a.id, "ready")
    assert store.next_ready_task().id == b.id
    # A higher priority still comes first; a new task of the same priority gets a turn first.
    d = store.add_task("new")
    assert store.next_ready_task().id == d.id
    hi = store.add_task("high", priority=1)
    assert store.next_ready_task().id == hi.id
