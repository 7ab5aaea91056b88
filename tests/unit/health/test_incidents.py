"""Incidents handled in the window, in the health report (text, JSON, HTML), the fleet report and
`remediator incidents`: cause, playbook and actions, outcome, who resolved, time to resolve."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from agent import config
from agent.health.fleet import fleet_report, host_report
from agent.health.report import render_html, render_text
from agent.health.verdict import decide
from agent.health.workload import workload
from agent.store import open_store

NOW = datetime(2026, 5, 13, 9, 0, tzinfo=UTC)


def _seed(s) -> None:
    """Two handled incidents: one the playbook healed in 4 min, one a person fixed (a sync ok
    line resolved it) after the playbook escalated; and one from long before the window."""
    with open_store(s) as store:
        old = store.open_incident("sheet-sync-token", {}, now=NOW - timedelta(days=30))
        store.update_incident(old.id, status="resolved", now=NOW - timedelta(days=30))
        healed = store.open_incident("sheet-sync-perms", {"unit": "port-sheet-sync.service"},
                                     summary="permission denied", now=NOW - timedelta(hours=3))  # fmt: skip
        store.update_incident(healed.id, status="remediating", now=NOW - timedelta(hours=3))
        store.update_incident(
            healed.id,
            status="resolved",
            cause="token_file_mode",
            remediation={
                "playbook": "permission-audit.yml",
                "status": "successful",
                "outcome": "recovered",
                "cause": "token_file_mode",
                "actions": ["chmod 0600 google-token.json"],
            },
            now=NOW - timedelta(hours=3) + timedelta(minutes=4),
        )
        human = store.open_incident("sheet-sync-token", {"status": "400"},
                                    summary="token error", now=NOW - timedelta(hours=2))  # fmt: skip
        store.update_incident(
            human.id,
            status="escalated",
            cause="refresh_token_revoked",
            remediation={
                "playbook": "credential-refresh.yml",
                "status": "successful",
                "outcome": "needs_human",
                "cause": "refresh_token_revoked",
                "actions": ["pulled newer credentials: none"],
            },
            now=NOW - timedelta(hours=2) + timedelta(minutes=1),
        )
        store.update_incident(
            human.id,
            status="resolved",
            summary="token error\nresolved by: [port-sheet] sync ok rows=40",
            now=NOW - timedelta(hours=1),
        )


def test_workload_lists_the_incidents_handled_in_the_window(settings_factory):
    s = settings_factory()
    _seed(s)
    handled = workload(s, days=7, now=NOW)["incidents"]
    assert [i["rule"] for i in handled] == ["sheet-sync-perms", "sheet-sync-token"]
    perms, token = handled
    assert perms["cause"] == "token_file_mode"
    assert perms["playbooks"] == ["permission-audit.yml"]
    assert perms["actions"] == ["chmod 0600 google-token.json"]
    assert perms["outcome"] == "recovered"
    assert perms["resolved_by"] == "playbook permission-audit.yml"
    assert (perms["time_to_resolve_s"], perms["time_to_resolve"]) == (240.0, "4 min")
    assert token["outcome"] == "needs_human"
    assert token["resolved_by"] == "log line: [port-sheet] sync ok rows=40"
    assert token["time_to_resolve"] == "1 h 00 min"


def _report(s) -> dict:
    report = {
        "host": "h1",
        "mode": "live",
        "errors": [],
        "window": {"since": "2026-05-06T09:00:00Z", "until": "2026-05-13T09:00:00Z", "days": 7},
        "workload": workload(s, 7, now=NOW),
    }
    return decide(report, [], [])


def test_text_and_html_reports_show_cause_action_outcome_and_time_to_resolve(settings_factory):
    s = settings_factory()
    _seed(s)
    report = _report(s)
    text = render_text(report)
    assert "incidents in the window (2):" in text
    assert "#2 sheet-sync-perms[unit=port-sheet-sync.service] resolved" in text
    assert "resolved in 4 min" in text
    assert "cause: token_file_mode" in text
    assert "playbook: permission-audit.yml (1 run, last outcome recovered)" in text
    assert "actions: chmod 0600 google-token.json" in text
    assert "resolved by: log line: [port-sheet] sync ok rows=40" in text
    html = render_html(report)
    assert "refresh_token_revoked" in html and "credential-refresh.yml" in html
    assert "1 h 00 min" in html and "needs_human" in html


def test_fleet_report_lists_each_hosts_incidents(settings_factory, tmp_path):
    s = settings_factory()
    _seed(s)
    report = _report(s)
    out = tmp_path / "reports"
    host_report(Path("<audit>"), out, name="h1", text=json.dumps(report))
    summary = fleet_report(out, ["h1"])
    assert "#2 sheet-sync-perms" in summary["text"]
    assert "resolved by: playbook permission-audit.yml" in summary["text"]
    html = (out / "fleet.html").read_text()
    assert (
        "token_file_mode" in html and "resolved by playbook permission-audit.yml in 4 min" in html
    )


def test_remediator_incidents_text_shows_playbook_outcome_actions_and_who_resolved(
    settings_factory, tmp_path
):
    s = settings_factory()
    _seed(s)
    cfg = tmp_path / "agent.yml"
    cfg.write_text(yaml.safe_dump(config.to_dict(s)))
    out = subprocess.run(
        [sys.executable, "-m", "agent", "-c", str(cfg), "remediator", "incidents"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "playbook: credential-refresh.yml (1 run, last outcome needs_human)" in out.stdout
    assert "actions: pulled newer credentials: none" in out.stdout
    assert "resolved by: playbook permission-audit.yml" in out.stdout


def test_a_control_sequence_in_a_resolving_log_line_is_shown_not_sent():
    from agent.health.incidents import describe, story

    inc = {"id": 1, "rule": "r", "status": "resolved", "opened": "2026-05-13T09:00:00Z",
           "resolved": "2026-05-13T09:01:00Z",
           "summary": "x\nresolved by: sync ok \x1b]0;pwned\x07\x1b[2J"}  # fmt: skip
    text = "\n".join(describe(story(inc)))
    assert "\x1b" not in text and "\x07" not in text
    assert "\\x1b]0;pwned\\x07" in text
