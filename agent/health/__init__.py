"""On-host health audits and their reports.

- :mod:`agent.health.audit` — the entry points: ``audit_host`` (this host, live) and
  ``audit_journal`` (a saved ``journalctl -o json`` / ``-o short-iso`` file).
- :mod:`agent.health.journal` — streaming the journal, recurring failure signatures, cadence.
- :mod:`agent.health.units`, :mod:`.resources`, :mod:`.workload`, :mod:`.creds` — the facts.
- :mod:`agent.health.verdict` — healthy / degraded / failing, one line per reason.
- :mod:`agent.health.report` — text and the self-contained HTML page.
- :mod:`agent.health.fleet` — controller side of ``playbooks/health.yml``: metrics lined up
  against failures, host reports, the fleet summary.
"""
