"""The fleet report's metrics: every host's from its own region, through one client per region."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from agent.config import Settings
from agent.health.audit import audit_journal
from agent.health.fleet import AwsClients, ingest
from tests.unit.health import journalgen


def _audit(tmp_path, end: datetime) -> str:
    journal = tmp_path / "journal.json"
    journalgen.write(journal, end=end, days=1, noise_per_hour=5)
    return json.dumps(audit_journal(journal, Settings()))


def test_fleet_metrics_come_from_each_hosts_region_through_one_client_per_region(
    fake_lightsail, tmp_path
):
    end = datetime.now(UTC).replace(microsecond=0, second=0, minute=15)
    audit = _audit(tmp_path, end)
    fake_lightsail.add_instance("east-a")
    fake_lightsail.add_instance("east-b")
    fake_lightsail.add_instance("west-a", region="eu-west-1")
    fake_lightsail.spike("west-a", "CPUUtilization", (end - timedelta(hours=3)).timestamp(), 99)
    audits = {
        "a": {"audit": audit, "instance": "east-a", "region": "us-east-1"},
        "b": {"audit": audit, "instance": "east-b", "region": ""},  # the default region
        "w": {"audit": audit, "instance": "west-a", "region": "eu-west-1"},
    }
    assert ingest(audits, tmp_path / "reports", "us-east-1") == ["a", "b", "w"]
    for host in ("a", "b", "w"):
        metrics = json.loads((tmp_path / "reports" / "hosts" / f"{host}.json").read_text())[
            "metrics"
        ]
        assert "error" not in metrics, metrics.get("error")
        assert "CPUUtilization" in metrics["series"]
    west = json.loads((tmp_path / "reports" / "hosts" / "w.json").read_text())["metrics"]
    assert [a["why"] for a in west["anomalies"]] == ["CPU 99.0%"]
    asked = [
        b["instanceName"] for op, b in fake_lightsail.requests if op == "GetInstanceMetricData"
    ]
    assert sorted(set(asked)) == ["east-a", "east-b", "west-a"] and len(asked) == 3 * 7


def test_aws_clients_makes_one_client_per_service_and_region(fake_lightsail):
    clients = AwsClients()
    east = clients.get("lightsail", "us-east-1")
    assert clients.get("lightsail", "us-east-1") is east
    assert clients.get("lightsail", "eu-west-1") is not east
    assert clients.get("lightsail", "eu-west-1").meta.region_name == "eu-west-1"
    assert clients.get("cloudwatch", "us-east-1").meta.service_model.service_name == "cloudwatch"


def test_lightsail_timestamps_are_the_replys_instants_in_utc_whatever_the_local_zone(
    fake_lightsail, monkeypatch
):
    import time

    from agent.aws.lightsail import access_details, metric_data

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        fake_lightsail.add_instance("east-a")
        start = datetime(2026, 5, 20, 10, 2, tzinfo=UTC)
        series = metric_data("east-a", "us-east-1", start, start + timedelta(hours=1),
                             metrics=["CPUUtilization"], period=300)  # fmt: skip
        times = [t for t, _ in series["CPUUtilization"]]
        assert times[:2] == ["2026-05-20T10:00:00Z", "2026-05-20T10:05:00Z"] and len(times) == 13
        expires = access_details("east-a", "us-east-1")["expiresAt"]
        assert expires.utcoffset() == timedelta(0)
        assert abs(expires.timestamp() - (time.time() + 60)) < 30  # the fake's 60 s validity
    finally:
        monkeypatch.undo()
        time.tzset()
