"""What went wrong inside the remediator and is not over yet: write errors, dead sources.

A fault is ``(kind, key)`` with a message, first and last time and a count. Raising one logs
it (the first time, then at most once a minute while it lasts), shows it in the unit's status
line (``systemctl status``: readable even when the disk is not), records it in the state
database's ``faults`` table when that can be written (what ``remediator status`` reads and the
outbox alerts on), and tells every subscriber. Clearing it logs the recovery and tells them
again. Kinds: ``state_write`` and ``store_write`` (key ``write`` for reading and opening
incidents, ``remediation`` for the job worker, ``corrupt`` for a state database moved aside),
``source`` (key ``file:PATH``: a log that cannot be read, a path that is not a regular file; key
``journal``: journalctl died or the reader stopped).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from agent import sdnotify
from agent.remediator.state import StateDB, StateWriteError

log = logging.getLogger("jada-remediator")

LOG_EVERY = 60.0


@dataclass
class Fault:
    kind: str
    key: str
    message: str
    first: float
    last: float
    count: int = 1

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


Listener = Callable[[str, Fault], None]  # ("raised" | "cleared", fault)


class Faults:
    def __init__(self, state: StateDB | None = None):
        self.state = state
        self.active: dict[tuple[str, str], Fault] = {}
        self.listeners: list[Listener] = []
        self._logged: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def subscribe(self, listener: Listener) -> None:
        """Called on every new fault and every recovery (the outbox's alert hook)."""
        self.listeners.append(listener)

    def raise_(self, kind: str, key: str, message: str) -> Fault:
        now = time.time()
        with self._lock:
            f = self.active.get((kind, key))
            new = f is None
            if f is None:
                f = self.active[(kind, key)] = Fault(kind, key, message, now, now)
            else:
                f.message, f.last, f.count = message, now, f.count + 1
            if new or now - self._logged.get((kind, key), 0.0) >= LOG_EVERY:
                self._logged[(kind, key)] = now
                log.error("fault %s %s: %s (%d times)", kind, key, message, f.count)
        self._persist(lambda s: s.record_fault(kind, key, message, now))
        self._status()
        if new:
            self._tell("raised", f)
        return f

    def write_failed(self, where: str, exc: BaseException) -> None:
        """A write to the state database (``state_write``) or the store failed at ``where``."""
        kind = "state_write" if isinstance(exc, StateWriteError) else "store_write"
        self.raise_(
            kind, "write", f"{where}: {type(exc).__name__}: {exc}; the lines will be read again"
        )

    def clear(self, kind: str, key: str) -> None:
        with self._lock:
            f = self.active.pop((kind, key), None)
            self._logged.pop((kind, key), None)
        if f is None:
            return
        log.warning("fault %s %s is over after %d times: %s", kind, key, f.count, f.message)
        self._persist(lambda s: s.clear_fault(kind, key, time.time()))
        self._status()
        self._tell("cleared", f)

    def clear_kind(self, kind: str) -> None:
        for k, key in list(self.active):
            if k == kind:
                self.clear(k, key)

    def any(self) -> bool:
        return bool(self.active)

    def to_json(self) -> list[dict[str, Any]]:
        return [f.to_json() for f in self.active.values()]

    def _persist(self, write: Callable[[StateDB], None]) -> None:
        if self.state is None:
            return
        # Best effort: the state database may be the thing that is failing.
        with contextlib.suppress(Exception):
            write(self.state)

    def _status(self) -> None:
        if self.active:
            first = next(iter(self.active.values()))
            sdnotify.notify(
                f"STATUS=degraded: {len(self.active)} fault(s); {first.kind} {first.key}:"
                f" {first.message[:200]}"
            )
        else:
            sdnotify.notify("STATUS=watching")

    def _tell(self, what: str, f: Fault) -> None:
        for fn in list(self.listeners):
            try:
                fn(what, f)
            except Exception:
                log.exception("fault listener failed")
