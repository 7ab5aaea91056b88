"""CloudWatch metrics (memory from the CloudWatch agent) in a host report, against moto's server."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from agent.aws.cloudwatch import CloudWatchError, metric_series
from agent.health.fleet import fleet_report, ingest

MEM = {"namespace": "CWAgent", "name": "mem_used_percent", "dimensions": {"host": "jada-a"},
       "stat": "Maximum"}  # fmt: skip


@pytest.fixture
def moto_cloudwatch(monkeypatch):
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for k, v in {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "AKIDCW",
                 "AWS_SECRET_ACCESS_KEY": "cw-not-secret", "AWS_DEFAULT_REGION": "us-east-1",
                 "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/dev/null",
                 "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}.items():  # fmt: skip
        monkeypatch.setenv(k, v)
    yield boto3.session.Session().client("cloudwatch", region_name="us-east-1")
    server.stop()


def _put(cw, when: datetime, value: float) -> None:
    cw.put_metric_data(
        Namespace="CWAgent",
        MetricData=[{"MetricName": "mem_used_percent", "Dimensions": [{"Name": "host", "Value": "jada-a"}],
                     "Timestamp": when, "Value": value, "Unit": "Percent"}],
    )  # fmt: skip


def test_metric_series_reads_the_agent_metric(moto_cloudwatch):
    end = datetime.now(UTC).replace(microsecond=0)
    _put(moto_cloudwatch, end - timedelta(minutes=30), 41.0)
    _put(moto_cloudwatch, end - timedelta(minutes=10), 44.0)
    series = metric_series([MEM], "us-east-1", end - timedelta(hours=2), end, 300)
    assert [v for _, v in series["CWAgent/mem_used_percent"]] == [41.0, 44.0]


def test_a_malformed_metric_spec_is_a_clear_error():
    with pytest.raises(CloudWatchError, match=r"cloudwatch metric 0: expected \{namespace, name"):
        metric_series([{"name": "x"}], "us-east-1", datetime.now(UTC), datetime.now(UTC), 300)


def test_memory_spike_from_cloudwatch_shows_as_an_anomaly_in_the_host_report(
    moto_cloudwatch, tmp_path
):
    end = datetime.now(UTC).replace(microsecond=0, second=0)
    _put(moto_cloudwatch, end - timedelta(hours=3), 40.0)
    _put(moto_cloudwatch, end - timedelta(hours=1), 96.0)
    audit = {"verdict": "healthy", "reasons": [], "findings": [], "recurring": [],
             "window": {"since": (end - timedelta(hours=6)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "until": end.strftime("%Y-%m-%dT%H:%M:%SZ")},
             "journal": {"timeline": {"bucket_s": 600, "units": {}}}}  # fmt: skip
    ingest({"host-a": {"audit": json.dumps(audit), "instance": "", "cloudwatch": [MEM]}},
           tmp_path, "us-east-1")  # fmt: skip
    report = json.loads((tmp_path / "hosts" / "host-a.json").read_text())
    assert [a["why"] for a in report["metrics"]["anomalies"]] == ["CWAgent/mem_used_percent 96%"]
    assert fleet_report(tmp_path)["hosts"][0]["host"] == "host-a"
