"""Records of the progress dashboard and the contract every store backend keeps.

Times are timezone-aware UTC ``datetime`` objects everywhere; backends store ISO-8601 strings
with a ``Z`` so that they sort lexically.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar, overload

TASK_STATUSES = ("ready", "running", "blocked", "needs_you", "done", "failed")
OPEN_STATUSES = ("ready", "running", "blocked", "needs_you")
SESSION_OUTCOMES = (
    "running",
    "completed",
    "max_turns",
    "needs_you",
    "auth_error",
    "error",
    "interrupted",
    "timeout",
)
INCIDENT_STATUSES = ("open", "remediating", "escalated", "resolved")
# Priorities are bounded so that every backend can sort them as fixed-width keys.
PRIORITY_LIMIT = 10**9

_T = TypeVar("_T")


def utcnow() -> datetime:
    return datetime.now(UTC)


@overload
def iso(dt: datetime) -> str: ...
@overload
def iso(dt: None) -> None: ...
@overload
def iso(dt: datetime | None) -> str | None: ...
def iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def parse_stamp(text: str) -> datetime:
    """A timestamp the schema requires (NOT NULL): parsed, never None."""
    dt = parse_iso(text)
    if dt is None:
        raise StoreError(f"a stored row lacks a required timestamp: {text!r}")
    return dt


@dataclass
class Task:
    id: int
    title: str
    body: str = ""
    priority: int = 0
    status: str = "ready"
    kind: str = "task"  # "task" or "needs_you" (a question for a human)
    depends_on: list[int] = field(default_factory=list)
    workspace: str | None = None
    created: datetime = field(default_factory=utcnow)
    updated: datetime = field(default_factory=utcnow)
    notes: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "body": self.body,
            "priority": self.priority,
            "status": self.status,
            "kind": self.kind,
            "depends_on": list(self.depends_on),
            "workspace": self.workspace,
            "created": iso(self.created),
            "updated": iso(self.updated),
            "notes": self.notes,
        }


@dataclass
class Session:
    id: int
    task_id: int | None
    started: datetime
    ended: datetime | None = None
    outcome: str = "running"
    turns: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    exit_code: int | None = None
    owner: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "task_id": self.task_id,
            "started": iso(self.started),
            "ended": iso(self.ended),
            "outcome": self.outcome,
            "turns": self.turns,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "exit_code": self.exit_code,
        }


@dataclass
class SyncRun:
    started: datetime
    finished: datetime | None = None
    outcome: str = "ok"  # ok | credential_error | transient | error
    rows: int = 0
    requests: int = 0
    error_class: str | None = None
    id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "started": iso(self.started),
            "finished": iso(self.finished),
            "outcome": self.outcome,
            "rows": self.rows,
            "requests": self.requests,
            "error_class": self.error_class,
        }


@dataclass
class Incident:
    id: int
    rule: str
    group: dict[str, str]
    status: str
    opened: datetime
    updated: datetime
    resolved: datetime | None = None
    cause: str | None = None
    summary: str = ""
    remediations: list[dict[str, Any]] = field(default_factory=list)
    notified: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "rule": self.rule,
            "group": self.group,
            "status": self.status,
            "opened": iso(self.opened),
            "updated": iso(self.updated),
            "resolved": iso(self.resolved),
            "cause": self.cause,
            "summary": self.summary,
            "remediations": self.remediations,
            "notified": iso(self.notified),
        }


@dataclass
class Lease:
    """Who may run sessions on this store: held by one daemon, renewed before it expires."""

    name: str
    owner: str
    acquired: datetime
    expires: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "owner": self.owner,
            "acquired": iso(self.acquired),
            "expires": iso(self.expires),
        }


class StoreError(RuntimeError):
    pass


class StoreMissing(StoreError):
    """The store does not exist yet and the caller asked not to create it (a read-only look)."""


def found(obj: _T | None, what: str) -> _T:
    """What a backend reads back right after writing it: present, or the store is broken."""
    if obj is None:
        raise StoreError(f"{what} vanished while being written")
    return obj


def check_task_status(status: str) -> None:
    if status not in TASK_STATUSES:
        raise StoreError(f"task status must be one of {', '.join(TASK_STATUSES)}: {status!r}")


def check_task_fields(title: str, priority: int, status: str, kind: str) -> None:
    """The validation every backend applies to a new task (same messages everywhere)."""
    check_task_status(status)
    if not title.strip():
        raise StoreError("a task needs a non-empty title")
    if kind not in ("task", "needs_you"):
        raise StoreError(f"task kind must be task or needs_you: {kind!r}")
    if (
        isinstance(priority, bool)
        or not isinstance(priority, int)
        or abs(priority) > PRIORITY_LIMIT
    ):
        raise StoreError(
            f"task priority must be an integer between -{PRIORITY_LIMIT} and {PRIORITY_LIMIT}"
        )


def check_choice(value: str, allowed: Sequence[str], what: str) -> None:
    """Refuse a status or outcome that is not one of ``allowed`` (same message everywhere)."""
    if value not in allowed:
        raise StoreError(f"{what} must be one of {', '.join(allowed)}")


@dataclass(frozen=True)
class NewTask:
    """A task to add, validated and normalised by :meth:`Store.add_task` for the backends."""

    title: str
    body: str
    priority: int
    deps: list[int]  # sorted, without repeats; each must be a known task
    workspace: str | None
    status: str
    kind: str
    stamp: str  # created and updated (ISO-8601)


class Store(abc.ABC):
    """The progress dashboard. Both backends pass the same contract tests.

    The public methods that validate their arguments do it here, once; a backend implements
    the storage step (``_insert_task``).
    """

    # ---- tasks
    def add_task(
        self,
        title: str,
        body: str = "",
        priority: int = 0,
        depends_on: Sequence[int] = (),
        workspace: str | None = None,
        status: str = "ready",
        kind: str = "task",
        now: datetime | None = None,
    ) -> Task:
        check_task_fields(title, priority, status, kind)
        deps = sorted(set(depends_on))
        stamp = iso(now or utcnow())
        return self._insert_task(
            NewTask(title, body, priority, deps, workspace, status, kind, stamp)
        )

    @abc.abstractmethod
    def _insert_task(self, new: NewTask) -> Task:
        """Store ``new`` with the next task id (a dependency that is not a task is refused)."""

    @abc.abstractmethod
    def get_task(self, task_id: int) -> Task | None: ...

    @abc.abstractmethod
    def list_tasks(self, statuses: Iterable[str] | None = None) -> list[Task]: ...

    @abc.abstractmethod
    def set_task_status(
        self, task_id: int, status: str, note: str | None = None, now: datetime | None = None
    ) -> Task: ...

    @abc.abstractmethod
    def add_note(self, task_id: int, text: str, now: datetime | None = None) -> None: ...

    @abc.abstractmethod
    def yield_task(self, task_id: int) -> None:
        """Round robin at the turn cap: the task goes behind every other runnable task of its
        priority (it takes the turn after the last of theirs)."""

    @abc.abstractmethod
    def next_ready_task(self) -> Task | None:
        """Highest priority, then the turn (see :meth:`yield_task`), then oldest, among ready
        tasks whose dependencies are all done.

        Marking a task ``done`` also turns its ``blocked`` dependents whose dependencies are now
        all done back to ``ready`` (a task blocked on a needs-you question resumes once the
        person answers it with ``tasks done``).
        """

    @abc.abstractmethod
    def add_dependency(self, task_id: int, depends_on: int, now: datetime | None = None) -> Task:
        """Make ``task_id`` wait for ``depends_on`` (both must exist; a cycle is refused)."""

    # ---- sessions
    @abc.abstractmethod
    def start_session(
        self, task_id: int | None, now: datetime | None = None, owner: str | None = None
    ) -> Session: ...

    @abc.abstractmethod
    def finish_session(
        self,
        session_id: int,
        outcome: str,
        turns: int = 0,
        input_tokens: int = 0,
        output_tokens: int = 0,
        exit_code: int | None = None,
        now: datetime | None = None,
    ) -> Session: ...

    @abc.abstractmethod
    def update_session(
        self, session_id: int, turns: int, input_tokens: int = 0, output_tokens: int = 0
    ) -> None:
        """Record a running session's progress so that a crash keeps what it had spent."""

    @abc.abstractmethod
    def list_sessions(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        outcomes: Iterable[str] | None = None,
    ) -> list[Session]:
        """Sessions whose ``started`` is in ``[since, until)``, oldest first."""

    # ---- the lease: which daemon may run sessions on this store
    @abc.abstractmethod
    def acquire_lease(
        self,
        name: str,
        owner: str,
        ttl: float,
        now: datetime | None = None,
        replace: str | None = None,
    ) -> Lease | None:
        """Take or renew ``name`` for ``ttl`` seconds.

        Succeeds when nobody holds it, the holder is ``owner`` (a renewal), the lease has
        expired, or the holder is ``replace`` (a holder known to be dead). Returns the lease, or
        None when someone else holds it.
        """

    @abc.abstractmethod
    def release_lease(self, name: str, owner: str) -> bool:
        """Give the lease up if ``owner`` holds it; True when it did."""

    @abc.abstractmethod
    def get_lease(self, name: str) -> Lease | None: ...

    # ---- sync runs
    @abc.abstractmethod
    def record_sync_run(self, run: SyncRun) -> SyncRun: ...

    @abc.abstractmethod
    def list_sync_runs(self, limit: int = 50) -> list[SyncRun]: ...

    # ---- incidents (opened and updated by the remediator)
    @abc.abstractmethod
    def open_incident(
        self,
        rule: str,
        group: dict[str, str],
        summary: str = "",
        now: datetime | None = None,
    ) -> Incident: ...

    @abc.abstractmethod
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
    ) -> Incident: ...

    @abc.abstractmethod
    def get_incident(self, incident_id: int) -> Incident | None: ...

    @abc.abstractmethod
    def list_incidents(self, statuses: Iterable[str] | None = None) -> list[Incident]: ...

    # ---- housekeeping
    @abc.abstractmethod
    def purge(self, older_than: datetime) -> int:
        """Delete finished sessions, sync runs, resolved incidents and done tasks older than this."""

    def close(self) -> None:  # noqa: B027 - optional for backends without a connection
        pass

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
