"""The audit: one entry point for a live host (:func:`audit_host`) and one for a saved journal
(:func:`audit_journal`), each returning the report as JSON-ready data with its verdict."""

from __future__ import annotations

import io
import os
import socket
import time
from pathlib import Path
from typing import Any

from agent.config import Settings
from agent.health import verdict as verdict_mod
from agent.health.analysis import JournalAnalysis
from agent.health.creds import credentials as check_credentials
from agent.health.readers import read_live, read_stream
from agent.health.resources import resources
from agent.health.units import UnitsError, unit_facts
from agent.health.workload import workload
from agent.journal import iso_z

BUCKET_S = 600


def _units_of(settings: Settings) -> list[str]:
    return list(dict.fromkeys([*settings.health.core_units, *settings.health.subsidiary_units]))


def audit_host(
    settings: Settings,
    *,
    config_path: str | None = None,
    days: int | None = None,
    credentials: bool = True,
    systemctl: str = "systemctl",
    journalctl: str = "journalctl",
    now: float | None = None,
) -> dict[str, Any]:
    """Audit this host: units, N days of journal, resources, workload, credentials, verdict."""
    days = days or settings.health.days
    now = now or time.time()
    since = now - days * 86400
    names = _units_of(settings)
    report: dict[str, Any] = {
        "host": settings.host_name or socket.gethostname(),
        "generated": iso_z(now),
        "mode": "live",
        "window": {"since": iso_z(since), "until": iso_z(now), "days": days},
        "core_units": settings.health.core_units,
        "subsidiary_units": settings.health.subsidiary_units,
        "errors": [],
    }
    try:
        report["units"] = unit_facts(names, systemctl=systemctl)
    except UnitsError as exc:
        report["units"] = {}
        report["errors"].append(f"units: {exc}")
    analysis = JournalAnalysis(bucket_s=BUCKET_S, since=since)
    try:
        analysis.feed(read_live(since, now, names, journalctl=journalctl))
    except Exception as exc:  # a journal we cannot read is reported, the rest still runs
        report["errors"].append(f"journal: {exc}")
    _attach_journal(report, analysis)
    res = resources(["/", settings.state_dir])
    for name, u in report["units"].items():
        if u.get("memory_bytes") is not None:
            res.setdefault("units_memory", {})[name] = u["memory_bytes"]
    report["resources"] = res
    report["workload"] = workload(settings, days)
    if credentials:
        report["credentials"] = check_credentials(settings, config_path, systemctl=systemctl)
    return verdict_mod.decide(report, settings.health.core_units, settings.health.subsidiary_units)


def _attach_journal(report: dict[str, Any], analysis: JournalAnalysis) -> None:
    result = analysis.result()
    report["recurring"] = result.pop("recurring")
    report["journal"] = result


def last_timestamp(path: Path) -> float | None:
    """The time of a saved journal's last entry, read from its tail (None for .gz or no entry)."""
    if path.suffix == ".gz":
        return None
    size = path.stat().st_size
    with path.open("rb") as fh:
        for chunk in (65536, 1 << 20, size):
            fh.seek(max(0, size - chunk))
            tail = fh.read()
            lines = tail.splitlines()[1:] if size > chunk else tail.splitlines()
            for line in reversed(lines):
                if not line.strip():
                    continue
                for entry in read_stream(io.BufferedReader(io.BytesIO(line + b"\n")), str(path)):
                    return entry[0]
            if chunk >= size:
                break
    return None


def audit_journal(
    path: str | os.PathLike[str], settings: Settings, days: int | None = None
) -> dict[str, Any]:
    """Audit a saved journal (``journalctl -o json`` export or ``-o short-iso`` text).

    With ``days``, only the last N days before the journal's last entry count.
    """
    # Here, not at the top: a live audit on every host would import multiprocessing for nothing.
    from agent.health.parallel import analyse_path

    p = Path(path)
    since = None
    if days:
        end = last_timestamp(p)
        since = end - days * 86400 if end is not None else None
    analysis = analyse_path(p, bucket_s=BUCKET_S, since=since)
    report: dict[str, Any] = {
        "host": None,
        "generated": iso_z(time.time()),
        "mode": "journal",
        "source": str(p),
        "core_units": settings.health.core_units,
        "subsidiary_units": settings.health.subsidiary_units,
        "errors": [],
    }
    _attach_journal(report, analysis)
    j = report["journal"]
    report["window"] = {"since": j["first"], "until": j["last"], "days": days}
    return verdict_mod.decide(report, settings.health.core_units, settings.health.subsidiary_units)
