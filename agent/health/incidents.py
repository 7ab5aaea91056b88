"""The story of one remediator incident, for a person: cause, what was done, how it ended, who
resolved it and how long that took. Shared by the health report, the fleet report and
``jada-agent remediator incidents``; reads the incident's JSON (``Incident.to_json()``)."""

from __future__ import annotations

from typing import Any

from agent.journal import epoch_of

RESOLVED_BY_LINE = "resolved by: "


def _printable(text: str) -> str:
    # Causes, actions and resolving lines come from logs and playbooks: a terminal control
    # sequence in them is shown, never sent to the person's terminal.
    return "".join(c if c.isprintable() else repr(c)[1:-1] if c != "\n" else "\\n" for c in text)


def _duration(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s" if s % 60 else f"{s // 60} min"
    h, m = divmod(s // 60, 60)
    if h < 48:
        return f"{h} h {m:02d} min"
    return f"{h // 24} d {h % 24} h"


def resolved_by(inc: dict[str, Any]) -> str | None:
    """Who ended the incident: the playbook that recovered it, or the log line that showed the
    failure gone (after a person's fix, or by itself); None while it is not resolved."""
    if inc.get("status") != "resolved":
        return None
    for line in reversed((inc.get("summary") or "").splitlines()):
        if line.startswith(RESOLVED_BY_LINE):
            return "log line: " + line.removeprefix(RESOLVED_BY_LINE)[:160]
    runs = inc.get("remediations") or []
    for run in reversed(runs):
        if run.get("outcome") == "recovered":
            return f"playbook {run.get('playbook') or '?'}"
    return "unknown"


def story(inc: dict[str, Any]) -> dict[str, Any]:
    """One incident as JSON-ready facts: the fields a report lists."""
    runs = inc.get("remediations") or []
    actions: list[str] = []
    for run in runs:
        actions += [a for a in run.get("actions") or [] if a not in actions]
    opened, resolved = epoch_of(inc.get("opened")), epoch_of(inc.get("resolved"))
    ttr = resolved - opened if opened is not None and resolved is not None else None
    last = runs[-1] if runs else {}
    return {
        "id": inc.get("id"),
        "rule": inc.get("rule"),
        "group": inc.get("group") or {},
        "status": inc.get("status"),
        "opened": inc.get("opened"),
        "resolved": inc.get("resolved"),
        "cause": inc.get("cause") or last.get("cause") or None,
        "playbooks": list(dict.fromkeys(r.get("playbook") for r in runs if r.get("playbook"))),
        "runs": len(runs),
        "outcome": last.get("outcome") or last.get("status"),
        "actions": actions,
        "resolved_by": resolved_by(inc),
        "time_to_resolve_s": round(ttr, 1) if ttr is not None else None,
        "time_to_resolve": _duration(ttr) if ttr is not None else None,
    }


def describe(s: dict[str, Any]) -> list[str]:
    """Text lines for one incident story (the first line names it, the others are indented)."""
    group = ",".join(f"{k}={v}" for k, v in s["group"].items())
    head = f"#{s['id']} {s['rule']}{'[' + group + ']' if group else ''} {s['status']}"
    head += f", opened {(s['opened'] or '?').replace('T', ' ')[:16]}Z"
    if s["time_to_resolve"]:
        head += f", resolved in {s['time_to_resolve']}"
    lines = [head]
    lines.append(f"  cause: {s['cause'] or 'not named'}")
    if s["playbooks"]:
        lines.append(
            f"  playbook: {', '.join(s['playbooks'])} ({s['runs']} run{'s' if s['runs'] != 1 else ''}"
            f", last outcome {s['outcome']})"
        )
    else:
        lines.append("  playbook: none run")
    if s["actions"]:
        lines.append(f"  actions: {'; '.join(s['actions'])}")
    if s["resolved_by"]:
        lines.append(f"  resolved by: {s['resolved_by']}")
    return [_printable(line) for line in lines]
