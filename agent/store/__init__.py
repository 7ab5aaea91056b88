"""The progress dashboard: tasks, sessions, sync runs and incidents, behind one interface.

``open_store(settings)`` picks the backend named in the settings (``sqlite``, the embedded
default, or ``dynamodb`` for a fleet).
"""

from __future__ import annotations

from agent.config import Settings
from agent.store.model import (
    INCIDENT_STATUSES,
    OPEN_STATUSES,
    SESSION_OUTCOMES,
    TASK_STATUSES,
    Incident,
    Lease,
    Session,
    Store,
    StoreError,
    StoreMissing,
    SyncRun,
    Task,
    iso,
    parse_iso,
    utcnow,
)

__all__ = [
    "INCIDENT_STATUSES",
    "OPEN_STATUSES",
    "SESSION_OUTCOMES",
    "TASK_STATUSES",
    "Incident",
    "Lease",
    "Session",
    "Store",
    "StoreError",
    "StoreMissing",
    "SyncRun",
    "Task",
    "iso",
    "open_store",
    "parse_iso",
    "utcnow",
]


def open_store(settings: Settings, *, create: bool = True) -> Store:
    """Open the store named by ``settings.store`` (creating and migrating it if needed).

    ``create=False`` (a DynamoDB store): a missing table raises :class:`StoreMissing` instead of
    being created -- a read-only command must not change the account (nor need CreateTable).
    """
    if settings.store.backend == "dynamodb":
        from agent.store.dynamodb import DynamoStore

        return DynamoStore(settings.store.dynamodb, create=create)
    from agent.store.sqlite import SQLiteStore

    return SQLiteStore(settings.store.path)
