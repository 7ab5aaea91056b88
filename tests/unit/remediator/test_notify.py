"""Messages, channel names and masking: what a person reads and what nobody else may."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from agent import config
from agent.cli import main
from agent.remediator import notify as n

HOOK = "https://hooks.slack.com/services/T0001/B0002/s3cretTokenValue"
TG = "tgram://123456:AAHsecretbot/987654"


def test_config_show_masks_every_channel_url_in_text_and_json(tmp_path, capsys):
    cfg = tmp_path / "agent.yml"
    cfg.write_text(
        json.dumps(
            {"remediator": {"notify": {"webhook_url": HOOK, "urls": [TG], "heartbeat_url": HOOK}}}
        )
    )
    assert main(["-c", str(cfg), "config", "show", "--json"]) == 0
    shown = capsys.readouterr().out
    notify = json.loads(shown)["remediator"]["notify"]
    assert notify["webhook_url"] == "https://***" and notify["urls"] == ["tgram://***"]
    assert notify["heartbeat_url"] == "https://***"
    assert main(["-c", str(cfg), "config", "show"]) == 0
    shown += capsys.readouterr().out
    for secret in ("s3cretTokenValue", "AAHsecretbot", "hooks.slack.com", "123456"):
        assert secret not in shown


def test_channel_names_are_stable_and_do_not_show_the_url(settings_factory):
    s = settings_factory(remediator={"notify": {"webhook_url": HOOK, "urls": [TG, "ntfy://x/y"]}})
    names = [c.name for c in n.channels(s)]
    assert names[0] == "webhook" and names[1].startswith("tgram-") and names[2].startswith("ntfy-")
    s2 = settings_factory(remediator={"notify": {"urls": ["ntfy://x/y", TG]}})
    assert {c.name for c in n.channels(s2)} == set(names[1:])
    assert all("secret" not in name for name in names)


def test_an_error_message_is_scrubbed_of_the_url_and_its_token():
    spec = {"url": TG}
    text = n.scrub(f"failed to post to {TG}: bot AAHsecretbot rejected (chat 987654)", spec)
    assert "AAHsecretbot" not in text and TG not in text and "987654" not in text


def test_one_incidents_messages_share_the_thread_and_title():
    opened = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    ask = n.needs_person(
        "h1",
        7,
        "sheet-sync-token",
        {"status": "400"},
        "credential_refresh.yml could not repair it",
        cause="revoked_or_expired",
        findings=["refresh: invalid_grant"],
        next_step="ansible-playbook playbooks/reauth.yml -l h1",
    )
    failed = n.remediation_failed(
        "h1", 7, "sheet-sync-token", {"status": "400"}, "x.yml", "failed", "boom"
    )
    done = n.resolved(
        "h1",
        7,
        "sheet-sync-token",
        {"status": "400"},
        "healed by x.yml",
        opened,
        opened + timedelta(minutes=95),
    )
    assert ask.thread == failed.thread == done.thread == "incident-7@h1"
    assert ask.title == failed.title == done.title
    assert ask.text.splitlines()[:2] == [
        "NEEDS A PERSON: h1: sheet-sync-token (incident #7)",
        "Why: credential_refresh.yml could not repair it",
    ]
    assert "Found: refresh: invalid_grant" in ask.text
    assert "Do this: ansible-playbook playbooks/reauth.yml -l h1" in ask.text
    assert done.text.startswith("RESOLVED: h1: sheet-sync-token (incident #7) after 95m")
    assert ask.payload()["text"] == ask.text  # the same words on every channel


def test_the_failing_task_is_read_from_the_runner_job_events(tmp_path):
    ev = tmp_path / "job_events"
    ev.mkdir()
    (ev / "3-a.json").write_text(
        json.dumps(
            {"event": "runner_on_ok", "counter": 3, "event_data": {"task": "Gather", "res": {}}}
        )
    )
    (ev / "5-b.json").write_text(
        json.dumps(
            {
                "event": "runner_on_failed",
                "counter": 5,
                "event_data": {"task": "Restart the unit.", "res": {"msg": "Unit x not found."}},
            }
        )
    )
    assert n.failing_task(str(tmp_path)) == "Restart the unit.: Unit x not found."
    assert n.failing_task(str(tmp_path / "nowhere")) == ""


def test_masking_leaves_non_secret_settings_alone():
    s = config.from_dict({"remediator": {"notify": {"sns_topic_arn": "arn:aws:sns:x:1:t"}}})
    data = config.to_masked_dict(s)
    assert data["remediator"]["notify"]["sns_topic_arn"] == "arn:aws:sns:x:1:t"
    assert data["remediator"]["notify"]["webhook_url"] is None
    assert data == {**config.to_dict(s)}
