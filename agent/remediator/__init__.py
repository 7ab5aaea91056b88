"""agent.remediator: notice a *recurring* failure in the logs and run the playbook that deals with it.

Modules: ``rules`` (rule files, RE2 compilation, literal prefilters), ``matcher`` (which lines
each rule must look at, one pass for all rules; its byte fast path in ``fastpath``), ``engine``
(count-in-window, cooldown, circuit breaker on an explicit clock), ``state`` (the SQLite state
that survives a restart), ``sources`` (file tail with rotation, the journal), ``actions``
(ansible-runner with a real timeout), ``lock`` (one remediation per host), ``notify`` (webhook
and SNS), ``replay`` (the offline tester) and ``service`` (``jada-agent remediator run``).
See README.md next to this file.
"""
