"""What a journal line means to the audit: its signature, its kind, and how often it recurs.

- :func:`normalise`: the signature of a failure line (numbers, times, ids, addresses replaced),
  so that the same failure every 30 minutes is one signature;
- :func:`classify`: a failure, a success, the daemon's session end, systemd's account of a
  failed run, or nothing in particular;
- :func:`cadence` and :func:`describe`: "every 30 min since ..." for a person.
"""

from __future__ import annotations

import itertools
import re
import statistics
from collections.abc import Iterable
from typing import Any

# Order matters: the alternation tries timestamps before plain numbers, and keeps an HTTP status
# code (it is the identity of an error, not a counter).
_NORMALISE = re.compile(
    r"(?P<ts>\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d(?:[.,]\d+)?)?(?:Z|[+-]\d\d:?\d\d)?)"
    r"|(?P<time>\b\d\d:\d\d:\d\d(?:\.\d+)?\b)"
    r"|(?P<uuid>\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b)"
    r"|(?P<ip>\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b)"
    r"|(?P<http>\bHTTP(?: Error)? [1-5]\d\d\b)"
    r"|(?P<hex>\b0x[0-9a-fA-F]+\b|\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}\b)"
    r"|(?P<num>\d+(?:\.\d+)?)"
)
_TOKENS = {
    "ts": "<TS>",
    "time": "<TIME>",
    "uuid": "<ID>",
    "ip": "<IP>",
    "hex": "<HEX>",
    "num": "<N>",
}


def _replace(m: re.Match[str]) -> str:
    kind = m.lastgroup or "num"
    if kind == "http":
        return m.group(0)
    return _TOKENS[kind]


def normalise(message: str) -> str:
    """The signature of a log line: numbers, timestamps, ids, addresses and hex replaced."""
    return _NORMALISE.sub(_replace, message.strip())[:300]


# A failure line: an error word, or systemd reporting a non-zero exit / a kill. A word inside a
# hyphenated name ("rules: sheet-sync-refresh-error, ...") is a name, not an event.
_FAILURE = re.compile(
    r"(?<![\w-])(?:error|errors|failed|failure|fatal|exception|traceback|denied|refused|timed out"
    r"|timeout|critical|panic|unhealthy|segfault|oom|killed)(?![\w-])"
    r"|code=(?:exited|killed|dumped), status=(?!0/)",
    re.IGNORECASE,
)
# A line that proves a unit did its job.
_SUCCESS = re.compile(r"\bsync ok\b|Deactivated successfully|\bsucceeded\b|^Finished ")
# The daemon's session end line: session 12 task 3 ended outcome=max_turns turns=30 exit=1 (...)
SESSION_END = re.compile(r"\bsession (\d+) task (\S+) ended outcome=(\w+)")

# The kinds of line (classify).
PLAIN, FAIL, OK, SESSION, RUN_END = 0, 1, 2, 3, 4

# systemd's own account of a failed run ("X.service: Main process exited, code=exited,
# status=2/INVALIDARGUMENT", "X.service: Failed with result 'exit-code'.", "Failed to start X."):
# they say that a run failed, not why. They are folded into the run they belong to: its cause is
# the unit's own failure line, or the first of them when the unit logged none.
_SYSTEMD_RUN_END = re.compile(
    r"^(?:[\w@:.\\-]+\.(?:service|socket|mount|path|scope): )?"
    r"(?:(?:Main|Control) process exited, code=\w+, status=(?!0/)|Failed with result '"
    r"|Unit entered failed state|Start request repeated too quickly)"
    r"|^Failed to start "
)
# systemd's lines of one failed run come within a second; a gap this long starts another run
# (runs started by hand can be three seconds apart).
RUN_BURST_S = 2.0
# How late a unit's own output may reach the journal after systemd's lines about its exit.
LATE_S = 1.0


# An Ansible module's record of its own arguments ("Invoked with _raw_params=... failed_when=..."):
# the words in it are parameters, not events.
_ANSIBLE_INVOCATION = re.compile(r"^Invoked with ")


def classify(message: str) -> int:
    """The kind of a line: ``PLAIN``, ``FAIL``, ``OK``, ``SESSION`` or ``RUN_END``."""
    if _ANSIBLE_INVOCATION.match(message):
        return PLAIN
    if _SYSTEMD_RUN_END.search(message):
        return RUN_END
    if _FAILURE.search(message):
        return FAIL
    if SESSION_END.search(message):
        return SESSION
    if _SUCCESS.search(message):
        return OK
    return PLAIN


def cadence(times: Iterable[float]) -> tuple[float, float] | None:
    """``(period_s, since)`` when occurrences are regular, else None.

    Regular: at least three occurrences and at least 80 % of the gaps in the final run within
    10 % (or 5 s) of their median. ``since`` is where that regular run starts, so an early
    stray occurrence does not hide a pattern that set in later.
    """
    ts = sorted(times)
    if len(ts) < 3:
        return None
    gaps = [b - a for a, b in itertools.pairwise(ts)]
    median = statistics.median(gaps)
    if median < 1:
        return None
    tol = max(0.1 * median, 5.0)
    regular = [abs(g - median) <= tol for g in gaps]
    if sum(regular) < 0.8 * len(gaps):
        return None
    # Walk back from the end while the gaps stay regular; a gap of two or three periods is a
    # missed run (the job succeeded once, or the host was down) and does not break the run.
    start = len(gaps)
    for i in range(len(gaps) - 1, -1, -1):
        multiple = round(gaps[i] / median)
        if not regular[i] and not (2 <= multiple <= 3 and abs(gaps[i] - multiple * median) <= tol):
            break
        start = i
    period = round(median / 60) * 60 if median >= 120 else round(median)
    return float(period), ts[start]


def human_period(seconds: float) -> str:
    s = int(seconds)
    if s % 86400 == 0:
        return f"{s // 86400} d"
    if s % 3600 == 0:
        return f"{s // 3600} h"
    if s % 60 == 0:
        return f"{s // 60} min"
    return f"{s} s"


def describe(item: dict[str, Any]) -> str:
    """One line for a person: what, how often, since when."""
    head = f"{item['unit']}: {item['count']}× '{item['signature']}'"
    if item.get("cadence_s"):
        since = item["regular_since"].replace("T", " ")[:16] + "Z"
        return f"{head}, every {human_period(item['cadence_s'])} since {since}"
    first = item["first"].replace("T", " ")[:16] + "Z"
    last = item["last"].replace("T", " ")[:16] + "Z"
    return f"{head}, between {first} and {last}"
