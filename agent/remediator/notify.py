"""What a person is told, and through which channels: the messages and the channel list.

Every event that needs a human becomes a :class:`Notice`: a thread key and title shared by all
the messages of one incident (so a chat, a mail client or a pager can follow it as one thread),
and a short plain text that is the same on every channel. The events: an incident needs a
person, a remediation failed, a circuit breaker opened, an incident resolved, a reminder, a
needs-you task, a credential forecast, a flood summary and a test.

Channels come from ``remediator.notify``: the Slack-compatible webhook, the SNS topic and every
apprise URL. A channel's name (``webhook``, ``sns``, ``<scheme>-<8 hex>``) is what logs, the
outbox and ``remediator status`` show; the URL itself is a secret and appears nowhere but in the
delivery process's stdin. Delivery is the outbox's business (``agent/remediator/outbox.py``).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.config import Settings

EVENTS = (
    "needs_person",
    "remediation_failed",
    "breaker_opened",
    "resolved",
    "reminder",
    "needs_you_task",
    "credential_forecast",
    "overflow",
    "remediator_fault",
    "test",
)


@dataclass
class Notice:
    """One message for a person: the same title and text on every channel."""

    event: str
    host: str
    thread: str  # one incident's (or task's) messages share it
    title: str  # the thread's title: the same for every message of the thread
    text: str
    incident_id: int | None = None
    fields: dict[str, Any] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        """The webhook's JSON: Slack's ``text`` plus structured fields."""
        return {
            "text": self.text,
            "title": self.title,
            "thread": self.thread,
            "event": self.event,
            "host": self.host,
            "incident": self.incident_id,
            **self.fields,
        }

    def to_row(self) -> dict[str, Any]:
        return {"title": self.title, "text": self.text, "payload": self.payload()}


def host_of(settings: Settings) -> str:
    return settings.host_name or os.uname().nodename


def _group(group: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(group.items()))


def _incident_thread(
    host: str, incident_id: int, rule: str, group: dict[str, str]
) -> tuple[str, str]:
    g = _group(group)
    title = f"[jada-agent] {host}: {rule}{' [' + g + ']' if g else ''} (incident #{incident_id})"
    return f"incident-{incident_id}@{host}", title


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    return f"{seconds // 86400}d{(seconds % 86400) // 3600}h"


def _incident_notice(
    event: str,
    host: str,
    incident_id: int,
    rule: str,
    group: dict[str, str],
    lines: list[str],
    **fields: Any,
) -> Notice:
    thread, title = _incident_thread(host, incident_id, rule, group)
    lines = [*lines, f"Details: jada-agent remediator incidents (on {host})"]
    return Notice(
        event=event,
        host=host,
        thread=thread,
        title=title,
        text="\n".join(line for line in lines if line),
        incident_id=incident_id,
        fields={"rule": rule, "group": dict(group), **fields},
    )


def needs_person(
    host: str,
    incident_id: int,
    rule: str,
    group: dict[str, str],
    reason: str,
    cause: str = "",
    findings: list[str] | None = None,
    next_step: str = "",
) -> Notice:
    findings = [f for f in (findings or []) if f][:8]
    lines = [f"NEEDS A PERSON: {host}: {rule} (incident #{incident_id})", f"Why: {reason}"]
    if cause:
        lines.append(f"Cause: {cause}")
    lines += [f"Found: {f}" for f in findings]
    if next_step:
        lines.append(f"Do this: {next_step}")
    return _incident_notice(
        "needs_person",
        host,
        incident_id,
        rule,
        group,
        lines,
        status="escalated",
        reason=reason,
        cause=cause,
        findings=findings,
        next_step=next_step,
    )


def remediation_failed(
    host: str,
    incident_id: int,
    rule: str,
    group: dict[str, str],
    playbook: str,
    status: str,
    error: str,
    task_message: str = "",
) -> Notice:
    lines = [
        f"REMEDIATION FAILED: {host}: {rule} (incident #{incident_id})",
        f"Playbook: {playbook}: {status}",
    ]
    if task_message:
        lines.append(f"Failing task: {task_message}")
    if error:
        lines.append(f"Error: {error}")
    lines.append("The rule will try again on its next fire; its breaker counts the failures.")
    return _incident_notice(
        "remediation_failed",
        host,
        incident_id,
        rule,
        group,
        lines,
        playbook=playbook,
        outcome=status,
        error=error,
        task_message=task_message,
    )


def breaker_opened(
    host: str, incident_id: int, rule: str, group: dict[str, str], reason: str
) -> Notice:
    reset = f"jada-agent remediator reset {rule}"
    lines = [
        f"BREAKER OPEN: {host}: {rule} (incident #{incident_id})",
        f"Why: {reason}",
        "Until: a person resets it; no remediation runs for this rule meanwhile.",
        f"Reset (after fixing the cause): {reset}",
    ]
    return _incident_notice(
        "breaker_opened", host, incident_id, rule, group, lines, reason=reason, next_step=reset
    )


def resolved(
    host: str,
    incident_id: int,
    rule: str,
    group: dict[str, str],
    how: str,
    opened: datetime,
    closed: datetime,
) -> Notice:
    took = (closed - opened).total_seconds()
    lines = [
        f"RESOLVED: {host}: {rule} (incident #{incident_id}) after {_age(took)}",
        f"How: {how}",
    ]
    return _incident_notice(
        "resolved", host, incident_id, rule, group, lines, how=how, seconds_to_resolve=round(took)
    )


def incident_reminder(
    host: str,
    incident_id: int,
    rule: str,
    group: dict[str, str],
    since: datetime,
    now: datetime,
    next_step: str,
) -> Notice:
    lines = [
        f"REMINDER: {host}: {rule} (incident #{incident_id}) still needs a person,"
        f" open for {_age((now - since).total_seconds())}",
    ]
    if next_step:
        lines.append(f"Do this: {next_step}")
    return _incident_notice("reminder", host, incident_id, rule, group, lines, next_step=next_step)


def _task_thread(host: str, task_id: int, title: str) -> tuple[str, str]:
    return f"task-{task_id}@{host}", f"[jada-agent] {host}: needs-you task #{task_id}: {title}"[
        :200
    ]


def needs_you_task(host: str, task_id: int, title: str, body: str) -> Notice:
    thread, ttitle = _task_thread(host, task_id, title)
    lines = [f"NEEDS YOU: {host}: task #{task_id}: {title}"]
    if body:
        lines.append(body.strip()[:1500])
    lines.append(f"Answer it: jada-agent tasks done {task_id} --note '...' (on {host})")
    return Notice(
        "needs_you_task", host, thread, ttitle, "\n".join(lines), fields={"task": task_id}
    )


def task_reminder(host: str, task_id: int, title: str, since: datetime, now: datetime) -> Notice:
    thread, ttitle = _task_thread(host, task_id, title)
    text = (
        f"REMINDER: {host}: needs-you task #{task_id} still open for"
        f" {_age((now - since).total_seconds())}: {title}\n"
        f"Answer it: jada-agent tasks done {task_id} --note '...' (on {host})"
    )
    return Notice("reminder", host, thread, ttitle, text, fields={"task": task_id})


def credential_forecast(host: str, fc: dict[str, Any]) -> Notice:
    text = (
        f"CREDENTIAL FORECAST: {host}: the Google credential of the port-sheet sync will likely"
        f" stop working by {fc.get('expires_at') or 'now'}"
        f" ({fc.get('days_left') if fc.get('days_left') is not None else '?'} days left)\n"
        f"Why: {fc.get('reason') or 'unknown'}\n"
        f"Do this before then: ansible-playbook playbooks/reauth.yml -l {host}"
    )
    return Notice(
        "credential_forecast",
        host,
        f"forecast@{host}",
        f"[jada-agent] {host}: Google credential forecast",
        text,
        fields={"forecast": fc},
    )


def remediator_fault(
    host: str, state: str, kind: str, key: str, message: str, count: int
) -> Notice:
    """The remediator itself is in trouble (a write that fails, a source it cannot read): the
    thing that would tell a person about the sync is the thing that is failing."""
    if state == "raised":
        text = (
            f"REMEDIATOR FAULT: {host}: {kind} {key}: {message}\n"
            f"Until this is over, failures may be detected late. See: jada-agent remediator status"
            f" (on {host})"
        )
    else:
        text = f"REMEDIATOR FAULT OVER: {host}: {kind} {key} (seen {count} times): {message}"
    return Notice(
        "remediator_fault",
        host,
        f"fault:{kind}:{key}@{host}",
        f"[jada-agent] {host}: remediator fault {kind} {key}",
        text,
        fields={"fault": {"kind": kind, "key": key, "state": state, "count": count}},
    )


def overflow(host: str, count: int, first: int | None, last: int | None) -> Notice:
    span = f" (incidents #{first}-#{last})" if first is not None else ""
    text = (
        f"FLOOD: {host}: {count} more notification{'s' if count != 1 else ''}{span} were not"
        f" sent one by one; see: jada-agent remediator incidents (on {host})"
    )
    return Notice(
        "overflow",
        host,
        f"overflow@{host}",
        f"[jada-agent] {host}: more incidents",
        text,
        fields={"count": count, "first_incident": first, "last_incident": last},
    )


def test_notice(host: str, now: datetime | None = None) -> Notice:
    now = now or datetime.now(UTC)
    return Notice(
        "test",
        host,
        f"test@{host}",
        f"[jada-agent] {host}: test message",
        f"TEST: {host}: jada-agent notify test at {now.strftime('%Y-%m-%dT%H:%M:%SZ')};"
        " this channel works.",
    )


# --------------------------------------------------------------------------- channels


@dataclass(frozen=True)
class Channel:
    """A configured channel: ``name`` is safe to print, ``spec`` holds the secret."""

    name: str
    kind: str  # webhook | sns | apprise
    spec: dict[str, str]


def channels(settings: Settings) -> list[Channel]:
    n = settings.remediator.notify
    out: list[Channel] = []
    if n.webhook_url:
        out.append(Channel("webhook", "webhook", {"url": n.webhook_url}))
    if n.sns_topic_arn:
        out.append(
            Channel("sns", "sns", {"topic_arn": n.sns_topic_arn, "region": settings.aws.region})
        )
    for url in n.urls:
        scheme = url.partition("://")[0] if "://" in url else "apprise"
        scheme = "".join(c for c in scheme if c.isalnum())[:16] or "apprise"
        # A short hash names the URL stably across restarts and reorderings without showing it.
        digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:8]
        out.append(Channel(f"{scheme}-{digest}", "apprise", {"url": url}))
    return out


def secret_parts(spec: dict[str, str]) -> list[str]:
    """The strings an error message must not carry: the URL and its token-like pieces."""
    parts: list[str] = []
    url = spec.get("url")
    if url:
        parts.append(url)
        rest = url.partition("://")[2]
        for piece in (
            rest.replace("@", "/")
            .replace("?", "/")
            .replace("&", "/")
            .replace("=", "/")
            .replace(":", "/")
            .split("/")
        ):
            if len(piece) >= 6:
                parts.append(piece)
    return sorted(set(parts), key=len, reverse=True)


def scrub(text: str, spec: dict[str, str]) -> str:
    for part in secret_parts(spec):
        text = text.replace(part, "***")
    return text


# --------------------------------------------------------------------------- findings


def failing_task(artifact_dir: str) -> str:
    """The message of the last failed task of a runner run (job events), or ''."""
    events = Path(artifact_dir) / "job_events"
    best: tuple[int, str] | None = None
    try:
        files = list(events.glob("*.json"))
    except OSError:
        return ""
    for f in files:
        try:
            ev = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if ev.get("event") not in ("runner_on_failed", "runner_on_unreachable"):
            continue
        if (ev.get("event_data") or {}).get("ignore_errors"):
            continue
        data = ev.get("event_data") or {}
        res = data.get("res") or {}
        msg = res.get("msg") or res.get("stderr") or res.get("reason") or ""
        text = f"{data.get('task') or '?'}: {str(msg).strip()}"[:400]
        counter = int(ev.get("counter") or 0)
        if best is None or counter > best[0]:
            best = (counter, text)
    return best[1] if best else ""
