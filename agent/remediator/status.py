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
- ``stuck``: incidents "remediating" with no job to finish them (none after a start).
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
    return out


def healthy(s: dict[str, Any]) -> bool:
    return not s["faults"] and not s["stuck"]
