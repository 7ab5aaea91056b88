"""Port-sheet sync: collect rows from the store and the host, write them with one batched call.

Entry point: ``run_sync(settings)`` (the ``jada-agent sheet-sync`` command, run by
``port-sheet-sync.timer``); see :mod:`agent.sheets.sync` for the request budget, the log lines
and the exit codes.
"""

from agent.sheets.sync import PREFIX, SyncResult, run_sync

__all__ = ["PREFIX", "SyncResult", "run_sync"]
