"""The dead-man's switch: ``jada-agent notify heartbeat``, run by ``jada-heartbeat.timer``.

Each run POSTs to ``remediator.notify.heartbeat_url`` (healthchecks.io style: the external
service alerts when the pings stop coming, so a dead VM or a stopped timer is noticed from
outside). The body's first line is ``ok`` or ``degraded`` from this host's health verdict (one
day of journal, no credential probes), then the verdict's reasons. When the remediator itself is
not running the ping goes to ``<url>/fail`` (healthchecks' failure signal): nobody would hear of
anything else that breaks. A remediator caught mid-restart (a deploy's handler, an operator's
``systemctl restart``) is given a settle window to come back before that signal is sent: a
restart is not an outage, and a false page teaches people to ignore the real one.
"""

from __future__ import annotations

import logging
import subprocess
import time
from typing import Any

from agent.config import Settings

log = logging.getLogger(__name__)

REMEDIATOR_UNIT = "jada-remediator.service"


SETTLE_SECONDS = 30.0


def _remediator_state(systemctl: str) -> str | None:
    """systemd's ActiveState of the remediator; None when there is no such unit (or no systemd)."""
    try:
        proc = subprocess.run(
            [systemctl, "show", REMEDIATOR_UNIT, "-p", "LoadState", "-p", "ActiveState"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    props = dict(line.partition("=")[::2] for line in proc.stdout.splitlines())
    if proc.returncode != 0 or props.get("LoadState") != "loaded":
        return None
    return props.get("ActiveState", "")


def remediator_active(
    systemctl: str = "systemctl", *, settle: float = SETTLE_SECONDS, poll: float = 1.0
) -> bool | None:
    """True/False from systemd; None when there is no such unit here (or no systemd).

    Not running is only believed after ``settle`` seconds of asking again: a restart passes
    through deactivating, inactive and activating in a few seconds.
    """
    deadline = time.monotonic() + max(0.0, settle)
    while True:
        state = _remediator_state(systemctl)
        if state is None:
            return None
        if state in ("active", "reloading"):
            return True
        if time.monotonic() >= deadline:
            log.warning("%s is %s after a %.0f s settle window", REMEDIATOR_UNIT, state, settle)
            return False
        time.sleep(poll)


def verdict(settings: Settings) -> tuple[str, list[str]]:
    """``("ok" | "degraded", reasons)`` from the health audit; a failed audit is degraded."""
    try:
        from agent.health.audit import audit_host

        report = audit_host(settings, days=1, credentials=False)
    except Exception as exc:
        return "degraded", [f"health audit failed: {type(exc).__name__}: {exc}"]
    v = str(report.get("verdict") or "unknown")
    reasons = [str(r) for r in report.get("reasons") or []]
    return ("ok" if v == "healthy" else "degraded"), [f"verdict {v}", *reasons]


def ping(url: str, body: str, timeout: float) -> int:
    """POST ``body``; returns the HTTP status (raises RuntimeError without the URL)."""
    import urllib.error
    import urllib.request

    if not url.startswith(("http://", "https://")):
        raise RuntimeError("remediator.notify.heartbeat_url must be an http(s) URL")
    req = urllib.request.Request(  # noqa: S310 - the operator configures an http(s) URL
        url,
        data=body.encode("utf-8")[:10000],
        headers={"Content-Type": "text/plain"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            resp.read(1024)
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"heartbeat endpoint answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RuntimeError(f"heartbeat endpoint unreachable: {type(reason).__name__}") from None


def beat(
    settings: Settings,
    *,
    state: str | None = None,
    systemctl: str = "systemctl",
    settle: float = SETTLE_SECONDS,
) -> dict[str, Any]:
    """One heartbeat: ``{"sent": "ok"|"degraded", "fail": bool, "reasons": [...]}``."""
    url = settings.remediator.notify.heartbeat_url
    if not url:
        raise RuntimeError("no heartbeat URL: set remediator.notify.heartbeat_url")
    if state is None:
        state, reasons = verdict(settings)
    else:
        reasons = ["given on the command line"]
    active = remediator_active(systemctl, settle=settle)
    fail = active is False
    if fail:
        state = "degraded"
        reasons = [f"{REMEDIATOR_UNIT} is not running", *reasons]
    target = url.rstrip("/") + "/fail" if fail else url
    ping(target, "\n".join([state, *reasons]) + "\n", settings.remediator.notify.timeout)
    return {"sent": state, "fail": fail, "reasons": reasons}
