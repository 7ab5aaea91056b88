"""The whole incident story on a sandbox host, with assertions (the demo's scenario).

One sandbox host, ``site.yml`` once, the fakes on the host end of its link; the story runs once
for the module (``tests/e2e/story.py``) and each test states one property of what happened.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import pytest

from tests.e2e.story import TASK_LOOP, Story, format_messages, format_timeline
from tests.sandbox import harness

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory):
    reason = harness.preflight()
    if reason is not None:
        if os.environ.get("JADA_SANDBOX_REQUIRE") == "1":
            pytest.fail(f"sandbox hosts required (JADA_SANDBOX_REQUIRE=1) but: {reason}")
        pytest.skip(f"sandbox hosts unavailable: {reason}")
    work = tmp_path_factory.mktemp("story")
    s = Story(f"story-{secrets.token_hex(3)}", work / "work", work / "run", say=print)
    try:
        s.boot()
        s.seed()
        s.deploy()
        s.results["sessions"] = s.sessions()
        s.first_sync_ok()
        s.results["revoked"] = s.revoke()
        s.results["needs_you"] = s.needs_you()
        s.results["reauth"] = s.reauth(s.results["revoked"]["id"])
        s.results["permissions"] = s.loosen_permissions()
        s.results["rotated"] = s.rotate_client_secret()
        s.results["after"] = s.quiet_syncs(3)
        s.results["incidents"] = s.incidents()
        s.results["messages"] = s.notifications(s.results["rotated"]["id"])
        s.results["pings"] = s.f.pings()
        print(format_messages(s.results["messages"]))
        s.results["report"] = s.report()
        print(format_timeline(s.timeline()))
        yield s
    finally:
        s.down()


def test_sessions_run_from_the_seeded_tasks_and_one_hits_the_turn_cap(story: Story) -> None:
    report = story.results["sessions"]
    assert report["by_outcome"].get("max_turns") == 1
    assert report["by_outcome"].get("completed", 0) >= 3
    capped = report["tasks_hitting_cap"]
    assert [t["title"] for t in capped] == [TASK_LOOP]
    assert report["turns"]["max"] == 30


def test_the_remediator_fires_on_the_third_failure_not_the_first(story: Story) -> None:
    # After each failure below the threshold the story looked: no incident may be open yet.
    assert story.early_fires == []
    incident = story.results["revoked"]
    failures = [r for r in story.syncs if "invalid_grant" in r.line]
    assert len(failures) >= 3
    third = failures[2].at
    opened = _ts(incident["opened"])
    assert opened >= third - 0.5, (incident["opened"], third)


def test_a_revoked_token_is_handed_to_a_person_with_the_command(story: Story) -> None:
    rem = story.results["revoked"]["remediations"][0]
    assert rem["playbook"] == "credential_refresh.yml"
    assert rem.get("outcome") == "needs_human"
    assert rem.get("cause") == "revoked_or_expired"
    assert rem.get("machine_fixable") is False
    task = story.results["needs_you"]
    assert story.name in task["title"] and "localhost" not in task["title"]
    assert f"ansible-playbook playbooks/reauth.yml -l {story.name}" in task["body"]


def test_the_operator_step_resolves_the_revoked_token_incident(story: Story) -> None:
    assert story.results["reauth"]["status"] == "resolved"


def test_the_permission_audit_restores_0600_without_a_human(story: Story) -> None:
    incident = story.results["permissions"]
    assert incident["status"] == "resolved"
    assert incident["remediations"][0]["playbook"] == "permission_audit.yml"
    assert incident["remediations"][0].get("outcome") == "recovered"


def test_a_rotated_client_secret_is_pulled_from_secrets_manager(story: Story) -> None:
    incident = story.results["rotated"]
    assert incident["group"] == {"status": "401"}
    assert incident["status"] == "resolved"
    rem = incident["remediations"][0]
    assert rem["playbook"] == "credential_refresh.yml"
    assert rem.get("outcome") == "recovered"
    assert any("install" in a for a in rem.get("actions", [])), rem


def test_every_incident_is_resolved_with_exactly_one_remediation(story: Story) -> None:
    incidents = story.results["incidents"]
    assert sorted((i["rule"], tuple(sorted(i["group"].items()))) for i in incidents) == sorted(
        [
            ("sheet-sync-token", (("status", "400"),)),
            ("sheet-sync-token-permissions", ()),
            ("sheet-sync-token", (("status", "401"),)),
        ]
    )
    for i in incidents:
        assert i["status"] == "resolved", i
        assert len(i["remediations"]) == 1, i


def test_no_remediation_runs_after_the_incidents_are_resolved(story: Story) -> None:
    after = story.results["after"]
    assert [r.ok for r in after] == [True, True, True]
    assert story.events[-1].outcome == "quiet", story.events[-1]


def test_secret_files_are_0600_and_owned_by_the_service_user(story: Story) -> None:
    modes = story.secret_modes()
    assert modes.pop("/var/lib/jada-agent/secrets") == "700 jada"
    assert "/var/lib/jada-agent/secrets/google-token.json" in modes
    assert "/var/lib/jada-agent/secrets/anthropic-api-key" in modes
    assert {path: mode for path, mode in modes.items() if mode != "600 jada"} == {}


def test_no_secret_in_the_journal_runner_artifacts_or_ansible_output(story: Story) -> None:
    assert len(story.secrets) >= 5
    assert story.leaks() == {}
    # Negative control: a secret that does reach the journal is found.
    planted = "1//planted-" + secrets.token_urlsafe(16)
    story.host("systemd-cat -t leak-control", input=f"oops {planted}\n")
    story.secrets.append(planted)
    try:
        assert "journal" in story.wait("the planted line", story.leaks, timeout=10)
    finally:
        story.secrets.remove(planted)


def test_the_three_incidents_tell_a_person_exactly_what_happened(story: Story) -> None:
    revoked = story.results["revoked"]["id"]
    perms = story.results["permissions"]["id"]
    rotated = story.results["rotated"]["id"]
    msgs = story.results["messages"]
    assert [(m["event"], m["incident"]) for m in msgs] == [
        ("needs_person", revoked),
        ("resolved", revoked),
        ("resolved", perms),
        ("resolved", rotated),
    ]
    ask, fixed, healed_perms, healed_rotated = msgs
    # the person's message: host, rule, cause, findings, the exact command
    assert story.name in ask["text"] and ask["rule"] == "sheet-sync-token"
    assert ask["cause"] == "revoked_or_expired" and ask["findings"]
    assert f"Do this: ansible-playbook playbooks/reauth.yml -l {story.name}" in ask["text"]
    # one incident, one thread
    assert fixed["thread"] == ask["thread"] and fixed["title"] == ask["title"]
    assert "after a person's fix" in fixed["how"] and fixed["seconds_to_resolve"] > 0
    assert healed_perms["how"].startswith("healed by permission_audit.yml")
    assert healed_rotated["how"].startswith("healed by credential_refresh.yml")
    # the playbook's own needs-you task was not announced a second time
    assert all(m["event"] != "needs_you_task" for m in msgs)


def test_the_heartbeat_timer_pings_the_dead_mans_switch(story: Story) -> None:
    pings = story.results["pings"]
    assert pings, "jada-heartbeat.timer never pinged the heartbeat endpoint"
    assert {p["body"].splitlines()[0] for p in pings} <= {"ok", "degraded"}
    assert {p["kind"] for p in pings} == {"ok"}  # the remediator was running


def test_the_health_report_and_timeline_are_written(story: Story) -> None:
    files = story.results["report"]
    health = json.loads(Path(files["json"]).read_text())
    assert {"verdict", "recurring", "units", "journal"} <= set(health)
    assert "<html" in Path(files["html"]).read_text().lower()
    timeline = json.loads(Path(files["timeline"]).read_text())
    playbooks = {e["playbook"] for e in timeline}
    assert {"site.yml", "credential_refresh.yml", "reauth.yml", "permission_audit.yml"} <= playbooks
    assert (
        sum(1 for e in timeline if e["what"].endswith(" resolved") and e["source"] == "remediator")
        == 3
    )


def _ts(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_the_healed_host_is_healthy_with_one_cause_per_failed_run_and_its_incidents(
    story: Story,
) -> None:
    health = json.loads(Path(story.results["report"]["json"]).read_text())
    # AWS credentials are given to the remediator's unit only: checked as that unit sees them.
    aws = next(c for c in health["credentials"]["contexts"] if c["name"] == "aws_role")
    assert aws["status"] == "ok" and "jada-remediator.service" in aws["source"]
    assert health["verdict"] == "healthy", health["reasons"]
    # 8 failed sync runs: 8 failures, no row for systemd's own lines about them.
    sync = health["journal"]["units"]["port-sheet-sync.service"]
    assert (sync["failures"], sync["failed_runs"]) == (8, 8)
    assert all(r["signature"].startswith("[port-sheet]") for r in health["recurring"])
    handled = health["workload"]["incidents"]
    assert [(i["rule"], i["outcome"]) for i in handled] == [
        ("sheet-sync-token", "needs_human"),
        ("sheet-sync-token-permissions", "recovered"),
        ("sheet-sync-token", "recovered"),
    ]
    assert all(i["status"] == "resolved" and i["time_to_resolve"] for i in handled)
    assert handled[1]["resolved_by"] == "playbook permission_audit.yml"
