"""The verdict separates the daemon's own health from its dependents'."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agent import config
from agent.health.audit import audit_journal
from agent.health.verdict import decide
from tests.unit.health import journalgen

END = datetime(2026, 5, 20, 14, 15, tzinfo=UTC)
SETTINGS = config.Settings()
CORE = SETTINGS.health.core_units
SUB = SETTINGS.health.subsidiary_units


def test_sync_failing_every_30_min_while_the_daemon_is_fine_is_degraded(tmp_path):
    p = tmp_path / "j.json"
    journalgen.write(p, end=END, days=7, sync_failing_since=datetime(2026, 5, 13, 14, 30, tzinfo=UTC),
                     noise_per_hour=10)  # fmt: skip
    report = audit_journal(p, SETTINGS)
    assert report["verdict"] == "degraded"
    assert report["reasons"][0].startswith(
        "port-sheet-sync.service failing: '[port-sheet] token error: HTTP Error 400: invalid_grant"
    )
    assert "every 30 min since 2026-05-13 14:30Z" in report["reasons"][0]
    assert "no success in the window" in report["reasons"][0]
    assert any(r.startswith("jada-agent.service logging") for r in report["reasons"])


def test_daemon_crashing_is_failing(tmp_path):
    p = tmp_path / "j.json"
    journalgen.write(p, end=END, days=1, daemon_failing_since=END - timedelta(hours=6),
                     noise_per_hour=10)  # fmt: skip
    report = audit_journal(p, SETTINGS)
    assert report["verdict"] == "failing"
    assert report["reasons"][0].startswith("jada-agent.service failing:")


def test_quiet_journal_is_healthy(tmp_path):
    p = tmp_path / "j.json"
    journalgen.write(p, end=END, days=2, noise_per_hour=10)
    report = audit_journal(p, SETTINGS)
    assert report["verdict"] == "healthy"
    assert report["recurring"] == []


def test_failures_that_stopped_after_a_success_are_a_note_not_a_verdict(tmp_path):
    p = tmp_path / "j.json"
    records = list(journalgen.records(end=END - timedelta(days=1), days=2,
                                      sync_failing_since=END - timedelta(days=2, hours=-6),
                                      noise_per_hour=5))  # fmt: skip
    records += list(journalgen.records(end=END, days=1, noise_per_hour=5, seed=3))
    p.write_text("".join(journalgen.to_json_line(r, i) + "\n" for i, r in enumerate(records)))
    report = audit_journal(p, SETTINGS)
    assert report["verdict"] == "healthy"
    notes = [f["text"] for f in report["findings"] if f["severity"] == "info"]
    assert any("stopped" in n and "succeeded since" in n for n in notes)


def test_days_limits_the_window_to_the_end_of_the_journal(tmp_path):
    p = tmp_path / "j.json"
    journalgen.write(p, end=END, days=7, sync_failing_since=END - timedelta(days=5),
                     noise_per_hour=5)  # fmt: skip
    report = audit_journal(p, SETTINGS, days=1)
    token = next(r for r in report["recurring"] if r["signature"].startswith("[port-sheet]"))
    assert token["count"] == 48
    assert report["window"]["since"] >= "2026-05-19T14:"


def _unit(name: str, **kw) -> dict:
    base = {"unit": name, "load": "loaded", "active": "active", "sub": "running",
            "result": "success", "type": "simple", "restarts": 0, "since": "2026-05-10T12:00:00Z"}  # fmt: skip
    return base | kw


def _units(**over) -> dict:
    units = {
        "jada-agent.service": _unit("jada-agent.service", type="notify"),
        "port-sheet-sync.service": _unit(
            "port-sheet-sync.service", type="oneshot", active="inactive", sub="dead"
        ),
        "port-sheet-sync.timer": _unit("port-sheet-sync.timer", sub="waiting"),
        "jada-remediator.service": _unit("jada-remediator.service"),
    }
    for name, kw in over.items():
        units[
            name.replace("_", "-").replace("-service", ".service").replace("-timer", ".timer")
        ] |= kw
    return units


def test_units_all_fine_is_healthy_with_the_core_named():
    report = decide({"units": _units()}, CORE, SUB)
    assert report["verdict"] == "healthy"
    assert report["reasons"] == [
        "jada-agent.service active (running) since 2026-05-10 12:00Z, 0 restarts"
    ]


def test_sync_service_last_run_failed_is_degraded():
    units = _units(port_sheet_sync_service={"result": "exit-code", "main_status": 2,
                                            "main_exited": "2026-05-20T14:00:01Z"})  # fmt: skip
    report = decide({"units": units}, CORE, SUB)
    assert report["verdict"] == "degraded"
    assert (
        "port-sheet-sync.service: last run failed (result exit-code, status 2)"
        in report["reasons"][0]
    )


def test_core_inactive_is_failing():
    units = _units(jada_agent_service={"active": "failed", "sub": "failed", "result": "watchdog"})
    report = decide({"units": units}, CORE, SUB)
    assert report["verdict"] == "failing"
    assert report["reasons"][0].startswith("jada-agent.service is failed (watchdog)")


def test_core_restarting_is_degraded():
    report = decide({"units": _units(jada_agent_service={"restarts": 4})}, CORE, SUB)
    assert report["verdict"] == "degraded"


def test_missing_timer_is_degraded():
    units = _units(port_sheet_sync_timer={"load": "not-found", "active": "inactive"})
    report = decide({"units": units}, CORE, SUB)
    assert report["verdict"] == "degraded"
    assert "port-sheet-sync.timer is not installed" in report["reasons"][0]


def test_rejected_anthropic_key_is_failing_and_a_wide_secret_is_degraded():
    creds = {
        "contexts": [{"name": "anthropic_api_key", "status": "rejected", "detail": "401"}],
        "files": [],
    }
    assert decide({"units": _units(), "credentials": creds}, CORE, SUB)["verdict"] == "failing"
    creds = {
        "contexts": [{"name": "anthropic_api_key", "status": "ok", "detail": "listed"}],
        "files": [{"path": "/s/token", "ok": False, "problem": "mode 0644 is wider than 0600"}],
    }
    report = decide({"units": _units(), "credentials": creds}, CORE, SUB)
    assert report["verdict"] == "degraded"
    assert "secret /s/token: mode 0644 is wider than 0600" in report["reasons"]


def test_full_disk_is_degraded():
    res = {"disks": [{"path": "/", "used_pct": 97.5}], "memory": {"used_pct": 20.0}}
    report = decide({"units": _units(), "resources": res}, CORE, SUB)
    assert report["verdict"] == "degraded"
    assert "disk / 97.5% used" in report["reasons"]


def test_live_audit_without_unit_states_is_unknown_not_healthy():
    report = decide(
        {"mode": "live", "units": {}, "errors": ["units: systemctl show failed"]}, CORE, SUB
    )
    assert report["verdict"] == "unknown"
    assert report["reasons"] == ["audit incomplete: units: systemctl show failed"]
