"""What people and machines read from the dashboard: the queue, today's budget, turn analysis.

Functions here back ``jada-agent tasks|status|sessions`` and return plain data (the CLI prints
it as text or JSON); they also serve the health audit.
"""

from __future__ import annotations

import itertools
import statistics
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from agent.config import Settings
from agent.daemon.budget import Budget, iso_short
from agent.daemon.loop import LEASE
from agent.daemon.wake import nudge, socket_path
from agent.store import TASK_STATUSES, Store, Task, iso, utcnow


def add_task(
    store: Store,
    settings: Settings,
    title: str,
    *,
    body: str = "",
    priority: int = 0,
    depends_on: Sequence[int] = (),
    workspace: str | None = None,
    needs_you: bool = False,
) -> tuple[Task, bool]:
    """Add a task and nudge a local daemon; returns (task, whether a daemon was nudged).

    A needs-you task whose title matches an open one is not added twice (a remediation that
    runs again must not flood the person): the open task gets a note and is returned.
    """
    if needs_you:
        for open_task in store.list_tasks(["needs_you"]):
            if open_task.title == title:
                note = "raised again" + (f": {body}" if body and body != open_task.body else "")
                store.add_note(open_task.id, note)
                return store.get_task(open_task.id), False  # type: ignore[return-value]  # listed just above
    task = store.add_task(
        title,
        body=body,
        priority=priority,
        depends_on=depends_on,
        workspace=workspace,
        kind="needs_you" if needs_you else "task",
        status="needs_you" if needs_you else "ready",
    )
    return task, nudge(socket_path(settings))


def mark_done(store: Store, settings: Settings, task_id: int, note: str | None = None) -> Task:
    """Close a task (or answer a needs-you question); tasks waiting for it may resume."""
    task = store.set_task_status(task_id, "done", note=note or "marked done by hand")
    nudge(socket_path(settings))
    return task


def reopen(store: Store, settings: Settings, task_id: int, note: str | None = None) -> Task:
    """Put a failed (or done) task back in the queue."""
    task = store.set_task_status(task_id, "ready", note=note or "reopened by hand")
    nudge(socket_path(settings))
    return task


def status_report(store: Store, settings: Settings, now: datetime | None = None) -> dict[str, Any]:
    now = now or utcnow()
    budget = Budget(store, settings.daemon.sessions_per_day).state(now)
    tasks = store.list_tasks(["ready", "running", "blocked", "needs_you"])
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
        "queue": {s: counts[s] for s in TASK_STATUSES if s not in ("done", "failed")},
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
            and nxt.task_id not in (s.task_id, None)
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
