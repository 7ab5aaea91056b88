"""Amazon Lightsail through boto3: instances, temporary access details, instance metrics.

Errors become :class:`LightsailError` subclasses whose message names the instance, the region and
what to do (an unknown instance, access denied, a stopped instance), never a raw stack trace.
Endpoints follow botocore's own variables (``AWS_ENDPOINT_URL_LIGHTSAIL``), which the tests use to
reach the loopback fake.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import botocore.exceptions as bex
import botocore.session
from botocore.config import Config
from botocore.utils import parse_timestamp

# The seven metrics a health audit lines up against failures, with the statistic that shows an
# anomaly best and the unit Lightsail reports them in.
HEALTH_METRICS: dict[str, tuple[str, str]] = {
    "CPUUtilization": ("Maximum", "Percent"),
    "NetworkIn": ("Sum", "Bytes"),
    "NetworkOut": ("Sum", "Bytes"),
    "StatusCheckFailed": ("Maximum", "Count"),
    "StatusCheckFailed_Instance": ("Maximum", "Count"),
    "StatusCheckFailed_System": ("Maximum", "Count"),
    "BurstCapacityPercentage": ("Minimum", "Percent"),
}
MAX_DATAPOINTS = 1440


class LightsailError(RuntimeError):
    """A Lightsail call failed; the message says which instance, where, and what to do."""


class InstanceNotFound(LightsailError):
    pass


class AccessDenied(LightsailError):
    pass


class InstanceNotReady(LightsailError):
    pass


def _utc_timestamp(value: Any) -> datetime:
    """A timestamp of a reply as an aware UTC datetime. Lightsail's JSON gives epoch seconds;
    botocore's default parser gives them the local zone through dateutil at ~20 µs apiece, and a
    host's metrics for a week are 14,000 timestamps."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    return parse_timestamp(value)


def client(region: str, timeout: float = 20.0) -> Any:
    # A fresh session each time: the default session caches credentials and endpoints.
    core = botocore.session.get_session()
    core.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=_utc_timestamp
    )
    return boto3.session.Session(botocore_session=core).client(
        "lightsail",
        region_name=region,
        config=Config(
            connect_timeout=timeout,
            read_timeout=timeout,
            retries={"max_attempts": 2, "mode": "standard"},
        ),
    )


def _translate(exc: Exception, what: str, instance: str | None, region: str) -> LightsailError:
    where = f"instance {instance!r} in {region}" if instance else f"region {region}"
    if isinstance(exc, bex.ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        message = exc.response.get("Error", {}).get("Message", "")
        if code == "NotFoundException":
            return InstanceNotFound(
                f"{what}: no {where} (check the name with `jada-agent lightsail list`)"
            )
        if code in ("AccessDeniedException", "UnauthenticatedException", "AccessDenied"):
            return AccessDenied(
                f"{what} on {where}: access denied by AWS ({code}): {message}. The AWS identity "
                "needs lightsail:GetInstances/GetInstance/GetInstanceAccessDetails/"
                "GetInstanceMetricData"
            )
        if code == "InvalidInputException" and "not running" in message:
            return InstanceNotReady(f"{what}: {where} is not running ({message})")
        return LightsailError(f"{what} on {where}: {code}: {message}")
    if isinstance(exc, bex.NoCredentialsError):
        return AccessDenied(f"{what} on {where}: no AWS credentials found")
    return LightsailError(f"{what} on {where}: {type(exc).__name__}: {exc}")


@dataclass(frozen=True)
class Instance:
    name: str
    region: str
    state: str
    public_ip: str | None
    private_ip: str | None
    username: str | None
    tags: dict[str, str]
    blueprint: str | None
    bundle: str | None

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Instance:
        return cls(
            name=data["name"],
            region=data.get("location", {}).get("regionName", ""),
            state=data.get("state", {}).get("name", "unknown"),
            public_ip=data.get("publicIpAddress"),
            private_ip=data.get("privateIpAddress"),
            username=data.get("username"),
            tags={t["key"]: t.get("value", "") for t in data.get("tags", [])},
            blueprint=data.get("blueprintId"),
            bundle=data.get("bundleId"),
        )


def list_instances(region: str, lightsail: Any = None) -> Iterator[Instance]:
    """Every instance in a region (follows ``nextPageToken``)."""
    c = lightsail or client(region)
    token = None
    while True:
        try:
            page = c.get_instances(**({"pageToken": token} if token else {}))
        except (bex.ClientError, bex.BotoCoreError) as exc:
            raise _translate(exc, "get-instances", None, region) from None
        for item in page.get("instances", []):
            yield Instance.from_api(item)
        token = page.get("nextPageToken")
        if not token:
            return


def get_instance(name: str, region: str, lightsail: Any = None) -> Instance:
    c = lightsail or client(region)
    try:
        return Instance.from_api(c.get_instance(instanceName=name)["instance"])
    except (bex.ClientError, bex.BotoCoreError) as exc:
        raise _translate(exc, "get-instance", name, region) from None


def access_details(name: str, region: str, lightsail: Any = None) -> dict[str, Any]:
    """``get_instance_access_details`` for SSH: privateKey, certKey, expiresAt, hostKeys, ..."""
    c = lightsail or client(region)
    try:
        return c.get_instance_access_details(instanceName=name, protocol="ssh")["accessDetails"]
    except (bex.ClientError, bex.BotoCoreError) as exc:
        raise _translate(exc, "get-instance-access-details", name, region) from None


def metric_period(start: datetime, end: datetime) -> int:
    """The finest round period (5 min, 10 min, ...) that keeps the window under MAX_DATAPOINTS."""
    seconds = max(60.0, (end - start).total_seconds())
    for period in (300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400):
        if seconds / period < MAX_DATAPOINTS - 1:  # -1: a window rarely starts on a boundary
            return period
    return 86400


def metric_data(
    name: str,
    region: str,
    start: datetime,
    end: datetime,
    metrics: Iterable[str] = HEALTH_METRICS,
    period: int | None = None,
    lightsail: Any = None,
) -> dict[str, list[list[Any]]]:
    """``{metric: [[iso_time, value], ...]}`` for the window, sorted by time."""
    c = lightsail or client(region)
    period = period or metric_period(start, end)
    out: dict[str, list[list[Any]]] = {}
    for metric in metrics:
        stat, unit = HEALTH_METRICS[metric]
        try:
            reply = c.get_instance_metric_data(
                instanceName=name,
                metricName=metric,
                period=period,
                startTime=start,
                endTime=end,
                unit=unit,
                statistics=[stat],
            )
        except (bex.ClientError, bex.BotoCoreError) as exc:
            raise _translate(exc, f"get-instance-metric-data {metric}", name, region) from None
        key = stat[0].lower() + stat[1:]
        points = sorted(
            (p["timestamp"], p.get(key)) for p in reply.get("metricData", []) if "timestamp" in p
        )
        out[metric] = [[t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), v] for t, v in points]
    return out
