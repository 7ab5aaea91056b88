"""Controller side of ``playbooks/health.yml``: per-host reports with Lightsail metrics lined up
against the failures, and the fleet summary (worst verdict first).

Layout under the reports directory: ``raw/<host>.json`` (what ``jada-agent health --json`` printed
on the host), ``hosts/<host>.json`` and ``hosts/<host>.html`` (the host report with metrics), and
``fleet.json``, ``fleet.html`` (template ``agent/templates/fleet_report.html.j2``), ``fleet.txt``.
"""

from __future__ import annotations

import json
import re
import statistics
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.health.incidents import describe as describe_incident
from agent.health.report import VERDICT_COLOURS, render_html, templates
from agent.health.verdict import VERDICT_ORDER
from agent.journal import epoch_of


class FleetError(ValueError):
    """A report file is missing or malformed; the message names it and the expected form."""


_ts = epoch_of  # one parser of report times for every health module (agent.journal)


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "host"


def load_report(path: Path, text: str | dict[str, Any] | None = None) -> dict[str, Any]:
    """A health report from ``path`` (or from ``text``, named ``path`` in errors)."""
    try:
        if isinstance(text, dict):
            data: Any = text
        else:
            data = json.loads(path.read_text(encoding="utf-8") if text is None else text)
    except FileNotFoundError:
        raise FleetError(f"{path}: no such report") from None
    except (OSError, ValueError) as exc:
        raise FleetError(
            f"{path}: expected the JSON of `jada-agent health --json` ({exc})"
        ) from None
    if not isinstance(data, dict) or "verdict" not in data or "window" not in data:
        raise FleetError(
            f"{path}: expected an object with 'verdict' and 'window' (a health report)"
        )
    return data


# --------------------------------------------------------------------------- anomalies


def anomalies(series: dict[str, list[list[Any]]]) -> list[dict[str, Any]]:
    """Points that stand out: a failed status check, CPU pegged or far above its usual level,
    burst capacity nearly spent, network far above its usual level, a CloudWatch ``*used_percent``
    (memory, disk) at 90 % or more."""
    out = []
    for metric, points in series.items():
        values = [v for _, v in points if v is not None]
        if not values:
            continue
        mean = statistics.fmean(values)
        sd = statistics.pstdev(values) if len(values) > 1 else 0.0
        for when, v in points:
            if v is None:
                continue
            why = None
            if metric.startswith("StatusCheckFailed") and v > 0:
                why = "status check failed"
            elif metric == "CPUUtilization" and (v >= 80 or (v > 10 and sd and v > mean + 4 * sd)):
                why = f"CPU {v:.1f}%"
            elif metric == "BurstCapacityPercentage" and v < 20:
                why = f"burst capacity {v:.0f}%"
            elif metric.startswith("Network") and sd and v > mean + 4 * sd and v > 2 * mean:
                why = f"{metric} {v:.0f} B"
            elif metric.lower().endswith(("used_percent", "utilization")) and v >= 90:
                why = f"{metric} {v:.0f}%"
            if why:
                out.append({"metric": metric, "time": when, "value": v, "why": why})
    return out


def _windows(n: int) -> str:
    return "window" if n == 1 else "windows"


def line_up(
    report: dict[str, Any], found: list[dict[str, Any]], period_s: int
) -> tuple[list[str], list[str]]:
    """Per unit with failures: how many failure windows coincide with a metric anomaly."""
    timeline = report.get("journal", {}).get("timeline", {})
    bucket = int(timeline.get("bucket_s", 600))
    slack = max(period_s, bucket)
    marks = sorted((t, a) for a in found if (t := _ts(a["time"])) is not None)
    failure_times: list[str] = []
    lines = []
    for unit, buckets in sorted(timeline.get("units", {}).items()):
        hits: dict[str, int] = {}
        total = 0
        for when, _n in buckets:
            failure_times.append(when)
            t = _ts(when)
            if t is None:
                continue
            total += 1
            near = {a["metric"] for at, a in marks if t - slack <= at <= t + bucket + slack}
            for m in near:
                hits[m] = hits.get(m, 0) + 1
        if not total:
            continue
        if hits:
            parts = ", ".join(f"{m} in {n}" for m, n in sorted(hits.items(), key=lambda x: -x[1]))
            lines.append(
                f"{unit}: failures in {total} {_windows(total)} of {bucket // 60} min; "
                f"anomalies nearby: {parts}"
            )
        else:
            lines.append(
                f"{unit}: failures in {total} {_windows(total)} of {bucket // 60} min; none "
                "coincides with a metric anomaly (not a resource or instance problem)"
            )
    if not found:
        lines.append("no metric anomaly in the window (status checks passed, CPU and burst normal)")
    return lines, failure_times


# --------------------------------------------------------------------------- reports


class AwsClients:
    """One boto3 client per (service, region), shared by the threads that fetch a fleet's metrics.

    Making a client costs ~0.1 s of CPU (botocore loads and builds the service model), a fleet
    report fetches every host's metrics, and a client is safe to share between threads: one per
    region keeps the controller's work per host to the calls themselves.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._made: dict[tuple[str, str], Any] = {}

    def get(self, service: str, region: str) -> Any:
        """The client of ``service`` ("lightsail" or "cloudwatch") for ``region``."""
        with self._lock:  # one build per key; the others wait for it instead of building it again
            made = self._made.get((service, region))
            if made is None:
                if service == "lightsail":
                    from agent.aws.lightsail import client
                else:
                    from agent.aws.cloudwatch import client
                made = self._made[(service, region)] = client(region)
            return made


def host_report(
    health_file: Path,
    out_dir: Path,
    *,
    name: str | None = None,
    instance: str | None = None,
    region: str = "us-east-1",
    text: str | dict[str, Any] | None = None,
    cloudwatch: list[Any] | None = None,
    clients: AwsClients | None = None,
) -> dict[str, Any]:
    """Add the instance's Lightsail metrics to a host's audit; write ``hosts/<name>.{json,html}``.

    With ``text`` (the audit read from stdin), the audit is also saved as ``raw/<name>.json``.
    ``clients``: the AWS clients to share with other hosts (a fresh client per call without it).
    """
    report = load_report(health_file, text)
    report["host"] = name or report.get("host") or health_file.stem
    if text is not None:
        raw = out_dir / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        raw_text = text if isinstance(text, str) else json.dumps(text, indent=1)
        (raw / f"{_safe_name(report['host'])}.json").write_text(raw_text.rstrip("\n") + "\n")
    if instance or cloudwatch:
        report["metrics"] = _metrics(report, instance, region, cloudwatch, clients)
    hosts = out_dir / "hosts"
    hosts.mkdir(parents=True, exist_ok=True)
    base = hosts / _safe_name(report["host"])
    base.with_suffix(".json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    base.with_suffix(".html").write_text(render_html(report))
    return report


def _metrics(
    report: dict[str, Any],
    instance: str | None,
    region: str,
    cloudwatch: list[Any] | None,
    clients: AwsClients | None = None,
) -> dict[str, Any]:
    from datetime import UTC

    from agent.aws.lightsail import LightsailError, metric_data, metric_period

    start_ts, end_ts = _ts(report["window"].get("since")), _ts(report["window"].get("until"))
    out: dict[str, Any] = {"instance": instance, "region": region}
    if start_ts is None or end_ts is None:
        return out | {"error": "the report has no window"}
    start = datetime.fromtimestamp(start_ts, UTC)
    end = datetime.fromtimestamp(end_ts, UTC)
    period = metric_period(start, end)
    out["period_s"] = period
    series: dict[str, list[list[Any]]] = {}
    errors = []
    if instance:
        try:
            lightsail = clients.get("lightsail", region) if clients else None
            series.update(
                metric_data(instance, region, start, end, period=period, lightsail=lightsail)
            )
        except LightsailError as exc:
            errors.append(f"Lightsail metrics not available: {exc}")
    if cloudwatch:
        from agent.aws.cloudwatch import CloudWatchError, metric_series

        try:
            watch = clients.get("cloudwatch", region) if clients else None
            series.update(metric_series(cloudwatch, region, start, end, period, cloudwatch=watch))
        except CloudWatchError as exc:
            errors.append(f"CloudWatch metrics not available: {exc}")
    if errors:
        out["error"] = "; ".join(errors)
    found = anomalies(series)
    lineup, failure_times = line_up(report, found, period)
    return out | {
        "series": series,
        "anomalies": found,
        "lineup": lineup if series else [],
        "failure_times": failure_times,
    }


def ingest(
    audits: dict[str, Any], out_dir: Path, default_region: str, workers: int = 8
) -> list[str]:
    """Write every host's report from ``{host: {"audit", "instance", "region"}}`` (the playbook
    hands them over in one go), fetching the hosts' metrics concurrently through one AWS client
    per region."""
    from concurrent.futures import ThreadPoolExecutor

    if not isinstance(audits, dict) or not audits:
        raise FleetError("audits: expected a mapping of host name to {audit, instance, region}")
    clients = AwsClients()

    def one(item: tuple[str, Any]) -> None:
        host, entry = item
        if not isinstance(entry, dict) or "audit" not in entry:
            raise FleetError(f"audits.{host}: expected {{audit, instance, region}}")
        host_report(
            Path(f"<audit of {host}>"),
            out_dir,
            name=host,
            instance=entry.get("instance") or None,
            region=entry.get("region") or default_region,
            text=entry["audit"],
            cloudwatch=entry.get("cloudwatch") or None,
            clients=clients,
        )

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(audits)))) as pool:
        list(pool.map(one, sorted(audits.items())))
    return sorted(audits)


FLEET_TEXT_INCIDENTS = 5


def fleet_report(
    reports_dir: Path,
    only: list[str] | None = None,
    unreached: Sequence[str] = (),
) -> dict[str, Any]:
    """Summarise the host reports, worst verdict first; write fleet.json, fleet.html, fleet.txt.

    ``only``: the hosts of this run (reports left by earlier runs for other hosts are ignored);
    without it, every ``hosts/*.json``. ``unreached``: hosts the run could not audit.
    """
    if only is None:
        files = sorted((reports_dir / "hosts").glob("*.json"))
    else:
        files = [reports_dir / "hosts" / f"{_safe_name(h)}.json" for h in sorted(only)]
    if not files and not unreached:
        raise FleetError(f"{reports_dir / 'hosts'}: no host reports (*.json) to summarise")
    hosts: list[dict[str, Any]] = [
        {"host": h, "file": _safe_name(h), "verdict": "unknown", "lineup": [],
         "reasons": ["not audited: the host failed or was unreachable in this run"],
         "metrics_error": None, "window": None, "incidents": []}
        for h in unreached
    ]  # fmt: skip
    for f in files:
        r = load_report(f)
        metrics = r.get("metrics") or {}
        handled = (r.get("workload") or {}).get("incidents") or []
        hosts.append(
            {
                "host": r.get("host") or f.stem,
                "file": f.stem,
                "verdict": r["verdict"],
                "reasons": r.get("reasons", []),
                "lineup": metrics.get("lineup", []),
                "metrics_error": metrics.get("error"),
                "window": r.get("window"),
                "incidents": handled,
            }
        )
    hosts.sort(key=lambda h: (VERDICT_ORDER.get(h["verdict"], 9), h["host"]))
    tally: dict[str, int] = {}
    for h in hosts:
        tally[h["verdict"]] = tally.get(h["verdict"], 0) + 1
    counts = ", ".join(
        f"{n} {v}" for v, n in sorted(tally.items(), key=lambda x: VERDICT_ORDER.get(x[0], 9))
    )
    lines = [f"fleet: {len(hosts)} host{'s' if len(hosts) != 1 else ''}: {counts}"]
    for h in hosts:
        first = h["reasons"][0] if h["reasons"] else ""
        lines.append(f"{h['verdict'].upper():<9} {h['host']}: {first}")
        lines += [f"{'':<10}{r}" for r in h["reasons"][1:3]]
        # The latest few per host; the host report and its HTML list them all.
        shown = h["incidents"][-FLEET_TEXT_INCIDENTS:]
        if len(h["incidents"]) > len(shown):
            lines.append(f"{'':<10}({len(h['incidents']) - len(shown)} earlier incidents)")
        for inc in shown:
            lines += [f"{'':<10}{line}" for line in describe_incident(inc)]
    lines.append(f"reports: {reports_dir / 'fleet.html'}")
    text = "\n".join(lines) + "\n"
    summary = {"hosts": hosts, "counts": tally, "worst": hosts[0]["verdict"], "text": text}
    (reports_dir / "fleet.json").write_text(json.dumps(summary, indent=1) + "\n")
    (reports_dir / "fleet.txt").write_text(text)
    page = templates().get_template("fleet_report.html.j2")
    (reports_dir / "fleet.html").write_text(
        page.render(hosts=hosts, counts=counts, colours=VERDICT_COLOURS)
    )
    return summary
