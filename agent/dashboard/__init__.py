"""The progress dashboard's rules, above the store and below the jobs that use them.

The store keeps tasks and sessions; this package says what may be done with them and what they
mean, the same for every caller: the ``jada-agent tasks|status|sessions`` commands (and the
playbooks that run them), the daemon, and the health audit.

- :mod:`agent.dashboard.tasks` — add a task, raise a needs-you task once, close, reopen;
- :mod:`agent.dashboard.reports` — what ``status`` and ``sessions`` print;
- :mod:`agent.dashboard.budget` — N sessions per UTC day counted from the store, and the lease
  one daemon holds to spend them;
- :mod:`agent.dashboard.wake` — where the daemon's wake socket is, and one nudge.
"""

from agent.dashboard.budget import LEASE, Budget, BudgetState
from agent.dashboard.reports import sessions_report, status_report
from agent.dashboard.tasks import REOPENABLE, Refused, add_task, mark_done, raise_needs_you, reopen

__all__ = [
    "LEASE",
    "REOPENABLE",
    "Budget",
    "BudgetState",
    "Refused",
    "add_task",
    "mark_done",
    "raise_needs_you",
    "reopen",
    "sessions_report",
    "status_report",
]
