"""The orchestrator loop on a controllable clock: budget, rollover, restarts, order, settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agent.config import ConfigError
from agent.daemon.loop import Daemon
from agent.dashboard import LEASE
from agent.store import open_store
from tests.fakes.anthropic import reply, tool_use
from tests.unit.daemon.conftest import log_of

DONE = reply(tool_use("complete_task", {"summary": "ok"}))


def test_the_budget_stops_sessions_and_rolls_over_at_midnight_utc(make_daemon, fake, clock) -> None:
    fake.set_default(DONE)
    d = make_daemon(sessions_per_day=2)
    for i in range(4):
        d.store.add_task(f"t{i}")
    assert d.step() is None and d.step() is None
    wait = d.step()  # 23:00 UTC, 2/2 spent: wait for the rollover
    assert len(d.store.list_sessions()) == 2
    assert wait == pytest.approx(3600, abs=1)
    assert "budget spent: 2/2 sessions today, next at 2026-05-14T00:00:00Z" in log_of(d)
    clock.advance(minutes=59, seconds=59)
    d.step()
    assert len(d.store.list_sessions()) == 2
    clock.advance(seconds=1)  # 00:00:00 UTC
    assert d.step() is None
    assert len(d.store.list_sessions()) == 3
    assert d.store.list_sessions()[-1].started == datetime(2026, 5, 14, tzinfo=UTC)


def test_a_restart_does_not_hand_out_a_fresh_day(make_daemon, fake) -> None:
    fake.set_default(DONE)
    first = make_daemon(sessions_per_day=2)
    for i in range(3):
        first.store.add_task(f"t{i}")
    first.step()
    first.step()
    first.store.release_lease(LEASE, first.owner)
    second = make_daemon(sessions_per_day=2)
    second.step()
    assert len(second.store.list_sessions()) == 2
    assert "budget spent: 2/2" in log_of(second)


def test_a_session_left_running_by_a_dead_daemon_is_interrupted_and_counts(
    make_daemon, fake, clock
) -> None:
    fake.set_default(DONE)
    d = make_daemon(sessions_per_day=2)
    t = d.store.add_task("was running")
    crashed = d.store.start_session(t.id, now=clock(), owner="otherhost:4242:dead")
    d.store.update_session(crashed.id, turns=9, input_tokens=50, output_tokens=5)
    d.store.set_task_status(t.id, "running")
    d.step()
    sessions = d.store.list_sessions()
    assert (sessions[0].outcome, sessions[0].turns, sessions[0].exit_code) == (
        "interrupted",
        9,
        143,
    )
    assert f"session {crashed.id} task {t.id} ended outcome=interrupted turns=9" in log_of(d)
    # The task was reopened and picked again; the interrupted session counted against the day.
    assert sessions[1].task_id == t.id and sessions[1].outcome == "completed"
    d.store.add_task("another")
    d.step()
    assert len(d.store.list_sessions()) == 2


def test_tasks_run_in_priority_order_after_their_dependencies(make_daemon, fake, clock) -> None:
    fake.set_default(DONE)
    d = make_daemon(sessions_per_day=10)
    base = d.store.add_task("base", priority=1, now=clock())
    top = d.store.add_task("top, after base", priority=9, depends_on=[base.id], now=clock())
    mid = d.store.add_task("mid", priority=5, now=clock())
    late = d.store.add_task("late", priority=5, now=clock() + timedelta(seconds=1))
    for _ in range(4):
        d.step()
    order = [s.task_id for s in d.store.list_sessions()]
    assert order == [mid.id, late.id, base.id, top.id]
    assert d.step() is not None  # nothing left: wait
    assert "no ready task: waiting" in log_of(d)


def test_needs_you_tasks_are_never_given_to_a_session(make_daemon, fake) -> None:
    d = make_daemon()
    d.store.add_task(
        "renew the token",
        body="run: ansible-playbook playbooks/reauth.yml",
        kind="needs_you",
        status="needs_you",
    )
    assert d.step() is not None
    assert d.store.list_sessions() == [] and fake.requests == []


def test_a_second_daemon_stands_by_while_the_first_holds_the_lease(make_daemon, fake) -> None:
    fake.set_default(DONE)
    first = make_daemon()
    first.store.add_task("a")
    first.step()
    second = make_daemon()
    second.store.add_task("b")
    assert second.step() == pytest.approx(first.d.lease_ttl / 3)
    assert "standing by" in log_of(second)
    assert {s.owner for s in second.store.list_sessions()} == {first.owner}


def test_the_retention_purge_runs_once_a_day(make_daemon, fake, clock) -> None:
    d = make_daemon()
    old = clock() - timedelta(days=400)
    t = d.store.add_task("ancient", now=old)
    d.store.set_task_status(t.id, "done", now=old)
    d.step()
    assert d.store.get_task(t.id) is None
    assert "purged 1 records older than 90 days" in log_of(d)


def test_bad_daemon_settings_name_the_key(daemon_settings) -> None:
    with pytest.raises(ConfigError, match=r"daemon\.command: expected a non-empty argv list"):
        daemon_settings(runner="command")
    with pytest.raises(
        ConfigError, match=r"daemon\.sessions_per_day: expected an integer of at least 1"
    ):
        daemon_settings(sessions_per_day=0)
    with pytest.raises(ConfigError, match=r"daemon\.max_turns: expected an integer"):
        daemon_settings(max_turns="thirty")
    with pytest.raises(ConfigError, match=r"daemon\.runner: expected one of anthropic, command"):
        daemon_settings(runner="openai")
    with pytest.raises(ConfigError, match=r"daemon\.workspace_root: expected an absolute path"):
        daemon_settings(workspace_root="relative/ws")
    settings = daemon_settings(wake_socket="/tmp/" + "x" * 120)
    with pytest.raises(
        ConfigError, match=r"daemon\.wake_socket: expected a socket path of at most"
    ):
        Daemon(settings, store=open_store(settings))


def test_an_unavailable_api_backs_off_instead_of_spending_the_day(make_daemon, fake, clock) -> None:
    d = make_daemon(error_backoff="15m")
    task = d.store.add_task("x")
    fake.fail(529, count=10)
    d.step()
    (s,) = d.store.list_sessions()
    assert (s.outcome, s.exit_code) == ("error", 75)
    assert d.step() == pytest.approx(900, abs=1)
    assert "Anthropic API unavailable: next session not before 2026-05-13T23:15:00Z" in log_of(d)
    assert len(d.store.list_sessions()) == 1
    fake.reset()
    fake.set_default(DONE)
    clock.advance(minutes=15)
    d.step()
    assert d.store.get_task(task.id).status == "done"


def test_a_task_that_errors_three_sessions_in_a_row_is_failed(make_daemon, fake) -> None:
    from tests.fakes.anthropic import error

    d = make_daemon(sessions_per_day=10)
    task = d.store.add_task("poison")
    fake.script([error(400, "prompt is too long")] * 3)
    for _ in range(3):
        d.step()
    assert [s.exit_code for s in d.store.list_sessions()] == [2, 2, 2]
    got = d.store.get_task(task.id)
    assert got.status == "failed" and "3 sessions in a row ended in error" in got.notes[-1]["text"]
    assert d.step() is not None  # nothing left to run: the budget is kept
    assert len(d.store.list_sessions()) == 3


def test_a_task_at_the_turn_cap_yields_to_the_other_ready_tasks_round_robin(
    make_daemon, fake, clock
) -> None:
    # The audited failure: a task that always hits the cap took all 5 sessions of the day
    # while 6 others waited. At the cap it now yields to the others of its priority.
    import subprocess
    import sys

    import yaml

    from agent import config
    from agent.dashboard import sessions_report

    fake.route("endless", [], then=reply(tool_use("list_files", {})))
    fake.set_default(DONE)
    d = make_daemon(sessions_per_day=5, max_turns=3)
    endless = d.store.add_task("endless", body="endless")
    others = [d.store.add_task(f"other {i}") for i in range(6)]
    for _ in range(5):
        assert d.step() is None
        clock.advance(minutes=1)
    ran = [s.task_id for s in d.store.list_sessions()]
    assert ran == [endless.id, others[0].id, others[1].id, others[2].id, others[3].id]
    report = sessions_report(d.store, d.settings, now=clock())
    (capped,) = report["tasks_hitting_cap"]
    assert capped["task"] == endless.id and capped["yielded_to"] == [others[0].id]
    assert "yields to the other ready tasks of its priority" in str(
        d.store.get_task(endless.id).notes
    )
    cfg = d.settings.store.path + ".yml"
    with open(cfg, "w") as fh:
        yaml.safe_dump(config.to_dict(d.settings), fh)
    shown = subprocess.run(
        [sys.executable, "-m", "agent", "-c", cfg, "sessions", "--days", "3650"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert (
        f"hit the cap: task {endless.id} (endless): 1 of 1 sessions;"
        f" yielded its turn to task {others[0].id}" in shown
    )
