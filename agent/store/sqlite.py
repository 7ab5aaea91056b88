"""The embedded SQLite backend of the progress dashboard (WAL, numbered schema migrations).

Over 450 lines on purpose: one backend implements the whole :class:`~agent.store.model.Store`
contract (tasks, sessions, sync runs, leases, incidents) on one connection and its
transactions; the contract and the shared validation live in ``model.py``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from agent.store.model import (
    INCIDENT_STATUSES,
    SESSION_OUTCOMES,
    Incident,
    Lease,
    NewTask,
    Session,
    Store,
    StoreError,
    SyncRun,
    Task,
    check_choice,
    check_task_status,
    found,
    iso,
    parse_iso,
    parse_stamp,
    utcnow,
)

# Each entry migrates from version i to i+1. Never edit a released entry: append a new one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE tasks (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        title TEXT NOT NULL,
        body TEXT NOT NULL DEFAULT '',
        priority INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL DEFAULT 'ready',
        kind TEXT NOT NULL DEFAULT 'task',
        workspace TEXT,
        created TEXT NOT NULL,
        updated TEXT NOT NULL
    );
    CREATE INDEX tasks_pick ON tasks(status, priority DESC, created, id);
    CREATE TABLE task_deps (
        task_id INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
        depends_on INTEGER NOT NULL,
        PRIMARY KEY (task_id, depends_on)
    );
    CREATE INDEX task_deps_rev ON task_deps(depends_on);
    CREATE TABLE task_notes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        task_id INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
        at TEXT NOT NULL,
        text TEXT NOT NULL
    );
    CREATE INDEX task_notes_task ON task_notes(task_id);
    CREATE TABLE sessions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        task_id INTEGER,
        started TEXT NOT NULL,
        ended TEXT,
        outcome TEXT NOT NULL DEFAULT 'running',
        turns INTEGER NOT NULL DEFAULT 0,
        input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        exit_code INTEGER,
        owner TEXT
    );
    CREATE INDEX sessions_started ON sessions(started);
    CREATE TABLE sync_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        started TEXT NOT NULL,
        finished TEXT,
        outcome TEXT NOT NULL,
        rows INTEGER NOT NULL DEFAULT 0,
        requests INTEGER NOT NULL DEFAULT 0,
        error_class TEXT
    );
    CREATE INDEX sync_runs_started ON sync_runs(started);
    CREATE TABLE incidents (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        rule TEXT NOT NULL,
        grp TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL,
        opened TEXT NOT NULL,
        updated TEXT NOT NULL,
        resolved TEXT,
        cause TEXT,
        summary TEXT NOT NULL DEFAULT '',
        remediations TEXT NOT NULL DEFAULT '[]',
        notified TEXT
    );
    CREATE INDEX incidents_status ON incidents(status, rule);
    """,
    # 2: pick in O(log n) however many tasks wait on dependencies: each task counts its
    # dependencies that are not done yet, and a partial index holds only the runnable tasks.
    # Leases say which daemon may run sessions.
    """
    ALTER TABLE tasks ADD COLUMN pending_deps INTEGER NOT NULL DEFAULT 0;
    UPDATE tasks SET pending_deps = (
        SELECT count(*) FROM task_deps d LEFT JOIN tasks p ON p.id = d.depends_on
        WHERE d.task_id = tasks.id AND (p.id IS NULL OR p.status != 'done'));
    CREATE INDEX tasks_runnable ON tasks(priority DESC, created, id)
        WHERE status = 'ready' AND kind = 'task' AND pending_deps = 0;
    CREATE INDEX sessions_outcome ON sessions(outcome);
    CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        acquired TEXT NOT NULL,
        expires TEXT NOT NULL
    );
    """,
    # 3: round robin at the turn cap: a task whose session hit the cap takes the next turn of
    # its priority (yield_task), behind the other ready tasks of that priority.
    """
    ALTER TABLE tasks ADD COLUMN turn INTEGER NOT NULL DEFAULT 0;
    DROP INDEX tasks_runnable;
    CREATE INDEX tasks_runnable ON tasks(priority DESC, turn, created, id)
        WHERE status = 'ready' AND kind = 'task' AND pending_deps = 0;
    """,
]


class SQLiteStore(Store):
    """One SQLite file; safe for several processes (WAL, busy timeout)."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open the store: {exc}") from None
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA busy_timeout = 30000")
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = NORMAL")
        self.db.execute("PRAGMA foreign_keys = ON")
        self._migrate()
        self._adopt_owner()

    # ------------------------------------------------------------------ plumbing
    def _adopt_owner(self) -> None:
        """Run as root (``sudo jada-agent tasks add``), leave no root-owned file behind.

        The database and its ``-wal``/``-shm`` files take the owner of the state directory, so
        the daemon, running as the service user, can still write them afterwards.
        """
        if self.path == ":memory:" or os.geteuid() != 0:
            return
        try:
            parent = os.stat(Path(self.path).parent)
        except OSError:
            return
        if parent.st_uid == 0:
            return
        for suffix in ("", "-wal", "-shm"):
            f = self.path + suffix
            try:
                # Never through a symlink: the directory is the service user's, and a link it
                # planted (store.db-wal -> /etc/passwd) would hand it a root-owned file.
                st = os.lstat(f)
                if st.st_uid == 0 and stat.S_ISREG(st.st_mode):
                    os.chown(f, parent.st_uid, parent.st_gid, follow_symlinks=False)
            except OSError:
                continue

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StoreError(
                f"{self.path}: schema version {version} is newer than this jada-agent "
                f"({len(MIGRATIONS)}); upgrade the package"
            )
        for i in range(version, len(MIGRATIONS)):
            self.db.execute("BEGIN IMMEDIATE")
            try:
                # Re-read under the write lock: another process may have migrated meanwhile.
                if self.db.execute("PRAGMA user_version").fetchone()[0] != i:
                    self.db.execute("ROLLBACK")
                    continue
                for stmt in MIGRATIONS[i].split(";"):
                    if stmt.strip():
                        self.db.execute(stmt)
                self.db.execute(f"PRAGMA user_version = {i + 1}")
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    def _tx(self) -> _Tx:
        return _Tx(self.db)

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------ tasks
    def _task(self, row: sqlite3.Row, with_notes: bool = True) -> Task:
        deps = [
            r[0]
            for r in self.db.execute(
                "SELECT depends_on FROM task_deps WHERE task_id = ? ORDER BY depends_on",
                (row["id"],),
            )
        ]
        notes = []
        if with_notes:
            notes = [
                {"at": r["at"], "text": r["text"]}
                for r in self.db.execute(
                    "SELECT at, text FROM task_notes WHERE task_id = ? ORDER BY id", (row["id"],)
                )
            ]
        return Task(
            id=row["id"],
            title=row["title"],
            body=row["body"],
            priority=row["priority"],
            status=row["status"],
            kind=row["kind"],
            depends_on=deps,
            workspace=row["workspace"],
            created=parse_stamp(row["created"]),
            updated=parse_stamp(row["updated"]),
            notes=notes,
        )

    def _insert_task(self, new: NewTask) -> Task:
        with self._tx():
            pending = 0
            for dep in new.deps:
                row = self.db.execute("SELECT status FROM tasks WHERE id = ?", (dep,)).fetchone()
                if not row:
                    raise StoreError(f"dependency {dep} is not a known task")
                pending += row[0] != "done"
            cur = self.db.execute(
                "INSERT INTO tasks (title, body, priority, status, kind, workspace, created,"
                " updated, pending_deps) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    new.title,
                    new.body,
                    new.priority,
                    new.status,
                    new.kind,
                    new.workspace,
                    new.stamp,
                    new.stamp,
                    pending,
                ),
            )
            task_id = _rowid(cur)
            self.db.executemany(
                "INSERT OR IGNORE INTO task_deps (task_id, depends_on) VALUES (?, ?)",
                [(task_id, d) for d in new.deps],
            )
        return found(self.get_task(task_id), f"task {task_id}")

    def get_task(self, task_id: int) -> Task | None:
        row = self.db.execute("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone()
        return self._task(row) if row else None

    def list_tasks(self, statuses: Iterable[str] | None = None) -> list[Task]:
        if statuses is None:
            rows = self.db.execute("SELECT * FROM tasks ORDER BY id").fetchall()
        else:
            wanted = list(statuses)
            marks = ",".join("?" * len(wanted))
            rows = self.db.execute(
                f"SELECT * FROM tasks WHERE status IN ({marks}) ORDER BY id",  # noqa: S608
                wanted,
            ).fetchall()
        return [self._task(r) for r in rows]

    def set_task_status(
        self, task_id: int, status: str, note: str | None = None, now: datetime | None = None
    ) -> Task:
        check_task_status(status)
        stamp = iso(now or utcnow())
        with self._tx():
            row = self.db.execute("SELECT status FROM tasks WHERE id = ?", (task_id,)).fetchone()
            if row is None:
                raise StoreError(f"no task {task_id}")
            old = row[0]
            self.db.execute(
                "UPDATE tasks SET status = ?, updated = ? WHERE id = ?", (status, stamp, task_id)
            )
            if (old == "done") != (status == "done"):
                # Keep each dependent's count of unfinished dependencies exact.
                delta = -1 if status == "done" else 1
                self.db.execute(
                    "UPDATE tasks SET pending_deps = pending_deps + ? WHERE id IN"
                    " (SELECT task_id FROM task_deps WHERE depends_on = ?)",
                    (delta, task_id),
                )
            if status == "done":
                self.db.execute(
                    "UPDATE tasks SET status = 'ready', updated = ? WHERE status = 'blocked'"
                    " AND pending_deps = 0 AND id IN"
                    " (SELECT task_id FROM task_deps WHERE depends_on = ?)",
                    (stamp, task_id),
                )
            if note:
                self.db.execute(
                    "INSERT INTO task_notes (task_id, at, text) VALUES (?, ?, ?)",
                    (task_id, stamp, note),
                )
        return found(self.get_task(task_id), f"task {task_id}")

    def add_dependency(self, task_id: int, depends_on: int, now: datetime | None = None) -> Task:
        stamp = iso(now or utcnow())
        with self._tx():
            for tid in (task_id, depends_on):
                if not self.db.execute("SELECT 1 FROM tasks WHERE id = ?", (tid,)).fetchone():
                    raise StoreError(f"no task {tid}")
            # A cycle would never become ready: refuse when depends_on already waits for task_id.
            cycle = self.db.execute(
                """
                WITH RECURSIVE up(id) AS (
                    SELECT ? UNION SELECT d.depends_on FROM task_deps d JOIN up ON d.task_id = up.id)
                SELECT 1 FROM up WHERE id = ?
                """,
                (depends_on, task_id),
            ).fetchone()
            if cycle:
                raise StoreError(f"task {depends_on} already waits for task {task_id}: a cycle")
            cur = self.db.execute(
                "INSERT OR IGNORE INTO task_deps (task_id, depends_on) VALUES (?, ?)",
                (task_id, depends_on),
            )
            if cur.rowcount:
                dep_status = self.db.execute(
                    "SELECT status FROM tasks WHERE id = ?", (depends_on,)
                ).fetchone()[0]
                self.db.execute(
                    "UPDATE tasks SET pending_deps = pending_deps + ?, updated = ? WHERE id = ?",
                    (int(dep_status != "done"), stamp, task_id),
                )
        return found(self.get_task(task_id), f"task {task_id}")

    def add_note(self, task_id: int, text: str, now: datetime | None = None) -> None:
        stamp = iso(now or utcnow())
        with self._tx():
            if not self.db.execute("SELECT 1 FROM tasks WHERE id = ?", (task_id,)).fetchone():
                raise StoreError(f"no task {task_id}")
            self.db.execute(
                "INSERT INTO task_notes (task_id, at, text) VALUES (?, ?, ?)",
                (task_id, stamp, text),
            )
            self.db.execute("UPDATE tasks SET updated = ? WHERE id = ?", (stamp, task_id))

    def next_ready_task(self) -> Task | None:
        # The WHERE clause repeats the partial index's own, so SQLite can walk tasks_runnable in
        # order and stop at the first row. INDEXED BY pins that plan: left to itself the planner
        # prefers tasks_pick and then steps over every blocked high-priority task (1.5 ms with
        # 5,000 of them, 0.01 ms this way; tests/bench/bench_daemon.py).
        row = self.db.execute(
            """
            SELECT * FROM tasks INDEXED BY tasks_runnable
            WHERE status = 'ready' AND kind = 'task' AND pending_deps = 0
            ORDER BY priority DESC, turn, created, id
            LIMIT 1
            """
        ).fetchone()
        return self._task(row) if row else None

    def yield_task(self, task_id: int) -> None:
        with self._tx():
            cur = self.db.execute(
                """
                UPDATE tasks SET turn = 1 + (
                    SELECT coalesce(max(o.turn), 0) FROM tasks o
                    WHERE o.status = 'ready' AND o.kind = 'task' AND o.pending_deps = 0
                      AND o.priority = tasks.priority AND o.id != tasks.id)
                WHERE id = ?
                """,
                (task_id,),
            )
            if cur.rowcount == 0:
                raise StoreError(f"no task {task_id}")

    # ------------------------------------------------------------------ sessions
    @staticmethod
    def _session(row: sqlite3.Row) -> Session:
        return Session(
            id=row["id"],
            task_id=row["task_id"],
            started=parse_stamp(row["started"]),
            ended=parse_iso(row["ended"]),
            outcome=row["outcome"],
            turns=row["turns"],
            input_tokens=row["input_tokens"],
            output_tokens=row["output_tokens"],
            exit_code=row["exit_code"],
            owner=row["owner"],
        )

    def start_session(
        self, task_id: int | None, now: datetime | None = None, owner: str | None = None
    ) -> Session:
        with self._tx():
            cur = self.db.execute(
                "INSERT INTO sessions (task_id, started, owner) VALUES (?, ?, ?)",
                (task_id, iso(now or utcnow()), owner),
            )
        row = self.db.execute("SELECT * FROM sessions WHERE id = ?", (cur.lastrowid,)).fetchone()
        return self._session(row)

    def finish_session(
        self,
        session_id: int,
        outcome: str,
        turns: int = 0,
        input_tokens: int = 0,
        output_tokens: int = 0,
        exit_code: int | None = None,
        now: datetime | None = None,
    ) -> Session:
        check_choice(outcome, SESSION_OUTCOMES, "session outcome")
        with self._tx():
            cur = self.db.execute(
                "UPDATE sessions SET ended = ?, outcome = ?, turns = ?, input_tokens = ?,"
                " output_tokens = ?, exit_code = ? WHERE id = ?",
                (
                    iso(now or utcnow()),
                    outcome,
                    turns,
                    input_tokens,
                    output_tokens,
                    exit_code,
                    session_id,
                ),
            )
            if cur.rowcount == 0:
                raise StoreError(f"no session {session_id}")
        row = self.db.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
        return self._session(row)

    def update_session(
        self, session_id: int, turns: int, input_tokens: int = 0, output_tokens: int = 0
    ) -> None:
        with self._tx():
            cur = self.db.execute(
                "UPDATE sessions SET turns = ?, input_tokens = ?, output_tokens = ? WHERE id = ?",
                (turns, input_tokens, output_tokens, session_id),
            )
            if cur.rowcount == 0:
                raise StoreError(f"no session {session_id}")

    def list_sessions(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        outcomes: Iterable[str] | None = None,
    ) -> list[Session]:
        sql = "SELECT * FROM sessions WHERE started >= ? AND started < ?"
        params: list[Any] = [iso(since) if since else "", iso(until) if until else "~"]
        if outcomes is not None:
            wanted = list(outcomes)
            sql += f" AND outcome IN ({','.join('?' * len(wanted))})"
            params += wanted
        rows = self.db.execute(sql + " ORDER BY started, id", params).fetchall()
        return [self._session(r) for r in rows]

    # ------------------------------------------------------------------ leases
    def acquire_lease(
        self,
        name: str,
        owner: str,
        ttl: float,
        now: datetime | None = None,
        replace: str | None = None,
    ) -> Lease | None:
        at = now or utcnow()
        with self._tx():
            row = self.db.execute("SELECT * FROM leases WHERE name = ?", (name,)).fetchone()
            if row is not None:
                free = (
                    row["owner"] == owner
                    or (replace is not None and row["owner"] == replace)
                    or parse_stamp(row["expires"]) <= at
                )
                if not free:
                    return None
            acquired = row["acquired"] if row is not None and row["owner"] == owner else iso(at)
            expires = iso(at + timedelta(seconds=ttl))
            self.db.execute(
                "INSERT INTO leases (name, owner, acquired, expires) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(name) DO UPDATE SET owner = excluded.owner,"
                " acquired = excluded.acquired, expires = excluded.expires",
                (name, owner, acquired, expires),
            )
        return Lease(name, owner, parse_stamp(acquired), parse_stamp(expires))

    def release_lease(self, name: str, owner: str) -> bool:
        with self._tx():
            cur = self.db.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))
        return cur.rowcount > 0

    def get_lease(self, name: str) -> Lease | None:
        row = self.db.execute("SELECT * FROM leases WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        return Lease(
            row["name"],
            row["owner"],
            parse_stamp(row["acquired"]),
            parse_stamp(row["expires"]),
        )

    # ------------------------------------------------------------------ sync runs
    def record_sync_run(self, run: SyncRun) -> SyncRun:
        with self._tx():
            cur = self.db.execute(
                "INSERT INTO sync_runs (started, finished, outcome, rows, requests, error_class)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    iso(run.started),
                    iso(run.finished),
                    run.outcome,
                    run.rows,
                    run.requests,
                    run.error_class,
                ),
            )
        run.id = _rowid(cur)
        return run

    def list_sync_runs(self, limit: int = 50) -> list[SyncRun]:
        rows = self.db.execute(
            "SELECT * FROM sync_runs ORDER BY started DESC, id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [
            SyncRun(
                id=r["id"],
                started=parse_stamp(r["started"]),
                finished=parse_iso(r["finished"]),
                outcome=r["outcome"],
                rows=r["rows"],
                requests=r["requests"],
                error_class=r["error_class"],
            )
            for r in rows
        ]

    # ------------------------------------------------------------------ incidents
    @staticmethod
    def _incident(row: sqlite3.Row) -> Incident:
        return Incident(
            id=row["id"],
            rule=row["rule"],
            group=json.loads(row["grp"]),
            status=row["status"],
            opened=parse_stamp(row["opened"]),
            updated=parse_stamp(row["updated"]),
            resolved=parse_iso(row["resolved"]),
            cause=row["cause"],
            summary=row["summary"],
            remediations=json.loads(row["remediations"]),
            notified=parse_iso(row["notified"]),
        )

    def open_incident(
        self, rule: str, group: dict[str, str], summary: str = "", now: datetime | None = None
    ) -> Incident:
        stamp = iso(now or utcnow())
        with self._tx():
            cur = self.db.execute(
                "INSERT INTO incidents (rule, grp, status, opened, updated, summary)"
                " VALUES (?, ?, 'open', ?, ?, ?)",
                (rule, json.dumps(group, sort_keys=True), stamp, stamp, summary),
            )
        incident_id = _rowid(cur)
        return found(self.get_incident(incident_id), f"incident {incident_id}")

    def update_incident(
        self,
        incident_id: int,
        *,
        status: str | None = None,
        cause: str | None = None,
        summary: str | None = None,
        remediation: dict[str, Any] | None = None,
        notified: datetime | None = None,
        now: datetime | None = None,
    ) -> Incident:
        if status is not None:
            check_choice(status, INCIDENT_STATUSES, "incident status")
        stamp = iso(now or utcnow())
        with self._tx():
            row = self.db.execute("SELECT * FROM incidents WHERE id = ?", (incident_id,)).fetchone()
            if row is None:
                raise StoreError(f"no incident {incident_id}")
            runs = json.loads(row["remediations"])
            if remediation is not None:
                runs.append(remediation)
            self.db.execute(
                "UPDATE incidents SET status = ?, cause = ?, summary = ?, remediations = ?,"
                " notified = ?, updated = ?, resolved = ? WHERE id = ?",
                (
                    status or row["status"],
                    cause if cause is not None else row["cause"],
                    summary if summary is not None else row["summary"],
                    json.dumps(runs),
                    iso(notified) if notified else row["notified"],
                    stamp,
                    stamp if status == "resolved" else row["resolved"],
                    incident_id,
                ),
            )
        return found(self.get_incident(incident_id), f"incident {incident_id}")

    def get_incident(self, incident_id: int) -> Incident | None:
        row = self.db.execute("SELECT * FROM incidents WHERE id = ?", (incident_id,)).fetchone()
        return self._incident(row) if row else None

    def list_incidents(self, statuses: Iterable[str] | None = None) -> list[Incident]:
        rows = self.db.execute("SELECT * FROM incidents ORDER BY id").fetchall()
        wanted = set(statuses) if statuses is not None else None
        return [self._incident(r) for r in rows if wanted is None or r["status"] in wanted]

    # ------------------------------------------------------------------ housekeeping
    def purge(self, older_than: datetime) -> int:
        cut = iso(older_than)
        removed = 0
        with self._tx():
            for sql in (
                "DELETE FROM sessions WHERE ended IS NOT NULL AND ended < ?",
                "DELETE FROM sync_runs WHERE started < ?",
                "DELETE FROM incidents WHERE status = 'resolved' AND resolved < ?",
                "DELETE FROM tasks WHERE status IN ('done', 'failed') AND updated < ?"
                " AND id NOT IN (SELECT depends_on FROM task_deps d JOIN tasks t"
                " ON t.id = d.task_id WHERE t.status NOT IN ('done', 'failed'))",
            ):
                removed += self.db.execute(sql, (cut,)).rowcount
        return removed


def _rowid(cur: sqlite3.Cursor) -> int:
    """The id SQLite gave the row an INSERT just added (None only after other statements)."""
    if cur.lastrowid is None:
        raise StoreError("an INSERT returned no row id")
    return cur.lastrowid


class _Tx:
    """``BEGIN IMMEDIATE`` … ``COMMIT``: one writer at a time, never a half-written change."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
