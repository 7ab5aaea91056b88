"""Reminders, needs-you tasks and the credential forecast on a controllable clock.

Real state database, real SQLite store, real outbox; only the clock and the forecast's answer
are the test's (the forecast itself is ``jada-agent credentials forecast``, tested with the
credentials).
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime

import pytest

from agent.remediator.alerts import Alerts
from agent.remediator.outbox import Outbox
from agent.remediator.state import StateDB
from agent.store import open_store

H = 3600.0


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def world(tmp_path, settings_factory):
    s = settings_factory(remediator={"notify": {"webhook_url": "http://127.0.0.1:9/x"}})
    (tmp_path / "state").mkdir(exist_ok=True)
    state = StateDB(s.remediator.state_db)
    clock = Clock(datetime(2026, 12, 1, 8, 0, tzinfo=UTC).timestamp())
    forecasts: list[dict] = []
    outbox = Outbox(state, s, clock=clock)
    alerts = Alerts(s, state, outbox, clock=clock, forecast=lambda: forecasts.pop(0))
    store = open_store(s)
    yield s, state, clock, outbox, alerts, store, forecasts
    store.close()
    state.close()


def events(state: StateDB) -> list[tuple[str, str]]:
    return [(e, th) for e, th in state.db.execute("SELECT event, thread FROM outbox ORDER BY id")]


def notices(state: StateDB) -> list[str]:
    return [k for (k,) in state.db.execute("SELECT key FROM notice ORDER BY key")]


def test_an_escalated_incident_is_recalled_every_twelve_hours_until_resolved(world):
    _s, state, clock, _outbox, alerts, store, _ = world
    inc = store.open_incident(
        "sheet-sync-token", {"status": "400"}, now=datetime.fromtimestamp(clock.t, UTC)
    )
    store.update_incident(inc.id, status="escalated")
    alerts.incident_reminders(store, clock.t)  # first seen: the clock starts
    clock.t += 11.9 * H
    alerts.incident_reminders(store, clock.t)
    assert events(state) == []
    clock.t += 0.2 * H
    alerts.incident_reminders(store, clock.t)
    clock.t += 12 * H
    alerts.incident_reminders(store, clock.t)
    assert events(state) == [("reminder", f"incident-{inc.id}@test-host")] * 2
    body = json.loads(state.db.execute("SELECT body FROM outbox ORDER BY id DESC").fetchone()[0])
    assert "open for 24h06m" in body["text"]
    assert notices(state) == [f"remind:incident:{inc.id}"]
    store.update_incident(inc.id, status="resolved")
    clock.t += 48 * H
    alerts.incident_reminders(store, clock.t)
    assert len(events(state)) == 2
    assert notices(state) == []  # a closed incident's row is gone: the table holds what is open


def test_a_daemon_needs_you_task_is_announced_once_and_recalled(world):
    _s, state, clock, _outbox, alerts, store, _ = world
    t = store.add_task("Which branch?", body="main or dev", kind="needs_you", status="needs_you")
    alerts.tasks(store, clock.t)
    alerts.tasks(store, clock.t + 60)
    assert events(state) == [("needs_you_task", f"task-{t.id}@test-host")]
    alerts.tasks(store, clock.t + 12 * H)
    assert events(state)[-1] == ("reminder", f"task-{t.id}@test-host")
    assert notices(state) == [f"task:{t.id}"]
    store.set_task_status(t.id, "done")
    alerts.tasks(store, clock.t + 48 * H)
    assert len(events(state)) == 2
    assert notices(state) == []


def test_a_task_made_by_a_remediation_is_left_to_its_incident_message(world):
    _s, state, clock, _outbox, alerts, store, _ = world
    t = store.add_task("Re-authorize", kind="needs_you", status="needs_you")
    inc = store.open_incident("sheet-sync-token", {})
    # while a playbook runs, a new task waits: the playbook may be creating it
    state.add_running("r1", inc.id, "sheet-sync-token", clock.t, "/nonexistent")
    alerts.tasks(store, clock.t)
    assert events(state) == []
    state.remove_running("r1")
    store.update_incident(
        inc.id, remediation={"ident": "r1", "actions": [f"needs-you task {t.id}: Re-authorize"]}
    )
    alerts.tasks(store, clock.t + 60)
    alerts.tasks(store, clock.t + 13 * H)
    assert events(state) == []


def test_testing_mode_forecast_warns_before_the_first_failure_once_a_day(world, tmp_path):
    _s, state, clock, _outbox, alerts, _store, forecasts = world
    token = tmp_path / "state" / "secrets" / "google-token.json"
    token.parent.mkdir(parents=True, exist_ok=True)
    token.write_text("{}")
    fc = {
        "expires_at": "2026-12-08T08:00:00Z",
        "days_left": 6.9,
        "reason": "7-day token: the OAuth app is in Testing publishing status",
    }
    forecasts += [dict(fc), dict(fc), dict(fc, days_left=30)]
    alerts.forecast(clock.t)
    alerts.forecast(clock.t + 3 * H)  # not asked again the same day
    assert events(state) == [("credential_forecast", "forecast@test-host")]
    alerts.forecast(clock.t + 25 * H)  # next day, same expiry: not repeated
    assert len(events(state)) == 1 and len(forecasts) == 1
    body = json.loads(state.db.execute("SELECT body FROM outbox").fetchone()[0])
    assert "Testing publishing status" in body["text"]
    assert "ansible-playbook playbooks/reauth.yml -l test-host" in body["text"]


def test_give_up_after_the_deadline_with_exponential_backoff(world):
    from agent.remediator import notify as n

    _s, _state, clock, outbox, _alerts, _store, _ = world
    outbox.enqueue(n.test_notice("test-host"))
    delays = []
    while True:
        (row,) = outbox.due("webhook", clock.t + 10**9)
        before = clock.t
        gave_up = outbox.attempt_failed(row, "webhook unreachable", clock.t)
        if gave_up:
            break
        nxt = outbox.next_due("webhook")
        delays.append(nxt - before)
        clock.t = nxt
    assert delays[:4] == [30, 60, 120, 240] and max(delays) == 1800
    assert 23 * H < clock.t - row.created <= 24 * H
    assert outbox.pending() == 0


def test_an_older_state_database_gets_the_outbox_by_migration(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    # the first outbox, before the title column
    db.executescript(
        "CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, event TEXT NOT NULL,"
        " incident_id INTEGER, thread TEXT NOT NULL, channel TEXT NOT NULL, dedup TEXT,"
        " body TEXT NOT NULL, created REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
        " next_attempt REAL NOT NULL, delivered REAL, failed REAL, last_error TEXT);"
        "INSERT INTO outbox (event, thread, channel, body, created, next_attempt)"
        " VALUES ('needs_person', 't', 'webhook', '{}', 1, 1);"
    )
    db.commit()
    db.close()
    state = StateDB(path)
    cols = {r[1] for r in state.db.execute("PRAGMA table_info(outbox)")}
    assert "title" in cols
    assert state.db.execute("SELECT event, title FROM outbox").fetchall() == [("needs_person", "")]
    state.close()


def test_a_clock_stepped_back_does_not_delay_a_retry_by_the_step(world):
    from agent.remediator import notify as n

    _s, _state, clock, outbox, _alerts, _store, _ = world
    outbox.enqueue(n.test_notice("test-host"))
    (row,) = outbox.due("webhook", clock.t)
    outbox.attempt_failed(row, "webhook unreachable", clock.t)  # retry in 30 s
    assert outbox.due("webhook", clock.t) == []
    clock.t -= 6 * H  # NTP steps the clock back six hours
    assert [r.id for r in outbox.due("webhook", clock.t)] == [row.id]


def test_a_summary_that_grew_while_it_was_sent_is_sent_again_with_the_final_count(
    tmp_path, settings_factory
):
    # A flood folds into one summary row; the sender read it (count N), and more folded in
    # before its answer came: marking it delivered would leave the person with N forever.
    from agent.remediator.notify import needs_person

    s = settings_factory(
        remediator={"notify": {"webhook_url": "http://127.0.0.1:9/x", "max_pending": 2}}
    )
    (tmp_path / "state").mkdir(exist_ok=True)
    state = StateDB(s.remediator.state_db)
    outbox = Outbox(state, s, clock=Clock(1000.0))
    (ch,) = outbox.channels

    def flood(ids: range) -> None:
        for i in ids:
            outbox.enqueue(needs_person("h", i, "r", {"job": str(i)}, "no playbook"))

    flood(range(1, 6))  # 2 rows, then a summary of 3
    (summary,) = [r for r in outbox.due(ch.name, 1000.0) if r.event == "overflow"]
    assert summary.body["payload"]["count"] == 3
    flood(range(6, 8))  # while it is on its way
    outbox.delivered(summary, 1001.0)
    (again,) = [r for r in outbox.due(ch.name, 1001.0) if r.event == "overflow"]
    assert again.body["payload"]["count"] == 5 and again.id == summary.id
    outbox.delivered(again, 1002.0)
    assert [r.event for r in outbox.due(ch.name, 1002.0)] == ["needs_person"] * 2
    state.close()
