"""``jada-agent remediator status``: what the running remediator is doing and what is wrong.

Read from another process, read-only: the state database (``faults``, ``firings``,
``position``, ``cursor`` and the sources snapshot the service writes to ``meta`` at start and
at each housekeeping tick) and the store (incidents left "remediating"). :func:`sections`
returns a dict of sections so that other parts (the outbox) add theirs beside these:

- ``service``: the instance lock's holder (pid) or "not running";
- ``faults``: write errors and source faults not over yet (``kind``, ``key``, ``message``,
  ``first``, ``last``, ``count``): the rows the outbox alerts on;
- ``sources``: each tailed file (offset, fault) and the journal reader (state, pid, restarts,
  last entry, bad entries, last stderr lines);
- ``queue``: firings not finished (``new``: no incident yet; ``queued``; ``running``; ``ran``:
  result not yet in the store);
- ``stuck``: incidents "remediating" with no job to finish them (none after a start);
- ``outbox``: notifications per channel: pending, given up, delivered, the last delivery.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from agent.config import Settings

SOURCES_META = "sources"


def _service(state_db: str) -> dict[str, Any]:
    path = Path(state_db + ".lock")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return {"running": False, "pid": None}
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
            return {"running": True, "pid": int(pid) if pid.isdigit() else None}
        return {"running": False, "pid": None}
    finally:
        os.close(fd)


def _state(state_db: str) -> sqlite3.Connection | None:
    if not os.path.exists(state_db):
        return None
    db = sqlite3.connect(f"file:{state_db}?mode=ro", uri=True, timeout=5)
    db.row_factory = sqlite3.Row
    return db


def _table(db: sqlite3.Connection, name: str) -> bool:
    row = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()
    return row is not None


def sections(settings: Settings) -> dict[str, Any]:
    state_db = str(settings.remediator.state_db)
    out: dict[str, Any] = {
        "service": _service(state_db),
        "faults": [],
        "sources": {},
        "queue": [],
        "stuck": [],
    }
    db = _state(state_db)
    busy: set[int] = set()
    if db is not None:
        with contextlib.closing(db):
            if _table(db, "faults"):
                out["faults"] = [
                    {k: r[k] for k in ("kind", "key", "message", "first", "last", "count")}
                    for r in db.execute(
                        "SELECT * FROM faults WHERE cleared IS NULL ORDER BY last DESC"
                    )
                ]
            if _table(db, "firings"):
                for r in db.execute(
                    "SELECT * FROM firings WHERE status != 'done' AND kind != 'resolve' ORDER BY id"
                ):
                    out["queue"].append(
                        {
                            "firing": r["id"],
                            "rule": r["rule"],
                            "group": json.loads(r["grp"]),
                            "kind": r["kind"],
                            "status": r["status"],
                            "incident_id": r["incident_id"],
                            "since": r["updated"],
                        }
                    )
                    if r["incident_id"] is not None and r["status"] in ("queued", "running"):
                        busy.add(int(r["incident_id"]))
            snapshot: dict[str, Any] = {}
            if _table(db, "meta"):
                row = db.execute("SELECT value FROM meta WHERE key = ?", (SOURCES_META,)).fetchone()
                if row:
                    with contextlib.suppress(ValueError):
                        snapshot = json.loads(row[0])
            files = (
                {
                    r["path"]: {"offset": r["offset"], "inode": r["inode"]}
                    for r in db.execute("SELECT * FROM position")
                }
                if _table(db, "position")
                else {}
            )
            for path, info in (snapshot.get("files") or {}).items():
                files.setdefault(path, {}).update(info)
            out["sources"] = {"files": files, "journal": snapshot.get("journal")}
    from agent.store import open_store

    with contextlib.suppress(Exception), open_store(settings) as store:
        out["stuck"] = [
            {
                "incident_id": i.id,
                "rule": i.rule,
                "group": i.group,
                "updated": i.updated.isoformat(),
            }
            for i in store.list_incidents(("remediating",))
            if i.id not in busy
        ]
    try:
        out["outbox"] = outbox_section(settings)
    except Exception as exc:  # one broken section must not hide the others
        out["outbox"] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


def healthy(s: dict[str, Any]) -> bool:
    return not s["faults"] and not s["stuck"]


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


def render_outbox(sec: dict[str, Any]) -> list[str]:
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
