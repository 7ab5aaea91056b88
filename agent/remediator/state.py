"""The remediator's own persistent state: one SQLite file (``remediator.state_db``).

It holds what must survive a restart so that a restart neither forgets nor repeats: the newest
counted matches of every open window (at most the rule's threshold per group), each group's
last fire (cooldown) and breaker, the fire history the breaker counts, every tailed file's
position ``(path, dev, inode, first-line hash, size, offset)``, the journal cursor, the firings
and their remediation jobs (the persisted job queue), the remediation that is running (so that a
remediator killed in the middle records it on its next start), the service clock's high-water
mark and the faults the service has seen. Incidents themselves live in the store.

Reads are served from memory. Inside ``batch()`` (one buffer of lines) the windows are written
once, at commit, whatever the number of matches: a flood costs one row per group, not one per
line. When a write fails (read-only or full disk) the transaction is rolled back and
:meth:`StateDB.rebuild` reloads memory from the file, so memory never holds a fire, a window or a
cooldown that the database does not: the caller re-reads its lines from the saved position.

Over 450 lines on purpose: one class per file, as every table shares the in-memory mirror and the
batch, rollback and rebuild above; split by table, each part would reach into the others' state.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS windows (
    rule TEXT NOT NULL, grp TEXT NOT NULL, ts TEXT NOT NULL, PRIMARY KEY (rule, grp));
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
CREATE TABLE IF NOT EXISTS firings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rule TEXT NOT NULL, grp TEXT NOT NULL, t REAL NOT NULL,
    kind TEXT NOT NULL,              -- fire | breaker | resolve (after a fire, in order)
    count INTEGER NOT NULL, summary TEXT NOT NULL,
    status TEXT NOT NULL,            -- new | queued | running | ran | done
    incident_id INTEGER, ident TEXT, result TEXT,
    created REAL NOT NULL, updated REAL NOT NULL);
CREATE INDEX IF NOT EXISTS firings_status ON firings(status);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS faults (
    kind TEXT NOT NULL, key TEXT NOT NULL, message TEXT NOT NULL,
    first REAL NOT NULL, last REAL NOT NULL, count INTEGER NOT NULL,
    cleared REAL, PRIMARY KEY (kind, key));
"""

# The notification outbox (agent/remediator/outbox.py owns its use): one row per message and
# channel, so that a message queued before a stop or a kill -9 is still sent after the restart,
# and ``notice``: when each recurring notice (reminder, daily forecast, seen task) last went out.
OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event TEXT NOT NULL, incident_id INTEGER, thread TEXT NOT NULL, channel TEXT NOT NULL,
    dedup TEXT, body TEXT NOT NULL, created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL NOT NULL,
    delivered REAL, failed REAL, last_error TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS outbox_dedup ON outbox(channel, dedup);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(channel, delivered, failed, next_attempt);
CREATE INDEX IF NOT EXISTS outbox_incident ON outbox(incident_id);
CREATE TABLE IF NOT EXISTS notice (key TEXT PRIMARY KEY, t REAL NOT NULL);
"""
# Columns added to the outbox after its first release: (name, declaration). A database made by
# an older version gets them by ALTER TABLE at open; nothing is dropped.
OUTBOX_COLUMNS: tuple[tuple[str, str], ...] = (("title", "TEXT NOT NULL DEFAULT ''"),)


def migrate_outbox(db: sqlite3.Connection) -> None:
    """Create the outbox tables, or bring an older file's outbox up to date."""
    db.executescript(OUTBOX_SCHEMA)
    have = {row[1] for row in db.execute("PRAGMA table_info(outbox)")}
    for name, decl in OUTBOX_COLUMNS:
        if name not in have:
            db.execute(f"ALTER TABLE outbox ADD COLUMN {name} {decl}")


FIRING_STATUSES = ("new", "queued", "running", "ran", "done")


class StateWriteError(RuntimeError):
    """A write to the state database failed; memory was rebuilt from the file."""


@dataclass
class Position:
    path: str
    dev: int | None
    inode: int | None
    first_hash: str | None
    offset: int
    # sha1 of up to 256 bytes before ``offset``: a reused inode whose file starts with the same
    # line is still told apart at a restart (the content before the offset differs).
    tail_hash: str | None = None


@dataclass
class Firing:
    """One fire (or breaker opening) of a rule's group: the unit of the persisted job queue."""

    id: int
    rule: str
    grp: str
    t: float
    kind: str
    count: int
    summary: str
    status: str
    incident_id: int | None = None
    ident: str | None = None
    result: dict[str, Any] | None = None

    @property
    def group(self) -> dict[str, str]:
        return json.loads(self.grp)


def group_key(group: dict[str, str]) -> str:
    return json.dumps(group, sort_keys=True, separators=(",", ":"))


def _move_aside(path: str, why: str) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    dest = f"{path}.corrupt-{stamp}"
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.replace(path + suffix, dest + suffix)
    log.error(
        "%s: the state database is unreadable (%s); moved aside to %s and starting with an empty"
        " state: windows, cooldowns and file positions start afresh (logs are read from their"
        " end); the incidents in the store are unaffected",
        path,
        why,
        dest,
    )
    return dest


class StateDB:
    """Engine and source state; ``":memory:"`` for the offline tester."""

    def __init__(self, path: str | os.PathLike[str] = ":memory:"):
        self.path = str(path)
        self.lock = threading.RLock()
        self._depth = 0
        self._stale = False  # memory is not what the file holds (a failed read-back)
        self.moved_aside: str | None = None
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._connect()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError):
                # Locked, read-only, an I/O error: not corruption. Never move a good file aside.
                raise StateWriteError(f"{self.path}: {exc}") from exc
            # A corrupt file would fail every start: the incidents (the record) are in the store.
            with contextlib.suppress(Exception):
                self.db.close()
            self.moved_aside = _move_aside(self.path, str(exc))
            self._connect()

    def _connect(self) -> None:
        if self.path != ":memory:":
            # Created 0600: it names files and rules, nobody else needs it.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA busy_timeout = 10000")
        if self.path != ":memory:":
            row = self.db.execute("PRAGMA quick_check").fetchone()
            if row is None or row[0] != "ok":
                raise sqlite3.DatabaseError(f"integrity check: {row[0] if row else 'no answer'}")
            # A rollback journal, not WAL: WAL's index is a shared memory map, and a write to it
            # on a full or read-only file system kills the process with SIGBUS instead of
            # failing the transaction. The one writer is this service (InstanceLock).
            self.db.execute("PRAGMA journal_mode = TRUNCATE")
            self.db.execute("PRAGMA synchronous = NORMAL")
        self.db.executescript(SCHEMA)
        migrate_outbox(self.db)
        self._migrate()
        self._load()

    def _migrate(self) -> None:
        cols = {r[1] for r in self.db.execute("PRAGMA table_info(position)")}
        if "tail_hash" not in cols:
            self.db.execute("ALTER TABLE position ADD COLUMN tail_hash TEXT")
        # Before the windows were bounded, every counted match was a row of ``window``.
        old = self.db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'window'"
        ).fetchone()
        if old is None:
            return
        ws: dict[tuple[str, str], list[float]] = {}
        for rule, grp, t in self.db.execute("SELECT rule, grp, t FROM window ORDER BY t"):
            ws.setdefault((rule, grp), []).append(t)
        self.db.execute("BEGIN")
        for (rule, grp), ts in ws.items():
            # The threshold is not known here: the newest 1000 are more than any rule needs.
            self.db.execute(
                "INSERT OR REPLACE INTO windows VALUES (?, ?, ?)",
                (rule, grp, json.dumps(ts[-1000:])),
            )
        self.db.execute("DROP TABLE window")
        self.db.execute("COMMIT")

    def _load(self) -> None:
        # Everything is read before anything is replaced: a read that fails half way leaves
        # memory as it was, marked stale (rebuild), never half loaded.
        windows: dict[tuple[str, str], list[float]] = {}
        for rule, grp, ts in self.db.execute("SELECT rule, grp, ts FROM windows"):
            windows[(rule, grp)] = sorted(float(x) for x in json.loads(ts))
        groups: dict[tuple[str, str], list[float | None]] = {
            (r, g): [lf, bo] for r, g, lf, bo in self.db.execute("SELECT * FROM grp")
        }
        fires: dict[tuple[str, str], list[float]] = {}
        for rule, grp, t in self.db.execute("SELECT rule, grp, t FROM fires ORDER BY t"):
            fires.setdefault((rule, grp), []).append(t)
        # Resets made by another process (``remediator reset``) up to now are in what was
        # just read; later ones are applied by take_resets().
        resets_seen = self.db.execute("SELECT coalesce(max(id), 0) FROM resets").fetchone()[0]
        data_version = self.db.execute("PRAGMA data_version").fetchone()[0]
        self.windows, self.groups, self.fires = windows, groups, fires
        self._dirty: set[tuple[str, str]] = set()  # windows to write in this batch
        self._deferred: set[tuple[str, str]] = set()  # windows to write at the next flush
        self._resets_seen = resets_seen
        self._data_version = data_version
        self._stale = False

    def rebuild(self) -> None:
        """Memory from the file again, after a failed write (a fresh connection, too: SQLite
        may keep a failed file handle's error).

        When the file cannot be read back either (a read-only disk with the rolled-back
        transaction's journal still to undo), memory still holds what was rolled back: it is
        marked stale, and the next :meth:`batch` reads it back first (or fails too), so lines
        read again after the failure are never counted on top of themselves.
        """
        with self.lock:
            self._stale = True
            with contextlib.suppress(Exception):
                self.db.close()
            self._depth = 0
            try:
                self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                self.db.execute("PRAGMA busy_timeout = 10000")
                self._load()
            except sqlite3.Error as exc:
                raise StateWriteError(f"{self.path}: cannot read back: {exc}") from exc

    def close(self) -> None:
        with self.lock:
            self.db.close()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """One transaction for many writes (nested calls join the outer one).

        A failure anywhere (a write, the commit) rolls everything back and rebuilds memory from
        the file, then raises :class:`StateWriteError` (a write failure) or the original error.
        """
        with self.lock:
            if self._depth == 0 and self._stale:
                self.rebuild()  # the last read-back failed: memory is not the file's
            self._depth += 1
            if self._depth == 1:
                try:
                    self._exec("BEGIN")
                except StateWriteError:
                    self._depth = 0
                    self.rebuild()
                    raise
            try:
                yield
                if self._depth == 1:
                    self._flush()
                    self._exec("COMMIT")
            except BaseException:
                self._depth -= 1
                if self._depth == 0:
                    with contextlib.suppress(sqlite3.Error):
                        self.db.execute("ROLLBACK")
                    self.rebuild()
                raise
            self._depth -= 1

    def _exec(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        with self.lock:
            try:
                return self.db.execute(sql, args)
            except sqlite3.Error as exc:
                raise StateWriteError(f"{self.path}: {exc}") from exc

    def _write(self, sql: str, args: tuple[Any, ...] = ()) -> None:
        """A write outside a batch is its own transaction; a failed one leaves memory as the
        file has it."""
        with self.lock:
            if self._depth:
                self._exec(sql, args)
                return
        with self.batch():
            self._exec(sql, args)

    def _flush(self) -> None:
        for key in self._dirty:
            w = self.windows.get(key)
            if w:
                self._exec(
                    "INSERT INTO windows VALUES (?, ?, ?) ON CONFLICT(rule, grp) DO UPDATE"
                    " SET ts = excluded.ts",
                    (*key, json.dumps(w)),
                )
            else:
                self._exec("DELETE FROM windows WHERE rule = ? AND grp = ?", key)
        self._dirty = set()

    # ---------------------------------------------------------------- windows
    def window(self, rule: str, grp: str) -> list[float]:
        return self.windows.get((rule, grp), [])

    def add_match(
        self,
        rule: str,
        grp: str,
        t: float,
        drop_until: float,
        keep: int | None = None,
        defer: bool = False,
    ) -> list[float]:
        """Add a counted match at ``t``, drop those at or before ``drop_until`` and keep the
        newest ``keep``: a threshold of N never needs more than N timestamps.

        ``defer`` (the group cools down or its breaker is open: nothing can fire now) leaves
        the write to :meth:`flush_deferred` (the service's housekeeping and its stop), so a
        flood during a cooldown writes nothing per line; a kill -9 loses at most the matches
        of one housekeeping interval, which only delays the first fire after the cooldown."""
        key = (rule, grp)
        w = self.windows.setdefault(key, [])
        w.append(t)
        if len(w) > 1 and w[-2] > t:
            w.sort()  # out-of-order input (replay of several logs): keep the window sorted
        if w[0] <= drop_until:
            w[:] = [x for x in w if x > drop_until]
        if keep is not None and len(w) > keep:
            # Keep the newest ``keep`` at or before t: a line from another log's future
            # (replay of several logs) must not push out what counts now.
            upto = bisect.bisect_right(w, t)
            if upto > keep:
                del w[: upto - keep]
        with self.lock:
            if defer:
                self._deferred.add(key)
                return w
            self._dirty.add(key)
            self._deferred.discard(key)
            if not self._depth:
                with self.batch():
                    pass
        return w

    def flush_deferred(self) -> None:
        """Write the windows left to later by ``add_match(defer=True)``."""
        with self.lock:
            if not self._deferred:
                return
            with self.batch():
                self._dirty |= self._deferred
                self._deferred = set()

    def clear_window(self, rule: str, grp: str | None = None) -> None:
        for key in [k for k in self.windows if k[0] == rule and (grp is None or k[1] == grp)]:
            del self.windows[key]
            self._dirty.discard(key)
            self._deferred.discard(key)
        if grp is None:
            self._write("DELETE FROM windows WHERE rule = ?", (rule,))
        else:
            self._write("DELETE FROM windows WHERE rule = ? AND grp = ?", (rule, grp))

    # ---------------------------------------------------------------- cooldown and breaker
    def group_state(self, rule: str, grp: str) -> tuple[float | None, float | None]:
        last_fire, breaker_open = self.groups.get((rule, grp), [None, None])
        return last_fire, breaker_open

    def _set_group(
        self, rule: str, grp: str, last_fire: float | None, breaker: float | None
    ) -> None:
        self.groups[(rule, grp)] = [last_fire, breaker]
        self._write(
            "INSERT INTO grp VALUES (?, ?, ?, ?) ON CONFLICT(rule, grp) DO UPDATE"
            " SET last_fire = excluded.last_fire, breaker_open = excluded.breaker_open",
            (rule, grp, last_fire, breaker),
        )

    def record_fire(self, rule: str, grp: str, t: float, history_from: float) -> None:
        with self.batch():
            _, breaker = self.group_state(rule, grp)
            self._set_group(rule, grp, t, breaker)
            hist = self.fires.setdefault((rule, grp), [])
            hist.append(t)
            hist[:] = [x for x in hist if x > history_from]
            self._exec("INSERT INTO fires VALUES (?, ?, ?)", (rule, grp, t))
            self._exec(
                "DELETE FROM fires WHERE rule = ? AND grp = ? AND t <= ?",
                (rule, grp, history_from),
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
        with self.batch():
            self._forget(rule)
            for table in ("grp", "windows", "fires"):
                self._exec(f"DELETE FROM {table} WHERE rule = ?", (rule,))  # noqa: S608 - fixed names
            cur = self._exec("INSERT INTO resets (rule) VALUES (?)", (rule,))
            self._exec("DELETE FROM resets WHERE id <= ?", ((cur.lastrowid or 0) - 100,))
            self._resets_seen = cur.lastrowid or self._resets_seen
        return len(keys)

    def _forget(self, rule: str) -> None:
        for store in (self.groups, self.windows, self.fires):
            for k in [k for k in store if k[0] == rule]:
                del store[k]
        self._dirty = {k for k in self._dirty if k[0] != rule}
        self._deferred = {k for k in self._deferred if k[0] != rule}

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
                    for table in ("grp", "windows", "fires"):
                        self._exec(f"DELETE FROM {table} WHERE rule = ?", (rule,))  # noqa: S608 - fixed names
            return rules

    # ---------------------------------------------------------------- sources
    def position(self, key: str) -> Position | None:
        row = self._exec(
            "SELECT path, dev, inode, first_hash, offset, tail_hash FROM position WHERE key = ?",
            (key,),
        ).fetchone()
        return Position(*row) if row else None

    def save_position(self, key: str, pos: Position) -> None:
        self._write(
            "INSERT INTO position (key, path, dev, inode, first_hash, offset, tail_hash)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET"
            " path = excluded.path, dev = excluded.dev, inode = excluded.inode,"
            " first_hash = excluded.first_hash, offset = excluded.offset,"
            " tail_hash = excluded.tail_hash",
            (key, pos.path, pos.dev, pos.inode, pos.first_hash, pos.offset, pos.tail_hash),
        )

    def cursor(self, key: str) -> str | None:
        row = self._exec("SELECT cursor FROM cursor WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def save_cursor(self, key: str, cursor: str) -> None:
        self._write(
            "INSERT INTO cursor VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET cursor = excluded.cursor",
            (key, cursor),
        )

    # ---------------------------------------------------------------- meta (service clock)
    def meta(self, key: str) -> str | None:
        row = self._exec("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self._write(
            "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # ---------------------------------------------------------------- firings (the job queue)
    def add_firing(self, rule: str, grp: str, t: float, kind: str, count: int, summary: str) -> int:
        """Record a fire in the same transaction as the engine's state (call inside a batch)."""
        now = time.time()
        with self.lock:
            if not self._depth:
                raise RuntimeError("add_firing outside a batch")
            cur = self._exec(
                "INSERT INTO firings (rule, grp, t, kind, count, summary, status, created, updated)"
                " VALUES (?, ?, ?, ?, ?, ?, 'new', ?, ?)",
                (rule, grp, t, kind, count, summary, now, now),
            )
            return int(cur.lastrowid or 0)

    def set_firing(
        self,
        firing_id: int,
        status: str,
        *,
        incident_id: int | None = None,
        ident: str | None = None,
        result: dict[str, Any] | None = None,
    ) -> None:
        assert status in FIRING_STATUSES, status
        sets, args = ["status = ?", "updated = ?"], [status, time.time()]
        if incident_id is not None:
            sets.append("incident_id = ?")
            args.append(incident_id)
        if ident is not None:
            sets.append("ident = ?")
            args.append(ident)
        if result is not None:
            sets.append("result = ?")
            args.append(json.dumps(result))
        self._write(f"UPDATE firings SET {', '.join(sets)} WHERE id = ?", (*args, firing_id))  # noqa: S608

    def delete_firing(self, firing_id: int) -> None:
        self._write("DELETE FROM firings WHERE id = ?", (firing_id,))

    def firings(
        self, statuses: tuple[str, ...] = ("new", "queued", "running", "ran")
    ) -> list[Firing]:
        marks = ",".join("?" * len(statuses))
        cols = "id, rule, grp, t, kind, count, summary, status, incident_id, ident, result"
        sql = f"SELECT {cols} FROM firings WHERE status IN ({marks}) ORDER BY id"  # noqa: S608
        rows = self._exec(
            sql,
            statuses,
        ).fetchall()
        out = []
        for row in rows:
            f = Firing(*row[:10])
            f.result = json.loads(row[10]) if row[10] else None
            out.append(f)
        return out

    # ---------------------------------------------------------------- running remediations
    def add_running(
        self,
        ident: str,
        incident_id: int,
        rule: str,
        started: float,
        artifact_dir: str,
        firing_id: int | None = None,
    ) -> None:
        with self.batch():
            self._exec(
                "INSERT OR REPLACE INTO running VALUES (?, ?, ?, ?, ?, ?)",
                (ident, incident_id, rule, started, os.getpid(), artifact_dir),
            )
            if firing_id is not None:
                self.set_firing(firing_id, "running", ident=ident)

    def remove_running(
        self, ident: str, firing_id: int | None = None, result: dict[str, Any] | None = None
    ) -> None:
        """The run is over: forget it and keep its result with its firing, in one transaction,
        so a kill before the store has it replays the record instead of losing it."""
        with self.batch():
            self._exec("DELETE FROM running WHERE ident = ?", (ident,))
            if firing_id is not None:
                self.set_firing(firing_id, "ran", result=result or {})

    def list_running(self) -> list[dict[str, Any]]:
        cols = ("ident", "incident_id", "rule", "started", "pid", "artifact_dir")
        return [dict(zip(cols, row, strict=True)) for row in self._exec("SELECT * FROM running")]

    # ---------------------------------------------------------------- faults
    def record_fault(self, kind: str, key: str, message: str, t: float) -> None:
        self._write(
            "INSERT INTO faults VALUES (?, ?, ?, ?, ?, 1, NULL) ON CONFLICT(kind, key) DO UPDATE"
            " SET message = excluded.message, last = excluded.last,"
            " count = CASE WHEN cleared IS NULL THEN count + 1 ELSE 1 END,"
            " first = CASE WHEN cleared IS NULL THEN first ELSE excluded.first END,"
            " cleared = NULL",
            (kind, key, message, t, t),
        )

    def clear_fault(self, kind: str, key: str, t: float) -> None:
        self._write(
            "UPDATE faults SET cleared = ? WHERE kind = ? AND key = ? AND cleared IS NULL",
            (t, kind, key),
        )

    def clear_all_faults(self, t: float) -> None:
        self._write("UPDATE faults SET cleared = ? WHERE cleared IS NULL", (t,))

    def list_faults(self) -> list[dict[str, Any]]:
        cols = ("kind", "key", "message", "first", "last", "count", "cleared")
        return [
            dict(zip(cols, row, strict=True))
            for row in self._exec("SELECT * FROM faults ORDER BY last DESC")
        ]

    def purge(self, older_than: float) -> None:
        """Bound the file: drop fire history nobody can count any more, finished firings and
        cleared faults."""
        with self.batch():
            self._exec("DELETE FROM fires WHERE t < ?", (older_than,))
            self._exec(
                "DELETE FROM firings WHERE status = 'done' AND updated < ?",
                (time.time() - 30 * 86400,),
            )
            self._exec(
                "DELETE FROM faults WHERE cleared IS NOT NULL AND cleared < ?",
                (time.time() - 30 * 86400,),
            )
            for k, w in list(self.windows.items()):
                keep = [t for t in w if t >= older_than]
                if len(keep) != len(w):
                    if keep:
                        self.windows[k] = keep
                    else:
                        del self.windows[k]
                    self._dirty.add(k)
            for k in list(self.fires):
                self.fires[k] = [t for t in self.fires[k] if t >= older_than]
                if not self.fires[k]:
                    del self.fires[k]
