"""The verdict of an audit: ``healthy``, ``degraded`` or ``failing``, with one line per reason
(``unknown`` when a live audit could not read the units' states at all).

The daemon's own health (the core units) is judged apart from its dependents' (the subsidiary
units): a core that runs while a subsidiary keeps failing is ``degraded`` — the production case of
a sync failing every 30 minutes for days while the daemon looked fine — and only a core problem
(or a dead Anthropic key, without which the core cannot work) is ``failing``.
"""

from __future__ import annotations

from typing import Any

from agent.health.signatures import human_period
from agent.journal import epoch_of

SEVERITY_ORDER = {"failing": 0, "degraded": 1, "unknown": 2, "ok": 3, "info": 4}
VERDICT_ORDER = {"failing": 0, "degraded": 1, "unknown": 2, "healthy": 3}
DISK_LIMIT_PCT = 90.0
MEMORY_LIMIT_PCT = 90.0


_ts = epoch_of  # one parser of report times for every health module (agent.journal)


def _short(text: str | None) -> str:
    return (text or "?").replace("T", " ")[:16] + "Z" if text else "?"


def _finding(severity: str, unit: str | None, text: str) -> dict[str, Any]:
    return {"severity": severity, "unit": unit, "text": text}


def _systemd_like(sig: str, unit: str) -> bool:
    # systemd's lines about a unit repeat its name; the unit's own line says why it failed.
    return unit in sig or sig.startswith(("Failed to start", "Failed with result"))


def journal_findings(
    journal: dict[str, Any], recurring: list[dict[str, Any]], core: set[str], subsidiary: set[str]
) -> list[dict[str, Any]]:
    """One finding per unit whose failures recur (current) or recurred (stopped since)."""
    end = _ts(journal.get("last"))
    by_unit: dict[str, list[dict[str, Any]]] = {}
    for item in recurring:
        by_unit.setdefault(item["unit"], []).append(item)
    out = []
    for unit, items in sorted(by_unit.items()):
        stats = journal.get("units", {}).get(unit, {})
        rep = max(items, key=lambda r: (not _systemd_like(r["signature"], unit), r["count"]))
        last_fail = _ts(stats.get("last_failure") or rep["last"])
        last_ok = _ts(stats.get("last_success"))
        period = rep.get("cadence_s") or 0
        recent = end is None or last_fail is None or end - last_fail <= max(2 * period, 3600)
        current = recent and (last_ok is None or (last_fail or 0) > last_ok)
        how = (
            f"every {human_period(period)} since {_short(rep['regular_since'])}"
            if period
            else f"between {_short(rep['first'])} and {_short(rep['last'])}"
        )
        if current:
            severity = "failing" if unit in core else "degraded" if unit in subsidiary else "info"
            success = (
                f"last success {_short(stats.get('last_success'))}"
                if stats.get("last_success")
                else "no success in the window"
            )
            text = (
                f"{unit} failing: '{rep['signature']}' {rep['count']}×, {how}; "
                f"last {_short(rep['last'])}, {success}"
            )
        else:
            severity = "info"
            text = (
                f"{unit}: '{rep['signature']}' {rep['count']}× {how}, stopped: last "
                f"{_short(rep['last'])}"
                + (f", succeeded since ({_short(stats.get('last_success'))})" if last_ok else "")
            )
        out.append(_finding(severity, unit, text))
    return out


def unit_findings(
    units: dict[str, dict[str, Any]], core: set[str], subsidiary: set[str]
) -> list[dict[str, Any]]:
    out = []
    for name in [*sorted(core), *sorted(subsidiary)]:
        u = units.get(name)
        if u is None:
            continue
        bad = "failing" if name in core else "degraded"
        since = f" since {_short(u.get('since'))}" if u.get("since") else ""
        if u.get("load") != "loaded":
            out.append(_finding(bad, name, f"{name} is not installed (load state {u.get('load')})"))
            continue
        if name.endswith(".timer"):
            if u.get("active") != "active":
                out.append(
                    _finding(bad, name, f"{name} is {u.get('active')}{since}: not scheduling")
                )
            else:
                nxt = _short(u.get("next_elapse")) if u.get("next_elapse") else "unknown"
                out.append(_finding("info", name, f"{name} waiting, next run {nxt}"))
            continue
        oneshot = u.get("type") == "oneshot"
        if oneshot:
            if u.get("result") not in (None, "success"):
                out.append(
                    _finding(
                        bad,
                        name,
                        f"{name}: last run failed (result {u.get('result')}, status "
                        f"{u.get('main_status')}) at {_short(u.get('main_exited'))}",
                    )
                )
            continue
        if u.get("active") != "active":
            out.append(
                _finding(bad, name, f"{name} is {u.get('active')} ({u.get('result')}){since}")
            )
            continue
        restarts = u.get("restarts") or 0
        if restarts:
            out.append(_finding("degraded", name, f"{name} restarted {restarts} times{since}"))
        elif name in core:
            out.append(_finding("ok", name, f"{name} active ({u.get('sub')}){since}, 0 restarts"))
    return out


def resource_findings(res: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for d in res.get("disks", []):
        if (d.get("used_pct") or 0) >= DISK_LIMIT_PCT:
            out.append(_finding("degraded", None, f"disk {d['path']} {d['used_pct']}% used"))
    mem = res.get("memory", {})
    if (mem.get("used_pct") or 0) >= MEMORY_LIMIT_PCT:
        out.append(_finding("degraded", None, f"memory {mem['used_pct']}% used"))
    return out


def credential_findings(creds: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for c in creds.get("contexts", []):
        status = c.get("status")
        if status in ("ok", "not checked", "not used"):
            sev = "info"
        elif c["name"] == "anthropic_api_key" and status in ("rejected", "missing"):
            sev = "failing"  # the daemon cannot run a session without it
        else:
            sev = "degraded"
        out.append(_finding(sev, None, f"credential {c['name']}: {status} ({c.get('detail')})"))
    for f in creds.get("files", []):
        if not f.get("ok"):
            out.append(_finding("degraded", None, f"secret {f['path']}: {f.get('problem')}"))
    return out


def workload_findings(work: dict[str, Any]) -> list[dict[str, Any]]:
    if not work.get("checked"):
        return [_finding("info", None, f"workload not checked: {work.get('why')}")]
    out = [
        _finding(
            "info",
            None,
            f"sessions today {work['sessions_today']} of {work['sessions_per_day']} "
            f"({work['turn_cap_hits_today']} hit the turn cap), queue {work['queue_depth']}, "
            f"needs-you {len(work['needs_you'])}, last successful sync "
            f"{_short(work.get('last_successful_sync')) if work.get('last_successful_sync') else 'never'}",
        )
    ]
    for inc in work.get("open_incidents", []):
        out.append(
            _finding(
                "info",
                None,
                f"incident {inc['id']} ({inc['rule']}) {inc['status']} since "
                f"{_short(inc['opened'])}: {inc.get('cause') or inc.get('summary') or ''}".rstrip(),
            )
        )
    return out


def decide(report: dict[str, Any], core: list[str], subsidiary: list[str]) -> dict[str, Any]:
    """Fill ``verdict``, ``reasons`` (one line each) and ``findings`` into ``report``."""
    core_s, sub_s = set(core), set(subsidiary)
    findings: list[dict[str, Any]] = []
    if report.get("units"):
        findings += unit_findings(report["units"], core_s, sub_s)
    if report.get("journal"):
        findings += journal_findings(report["journal"], report.get("recurring", []), core_s, sub_s)
    if report.get("resources"):
        findings += resource_findings(report["resources"])
    if report.get("credentials"):
        findings += credential_findings(report["credentials"])
    if report.get("workload"):
        findings += workload_findings(report["workload"])
    for err in report.get("errors", []):
        findings.append(_finding("unknown", None, f"audit incomplete: {err}"))
    severities = {f["severity"] for f in findings}
    verdict = (
        "failing"
        if "failing" in severities
        else "degraded"
        if "degraded" in severities
        else "healthy"
    )
    if verdict == "healthy" and report.get("mode") == "live" and not report.get("units"):
        # Without the units' states the core's health is not known: never call that healthy.
        verdict = "unknown"
    core_failing = any(f["severity"] == "failing" and f["unit"] in core_s for f in findings)
    if not core_failing and not any(f["severity"] == "ok" for f in findings):
        # Offline (no unit states): say what the journal shows about the core.
        for unit in core:
            stats = (report.get("journal") or {}).get("units", {}).get(unit)
            if stats is not None:
                findings.append(
                    _finding(
                        "ok",
                        unit,
                        f"{unit} logging ({stats['entries']} entries, last {_short(stats['last'])}), "
                        "no recurring failures",
                    )
                )
    findings.sort(key=lambda f: SEVERITY_ORDER[f["severity"]])
    reasons = [
        f["text"] for f in findings if f["severity"] in ("failing", "degraded", "unknown", "ok")
    ]
    report["verdict"] = verdict
    report["reasons"] = reasons
    report["findings"] = findings
    return report
