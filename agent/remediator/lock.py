"""The host's remediation lock: one remediation at a time, by the service or by a person.

The lock is the *content* of ``remediator.lock_file`` (JSON: owner, pid, acquired, expires);
an empty file is a free lock. Every read-modify-write of it happens under ``flock`` so two
takers never both win. The content, not the flock, is the lock because a playbook run by hand
takes it with one command (``jada-agent remediator lock acquire``) and releases it with another:
a flock would die with the first command. A holder is stale, and its lock is broken with a log
line, when its recorded pid is dead or its expiry has passed.
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

    def expires_iso(self) -> str:
        return datetime.fromtimestamp(self.expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "expires_at": self.expires_iso()}


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
                doc["owner"], doc.get("pid"), float(doc["acquired"]), float(doc["expires"])
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
                if info is not None and info.owner != owner:
                    why = self._stale(info, now)
                    if why:
                        log.warning(
                            "breaking the stale remediation lock of %s: %s", info.owner, why
                        )
                        info = None
                if info is None or info.owner == owner:
                    mine = LockInfo(owner, pid, now, now + ttl)
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

    def release(self, owner: str) -> bool:
        """Release ``owner``'s lock; False if the lock was free; LockBusy if someone else holds it."""
        with self._guard() as fd:
            info = self._read(fd)
            if info is None:
                return False
            if info.owner != owner:
                if self._stale(info, time.time()):
                    return False
                raise LockBusy(f"the lock is held by {info.owner}, not {owner}")
            self._write(fd, None)
            return True
