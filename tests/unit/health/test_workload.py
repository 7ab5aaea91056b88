"""Workload facts from a real SQLite store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.health.workload import workload
from agent.store import SyncRun, open_store

NOW = datetime(2026, 5, 13, 9, 0, tzinfo=UTC)


def test_workload_counts_sessions_turn_caps_queue_needs_you_sync_and_incidents(settings_factory):
    s = settings_factory()
    with open_store(s) as store:
        t1 = store.add_task("build crew page", now=NOW - timedelta(days=1))
        store.add_task("e-signature", now=NOW - timedelta(days=1))
        store.add_task("which domain?", status="needs_you", kind="needs_you", now=NOW)
        for minute, outcome, turns in (
            (0, "max_turns", 30),
            (2, "completed", 12),
            (5, "max_turns", 30),
        ):
            sess = store.start_session(t1.id, now=NOW.replace(hour=0, minute=minute))
            store.finish_session(sess.id, outcome, turns=turns, exit_code=1 if turns == 30 else 0,
                                 now=NOW.replace(hour=0, minute=minute + 1))  # fmt: skip
        old = store.start_session(t1.id, now=NOW - timedelta(days=2))
        store.finish_session(old.id, "max_turns", turns=30, now=NOW - timedelta(days=2))
        store.record_sync_run(SyncRun(started=NOW - timedelta(days=6), outcome="ok", rows=40))
        store.record_sync_run(SyncRun(started=NOW - timedelta(hours=1), outcome="credential_error"))
        store.open_incident("sheet-sync-token", {"unit": "port-sheet-sync.service"}, now=NOW)
    w = workload(s, days=7, now=NOW)
    assert w["checked"] is True
    assert (w["sessions_today"], w["sessions_left"], w["turn_cap_hits_today"]) == (3, 2, 2)
    assert w["turn_cap_hits_window"] == 3
    assert w["queue_depth"] == 2
    assert [t["title"] for t in w["needs_you"]] == ["which domain?"]
    assert w["last_successful_sync"] == "2026-05-07T09:00:00.000000Z"
    assert w["last_sync"]["outcome"] == "credential_error"
    assert [i["rule"] for i in w["open_incidents"]] == ["sheet-sync-token"]


def test_absent_store_is_not_created_by_the_audit(settings_factory):
    s = settings_factory()
    w = workload(s, days=7, now=NOW)
    assert w == {"checked": False, "why": f"no store at {s.store.path}"}
    assert not Path(s.store.path).exists()
