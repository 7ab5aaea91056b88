"""``jada-agent tasks|status|sessions``: what a person and a playbook see."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import yaml

from agent.cli import main
from agent.store import open_store, utcnow


@pytest.fixture
def cli(tmp_path, capsys):
    cfg = tmp_path / "agent.yml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "state_dir": str(tmp_path / "state"),
                "store": {"path": str(tmp_path / "state" / "store.db")},
                "daemon": {"sessions_per_day": 5},
            }
        )
    )

    def run(*argv):
        code = main(["-c", str(cfg), *argv])
        out, err = capsys.readouterr()
        return code, out, err

    run.config = cfg
    return run


def test_tasks_add_prints_the_id_and_list_shows_it(cli) -> None:
    code, out, _ = cli("tasks", "add", "write the README", "--priority", "3")
    assert code == 0 and out.strip() == "1"
    code, out, _ = cli("tasks", "add", "publish", "--depends-on", "1", "--json")
    data = json.loads(out)
    assert (
        data["depends_on"] == [1] and data["status"] == "ready" and data["daemon_nudged"] is False
    )
    code, out, _ = cli("tasks", "list")
    assert "write the README" in out and "publish  (waits for 1)" in out
    cli("tasks", "done", "1")
    _, out, _ = cli("tasks", "list")
    assert "waits for" not in out


def test_a_needs_you_task_shows_its_command_in_list_show_and_status(cli) -> None:
    body = "The Google token was revoked.\nRun on your machine:\n  ansible-playbook playbooks/reauth.yml -l jada-1"
    _, out, _ = cli("tasks", "add", "Re-authorise the port sheet", "--needs-you", "--body", body)
    tid = out.strip()
    _, out, _ = cli("tasks", "list", "--status", "needs_you")
    assert "needs_you" in out and "ansible-playbook playbooks/reauth.yml -l jada-1" in out
    _, out, _ = cli("tasks", "show", tid)
    assert "(a task for a person)" in out and body in out
    _, out, _ = cli("status")
    assert "1 need you" in out and "reauth.yml -l jada-1" in out
    _, out, _ = cli("status", "--json")
    data = json.loads(out)
    assert data["needs_you"] == 1 and data["queue_depth"] == 0
    assert data["needs_you_tasks"][0]["body"] == body


def test_tasks_done_closes_and_unknown_ids_fail_clearly(cli) -> None:
    cli("tasks", "add", "x")
    code, out, _ = cli("tasks", "done", "1")
    assert code == 0 and "task 1 done" in out
    _, out, _ = cli("tasks", "list", "--status", "done", "--json")
    assert [t["id"] for t in json.loads(out)] == [1]
    code, _, err = cli("tasks", "show", "99")
    assert code == 1 and "no task 99" in err
    code, _, err = cli("tasks", "add", "y", "--depends-on", "42")
    assert code == 64 and "dependency 42" in err


def test_status_and_sessions_report_the_budget_and_the_turn_cap(cli, tmp_path) -> None:
    from agent import config

    store = open_store(config.load(cli.config))
    capped = store.add_task("big refactor")
    small = store.add_task("small fix")
    now = utcnow()
    starts = [now - timedelta(seconds=3 - i) for i in range(3)]
    today = sum(s.date() == now.date() for s in starts)  # normally 3; fewer just after midnight
    for i, (task, outcome, turns) in enumerate(
        [(capped, "max_turns", 30), (small, "completed", 12), (capped, "max_turns", 30)]
    ):
        s = store.start_session(task.id, now=starts[i])
        store.finish_session(s.id, outcome, turns=turns, exit_code=1 if turns == 30 else 0)
    store.close()
    _, out, _ = cli("status", "--json")
    st = json.loads(out)
    assert (st["sessions_today"], st["sessions_left"]) == (today, 5 - today)
    assert st["last_outcomes"][0]["outcome"] == "max_turns"
    assert 0 < st["seconds_to_rollover"] <= 86400
    _, out, _ = cli("sessions", "--json")
    r = json.loads(out)
    assert r["sessions"] == 3 and r["completion_rate"] == pytest.approx(0.333, abs=0.001)
    assert r["tasks_hitting_cap"] == [
        {
            "task": capped.id,
            "title": "big refactor",
            "cap_hits": 2,
            "sessions": 2,
            "yielded_to": [small.id],
        }
    ]
    assert r["turns"]["max"] == 30
    _, out, _ = cli("sessions")
    assert "hit the cap: task 1 (big refactor): 2 of 2 sessions" in out


def test_a_bad_settings_file_names_the_key_and_exits_64(tmp_path, capsys) -> None:
    cfg = tmp_path / "bad.yml"
    cfg.write_text("daemon:\n  sessions_per_day: many\n")
    assert main(["-c", str(cfg), "status"]) == 64
    assert "daemon.sessions_per_day: expected an integer" in capsys.readouterr().err


def test_raising_the_same_needs_you_task_again_reuses_the_open_one(cli) -> None:
    _, first, _ = cli(
        "tasks", "add", "Re-authorise the port sheet", "--needs-you", "--body", "run X"
    )
    _, again, _ = cli(
        "tasks", "add", "Re-authorise the port sheet", "--needs-you", "--body", "run Y"
    )
    assert first == again
    _, out, _ = cli("tasks", "show", first.strip(), "--json")
    assert [n["text"] for n in json.loads(out)["notes"]] == ["raised again: run Y"]
    cli("tasks", "done", first.strip())
    _, third, _ = cli("tasks", "add", "Re-authorise the port sheet", "--needs-you")
    assert third != first  # once answered, a new occurrence is a new task


def test_only_a_failed_or_done_task_reopens(cli) -> None:
    cli("tasks", "add", "x")
    code, _, err = cli("tasks", "reopen", "1")
    assert code == 1 and "only a failed or done task reopens" in err
    from agent import config

    with open_store(config.load(cli.config)) as store:
        store.set_task_status(1, "failed")
    code, out, _ = cli("tasks", "reopen", "1", "--note", "bug fixed")
    assert code == 0 and "task 1 ready" in out
    _, out, _ = cli("tasks", "show", "1", "--json")
    assert json.loads(out)["status"] == "ready"


def test_an_answered_needs_you_task_does_not_reopen(cli) -> None:
    # Back to "ready", a question for a person would be handed to a session.
    _, qid, _ = cli("tasks", "add", "Pick a domain", "--needs-you")
    cli("tasks", "done", qid.strip(), "--note", "a.com")
    code, _, err = cli("tasks", "reopen", qid.strip())
    assert code == 1 and "is a needs-you task: only a failed or done task reopens" in err
    _, out, _ = cli("tasks", "show", qid.strip(), "--json")
    assert json.loads(out)["status"] == "done"
