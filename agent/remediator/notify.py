"""Escalation that does not depend on the failing component: a webhook and an AWS SNS topic.

A needs-you task that only reaches people through the broken sheet sync reaches nobody, so an
escalated incident is announced directly, once, through every configured channel: a JSON POST
with a Slack-compatible ``text`` plus structured fields, and an SNS publish through boto3 (the
region from ``aws.region``; the endpoint from boto's standard ``AWS_ENDPOINT_URL``). The message
names the cause and the exact command a person must run. The webhook URL is a secret (Slack
puts the token in it): it never appears in a log line or an error.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from agent.config import Settings

log = logging.getLogger(__name__)


@dataclass
class Message:
    """What a person must know: which incident, why, and what to type."""

    host: str
    incident_id: int
    rule: str
    group: dict[str, str]
    status: str
    reason: str
    cause: str = ""
    next_step: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def subject(self) -> str:
        return (
            f"[jada-agent] {self.host}: {self.rule} needs a person (incident #{self.incident_id})"[
                :100
            ]
        )

    @property
    def text(self) -> str:
        group = ", ".join(f"{k}={v}" for k, v in self.group.items())
        lines = [
            f":rotating_light: *{self.host}*: `{self.rule}`"
            f"{' [' + group + ']' if group else ''} — incident #{self.incident_id} {self.status}",
            f"Why: {self.reason}",
        ]
        if self.cause:
            lines.append(f"Cause: {self.cause}")
        if self.next_step:
            lines.append(f"Do this: `{self.next_step}`")
        lines.append(f"Details: `jada-agent remediator incidents` on {self.host}")
        return "\n".join(lines)

    def payload(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "host": self.host,
            "incident": self.incident_id,
            "rule": self.rule,
            "group": self.group,
            "status": self.status,
            "reason": self.reason,
            "cause": self.cause,
            "next_step": self.next_step,
            **self.extra,
        }


def send_webhook(url: str, message: Message, timeout: float) -> None:
    # Imported here: urllib.request pulls in ssl and http.client, megabytes an idle service
    # that may never escalate does not need to hold.
    import urllib.error
    import urllib.request

    body = json.dumps(message.payload()).encode("utf-8")
    req = urllib.request.Request(  # noqa: S310 - the operator configures an http(s) URL
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    if not url.startswith(("http://", "https://")):
        raise ValueError("remediator.notify.webhook_url must be an http(s) URL")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            resp.read(1024)
    except urllib.error.HTTPError as exc:
        # Never the URL: it carries the webhook's token.
        raise RuntimeError(f"webhook answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RuntimeError(f"webhook unreachable: {type(reason).__name__}") from None


def send_sns(topic_arn: str, region: str, message: Message, timeout: float) -> str:
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "sns",
        region_name=region,
        config=Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 2}),
    )
    body = message.text + "\n\n" + json.dumps(message.payload(), indent=2)
    resp = client.publish(TopicArn=topic_arn, Subject=message.subject, Message=body)
    return str(resp.get("MessageId", ""))


def notify(settings: Settings, message: Message) -> dict[str, str]:
    """Send through every configured channel: ``{channel: "ok" | "error: ..."}`` (never raises)."""
    n = settings.remediator.notify
    results: dict[str, str] = {}
    if n.webhook_url:
        try:
            send_webhook(n.webhook_url, message, n.timeout)
            results["webhook"] = "ok"
        except Exception as exc:
            results["webhook"] = f"error: {exc}"
    if n.sns_topic_arn:
        try:
            send_sns(n.sns_topic_arn, settings.aws.region, message, n.timeout)
            results["sns"] = "ok"
        except Exception as exc:
            code = (
                getattr(exc, "response", {}).get("Error", {}).get("Code")
                if hasattr(exc, "response")
                else None
            )
            results["sns"] = f"error: {code or type(exc).__name__}"
    for channel, result in results.items():
        if result == "ok":
            log.info("incident #%s: notified through %s", message.incident_id, channel)
        else:
            log.error(
                "incident #%s: %s notification failed: %s", message.incident_id, channel, result
            )
    if not results:
        log.warning(
            "incident #%s needs a person but no notification channel is configured"
            " (remediator.notify.webhook_url / sns_topic_arn)",
            message.incident_id,
        )
    return results
