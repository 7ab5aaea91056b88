"""agent.remediator: notice a *recurring* failure in the logs and run the playbook that deals with it.

Modules: ``rules`` (rule files, validation, literal prefilters), ``engine`` (count-in-window,
cooldown, circuit breaker on an explicit clock), ``state`` (the SQLite state that survives a
restart), ``sources`` (file tail with rotation, the matcher, the journal), ``actions``
(ansible-runner with a real timeout), ``lock`` (one remediation per host), ``notify`` (webhook
and SNS), ``replay`` (the offline tester) and ``service`` (``jada-agent remediator run``).
See README.md next to this file.
"""
