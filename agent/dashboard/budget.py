"""The session budget: at most N sessions per UTC day, counted from the store.

Counting the sessions whose ``started`` falls in the current UTC day (whatever their outcome,
including ``interrupted`` ones) makes the budget survive restarts: a restart never hands out a
fresh day. The clock is injected so that tests can cross midnight.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from agent.store import Store, iso, utcnow

Clock = Callable[[], datetime]

# The store lease a daemon holds while it may start sessions: one daemon spends a host's budget
# (the daemon takes it; ``jada-agent status`` shows who holds it).
LEASE = "sessions"


def day_start(at: datetime) -> datetime:
    at = at.astimezone(UTC)
    return datetime(at.year, at.month, at.day, tzinfo=UTC)


def next_rollover(at: datetime) -> datetime:
    return day_start(at) + timedelta(days=1)


@dataclass(frozen=True)
class BudgetState:
    used: int
    per_day: int
    rollover: datetime

    @property
    def left(self) -> int:
        return max(0, self.per_day - self.used)

    @property
    def spent(self) -> bool:
        return self.used >= self.per_day

    def describe(self) -> str:
        return f"{self.used}/{self.per_day} sessions today, next at {iso_short(self.rollover)}"


def iso_short(at: datetime) -> str:
    """``2026-05-14T00:00:00Z``: the form people read in the journal."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Budget:
    def __init__(self, store: Store, per_day: int, now: Clock = utcnow):
        self.store = store
        self.per_day = per_day
        self.now = now

    def state(self, at: datetime | None = None) -> BudgetState:
        at = at or self.now()
        start = day_start(at)
        used = len(self.store.list_sessions(since=start, until=start + timedelta(days=1)))
        return BudgetState(used=used, per_day=self.per_day, rollover=start + timedelta(days=1))


__all__ = [
    "LEASE",
    "Budget",
    "BudgetState",
    "Clock",
    "day_start",
    "iso",
    "iso_short",
    "next_rollover",
]
