"""``credentials forecast``: when the current credential will most likely stop working, and why.

Google's documented expiry modes for a user refresh token that a host can foresee: 7 days after
issue while the OAuth app is in Testing publishing status (recognised from this host's own
history of token deaths), and 6 months without use. A service account has neither. The health
report and a daily warning read this.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from agent.config import Settings
from agent.credentials import google as gcreds
from agent.credentials.errors import CredentialError
from agent.credentials.history import History, _parse, fingerprint

UNUSED_LIMIT = timedelta(days=182)
TESTING_LIMIT = timedelta(days=7)


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def forecast(settings: Settings, *, now: datetime | None = None) -> dict[str, Any]:
    """``{credential_type, expires_at, reason, days_left, warn, issued_at, last_used_at, testing_mode_suspected}``."""
    now = now or datetime.now(UTC)
    kind = settings.google.credential_type
    history = History.for_settings(settings)
    base: dict[str, Any] = {
        "credential_type": kind,
        "expires_at": None,
        "days_left": None,
        "warn": False,
        "issued_at": None,
        "last_used_at": None,
        "testing_mode_suspected": history.testing_mode_suspected(),
    }
    # The operator may know the app's publishing status: then it decides, not the history.
    status = settings.google.publishing_status
    if status != "unknown":
        base["testing_mode_suspected"] = status == "testing"
    path = gcreds.active_path(settings)
    try:
        info, _ = gcreds.read_file(path)
    except CredentialError as exc:
        return {**base, "warn": True, "reason": f"no usable credential now: {exc}"}
    if kind == "service_account":
        return {
            **base,
            "reason": "service account: no refresh-token expiry applies (rotate the key on your "
            "own schedule)",
        }

    entry = history.get(fingerprint(info))
    issued = _parse(entry.get("installed")) or datetime.fromtimestamp(path.stat().st_mtime, UTC)
    last_ok = _parse(entry.get("last_ok")) or issued
    failed = _parse(entry.get("first_failure"))
    candidates = [
        (
            last_ok + UNUSED_LIMIT,
            "6 months unused: Google expires refresh tokens not used for 6 months",
        ),
    ]
    if base["testing_mode_suspected"]:
        candidates.append(
            (
                issued + TESTING_LIMIT,
                "7-day token: the OAuth app is in Testing publishing status"
                " (google.publishing_status), so every refresh token dies 7 days after issue"
                if status == "testing"
                else "7-day token: earlier tokens here died about 7 days after issue, so the OAuth"
                " app is probably in Testing publishing status",
            )
        )
    recorded_ok = _parse(entry.get("last_ok"))
    # A failure followed by a success is over (histories written before History.used closed it).
    if failed is not None and (recorded_ok is None or recorded_ok < failed):
        candidates.append((failed, f"already failing since then: {entry.get('cause')}"))
    expires, reason = min(candidates, key=lambda c: c[0])
    left = expires - now
    return {
        **base,
        "expires_at": _iso(expires),
        "days_left": round(left.total_seconds() / 86400, 2),
        "warn": left.total_seconds() < settings.google.forecast_warn,
        "issued_at": _iso(issued),
        "last_used_at": _iso(last_ok),
        "reason": reason,
    }
