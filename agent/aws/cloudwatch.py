"""CloudWatch metrics for a health report: what Lightsail does not measure (memory, disk, the
agent's own custom metrics) when a host publishes it (CloudWatch agent, ``put-metric-data``).

A metric is named in a host variable as ``{"namespace", "name", "dimensions": {k: v}, "stat"}``;
the series comes back in the same shape as Lightsail's: ``[[iso_time, value], ...]``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import boto3
import botocore.exceptions as bex
from botocore.config import Config


class CloudWatchError(RuntimeError):
    pass


def client(region: str, timeout: float = 20.0) -> Any:
    return boto3.session.Session().client(
        "cloudwatch",
        region_name=region,
        config=Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 2}),
    )


def _check(spec: Any, index: int) -> dict[str, Any]:
    if not isinstance(spec, dict) or not spec.get("namespace") or not spec.get("name"):
        raise CloudWatchError(
            f"cloudwatch metric {index}: expected {{namespace, name, dimensions, stat}}, got {spec!r}"
        )
    dims = spec.get("dimensions") or {}
    if not isinstance(dims, dict):
        raise CloudWatchError(f"cloudwatch metric {index}: dimensions must be a mapping")
    return {
        "namespace": str(spec["namespace"]),
        "name": str(spec["name"]),
        "dimensions": {str(k): str(v) for k, v in dims.items()},
        "stat": str(spec.get("stat") or "Average"),
    }


def metric_series(
    specs: list[Any],
    region: str,
    start: datetime,
    end: datetime,
    period: int,
    cloudwatch: Any = None,
) -> dict[str, list[list[Any]]]:
    """``{"<namespace>/<name>": [[iso_time, value], ...]}`` through one ``get_metric_data`` call."""
    checked = [_check(s, i) for i, s in enumerate(specs)]
    if not checked:
        return {}
    c = cloudwatch or client(region)
    queries = [
        {
            "Id": f"m{i}",
            "MetricStat": {
                "Metric": {
                    "Namespace": s["namespace"],
                    "MetricName": s["name"],
                    "Dimensions": [{"Name": k, "Value": v} for k, v in s["dimensions"].items()],
                },
                "Period": period,
                "Stat": s["stat"],
            },
            "ReturnData": True,
        }
        for i, s in enumerate(checked)
    ]
    found: dict[str, dict[datetime, float]] = {f"m{i}": {} for i in range(len(checked))}
    token = None
    try:
        while True:
            kwargs: dict[str, Any] = {
                "MetricDataQueries": queries,
                "StartTime": start,
                "EndTime": end,
                "ScanBy": "TimestampAscending",
            }
            if token:
                kwargs["NextToken"] = token
            reply = c.get_metric_data(**kwargs)
            for result in reply.get("MetricDataResults", []):
                for t, v in zip(
                    result.get("Timestamps", []), result.get("Values", []), strict=False
                ):
                    found[result["Id"]][t] = v
            token = reply.get("NextToken")
            if not token:
                break
    except (bex.ClientError, bex.BotoCoreError) as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
        raise CloudWatchError(f"cloudwatch get-metric-data in {region}: {code}") from None
    out = {}
    for i, s in enumerate(checked):
        points = sorted(found[f"m{i}"].items())
        out[f"{s['namespace']}/{s['name']}"] = [
            [t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), v] for t, v in points
        ]
    return out
