"""Workload facts from the progress dashboard: sessions today and left, turn-cap hits, the queue,
needs-you tasks, the last successful sync, the remediator's open incidents and the incidents it
handled in the window."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from agent.config import Settings
from agent.dashboard.budget import BudgetState, day_start, next_rollover
from agent.health.incidents import story
from agent.store import OPEN_STATUSES, iso, open_store, utcnow


def workload(settings: Settings, days: int, now: datetime | None = None) -> dict[str, Any]:
    """Facts for the report; ``{"checked": False, "why": ...}`` when there is no store to read."""
    now = now or utcnow()
    if settings.store.backend == "sqlite" and not Path(settings.store.path).exists():
        # Opening would create an empty store: an audit must not change the host it audits.
        return {"checked": False, "why": f"no store at {settings.store.path}"}
    try:
        store = open_store(settings)
    except Exception as exc:  # a broken store is a finding, not a crash of the audit
        return {"checked": False, "why": f"store unreadable: {type(exc).__name__}: {exc}"}
    with store:
        # The daemon's own budget rule: the sessions started in this UTC day.
        today = store.list_sessions(since=day_start(now), until=next_rollover(now))
        window = store.list_sessions(since=now - timedelta(days=days), until=now)
        queue = store.list_tasks([s for s in OPEN_STATUSES if s != "needs_you"])
        needs_you = store.list_tasks(["needs_you"])
        runs = store.list_sync_runs()
        incidents = store.list_incidents(["open", "remediating", "escalated"])
        since = now - timedelta(days=days)
        handled = [i for i in store.list_incidents() if i.updated >= since or i.opened >= since]
    budget = BudgetState(len(today), settings.daemon.sessions_per_day, next_rollover(now))
    last_ok = max((r.started for r in runs if r.outcome == "ok"), default=None)
    last_run = max(runs, key=lambda r: r.started, default=None)
    return {
        "checked": True,
        "sessions_today": budget.used,
        "sessions_per_day": budget.per_day,
        "sessions_left": budget.left,
        "turn_cap_hits_today": sum(1 for s in today if s.outcome == "max_turns"),
        "turn_cap_hits_window": sum(1 for s in window if s.outcome == "max_turns"),
        "sessions_window": len(window),
        "sessions_today_detail": [s.to_json() for s in today],
        "queue_depth": sum(1 for t in queue if t.status == "ready"),
        "running": sum(1 for t in queue if t.status == "running"),
        "blocked": sum(1 for t in queue if t.status == "blocked"),
        "needs_you": [{"id": t.id, "title": t.title} for t in needs_you],
        "last_successful_sync": iso(last_ok),
        "last_sync": last_run.to_json() if last_run else None,
        "open_incidents": [
            {
                "id": i.id,
                "rule": i.rule,
                "status": i.status,
                "opened": iso(i.opened),
                "cause": i.cause,
                "summary": i.summary,
            }
            for i in incidents
        ],
        # Every incident of the window, open or not: what happened and how it ended.
        "incidents": [story(i.to_json()) for i in handled],
    }
