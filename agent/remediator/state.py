"""The remediator's own persistent state: one SQLite file (``remediator.state_db``).

It holds what must survive a restart so that a restart neither forgets nor repeats: the
counted matches of every open window, each group's last fire (cooldown) and breaker, the fire
history the breaker counts, every tailed file's position ``(path, inode, first-line hash,
offset)``, the journal cursor, and the remediation that is running (so that a remediator killed
in the middle records it on its next start). Incidents themselves live in the store.

Reads are served from memory; every change is written through. ``batch()`` groups the writes
of one buffer of lines into one transaction.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS window (rule TEXT NOT NULL, grp TEXT NOT NULL, t REAL NOT NULL);
CREATE INDEX IF NOT EXISTS window_key ON window(rule, grp, t);
CREATE TABLE IF NOT EXISTS grp (
    rule TEXT NOT NULL, grp TEXT NOT NULL,
    last_fire REAL, breaker_open REAL,
    PRIMARY KEY (rule, grp));
CREATE TABLE IF NOT EXISTS fires (rule TEXT NOT NULL, grp TEXT NOT NULL, t REAL NOT NULL);
CREATE INDEX IF NOT EXISTS fires_key ON fires(rule, grp, t);
CREATE TABLE IF NOT EXISTS position (
    key TEXT PRIMARY KEY, path TEXT NOT NULL, dev INTEGER, inode INTEGER,
    first_hash TEXT, offset INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS cursor (key TEXT PRIMARY KEY, cursor TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS resets (id INTEGER PRIMARY KEY AUTOINCREMENT, rule TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS running (
    ident TEXT PRIMARY KEY, incident_id INTEGER, rule TEXT, started REAL, pid INTEGER,
    artifact_dir TEXT);
"""


@dataclass
class Position:
    path: str
    dev: int | None
    inode: int | None
    first_hash: str | None
    offset: int


def group_key(group: dict[str, str]) -> str:
    return json.dumps(group, sort_keys=True, separators=(",", ":"))


class StateDB:
    """Engine and source state; ``":memory:"`` for the offline tester."""

    def __init__(self, path: str | os.PathLike[str] = ":memory:"):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            # Created 0600: it names files and rules, nobody else needs it.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.lock = threading.RLock()
        self.db.execute("PRAGMA busy_timeout = 10000")
        if self.path != ":memory:":
            self.db.execute("PRAGMA journal_mode = WAL")
            # A crash loses at most the last transaction, never corrupts: enough for counters.
            self.db.execute("PRAGMA synchronous = NORMAL")
        self.db.executescript(SCHEMA)
        self._depth = 0
        self.windows: dict[tuple[str, str], list[float]] = {}
        for rule, grp, t in self.db.execute("SELECT rule, grp, t FROM window ORDER BY t"):
            self.windows.setdefault((rule, grp), []).append(t)
        self.groups: dict[tuple[str, str], list[float | None]] = {
            (r, g): [lf, bo] for r, g, lf, bo in self.db.execute("SELECT * FROM grp")
        }
        self.fires: dict[tuple[str, str], list[float]] = {}
        for rule, grp, t in self.db.execute("SELECT rule, grp, t FROM fires ORDER BY t"):
            self.fires.setdefault((rule, grp), []).append(t)
        # Resets made by another process (``remediator reset``) up to now are in what was
        # just read; later ones are applied by take_resets().
        self._resets_seen = self.db.execute("SELECT coalesce(max(id), 0) FROM resets").fetchone()[0]
        self._data_version = self.db.execute("PRAGMA data_version").fetchone()[0]

    def close(self) -> None:
        with self.lock:
            self.db.close()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """One transaction for many writes (nested calls join the outer one)."""
        with self.lock:
            self._depth += 1
            if self._depth == 1:
                self.db.execute("BEGIN")
            try:
                yield
            except BaseException:
                self._depth -= 1
                if self._depth == 0:
                    self.db.execute("ROLLBACK")
                raise
            self._depth -= 1
            if self._depth == 0:
                self.db.execute("COMMIT")

    def _exec(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        with self.lock:
            return self.db.execute(sql, args)

    # ---------------------------------------------------------------- windows
    def window(self, rule: str, grp: str) -> list[float]:
        return self.windows.get((rule, grp), [])

    def add_match(self, rule: str, grp: str, t: float, drop_until: float) -> list[float]:
        """Add a counted match at ``t`` and drop those at or before ``drop_until``."""
        w = self.windows.setdefault((rule, grp), [])
        w.append(t)
        if len(w) > 1 and w[-2] > t:
            w.sort()  # out-of-order input (replay of several logs): keep the window sorted
        self._exec("INSERT INTO window VALUES (?, ?, ?)", (rule, grp, t))
        if w[0] <= drop_until:
            keep = [x for x in w if x > drop_until]
            w[:] = keep
            self._exec(
                "DELETE FROM window WHERE rule = ? AND grp = ? AND t <= ?", (rule, grp, drop_until)
            )
        return w

    def clear_window(self, rule: str, grp: str | None = None) -> None:
        for key in [k for k in self.windows if k[0] == rule and (grp is None or k[1] == grp)]:
            del self.windows[key]
        if grp is None:
            self._exec("DELETE FROM window WHERE rule = ?", (rule,))
        else:
            self._exec("DELETE FROM window WHERE rule = ? AND grp = ?", (rule, grp))

    # ---------------------------------------------------------------- cooldown and breaker
    def group_state(self, rule: str, grp: str) -> tuple[float | None, float | None]:
        last_fire, breaker_open = self.groups.get((rule, grp), [None, None])
        return last_fire, breaker_open

    def _set_group(
        self, rule: str, grp: str, last_fire: float | None, breaker: float | None
    ) -> None:
        self.groups[(rule, grp)] = [last_fire, breaker]
        self._exec(
            "INSERT INTO grp VALUES (?, ?, ?, ?) ON CONFLICT(rule, grp) DO UPDATE"
            " SET last_fire = excluded.last_fire, breaker_open = excluded.breaker_open",
            (rule, grp, last_fire, breaker),
        )

    def record_fire(self, rule: str, grp: str, t: float, history_from: float) -> None:
        _, breaker = self.group_state(rule, grp)
        self._set_group(rule, grp, t, breaker)
        hist = self.fires.setdefault((rule, grp), [])
        hist.append(t)
        hist[:] = [x for x in hist if x > history_from]
        self._exec("INSERT INTO fires VALUES (?, ?, ?)", (rule, grp, t))
        self._exec(
            "DELETE FROM fires WHERE rule = ? AND grp = ? AND t <= ?", (rule, grp, history_from)
        )

    def fires_since(self, rule: str, grp: str, since: float) -> int:
        return sum(1 for x in self.fires.get((rule, grp), []) if x > since)

    def open_breaker(self, rule: str, grp: str, t: float) -> None:
        last_fire, _ = self.group_state(rule, grp)
        self._set_group(rule, grp, last_fire, t)

    def reset(self, rule: str) -> int:
        """Forget the rule's windows, cooldowns, fire history and breakers; the groups reset.

        The reset is also recorded, so that a running service that holds the state in memory
        applies it at its next match (:meth:`take_resets`)."""
        keys = {
            k for k in list(self.groups) + list(self.windows) + list(self.fires) if k[0] == rule
        }
        self._forget(rule)
        with self.batch():
            for table in ("grp", "window", "fires"):
                self._exec(f"DELETE FROM {table} WHERE rule = ?", (rule,))  # noqa: S608 - fixed names
            cur = self._exec("INSERT INTO resets (rule) VALUES (?)", (rule,))
            self._exec("DELETE FROM resets WHERE id <= ?", ((cur.lastrowid or 0) - 100,))
            self._resets_seen = cur.lastrowid or self._resets_seen
        return len(keys)

    def _forget(self, rule: str) -> None:
        for store in (self.groups, self.windows, self.fires):
            for k in [k for k in store if k[0] == rule]:
                del store[k]  # type: ignore[attr-defined]

    def take_resets(self) -> list[str]:
        """Apply the resets another process recorded since the last call; the rules reset.

        Cheap enough for every match: ``PRAGMA data_version`` changes only when another
        connection committed to the file, and only then is the resets table read."""
        with self.lock:
            version = self.db.execute("PRAGMA data_version").fetchone()[0]
            if version == self._data_version:
                return []
            self._data_version = version
            rows = self.db.execute(
                "SELECT id, rule FROM resets WHERE id > ? ORDER BY id", (self._resets_seen,)
            ).fetchall()
            if not rows:
                return []
            self._resets_seen = rows[-1][0]
            rules = list(dict.fromkeys(rule for _id, rule in rows))
            with self.batch():
                for rule in rules:
                    self._forget(rule)
                    # The resetting process deleted the rows; rows written since are dropped too.
                    for table in ("grp", "window", "fires"):
                        self._exec(f"DELETE FROM {table} WHERE rule = ?", (rule,))  # noqa: S608 - fixed names
            return rules

    def breakers(self) -> list[tuple[str, dict[str, str], float]]:
        return [
            (r, json.loads(g), bo) for (r, g), (_lf, bo) in self.groups.items() if bo is not None
        ]

    # ---------------------------------------------------------------- sources
    def position(self, key: str) -> Position | None:
        row = self._exec(
            "SELECT path, dev, inode, first_hash, offset FROM position WHERE key = ?", (key,)
        ).fetchone()
        return Position(*row) if row else None

    def save_position(self, key: str, pos: Position) -> None:
        self._exec(
            "INSERT INTO position VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET"
            " path = excluded.path, dev = excluded.dev, inode = excluded.inode,"
            " first_hash = excluded.first_hash, offset = excluded.offset",
            (key, pos.path, pos.dev, pos.inode, pos.first_hash, pos.offset),
        )

    def cursor(self, key: str) -> str | None:
        row = self._exec("SELECT cursor FROM cursor WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def save_cursor(self, key: str, cursor: str) -> None:
        self._exec(
            "INSERT INTO cursor VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET cursor = excluded.cursor",
            (key, cursor),
        )

    # ---------------------------------------------------------------- running remediations
    def add_running(
        self, ident: str, incident_id: int, rule: str, started: float, artifact_dir: str
    ) -> None:
        self._exec(
            "INSERT OR REPLACE INTO running VALUES (?, ?, ?, ?, ?, ?)",
            (ident, incident_id, rule, started, os.getpid(), artifact_dir),
        )

    def remove_running(self, ident: str) -> None:
        self._exec("DELETE FROM running WHERE ident = ?", (ident,))

    def list_running(self) -> list[dict[str, Any]]:
        cols = ("ident", "incident_id", "rule", "started", "pid", "artifact_dir")
        return [dict(zip(cols, row, strict=True)) for row in self._exec("SELECT * FROM running")]

    def purge(self, older_than: float) -> None:
        """Bound the file: drop window entries and fire history nobody can count any more."""
        with self.batch():
            self._exec("DELETE FROM window WHERE t < ?", (older_than,))
            self._exec("DELETE FROM fires WHERE t < ?", (older_than,))
        for store in (self.windows, self.fires):
            for k in list(store):
                store[k] = [t for t in store[k] if t >= older_than]
                if not store[k]:
                    del store[k]
