"""The SQLite backend's own behaviour: migrations, purge, file ownership (the behaviour both
backends share is in test_contract.py, which runs on SQLite too)."""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.store import StoreError, SyncRun
from agent.store.sqlite import MIGRATIONS, SQLiteStore


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(tmp_path / "store.db")
    yield s
    s.close()


NOBODY = 65534


@pytest.fixture
def service_state():
    """A state directory owned by the service user (nobody) in a root-owned 0755 parent.

    Under /tmp rather than tmp_path: the service user must be able to reach it.
    """
    top = Path(tempfile.mkdtemp(prefix="jada-own-"))
    try:
        top.chmod(0o755)
        state = top / "state"
        state.mkdir()
        os.chown(state, NOBODY, NOBODY)
        yield state
    finally:
        shutil.rmtree(top)


def test_reopening_runs_no_migration_twice(tmp_path) -> None:
    SQLiteStore(tmp_path / "s.db").close()
    s = SQLiteStore(tmp_path / "s.db")
    assert s.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_purge_keeps_open_work(store) -> None:
    old = datetime(2020, 1, 1, tzinfo=UTC)
    done = store.add_task("old done", now=old)
    store.set_task_status(done.id, "done", now=old)
    keep = store.add_task("old open", now=old)
    store.record_sync_run(SyncRun(started=old, finished=old, outcome="ok"))
    removed = store.purge(datetime(2021, 1, 1, tzinfo=UTC))
    assert removed == 2
    assert store.get_task(done.id) is None and store.get_task(keep.id) is not None


def _as_user(uid: int, fn) -> int:
    """Run ``fn`` in a forked child that has dropped to ``uid``; its return value is the exit code."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 99
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            code = fn()
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as root and as the service user")
def test_root_adding_a_task_leaves_the_store_writable_for_the_service_user(
    service_state: Path,
) -> None:
    db = service_state / "store.db"

    def daemon_writes() -> int:
        s = SQLiteStore(db)
        s.add_task("by the service user")
        n = len(s.list_tasks())
        s.close()
        return n

    # Root adds the first task before the daemon ever ran (sudo jada-agent tasks add).
    with SQLiteStore(db) as store:
        store.add_task("added by root")
        owners = {p.name: p.stat().st_uid for p in service_state.iterdir()}
    assert set(owners.values()) == {NOBODY}, owners
    assert _as_user(NOBODY, daemon_writes) == 2
    with SQLiteStore(db) as store:
        store.add_task("root again, while the files exist")
    assert _as_user(NOBODY, daemon_writes) == 4


def test_migrating_a_version_1_store_counts_unfinished_dependencies(tmp_path) -> None:
    import sqlite3

    path = tmp_path / "v1.db"
    db = sqlite3.connect(path, isolation_level=None)
    for stmt in MIGRATIONS[0].split(";"):
        if stmt.strip():
            db.execute(stmt)
    db.execute("PRAGMA user_version = 1")
    t = "2026-05-13T00:00:00.000000Z"
    rows = [
        (1, "done dep", "done", 0),
        (2, "open dep", "ready", 0),
        (3, "waits on 1", "ready", 9),
        (4, "waits on 1 and 2", "ready", 9),
    ]
    for i, title, status, prio in rows:
        db.execute(
            "INSERT INTO tasks (id, title, status, priority, created, updated) VALUES (?, ?, ?, ?, ?, ?)",
            (i, title, status, prio, t, t),
        )
    db.executemany("INSERT INTO task_deps VALUES (?, ?)", [(3, 1), (4, 1), (4, 2)])
    db.close()
    with SQLiteStore(path) as store:
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        pending = dict(store.db.execute("SELECT id, pending_deps FROM tasks"))
        assert pending == {1: 0, 2: 0, 3: 0, 4: 1}
        assert store.next_ready_task().id == 3
        store.set_task_status(3, "done")
        assert store.next_ready_task().id == 2
        store.set_task_status(2, "done")
        assert store.next_ready_task().id == 4


def test_a_store_newer_than_the_code_is_refused(tmp_path) -> None:
    SQLiteStore(tmp_path / "s.db").close()
    import sqlite3

    db = sqlite3.connect(tmp_path / "s.db")
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer than this jada-agent"):
        SQLiteStore(tmp_path / "s.db")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as root and as the service user")
def test_root_never_hands_a_file_behind_a_planted_symlink_to_the_service_user(
    service_state: Path,
) -> None:
    # The state directory is the service user's: it can plant store.db -> a root-owned file,
    # which SQLite opens as a new database; root must not then give that file away.
    victim = service_state.parent / "victim"
    victim.write_bytes(b"")
    db = service_state / "store.db"
    db.symlink_to(victim)
    with SQLiteStore(db) as store:
        store.add_task("added by root")
    assert victim.stat().st_uid == 0
