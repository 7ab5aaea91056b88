"""The service process end to end: tail → rule → incident → playbook → resolution/escalation."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from agent.remediator.actions import marked_processes
from tests.fakes.webhook import WebhookReceiver
from tests.integration.remediator.helpers import SYNC_OK, token_rule

# Real ansible-playbook runs and service processes: seconds each.
pytestmark = pytest.mark.slow

LINE = (
    "[port-sheet] token error: HTTP Error 400: invalid_grant: Token has been expired or revoked.\n"
)


def rule(log: Path, playbook: str = "recovered.yml", **kw) -> dict:
    action = {
        "playbook": playbook,
        "extravars": {"unit": "port-sheet-sync.service"},
        "timeout": "60s",
    }
    return token_rule(
        {"file": str(log)},
        **{"group_by": ["status"], "cooldown": "6h", "resolve": SYNC_OK, "action": action, **kw},
    )


def append(path: Path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)


def test_third_failure_opens_an_incident_that_the_playbook_resolves(tmp_path, service_factory):
    log = tmp_path / "sync.log"
    log.write_text("old failure before the start: " + LINE * 5)
    svc = service_factory([rule(log)]).start()
    append(log, LINE * 2)
    svc.wait_log("rules:")  # started
    time.sleep(0.3)
    assert svc.incidents() == []
    append(log, LINE)
    items = svc.wait_incident(lambda xs: xs and xs[0].status == "resolved")
    inc = items[0]
    assert inc.rule == "sheet-sync-token" and inc.group == {"status": "400"}
    (run,) = inc.remediations
    assert run["status"] == "successful" and run["outcome"] == "recovered" and run["rc"] == 0
    assert run["stats"]["ok"] == {"localhost": 3} and run["duration"] > 0
    assert os.path.isdir(run["artifact_dir"])
    assert len(svc.incidents()) == 1


def test_restart_between_the_second_and_third_failure_still_fires_once(
    tmp_path, log, service_factory
):
    svc = service_factory([rule(log, "needs_human.yml")]).start()
    append(log, LINE * 2)
    time.sleep(0.5)
    assert svc.stop() == 0
    append(log, LINE)  # written while stopped
    svc.start()
    items = svc.wait_incident(lambda xs: xs and xs[0].status == "escalated" and xs[0].remediations)
    assert len(items) == 1
    svc.stop()
    svc.start()  # a second restart must not re-read or re-fire
    time.sleep(0.8)
    assert len(svc.incidents()) == 1 and len(svc.incidents()[0].remediations) == 1


def test_sighup_reloads_rules_and_keeps_the_window(tmp_path, log, service_factory):
    svc = service_factory([rule(log, action=None)]).start()
    append(log, LINE * 2)
    time.sleep(0.4)
    rules_file = tmp_path / "rules.d" / "50-test.yml"
    import yaml

    rules_file.write_text(yaml.safe_dump({"rules": [rule(log, "recovered.yml", cooldown="1h")]}))
    svc.signal(signal.SIGHUP)
    svc.wait_log("SIGHUP: rules reloaded")
    append(log, LINE)
    items = svc.wait_incident(lambda xs: xs and xs[0].status == "resolved")
    assert len(items[0].remediations) == 1
    # a broken file on the next SIGHUP is reported and the old rules stay
    rules_file.write_text("rules: [ {name: x} ]\n")
    svc.signal(signal.SIGHUP)
    svc.wait_log("rules not reloaded, keeping the old ones")
    assert svc.proc.poll() is None


def test_resolve_line_closes_the_open_incident(tmp_path, log, service_factory):
    svc = service_factory([rule(log, action=None)]).start()
    append(log, LINE * 3)
    svc.wait_incident(lambda xs: xs and xs[0].status == "escalated")
    append(log, "[port-sheet] sync ok rows=12 requests=1 in 0.42s\n")
    items = svc.wait_incident(lambda xs: xs[0].status == "resolved")
    assert "resolved by: [port-sheet] sync ok" in items[0].summary


@pytest.fixture
def moto_sns():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    env = {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    kw = {
        "endpoint_url": url,
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    sns, sqs = boto3.client("sns", **kw), boto3.client("sqs", **kw)
    topic = sns.create_topic(Name="jada-incidents")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    yield {"env": env, "topic": topic, "sqs": sqs, "queue": queue_url}
    server.stop()


def test_needs_human_escalates_and_notifies_once_by_webhook_and_sns(
    tmp_path, log, service_factory, moto_sns
):
    with WebhookReceiver() as hook:
        svc = service_factory(
            [rule(log, "needs_human.yml", cooldown="1s")],
            env=moto_sns["env"],
            remediator={"notify": {"webhook_url": hook.url, "sns_topic_arn": moto_sns["topic"]}},
        ).start()
        append(log, LINE * 3)
        items = svc.wait_incident(lambda xs: xs and xs[0].notified is not None)
        assert items[0].status == "escalated" and items[0].cause == "revoked"
        (got,) = hook.wait_for(1)
        assert got["incident"] == items[0].id and got["rule"] == "sheet-sync-token"
        assert "ansible-playbook playbooks/reauth.yml" in got["text"]
        assert got["next_step"].startswith("ansible-playbook playbooks/reauth.yml")
        # the rule fires again after its cooldown: a second remediation, no second message
        time.sleep(1.2)
        append(log, LINE * 3)
        svc.wait_incident(lambda xs: len(xs[0].remediations) == 2)
        time.sleep(0.3)
        assert len(hook.received) == 1 and hook.rejected == []
    msgs = moto_sns["sqs"].receive_message(QueueUrl=moto_sns["queue"], MaxNumberOfMessages=10)
    bodies = [json.loads(m["Body"]) for m in msgs.get("Messages", [])]
    assert len(bodies) == 1
    # One incident, one thread: the subject is the incident's title on every message.
    assert (
        bodies[0]["Subject"]
        == "[jada-agent] test-host: sheet-sync-token [status=400] (incident #1)"
    )
    assert bodies[0]["Message"].startswith("NEEDS A PERSON: test-host: sheet-sync-token")
    assert "Do this: ansible-playbook playbooks/reauth.yml" in bodies[0]["Message"]


def test_breaker_opens_escalates_and_reset_closes_it(tmp_path, log, service_factory):
    with WebhookReceiver() as hook:
        svc = service_factory(
            [
                rule(
                    log,
                    "nope.yml",
                    threshold=1,
                    cooldown=0,
                    breaker={"max_runs": 2, "within": "1h"},
                )
            ],
            remediator={"notify": {"webhook_url": hook.url}},
        ).start()
        for n in (1, 2):
            append(log, LINE)
            svc.wait_incident(
                lambda xs, n=n: xs and len(xs[0].remediations) == n and xs[0].status == "open"
            )
        append(log, LINE)
        items = svc.wait_incident(lambda xs: xs[0].status == "escalated")
        got = hook.wait_for(3)
        # each failed run was announced at once; then the breaker
        assert [m["event"] for m in got] == [
            "remediation_failed",
            "remediation_failed",
            "breaker_opened",
        ]
        msg = got[-1]
        assert "circuit breaker open" in msg["text"]
        assert "jada-agent remediator reset sheet-sync-token" in msg["text"]
        assert len(items[0].remediations) == 2


def _running_hang(tmp_path, service_factory, sleep_for: str):
    """A started service whose remediation (hang.yml, sleeping ``sleep_for`` s) is running."""
    log = tmp_path / "sync.log"
    log.write_text("")
    r = rule(log, "hang.yml")
    r["action"]["extravars"] = {"sleep_for": sleep_for}
    svc = service_factory([r]).start()
    append(log, LINE * 3)
    svc.wait_log("running hang.yml")
    return svc


def _assert_no_process_left(run: dict, sleep_for: str) -> None:
    """Nothing of the run is alive: no marked process, no sleep with its argument."""
    assert marked_processes(run["ident"]) == []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            assert sleep_for.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()


def test_sigterm_during_a_playbook_records_it_and_leaves_no_process(tmp_path, service_factory):
    svc = _running_hang(tmp_path, service_factory, "777.25")
    time.sleep(2.5)  # ansible-playbook, its worker and the sleeps are up
    assert svc.stop() == 0
    (inc,) = svc.incidents()
    (run,) = inc.remediations
    assert run["status"] == "canceled" and "interrupted" in run["error"]
    assert inc.status == "open"
    _assert_no_process_left(run, "777.25")


def test_a_log_that_appears_after_the_start_is_read_from_its_first_line(tmp_path, service_factory):
    log = tmp_path / "later" / "sync.log"
    log.parent.mkdir()
    svc = service_factory([rule(log, action=None)]).start()
    log.write_text(LINE * 3)
    items = svc.wait_incident(lambda xs: len(xs) == 1)
    assert items[0].rule == "sheet-sync-token"


def test_template_syntax_in_a_log_line_is_never_evaluated_end_to_end(tmp_path, service_factory):
    import uuid

    marker = Path("/tmp") / f"pwned-{uuid.uuid4().hex}"
    evil = "{{ lookup('pipe', 'touch " + str(marker) + "') }} {% for x in range(3) %}X{% endfor %}"
    log = tmp_path / "sync.log"
    log.write_text("")
    r = rule(
        log,
        "recovered.yml",
        match=r"\[port-sheet\] token error: HTTP Error (?P<status>\d+): (?P<detail>.*)",
        group_by=["status", "detail"],
    )
    svc = service_factory([r]).start()
    append(log, f"[port-sheet] token error: HTTP Error 400: {evil}\n" * 3)
    items = svc.wait_incident(lambda xs: xs and xs[0].status == "resolved")
    assert items[0].group == {"status": "400", "detail": evil}
    seen = json.loads((Path(items[0].remediations[0]["artifact_dir"]) / "seen.json").read_text())
    assert seen["group"] == {"status": "400", "detail": evil}
    assert not marker.exists()


def test_a_remediation_cut_short_by_sigkill_is_recorded_at_the_next_start(
    tmp_path, service_factory
):
    svc = _running_hang(tmp_path, service_factory, "778.5")
    time.sleep(2.0)
    svc.signal(signal.SIGKILL)
    svc.proc.wait(10)
    svc.start()  # finds the run it left behind: kills what is left of it, records it
    svc.wait_log("was interrupted by a stop")
    (inc,) = svc.incidents()
    (run,) = inc.remediations
    assert run["status"] == "interrupted" and inc.status == "open"
    _assert_no_process_left(run, "778.5")


def test_a_person_holding_the_lock_makes_the_remediation_wait(tmp_path, service_factory):
    from agent.remediator.lock import RemediationLock

    log = tmp_path / "sync.log"
    log.write_text("")
    svc = service_factory([rule(log)])
    lock = RemediationLock(svc.settings.remediator.lock_file)
    lock.acquire("operator", ttl=120)  # as `jada-agent remediator lock acquire --owner operator`
    svc.start()
    append(log, LINE * 3)
    svc.wait_incident(lambda xs: len(xs) == 1)
    time.sleep(1.0)
    (inc,) = svc.incidents()
    assert inc.status == "open" and inc.remediations == []
    assert lock.release("operator")
    items = svc.wait_incident(lambda xs: xs[0].status == "resolved")
    assert len(items[0].remediations) == 1


def test_sigterm_taken_by_a_worker_thread_stops_the_service_at_once(tmp_path, service_factory):
    # A process-directed signal may land on any thread (watchdog's observer, the action worker);
    # the main thread must not sleep through it until its next housekeeping tick (60 s).
    import ctypes

    log = tmp_path / "sync.log"
    log.write_text("")
    svc = service_factory([rule(log, action=None)]).start()
    assert svc.proc is not None
    pid = svc.proc.pid
    others = [int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid]
    assert others, "the service runs worker threads"
    libc = ctypes.CDLL(None, use_errno=True)
    t0 = time.monotonic()
    assert libc.tgkill(pid, others[-1], signal.SIGTERM) == 0
    svc.proc.wait(timeout=50)
    assert time.monotonic() - t0 < 10
    assert svc.proc.returncode == 0


def test_reset_takes_effect_in_the_running_service_without_a_restart(tmp_path, service_factory):
    # The service keeps windows, cooldowns and breakers in memory: `remediator reset` from a
    # shell must still reach it, so that the next failure fires again at once.
    import subprocess
    import sys

    log = tmp_path / "sync.log"
    log.write_text("")
    svc = service_factory([rule(log, threshold=1, cooldown="6h", resolve=None)]).start()
    append(log, LINE)
    svc.wait_incident(lambda xs: len(xs) == 1 and xs[0].status == "resolved")
    append(log, LINE)  # cooling down for 6 h: nothing
    time.sleep(1.0)
    assert len(svc.incidents()) == 1
    r = subprocess.run(
        [sys.executable, "-m", "agent", "-c", str(svc.cfg), "remediator", "reset",
         "sheet-sync-token"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    append(log, LINE)
    items = svc.wait_incident(lambda xs: len(xs) == 2 and xs[1].status == "resolved")
    assert items[1].rule == "sheet-sync-token"
    assert "rule sheet-sync-token reset" in svc.log.read_text()
    assert svc.proc is not None and svc.proc.poll() is None  # the same process, no restart
