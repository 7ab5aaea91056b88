"""The host's remediation lock: one remediation at a time, by the service or by a person.

The lock is the *content* of ``remediator.lock_file`` (JSON: owner, pid, acquired, expires);
an empty file is a free lock. Every read-modify-write of it happens under ``flock`` so two
takers never both win. The content, not the flock, is the lock because a playbook run by hand
takes it with one command (``jada-agent remediator lock acquire``) and releases it with another:
a flock would die with the first command. A holder is stale, and its lock is broken with a log
line, when its recorded pid is dead (or now names another process: its start time differs) or
its expiry has passed. A holder with a live pid is the holder, whatever name a second process
gives: two remediators calling themselves ``jada-remediator`` never share the lock.

:class:`InstanceLock` is the other lock here: one remediator per state database, a ``flock``
on a file next to it held for the life of the process (the kernel drops it when the process
dies, however it dies).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class LockBusy(RuntimeError):
    """Someone else holds the lock (or a release by a non-holder)."""


@dataclass
class LockInfo:
    owner: str
    pid: int | None
    acquired: float
    expires: float
    start: int | None = None  # the pid's start time (clock ticks since boot): pid reuse shows

    def expires_iso(self) -> str:
        return datetime.fromtimestamp(self.expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "expires_at": self.expires_iso()}


def process_start(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot (``/proc/PID/stat`` field 22)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    fields = data[data.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


class RemediationLock:
    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    @contextlib.contextmanager
    def _guard(self) -> Iterator[int]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd
        finally:
            os.close(fd)  # closing drops the flock

    @staticmethod
    def _read(fd: int) -> LockInfo | None:
        os.lseek(fd, 0, os.SEEK_SET)
        data = os.read(fd, 65536)
        if not data.strip():
            return None
        try:
            doc = json.loads(data)
            return LockInfo(
                doc["owner"],
                doc.get("pid"),
                float(doc["acquired"]),
                float(doc["expires"]),
                doc.get("start"),
            )
        except (ValueError, KeyError, TypeError):
            log.warning(
                "%s: unreadable lock content, treating the lock as free", "remediation lock"
            )
            return None

    @staticmethod
    def _write(fd: int, info: LockInfo | None) -> None:
        data = b"" if info is None else json.dumps(asdict(info)).encode() + b"\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)

    def _stale(self, info: LockInfo, now: float) -> str | None:
        if info.pid is not None and not _pid_alive(info.pid):
            return f"its process {info.pid} is gone"
        if info.pid is not None and info.start is not None:
            start = process_start(info.pid)
            if start is not None and start != info.start:
                return f"its process {info.pid} is gone (the pid now names another process)"
        if now >= info.expires:
            return f"it expired at {info.expires_iso()}"
        return None

    def holder(self) -> LockInfo | None:
        with self._guard() as fd:
            info = self._read(fd)
            if info is not None and self._stale(info, time.time()):
                return None
            return info

    def acquire(
        self,
        owner: str,
        ttl: float = 900.0,
        wait: float = 0.0,
        pid: int | None = None,
        cancel: threading.Event | None = None,
    ) -> LockInfo:
        """Take the lock for ``owner`` (re-taking one's own lock renews it); raise LockBusy.

        ``cancel`` ends a wait early (the service is stopping)."""
        deadline = time.monotonic() + wait
        while True:
            with self._guard() as fd:
                now = time.time()
                info = self._read(fd)
                if info is not None and not self._mine(info, owner, pid):
                    why = self._stale(info, now)
                    if why:
                        log.warning(
                            "breaking the stale remediation lock of %s: %s", info.owner, why
                        )
                        info = None
                if info is None or self._mine(info, owner, pid):
                    start = process_start(pid) if pid is not None else None
                    mine = LockInfo(owner, pid, now, now + ttl, start)
                    self._write(fd, mine)
                    return mine
                holder = info
            if time.monotonic() >= deadline or (cancel is not None and cancel.is_set()):
                raise LockBusy(
                    f"held by {holder.owner}"
                    f"{f' (pid {holder.pid})' if holder.pid else ''} until {holder.expires_iso()}"
                )
            # A person's playbook waiting for the service: a short sleep, bounded by --wait.
            pause = min(0.2, max(0.0, deadline - time.monotonic()))
            if cancel is not None:
                cancel.wait(pause)
            else:
                time.sleep(pause)

    @staticmethod
    def _mine(info: LockInfo, owner: str, pid: int | None) -> bool:
        # The same name is not enough when the holder is a process: it must be this process.
        return info.owner == owner and (info.pid is None or info.pid == pid)

    def release(self, owner: str, pid: int | None = None) -> bool:
        """Release ``owner``'s lock; False if the lock was free; LockBusy if someone else holds it.

        With ``pid`` (the service), only that process's lock is released."""
        with self._guard() as fd:
            info = self._read(fd)
            if info is None:
                return False
            if info.owner != owner or (pid is not None and info.pid not in (None, pid)):
                if self._stale(info, time.time()):
                    return False
                raise LockBusy(f"the lock is held by {info.owner}, not {owner}")
            self._write(fd, None)
            return True


class AlreadyRunning(RuntimeError):
    """Another process holds the instance lock."""


class InstanceLock:
    """One process per state database: ``flock`` on ``<state_db>.lock`` for the process's life.

    The file's content (the holder's pid) is only for the message; the flock is the lock, so a
    holder that died, even by SIGKILL, holds nothing. The descriptor is not inherited by the
    playbooks the service runs (``os.open`` makes it close-on-exec), so a leftover child never
    keeps a dead service's lock."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise AlreadyRunning(
                f"another remediator (pid {holder}) is already running on this state database"
                f" ({self.path}): one state database, one remediator; stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
