"""Notifications end to end: the real ``jada-agent remediator run`` against loopback receivers.

Every channel here is a real HTTP server on 127.0.0.1 (``tests/fakes/webhook.py``, also as
apprise's ``json://`` receiver); a channel "down" is a port nobody listens on yet.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.fakes.heartbeat import HeartbeatReceiver
from tests.fakes.webhook import WebhookReceiver
from tests.integration.remediator.test_service import LINE, append, rule

pytestmark = pytest.mark.slow

FAST = {"retry_min": "1s", "retry_max": "2s", "timeout": "3s", "check_every": "0.5s"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def outbox_rows(svc) -> list[dict]:
    db = sqlite3.connect(svc.settings.remediator.state_db)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM outbox ORDER BY id")]
    finally:
        db.close()


def alert_rule(log: Path, **kw) -> dict:
    return rule(log, action=None, description="the sheet sync keeps failing", **kw)


def wait(pred, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached within {timeout}s")


def test_a_channel_down_for_a_while_then_back_gets_the_message_exactly_once(
    tmp_path, service_factory
):
    port = free_port()
    url = f"http://127.0.0.1:{port}/hooks/incident"
    log = tmp_path / "sync.log"
    log.write_text("")
    svc = service_factory(
        [alert_rule(log)], remediator={"notify": {"webhook_url": url, **FAST}}
    ).start()
    append(log, LINE * 3)
    svc.wait_log("failed (attempt 2", timeout=30)  # down: retried with backoff
    with WebhookReceiver(port=port) as hook:
        (got,) = hook.wait_for(1, timeout=30)
        assert got["event"] == "needs_person" and got["incident"] == 1
        svc.wait_incident(lambda xs: xs[0].notified is not None)
        time.sleep(3)  # longer than retry_max: nothing is sent twice
        assert len(hook.received) == 1 and hook.rejected == []
    (row,) = outbox_rows(svc)
    assert row["delivered"] is not None and row["attempts"] >= 3


def test_a_trickling_endpoint_is_cut_off_and_other_channels_are_not_delayed(
    tmp_path, log, service_factory
):
    with (
        WebhookReceiver() as slow,
        WebhookReceiver(path="/apprise", accept="apprise") as other,
    ):
        slow.trickle_next(100, seconds=60)  # every request: one byte a second for a minute
        apprise_url = other.url.replace("http://", "json://")
        svc = service_factory(
            [alert_rule(log, group_by=["status"], cooldown=0, threshold=1)],
            remediator={"notify": {"webhook_url": slow.url, "urls": [apprise_url], **FAST}},
        ).start()
        append(log, LINE)
        (first,) = other.wait_for(1, timeout=15)
        assert first["title"].startswith("[jada-agent] test-host: sheet-sync-token")
        assert first["message"].startswith("NEEDS A PERSON")
        # the webhook's attempt is cut off at its total deadline (3 s), not after a minute
        data = svc.wait_log("deadline: no answer within 3s", timeout=15)
        assert slow.trickled >= 1 and slow.received == []
        # a second incident reaches the other channel while the webhook keeps trickling
        append(log, LINE.replace("400", "401"))
        other.wait_for(2, timeout=15)
        assert [m["title"][-13:] for m in other.received] == ["(incident #1)", "(incident #2)"]
        # a stop while a delivery trickles takes seconds, not the trickle's minute
        started = time.monotonic()
        assert svc.stop() == 0
        assert time.monotonic() - started < 15
        assert apprise_url not in data and slow.url not in data


def test_a_message_queued_before_kill_9_is_delivered_after_the_restart(tmp_path, service_factory):
    port = free_port()
    log = tmp_path / "sync.log"
    log.write_text("")
    svc = service_factory(
        [alert_rule(log)],
        remediator={"notify": {"webhook_url": f"http://127.0.0.1:{port}/hooks/incident", **FAST}},
    ).start()
    append(log, LINE * 3)
    svc.wait_log("failed (attempt 1")
    svc.proc.send_signal(signal.SIGKILL)
    svc.proc.wait()
    with WebhookReceiver(port=port) as hook:
        svc.start()
        (got,) = hook.wait_for(1, timeout=20)
        assert got["event"] == "needs_person" and "sheet sync keeps failing" in got["text"]
        time.sleep(2.5)
        assert len(hook.received) == 1


def test_an_escalation_recorded_but_never_queued_is_sent_at_the_next_start(
    tmp_path, service_factory
):
    from agent.store import open_store

    log = tmp_path / "sync.log"
    log.write_text("")
    with WebhookReceiver() as hook:
        svc = service_factory(
            [alert_rule(log)], remediator={"notify": {"webhook_url": hook.url, **FAST}}
        )
        # the service died between marking the incident escalated and queueing its message
        with open_store(svc.settings) as store:
            inc = store.open_incident("sheet-sync-token", {"status": "400"})
            store.update_incident(inc.id, status="escalated", cause="revoked")
        svc.start()
        (got,) = hook.wait_for(1)
        assert got["event"] == "needs_person" and got["incident"] == inc.id
        assert "Cause: revoked" in got["text"]
        svc.stop()
        svc.start()  # told once: a second start sends nothing more
        time.sleep(2)
        assert len(hook.received) == 1


def test_a_failed_remediation_is_announced_at_once_with_the_failing_task(
    tmp_path, log, service_factory
):
    with WebhookReceiver() as hook:
        svc = service_factory(
            [rule(log, "fails.yml")], remediator={"notify": {"webhook_url": hook.url, **FAST}}
        ).start()
        append(log, LINE * 3)
        (got,) = hook.wait_for(1, timeout=30)
        assert got["event"] == "remediation_failed"
        assert got["playbook"] == "fails.yml" and got["outcome"] == "failed"
        assert "Restart the sync unit.: Unit port-sheet-sync.service not found." in got["text"]
        # the breaker has not opened: this is the first run
        assert svc.incidents()[0].status == "open"


def test_resolution_is_announced_with_how_and_how_long(tmp_path, log, service_factory):
    with WebhookReceiver() as hook:
        service_factory(
            [
                alert_rule(log),
                rule(
                    log, "recovered.yml", name="healed", match=r"heal me (?P<x>\d)", group_by=["x"]
                ),
            ],
            remediator={"notify": {"webhook_url": hook.url, **FAST}},
        ).start()
        append(log, LINE * 3)
        hook.wait_for(1)
        time.sleep(1.1)
        append(log, "[port-sheet] sync ok rows=12\n")
        got = hook.wait_for(2)
        assert [m["event"] for m in got] == ["needs_person", "resolved"]
        assert got[0]["thread"] == got[1]["thread"] and got[0]["title"] == got[1]["title"]
        assert got[1]["seconds_to_resolve"] >= 1
        assert "after a person's fix" in got[1]["how"]
        # healed by a playbook, nobody involved: announced as resolved by that action
        append(log, "heal me 7\n" * 3)
        got = hook.wait_for(3)
        assert got[2]["event"] == "resolved" and got[2]["how"].startswith("healed by recovered.yml")


def test_an_open_needs_you_incident_and_task_are_recalled_every_remind_every(
    tmp_path, service_factory
):
    from agent.store import open_store

    log = tmp_path / "sync.log"
    log.write_text("")
    with WebhookReceiver() as hook:
        svc = service_factory(
            [alert_rule(log)],
            remediator={"notify": {"webhook_url": hook.url, "remind_every": "3s", **FAST}},
        ).start()
        append(log, LINE * 3)
        with open_store(svc.settings) as store:  # as a daemon session would
            store.add_task(
                "Approve the migration", body="Say yes or no.", kind="needs_you", status="needs_you"
            )
        got = hook.wait_for(4, timeout=30)
        events = [(m["event"], m["thread"]) for m in got]
        assert ("needs_person", "incident-1@test-host") in events
        assert ("needs_you_task", "task-1@test-host") in events
        assert ("reminder", "incident-1@test-host") in events
        assert ("reminder", "task-1@test-host") in events
        task_msg = next(m for m in got if m["event"] == "needs_you_task")
        assert "Approve the migration" in task_msg["text"] and "Say yes or no." in task_msg["text"]


def test_a_flood_of_incidents_keeps_the_outbox_bounded_with_one_summary(tmp_path, service_factory):
    port = free_port()
    log = tmp_path / "sync.log"
    log.write_text("")
    r = alert_rule(log, match=r"job (?P<job>\d+) failed", group_by=["job"], threshold=1)
    svc = service_factory(
        [r],
        remediator={
            "notify": {
                "webhook_url": f"http://127.0.0.1:{port}/hooks/incident",
                "max_pending": 20,
                **FAST,
            }
        },
    ).start()
    append(log, "".join(f"job {i} failed\n" for i in range(1000)))
    svc.wait_incident(lambda xs: len(xs) == 1000, timeout=120)
    rows = outbox_rows(svc)
    assert len(rows) == 21
    summary = rows[-1]
    assert summary["event"] == "overflow"
    assert json.loads(summary["body"])["payload"]["count"] == 980
    with WebhookReceiver(port=port) as hook:
        hook.wait_for(21, timeout=60)
        time.sleep(1)
        got = list(hook.received)
        # Due rows go oldest first and the summary after them; but the sender tried before the
        # receiver was up, so the first messages may wait in their backoff while the summary
        # (never tried) goes: the order across that retry is not fixed. A summary read while
        # the flood was still folding into it, and sent once the receiver was up, is sent
        # again with the final count (the person is never left with a stale one).
        events = [m["event"] for m in got]
        assert sorted(e for e in events if e != "overflow") == ["needs_person"] * 20
        summaries = [m for m in got if m["event"] == "overflow"]
        assert 1 <= len(summaries) <= 2, [m["text"] for m in summaries]
        assert "980 more notifications (incidents #21-#1000)" in summaries[-1]["text"]
        assert "jada-agent remediator incidents" in summaries[-1]["text"]
    assert all(r["delivered"] is not None for r in outbox_rows(svc))


def test_channel_urls_never_appear_in_config_show_logs_or_runner_artifacts(
    tmp_path, service_factory
):
    secret_hook = "/hooks/T0KEN-" + os.urandom(8).hex()
    with WebhookReceiver(path=secret_hook) as hook:
        apprise_url = f"json://127.0.0.1:{free_port()}/s3cret-{os.urandom(6).hex()}"
        log = tmp_path / "sync.log"
        log.write_text("")
        svc = service_factory(
            [rule(log, "fails.yml")],
            remediator={"notify": {"webhook_url": hook.url, "urls": [apprise_url], **FAST}},
        ).start()
        append(log, LINE * 3)
        hook.wait_for(1, timeout=30)
        svc.wait_log("failed (attempt 1")  # the apprise channel's port is closed
        svc.stop()
        shown = subprocess.run(
            [sys.executable, "-m", "agent", "-c", str(svc.cfg), "config", "show", "--json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        data = json.loads(shown)["remediator"]["notify"]
        assert data["webhook_url"] == "http://***" and data["urls"] == ["json://***"]
        artifacts = "".join(
            p.read_text(errors="replace")
            for p in Path(svc.settings.remediator.private_data_dir).rglob("*")
            if p.is_file()
        )
        status = subprocess.run(
            [sys.executable, "-m", "agent", "-c", str(svc.cfg), "remediator", "status", "--json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for text in (shown, svc.log.read_text(), artifacts, status):
            for secret in (hook.url, secret_hook[7:], apprise_url, apprise_url.rsplit("/", 1)[1]):
                assert secret not in text


def test_remediator_status_shows_pending_given_up_and_last_delivered(tmp_path, service_factory):
    port = free_port()
    log = tmp_path / "sync.log"
    log.write_text("")
    with WebhookReceiver() as hook:
        svc = service_factory(
            [alert_rule(log)],
            remediator={
                "notify": {
                    "webhook_url": hook.url,
                    "urls": [f"json://127.0.0.1:{port}/x"],
                    **FAST,
                    "give_up_after": "3s",
                }
            },
        ).start()
        append(log, LINE * 3)
        hook.wait_for(1)
        svc.wait_log("given up after", timeout=30)
        out = subprocess.run(
            [sys.executable, "-m", "agent", "-c", str(svc.cfg), "remediator", "status", "--json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        ob = json.loads(out)["outbox"]
        assert ob["pending"] == 0 and ob["failed"] == 1 and ob["last_delivered"]
        assert ob["channels"]["webhook"]["delivered"] == 1
        (give_up,) = ob["recent_give_ups"]
        assert give_up["event"] == "needs_person" and give_up["channel"].startswith("json-")
        text = subprocess.run(
            [sys.executable, "-m", "agent", "-c", str(svc.cfg), "remediator", "status"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "outbox: 0 pending, 1 given up (after 0.000833333h)" in text or "1 given up" in text


def test_notify_test_reports_each_channel(tmp_path, settings_factory):
    with WebhookReceiver() as hook:
        s = settings_factory(
            remediator={
                "notify": {
                    "webhook_url": hook.url,
                    "urls": [f"json://127.0.0.1:{free_port()}/nobody"],
                    "timeout": "3s",
                }
            }
        )
        cfg = tmp_path / "agent.yml"
        from agent import config

        cfg.write_text(yaml.safe_dump(config.to_dict(s)))
        proc = subprocess.run(
            [sys.executable, "-m", "agent", "-c", str(cfg), "notify", "test"],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 1
        lines = proc.stdout.splitlines()
        assert lines[0] == "webhook: ok"
        assert lines[1].startswith("json-") and ": error: apprise:" in lines[1]
        (got,) = hook.received
        assert got["event"] == "test" and got["text"].startswith("TEST: test-host")


def test_heartbeat_stops_and_the_endpoint_sees_the_gap(tmp_path, settings_factory):
    from agent import config

    with HeartbeatReceiver() as hb:
        s = settings_factory(remediator={"notify": {"heartbeat_url": hb.url}})
        cfg = tmp_path / "agent.yml"
        cfg.write_text(yaml.safe_dump(config.to_dict(s)))
        period, grace = 30.0, 5.0  # the timer's interval and the service's grace
        for _ in range(3):  # three runs of the timer
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "agent",
                    "-c",
                    str(cfg),
                    "notify",
                    "heartbeat",
                    "--state",
                    "ok",
                ],
                check=True,
                capture_output=True,
            )
        now = time.time()
        assert hb.status(period, grace, now=now) == "up" and hb.gaps(period, now=now) == []
        assert [p["body"].splitlines()[0] for p in hb.pings] == ["ok"] * 3
        assert {p["kind"] for p in hb.pings} == {"ok"}
        # the timer stops (a dead VM): 40 s later the endpoint sees the silence
        later = hb.pings[-1]["t"] + 40
        assert hb.status(period, grace, now=later) == "down"
        assert hb.gaps(period, now=later) == [(hb.pings[-1]["t"], later)]


def _systemctl_answering(tmp_path: Path, states: list[str]) -> Path:
    """A directory holding a stand-in ``systemctl`` (this machine has no systemd as PID 1) that
    answers ``show jada-remediator.service`` with the next of ``states``, the last one for good."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "states").write_text("\n".join(states) + "\n")
    script = bindir / "systemctl"
    script.write_text(
        "#!/bin/sh\n"
        f"d={bindir}\n"
        'n=$(cat "$d/asked" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$d/asked"\n'
        'state=$(sed -n "${n}p" "$d/states"); [ -n "$state" ] || state=$(tail -n1 "$d/states")\n'
        'printf "LoadState=loaded\\nActiveState=%s\\n" "$state"\n'
    )
    script.chmod(0o755)
    return bindir


def _heartbeat(cfg: Path, bindir: Path, *args: str) -> dict:
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "-c", str(cfg), "notify", "heartbeat", "--json", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    return json.loads(proc.stdout)


@pytest.mark.parametrize(
    ("states", "kind"),
    [
        # a deploy's handler or an operator restarting the remediator: not an outage
        (["deactivating", "inactive", "activating", "activating", "active"], "ok"),
        # stopped for good (or crash-looping without ever coming up): the fail signal
        (["inactive"], "fail"),
        (["activating"], "fail"),
    ],
    ids=["restarting", "stopped", "never-up"],
)
def test_heartbeat_sends_fail_only_when_the_remediator_stays_down(
    tmp_path, settings_factory, states, kind
):
    from agent import config

    with HeartbeatReceiver() as hb:
        s = settings_factory(remediator={"notify": {"heartbeat_url": hb.url}})
        cfg = tmp_path / "agent.yml"
        cfg.write_text(yaml.safe_dump(config.to_dict(s)))
        bindir = _systemctl_answering(tmp_path, states)
        out = _heartbeat(cfg, bindir, "--state", "ok", "--settle", "6")
        assert out["fail"] is (kind == "fail")
        (ping,) = hb.pings
        assert ping["kind"] == kind
        first = ping["body"].splitlines()[0]
        assert first == ("degraded" if kind == "fail" else "ok")
        if kind == "fail":
            assert "jada-remediator.service is not running" in ping["body"]
        asked = int((bindir / "asked").read_text())
        assert asked >= (5 if kind == "ok" else 2)


def test_a_fault_of_the_remediator_itself_reaches_a_person_and_so_does_its_end(
    tmp_path, log, service_factory
):
    # The log path swapped for a symlink (by a user who can write its directory): the remediator
    # never reads through it, and says so to a person, not only in its own log.
    with WebhookReceiver() as hook:
        svc = service_factory(
            [alert_rule(log)], remediator={"notify": {"webhook_url": hook.url, **FAST}}
        ).start()
        log.unlink()
        log.symlink_to("/etc/passwd")
        (got,) = hook.wait_for(1, timeout=90)  # noticed at the next look at the path
        assert got["event"] == "remediator_fault" and "REMEDIATOR FAULT:" in got["text"]
        assert "symbolic link" in got["text"] and "root:" not in got["text"]
        log.unlink()
        log.write_text("")
        append(log, "x\n")
        over = hook.wait_for(2, timeout=90)[1]
        assert over["event"] == "remediator_fault" and "FAULT OVER" in over["text"]
        assert over["thread"] == got["thread"]
        svc.stop()
