"""What people and machines read from the dashboard: the queue, today's budget, turn analysis.

Functions here back ``jada-agent status|sessions`` and return plain data (the CLI prints it as
text or JSON).
"""

from __future__ import annotations

import itertools
import statistics
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from agent.config import Settings
from agent.dashboard.budget import LEASE, Budget, iso_short
from agent.store import OPEN_STATUSES, Store, iso, utcnow


def status_report(store: Store, settings: Settings, now: datetime | None = None) -> dict[str, Any]:
    """Today's budget, the open queue by status, the next task, needs-you, recent outcomes."""
    now = now or utcnow()
    budget = Budget(store, settings.daemon.sessions_per_day).state(now)
    tasks = store.list_tasks(OPEN_STATUSES)
    counts = Counter(t.status for t in tasks)
    nxt = store.next_ready_task()
    recent = store.list_sessions(since=now - timedelta(days=7))[-5:]
    lease = store.get_lease(LEASE)
    return {
        "now": iso(now),
        "sessions_today": budget.used,
        "sessions_per_day": budget.per_day,
        "sessions_left": budget.left,
        "next_rollover": iso_short(budget.rollover),
        "seconds_to_rollover": int((budget.rollover - now).total_seconds()),
        "queue_depth": counts["ready"],
        "queue": {s: counts[s] for s in OPEN_STATUSES},
        "failed": len(store.list_tasks(["failed"])),
        "next_task": {"id": nxt.id, "title": nxt.title} if nxt else None,
        "needs_you": counts["needs_you"],
        "needs_you_tasks": [
            {"id": t.id, "title": t.title, "body": t.body} for t in tasks if t.status == "needs_you"
        ],
        "last_outcomes": [
            {
                "session": s.id,
                "task": s.task_id,
                "started": iso(s.started),
                "outcome": s.outcome,
                "turns": s.turns,
                "exit_code": s.exit_code,
            }
            for s in reversed(recent)
        ],
        "daemon": (
            {"owner": lease.owner, "lease_expires": iso(lease.expires), "live": lease.expires > now}
            if lease
            else None
        ),
    }


def sessions_report(
    store: Store, settings: Settings, days: int = 7, now: datetime | None = None
) -> dict[str, Any]:
    """Turn-budget analysis: which tasks hit the cap, turns per session, completion rate."""
    now = now or utcnow()
    cap = settings.daemon.max_turns
    sessions = store.list_sessions(since=now - timedelta(days=days))
    finished = [s for s in sessions if s.outcome != "running"]
    outcomes = Counter(s.outcome for s in sessions)
    turns = [s.turns for s in finished]
    capped = Counter(s.task_id for s in sessions if s.outcome == "max_turns")
    titles: dict[int | None, str] = {}
    for tid in capped:
        t = store.get_task(tid) if tid is not None else None
        titles[tid] = t.title if t else "(purged)"
    per_task = Counter(s.task_id for s in sessions)
    # Round robin at the cap: which tasks had the session that followed each capped one.
    ordered = sorted(sessions, key=lambda s: (s.started, s.id))
    yielded_to: dict[int | None, list[int]] = {tid: [] for tid in capped}
    for s, nxt in itertools.pairwise(ordered):
        if (
            s.outcome == "max_turns"
            and nxt.task_id is not None
            and nxt.task_id != s.task_id
            and nxt.task_id not in yielded_to[s.task_id]
        ):
            yielded_to[s.task_id].append(nxt.task_id)
    return {
        "days": days,
        "max_turns": cap,
        "sessions": len(sessions),
        "by_outcome": dict(sorted(outcomes.items())),
        "completion_rate": round(outcomes["completed"] / len(finished), 3) if finished else None,
        "cap_hit_rate": round(outcomes["max_turns"] / len(finished), 3) if finished else None,
        "turns": {
            "total": sum(turns),
            "mean": round(statistics.fmean(turns), 1) if turns else None,
            "median": statistics.median(turns) if turns else None,
            "max": max(turns) if turns else None,
        },
        "tokens": {
            "input": sum(s.input_tokens for s in sessions),
            "output": sum(s.output_tokens for s in sessions),
        },
        "tasks_hitting_cap": [
            {
                "task": tid,
                "title": titles[tid],
                "cap_hits": n,
                "sessions": per_task[tid],
                "yielded_to": yielded_to[tid],
            }
            for tid, n in capped.most_common()
        ],
        "list": [s.to_json() for s in sessions],
    }
