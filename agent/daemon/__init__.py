"""The orchestrator daemon: tasks from the dashboard, Claude sessions within a budget.

- :mod:`agent.daemon.loop` — the loop (``run_daemon``), the session lease, signals, sd_notify;
- :mod:`agent.daemon.runners` — the Anthropic tool loop with an exact turn cap, and the
  external-command runner; outcomes and exit codes;
- :mod:`agent.daemon.session` — one session in a child process;
- :mod:`agent.daemon.tools` — the session's tools, confined to the task's workspace;
- :mod:`agent.daemon.wake` — the wake socket that ``tasks add`` nudges.

The rules it shares with the command and the health audit — the budget, the session lease,
needs-you tasks — are in :mod:`agent.dashboard`, below it.
"""
