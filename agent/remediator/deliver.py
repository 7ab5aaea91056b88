"""The delivery process: ``python -m agent.remediator.deliver`` sends messages to ONE channel.

The outbox (``agent/remediator/outbox.py``) starts it for each batch, writes
``{"channel": {"kind", "spec"}, "timeout": s, "messages": [{"id", "title", "text", "payload"}]}``
to its stdin (the channel URL is a secret: never on the command line or in the environment),
and reads one JSON line per message from its stdout: first ``{"ready": true}`` once the client
libraries are loaded, then ``{"id", "ok", "error"}``. The parent owns the deadline: a message
not answered in time gets the process killed, so a trickling endpoint cannot hold anything.

Sending in a child also keeps the service small: apprise (about 17 MB of RSS), boto3 and
urllib's TLS stack are loaded here, never in ``jada-agent remediator run``.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from typing import Any

from agent.remediator.notify import scrub


def send_webhook(spec: dict[str, str], msg: dict[str, Any], timeout: float) -> None:
    import urllib.error
    import urllib.request

    url = spec["url"]
    if not url.startswith(("http://", "https://")):
        raise ValueError("remediator.notify.webhook_url must be an http(s) URL")
    body = json.dumps(msg["payload"]).encode("utf-8")
    req = urllib.request.Request(  # noqa: S310 - the operator configures an http(s) URL
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            resp.read(1024)
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"webhook answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RuntimeError(f"webhook unreachable: {type(reason).__name__}") from None


def send_sns(spec: dict[str, str], msg: dict[str, Any], timeout: float) -> None:
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "sns",
        region_name=spec.get("region") or "us-east-1",
        config=Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 1}),
    )
    # SNS subjects: ASCII, no newline, at most 100 characters.
    subject = msg["title"].encode("ascii", "replace").decode().replace("\n", " ")[:100]
    try:
        client.publish(TopicArn=spec["topic_arn"], Subject=subject, Message=msg["text"])
    except Exception as exc:
        code = (
            getattr(exc, "response", {}).get("Error", {}).get("Code")
            if hasattr(exc, "response")
            else None
        )
        raise RuntimeError(f"SNS: {code or type(exc).__name__}") from None


def send_apprise(spec: dict[str, str], msg: dict[str, Any], timeout: float) -> None:
    import apprise

    ap = apprise.Apprise()
    if not ap.add(spec["url"]):
        raise ValueError("not a URL apprise knows (see apprise's list of services)")
    with apprise.LogCapture(level=logging.WARNING) as logs:
        ok = ap.notify(body=msg["text"], title=msg["title"])
    if not ok:
        lines = [ln.strip() for ln in logs.getvalue().splitlines() if ln.strip()]
        raise RuntimeError(f"apprise: {lines[-1] if lines else 'not delivered'}"[:300])


SENDERS = {"webhook": send_webhook, "sns": send_sns, "apprise": send_apprise}


def _preload(kind: str) -> None:
    # Loaded before "ready", so that the per-message deadline measures the network only.
    if kind == "apprise":
        import apprise  # noqa: F401
    elif kind == "sns":
        import boto3  # noqa: F401
    else:
        import urllib.request  # noqa: F401


def main() -> int:
    logging.disable(logging.CRITICAL)  # nothing of a library's log (it may hold the URL) leaks
    job = json.load(sys.stdin)
    kind, spec = job["channel"]["kind"], job["channel"]["spec"]
    timeout = float(job.get("timeout", 10))
    # The parent kills us at its deadline; should the parent itself die (kill -9), this bounds
    # our life anyway: no orphan keeps trickling.
    signal.alarm(int(timeout * (len(job["messages"]) + 1)) + 30)
    send = SENDERS[kind]
    _preload(kind)
    logging.disable(logging.NOTSET)
    logging.getLogger().setLevel(logging.CRITICAL)
    print(json.dumps({"ready": True}), flush=True)
    for msg in job["messages"]:
        try:
            send(spec, msg, timeout)
            out = {"id": msg["id"], "ok": True, "error": ""}
        except Exception as exc:
            out = {
                "id": msg["id"],
                "ok": False,
                "error": scrub(str(exc) or type(exc).__name__, spec)[:300],
            }
        print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
