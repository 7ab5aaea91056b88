"""On-host health audits and their reports.

- :mod:`agent.health.audit` — the entry points: ``audit_host`` (this host, live) and
  ``audit_journal`` (a saved ``journalctl -o json`` / ``-o short-iso`` file).
- :mod:`agent.health.readers` — journal entries from a saved export or the live journal;
  :mod:`.signatures` — what a line means (signature, kind, cadence);
  :mod:`.analysis` — failures per unit, recurring signatures, failed runs, the timeline;
  :mod:`.parallel` — one large file read by one process per core.
- :mod:`agent.health.units`, :mod:`.resources`, :mod:`.workload`, :mod:`.creds` — the facts.
- :mod:`agent.health.verdict` — healthy / degraded / failing, one line per reason.
- :mod:`agent.health.report` — text and the self-contained HTML page.
- :mod:`agent.health.fleet` — controller side of ``playbooks/health.yml``: metrics lined up
  against failures, host reports, the fleet summary.
"""
