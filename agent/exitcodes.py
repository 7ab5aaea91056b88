"""Every exit status of jada-agent's commands and sessions, in one place (docs/INTERFACES.md).

Units, playbooks and scripts branch on these numbers, so they never change: ``os.EX_*`` where
sysexits(3) has one, the shell's ``128 + signal`` for a command ended by a signal, and 2 and 3
for the two kinds of sync and install failure a playbook must tell apart.
"""

from __future__ import annotations

import os
import signal

EXIT_OK = os.EX_OK  # 0
EXIT_FAILURE = 1  # anything else: the message says what
# `sheet-sync` and `credentials install`: the credential is refused (a person or a new token is
# needed; never retried in a loop) versus a failure that may pass (retries exhausted).
EXIT_CREDENTIAL = 2
EXIT_TRANSIENT = 3
EXIT_USAGE = os.EX_USAGE  # 64: a bad command line or settings file (never 2: see above)
EXIT_TEMPFAIL = os.EX_TEMPFAIL  # 75: busy or unavailable, try again later (the lock, the API)
EXIT_NOPERM = os.EX_NOPERM  # 77: the key was refused (a session's auth_error)
EXIT_TIMEOUT = 124  # timeout(1)'s status: a session killed at its time limit
EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130: Ctrl-C
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE  # 141: the reader went away (`| head`)
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143: stopped by SIGTERM (a session when the daemon stops)

# `jada-agent health` in text mode: a script can branch on the verdict.
VERDICT_EXIT = {"healthy": 0, "degraded": 1, "failing": 2, "unknown": 3}

# A session's outcome → the exit code recorded with it (both runners; docs in agent.daemon.runners).
SESSION_EXIT = {
    "completed": EXIT_OK,
    "needs_you": EXIT_OK,
    "max_turns": 1,  # an expected end: the task stays open
    "error": 2,
    "auth_error": EXIT_NOPERM,
    "timeout": EXIT_TIMEOUT,
    "interrupted": EXIT_TERMINATED,
}
