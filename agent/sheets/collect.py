"""The four tabs of the port sheet, as rows of strings, from the store and the host.

- **Sessions**: one row per UTC day (newest first, ``sheets.session_days`` back, today always):
  date, sessions used / limit, outcomes, turns.
- **Tasks**: id, title, status, priority, updated.
- **Ports**: port, protocol, address, process, unit (see :mod:`agent.sheets.ports`).
- **Deployment**: host, package version, deployed at, last sync.

Everything is a string, so what is written is exactly what the sheet reads back and an unchanged
state compares equal.
"""

from __future__ import annotations

import os
import socket
import sys
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import agent
from agent.config import Settings
from agent.sheets.ports import Listener, listeners
from agent.store import Store

Rows = list[list[str]]

SESSIONS = "Sessions"
TASKS = "Tasks"
PORTS = "Ports"
DEPLOYMENT = "Deployment"
TABS = (SESSIONS, TASKS, PORTS, DEPLOYMENT)

HEADERS = {
    SESSIONS: ["UTC date", "Sessions used / limit", "Outcomes", "Turns"],
    TASKS: ["ID", "Title", "Status", "Priority", "Updated (UTC)"],
    PORTS: ["Port", "Protocol", "Address", "Process", "Unit"],
    DEPLOYMENT: ["Host", "Package version", "Deployed at (UTC)", "Last sync (UTC)"],
}
# Column of the Deployment tab that changes on every write; it does not count as a change.
LAST_SYNC_COL = 3


def _ts(dt: datetime | None) -> str:
    if dt is None:
        return ""
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def sessions_rows(store: Store, settings: Settings, now: datetime) -> Rows:
    today = now.astimezone(UTC).date()
    first = today - timedelta(days=settings.sheets.session_days - 1)
    since = datetime(first.year, first.month, first.day, tzinfo=UTC)
    by_day: dict[str, list] = defaultdict(list)
    for s in store.list_sessions(since=since, until=None):
        by_day[s.started.astimezone(UTC).date().isoformat()].append(s)
    by_day.setdefault(today.isoformat(), [])
    limit = settings.daemon.sessions_per_day
    rows = []
    for day in sorted(by_day, reverse=True):
        sessions = by_day[day]
        outcomes = Counter(s.outcome for s in sessions)
        rows.append(
            [
                day,
                f"{len(sessions)} / {limit}",
                ", ".join(f"{k}={v}" for k, v in sorted(outcomes.items())),
                str(sum(s.turns for s in sessions)),
            ]
        )
    return rows


def tasks_rows(store: Store) -> Rows:
    return [
        [str(t.id), t.title, t.status, str(t.priority), _ts(t.updated)] for t in store.list_tasks()
    ]


def ports_rows(found: list[Listener]) -> Rows:
    return [lst.row() for lst in found]


def deployed_at(settings: Settings) -> str:
    """mtime of the deploy marker the role writes; of the virtualenv when there is none."""
    for candidate in (settings.sheets.deployed_marker, sys.prefix):
        try:
            return _ts(datetime.fromtimestamp(os.stat(candidate).st_mtime, UTC))
        except OSError:
            continue
    return ""


def deployment_rows(settings: Settings, now: datetime) -> Rows:
    host = settings.host_name or socket.gethostname()
    return [[host, agent.__version__, deployed_at(settings), _ts(now)]]


def collect(
    store: Store,
    settings: Settings,
    now: datetime,
    ports: Callable[[], list[Listener]] | None = None,
) -> dict[str, Rows]:
    """The header and rows of every tab."""
    found = (ports or listeners)()
    body = {
        SESSIONS: sessions_rows(store, settings, now),
        TASKS: tasks_rows(store),
        PORTS: ports_rows(found),
        DEPLOYMENT: deployment_rows(settings, now),
    }
    return {tab: [HEADERS[tab], *body[tab]] for tab in TABS}


def data_rows(tabs: dict[str, Rows]) -> int:
    return sum(max(0, len(rows) - 1) for rows in tabs.values())


__all__ = ["DEPLOYMENT", "HEADERS", "PORTS", "SESSIONS", "TABS", "TASKS", "collect", "data_rows"]
