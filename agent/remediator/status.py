"""``jada-agent remediator status``: what the remediator knows about itself, section by section.

:data:`SECTIONS` maps a section's name to the function that builds it from the settings; each
returns a JSON-able dict (with ``error`` when it cannot tell) and :func:`render` has a text form
for each. A part of the remediator adds its own section by adding an entry (the outbox's is
here); the command prints them in this order.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from typing import Any

from agent.config import Settings


def _open_ro(path: str) -> sqlite3.Connection:
    # Read-only: a status look must never create or change the service's database.
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)


def outbox_section(settings: Settings) -> dict[str, Any]:
    """Notifications: per channel pending / given up / delivered, the last delivery."""
    from agent.remediator import outbox
    from agent.remediator.notify import channels

    cfg = settings.remediator.notify
    configured = channels(settings)
    base: dict[str, Any] = {
        "configured": [c.name for c in configured],
        "give_up_after_s": cfg.give_up_after,
        "max_pending": cfg.max_pending,
        "heartbeat": bool(cfg.heartbeat_url),
    }
    path = settings.remediator.state_db
    if not os.path.exists(path):
        return {**base, "error": f"no state database at {path} (the service has not run yet)"}
    try:
        db = _open_ro(path)
    except sqlite3.Error as exc:
        return {**base, "error": f"{path}: {exc}"}
    try:
        return {**base, **outbox.status(db, configured)}
    finally:
        db.close()


SECTIONS: dict[str, Callable[[Settings], dict[str, Any]]] = {
    "outbox": outbox_section,
}


def collect(settings: Settings) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, build in SECTIONS.items():
        try:
            out[name] = build(settings)
        except Exception as exc:  # one broken section must not hide the others
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


def _render_outbox(sec: dict[str, Any]) -> list[str]:
    hours = sec.get("give_up_after_s", 0) / 3600
    if not sec.get("configured"):
        lines = ["outbox: NO notification channel configured: nobody is told of anything"]
    else:
        lines = [
            f"outbox: {sec.get('pending', '?')} pending, {sec.get('failed', '?')} given up"
            f" (after {hours:g}h), last delivered {sec.get('last_delivered') or 'never'}"
        ]
    if sec.get("error"):
        lines.append(f"  {sec['error']}")
    for name, ch in (sec.get("channels") or {}).items():
        gone = "" if name in sec.get("configured", []) else " (no longer configured)"
        err = f"; last error: {ch['last_error']}" if ch.get("last_error") else ""
        lines.append(
            f"  {name}{gone}: {ch['pending']} pending, {ch['failed']} given up,"
            f" {ch['delivered']} delivered, last {ch['last_delivered'] or 'never'}{err}"
        )
    if sec.get("oldest_pending"):
        lines.append(f"  oldest pending since {sec['oldest_pending']}")
    for g in sec.get("recent_give_ups") or []:
        inc = f" incident #{g['incident']}" if g.get("incident") else ""
        lines.append(
            f"  given up: #{g['id']} {g['event']}{inc} to {g['channel']} after"
            f" {g['attempts']} attempts at {g['at']}: {g['error']}"
        )
    lines.append(f"  heartbeat: {'configured' if sec.get('heartbeat') else 'not configured'}")
    return lines


RENDERERS: dict[str, Callable[[dict[str, Any]], list[str]]] = {"outbox": _render_outbox}


def render(sections: dict[str, dict[str, Any]]) -> str:
    lines: list[str] = []
    for name, sec in sections.items():
        r = RENDERERS.get(name)
        if r is not None:
            lines += r(sec)
        else:
            lines.append(f"{name}: " + ", ".join(f"{k}={v}" for k, v in sec.items()))
    return "\n".join(lines)
