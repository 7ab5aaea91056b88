"""Reading a systemd journal and finding its recurring failure signatures.

This module owns three things: streaming entries out of ``journalctl -o json`` (live or an export)
and ``journalctl -o short-iso`` text, each entry parsed and attributed to its unit by the shared
reader :mod:`agent.journal`; and the analysis — normalising failure lines into signatures, grouping them per unit, counting them,
finding their cadence ("every 30 min since ...") and bucketing failures into a timeline.

It is built for size: a week's export of a million entries is streamed line by line, the few
fields we need are pulled out with ``bytes.find`` (no full JSON decode unless a value is
escaped), and a signature is computed once per distinct raw message (bounded cache).
"""

from __future__ import annotations

import gzip
import itertools
import re
import statistics
import subprocess
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, cast

from agent import journal
from agent.journal import iso_z

__all__ = ["JournalAnalysis", "JournalError", "iso_z", "open_journal", "read_live", "read_stream"]

# One entry as the analysis sees it: (epoch seconds, unit or "", priority or -1, message).
Entry = tuple[float, str, int, str]


class JournalError(ValueError):
    """A journal file cannot be read; the message names the file, the line and the expected form."""


# --------------------------------------------------------------------------- normalisation

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
_SESSION_END = re.compile(r"\bsession (\d+) task (\S+) ended outcome=(\w+)")

_DIGITS = b"0123456789"
_PLAIN, _FAIL, _OK, _SESSION, _RUN_END = 0, 1, 2, 3, 4

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


def _classify(message: str) -> int:
    if _ANSIBLE_INVOCATION.match(message):
        return _PLAIN
    if _SYSTEMD_RUN_END.search(message):
        return _RUN_END
    if _FAILURE.search(message):
        return _FAIL
    if _SESSION_END.search(message):
        return _SESSION
    if _SUCCESS.search(message):
        return _OK
    return _PLAIN


# --------------------------------------------------------------------------- reading


def _unit_for(explicit: str, ident: str, message: str) -> str:
    """Attribute an entry (see :func:`agent.journal.attribute`, the one rule for every reader)."""
    return journal.attribute(explicit, ident=ident, message=message)


def iter_json(stream: Iterable[bytes], path: str = "<journal>") -> Iterator[Entry]:
    """Entries of a ``journalctl -o json`` stream (one object per line), each read by
    :func:`agent.journal.parse_json`; an entry without a timestamp cannot be placed in time."""
    parse = journal.parse_json
    for lineno, line in enumerate(stream, 1):
        try:
            rec = parse(line, False)
        except ValueError:
            raise JournalError(
                f"{path}: line {lineno}: expected a journalctl -o json object with "
                f"__REALTIME_TIMESTAMP, got {line[:60]!r}"
            ) from None
        if rec is None:
            continue
        t, unit, prio, message, _cursor, _valid = rec  # unpacking: cheaper than attributes
        if t is not None:
            yield t, unit, prio, message


def iter_short_iso(stream: Iterable[bytes], path: str = "<journal>") -> Iterator[Entry]:
    """Entries of ``journalctl -o short-iso`` (or ``short-iso-precise``) text."""
    bad = 0
    for lineno, raw in enumerate(stream, 1):
        line = raw.decode("utf-8", "replace").rstrip("\n")
        if not line or line.startswith("-- "):
            continue  # "-- Boot ... --", "-- No entries --"
        m = journal.split_syslog(line)
        if m is None or m.t is None:
            bad += 1
            if bad > 10 and bad > lineno // 2:
                raise JournalError(
                    f"{path}: line {lineno}: expected 'journalctl -o short-iso' lines such as "
                    f"'2026-05-13T14:30:00+0000 HOST IDENT[PID]: MESSAGE', got {line[:60]!r}"
                )
            continue  # a continuation line of a multi-line message
        yield m.t, journal.attribute("", ident=m.ident, message=m.message), -1, m.message


def open_journal(path: str | Path) -> Iterator[Entry]:
    """Entries of a saved journal: ``journalctl -o json`` export or ``-o short-iso`` text (.gz ok)."""
    p = Path(path)
    try:
        # Both are binary files; typeshed does not count GzipFile as an IO[bytes].
        fh = cast(IO[bytes], gzip.open(p, "rb") if p.suffix == ".gz" else p.open("rb"))  # noqa: SIM115
    except OSError as exc:
        raise JournalError(f"{p}: cannot read the journal file ({exc.strerror})") from None
    return read_stream(fh, str(p))


def read_stream(fh: IO[bytes], name: str) -> Iterator[Entry]:
    """Entries of an open binary stream in either format (told apart by its first byte)."""
    with fh:
        head = fh.peek(64)[:64] if hasattr(fh, "peek") else b""
        first = head.lstrip()[:1]
        if first == b"{":
            yield from iter_json(fh, name)
        elif first == b"" and not head:
            return
        else:
            yield from iter_short_iso(fh, name)


def read_live(
    since: float,
    until: float | None = None,
    units: Iterable[str] = (),
    journalctl: str = "journalctl",
) -> Iterator[Entry]:
    """Entries of this host's journal (``journalctl -o json``) for the given units and window."""
    cmd = [journalctl, "-o", "json", "--no-pager", "--since", f"@{int(since)}"]
    if until is not None:
        cmd += ["--until", f"@{int(until)}"]
    for unit in units:
        cmd += ["-u", unit]
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        raise JournalError(f"{journalctl}: cannot run ({exc.strerror})") from None
    assert proc.stdout is not None
    try:
        yield from iter_json(proc.stdout, "journalctl")
    finally:
        proc.stdout.close()
        _, err = proc.communicate()
        if proc.returncode not in (0, None, -13):
            raise JournalError(
                f"journalctl exited {proc.returncode}: {err.decode(errors='replace').strip()[:200]}"
            )


# --------------------------------------------------------------------------- analysis


@dataclass
class _Signature:
    unit: str
    signature: str
    sample: str
    count: int = 0
    first: float = 0.0
    last: float = 0.0
    times: array = field(default_factory=lambda: array("d"))


@dataclass
class _UnitStats:
    entries: int = 0
    failures: int = 0
    first: float = 0.0
    last: float = 0.0
    last_failure: float | None = None
    last_success: float | None = None
    # Failed runs as systemd reported them (one per burst of its lines), and the state of the
    # current run: whether the unit logged its own failure line, when systemd's burst was.
    failed_runs: int = 0
    own_failure_in_run: bool = False
    run_end: float | None = None
    pending: tuple[float, str] | None = None  # systemd's line, the cause unless the unit's comes


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


class JournalAnalysis:
    """Feed entries with :meth:`add` (or :meth:`feed`); read the findings with :meth:`result`."""

    CACHE_LIMIT = 200_000

    def __init__(
        self, bucket_s: int = 600, since: float | None = None, continues: bool = False
    ) -> None:
        self.bucket_s = bucket_s
        self.since = since
        # A later part of a journal read in parallel: how a unit's first failure lines fold
        # depends on the end of the part before, so they wait in ``_head`` for :meth:`merge`.
        self.continues = continues
        self._head: dict[str, list[tuple[float, int, str, int]]] = {}
        self._settled: set[str] = set()
        self.entries = 0
        self.first: float | None = None
        self.last: float | None = None
        self._kinds: dict[bytes, int] = {}
        self._sig_cache: dict[str, str] = {}
        self._sigs: dict[tuple[str, str], _Signature] = {}
        self._units: dict[str, _UnitStats] = {}
        self._buckets: dict[str, dict[int, int]] = {}
        self._sessions: dict[str, dict[str, int]] = {}

    def feed(self, entries: Iterable[Entry]) -> JournalAnalysis:
        add = self.add
        for ts, unit, prio, message in entries:
            add(ts, unit, prio, message)
        return self

    def add(self, ts: float, unit: str, prio: int, message: str) -> None:
        if self.since is not None and ts < self.since:
            return
        self.entries += 1
        if self.first is None or ts < self.first:
            self.first = ts
        if self.last is None or ts > self.last:
            self.last = ts
        us = self._units.get(unit)
        if us is None:
            us = self._units[unit] = _UnitStats(first=ts, last=ts)
        us.entries += 1
        if ts > us.last:
            us.last = ts
        # Whether a line is a failure, a success or a session end does not depend on its digits,
        # so classify once per digit-free shape (cheap: bytes.translate) and not once per line.
        shape = message.encode("utf-8", "surrogatepass").translate(None, _DIGITS)
        kind = self._kinds.get(shape)
        if kind is None:
            if len(self._kinds) >= self.CACHE_LIMIT:
                self._kinds.clear()  # bounded memory: a journal of unique lines just costs CPU
            kind = _classify(message)
            self._kinds[shape] = kind
        if kind == _SESSION:
            self._session_line(ts, message)
        failing = kind in (_RUN_END, _FAIL) or 0 <= prio <= 3
        if self.continues and failing and unit not in self._settled:
            # A failure line this long after the part's start no longer depends on the state
            # the part before left: from here on the unit is counted here.
            if kind != _RUN_END and ts > (self.first or ts) + RUN_BURST_S + LATE_S:
                self._settled.add(unit)
            else:
                self._head.setdefault(unit, []).append((ts, prio, message, kind))
                return
        self._fold(unit, us, ts, prio, message, kind)

    def _fold(
        self, unit: str, us: _UnitStats, ts: float, prio: int, message: str, kind: int
    ) -> None:
        if us.pending is not None and ts > us.pending[0] + LATE_S:
            self._commit(unit, us)
        if kind == _RUN_END:
            self._run_end(unit, us, ts, message)
            return
        if kind != _FAIL and not 0 <= prio <= 3:
            if kind == _OK and (us.last_success is None or ts > us.last_success):
                us.last_success = ts
            return
        if us.pending is not None:
            us.pending = None  # the unit's own line came after systemd's: it is the run's cause
        elif us.run_end is None or ts > us.run_end + LATE_S:
            us.own_failure_in_run, us.run_end = True, None
        self._count(unit, us, ts, message)

    def _count(self, unit: str, us: _UnitStats, ts: float, message: str) -> None:
        signature = self._sig_cache.get(message)
        if signature is None:
            if len(self._sig_cache) >= self.CACHE_LIMIT:
                self._sig_cache.clear()
            signature = self._sig_cache[message] = normalise(message)
        us.failures += 1
        if us.last_failure is None or ts > us.last_failure:
            us.last_failure = ts
        key = (unit, signature)
        sig = self._sigs.get(key)
        if sig is None:
            sig = self._sigs[key] = _Signature(unit, signature, message[:300], first=ts, last=ts)
        sig.count += 1
        sig.times.append(ts)
        if ts < sig.first:
            sig.first = ts
        if ts > sig.last:
            sig.last = ts
        b = int(ts // self.bucket_s) * self.bucket_s
        ub = self._buckets.get(unit)
        if ub is None:
            ub = self._buckets[unit] = {}
        ub[b] = ub.get(b, 0) + 1

    def _run_end(self, unit: str, us: _UnitStats, ts: float, message: str) -> None:
        """One of systemd's lines about a failed run: the first of a burst counts the run; it is
        the run's cause only when the unit logged no failure of its own, before it or just after
        (a unit's output can reach the journal after systemd's lines about its exit)."""
        if us.run_end is not None and abs(ts - us.run_end) <= RUN_BURST_S:
            return  # the same burst: this run is counted already
        us.failed_runs += 1
        us.run_end = ts
        if us.own_failure_in_run:
            us.own_failure_in_run = False
            return
        us.pending = (ts, message)

    def _commit(self, unit: str, us: _UnitStats) -> None:
        if us.pending is not None:
            ts, message = us.pending
            us.pending = None
            self._count(unit, us, ts, message)

    def _flush(self) -> None:
        for unit, us in self._units.items():
            self._commit(unit, us)

    def _session_line(self, ts: float, message: str) -> None:
        m = _SESSION_END.search(message)
        if m is None:
            return
        day = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")
        per_day = self._sessions.setdefault(day, {})
        outcome = m.group(3)
        per_day[outcome] = per_day.get(outcome, 0) + 1

    def merge(self, other: JournalAnalysis) -> JournalAnalysis:
        """Fold in the analysis of the next part of the same journal (parallel reading)."""
        for unit, head in other._head.items():
            us = self._units.get(unit)
            if us is None:
                us = self._units[unit] = _UnitStats(first=head[0][0], last=head[0][0])
            for ts, prio, message, kind in head:
                self._fold(unit, us, ts, prio, message, kind)
        other._head = {}
        self.entries += other.entries
        for attr, pick in (("first", min), ("last", max)):
            mine, theirs = getattr(self, attr), getattr(other, attr)
            setattr(
                self,
                attr,
                theirs if mine is None else mine if theirs is None else pick(mine, theirs),
            )
        for unit, o in other._units.items():
            u = self._units.get(unit)
            if u is None:
                self._units[unit] = o
                continue
            u.entries += o.entries
            u.failures += o.failures
            u.failed_runs += o.failed_runs
            if unit in other._settled:  # the run state is the later part's
                self._commit(unit, u)
                u.own_failure_in_run, u.run_end, u.pending = (
                    o.own_failure_in_run,
                    o.run_end,
                    o.pending,
                )
            u.first, u.last = min(u.first, o.first), max(u.last, o.last)
            u.last_failure = _latest(u.last_failure, o.last_failure)
            u.last_success = _latest(u.last_success, o.last_success)
        for key, theirs in other._sigs.items():
            sig = self._sigs.get(key)
            if sig is None:
                self._sigs[key] = theirs
                continue
            if theirs.first < sig.first:
                sig.sample = theirs.sample
            sig.count += theirs.count
            sig.first, sig.last = min(sig.first, theirs.first), max(sig.last, theirs.last)
            sig.times.extend(theirs.times)
        for unit, buckets in other._buckets.items():
            mine_b = self._buckets.setdefault(unit, {})
            for b, n in buckets.items():
                mine_b[b] = mine_b.get(b, 0) + n
        for day, outcomes in other._sessions.items():
            mine_s = self._sessions.setdefault(day, {})
            for outcome, n in outcomes.items():
                mine_s[outcome] = mine_s.get(outcome, 0) + n
        return self

    def result(self, min_count: int = 2) -> dict[str, Any]:
        """Findings as JSON-ready data; ``recurring`` holds signatures seen ``min_count`` times."""
        self._flush()
        recurring = []
        for sig in self._sigs.values():
            if sig.count < min_count:
                continue
            cad = cadence(sig.times)
            item: dict[str, Any] = {
                "unit": sig.unit,
                "signature": sig.signature,
                "example": sig.sample,
                "count": sig.count,
                "first": iso_z(sig.first),
                "last": iso_z(sig.last),
                "cadence_s": cad[0] if cad else None,
                "regular_since": iso_z(cad[1]) if cad else None,
            }
            item["summary"] = describe(item)
            recurring.append(item)
        recurring.sort(key=lambda r: (-r["count"], r["unit"], r["signature"]))
        units = {
            name: {
                "entries": s.entries,
                "failures": s.failures,
                "failed_runs": s.failed_runs,
                "first": iso_z(s.first),
                "last": iso_z(s.last),
                "last_failure": iso_z(s.last_failure),
                "last_success": iso_z(s.last_success),
            }
            for name, s in sorted(self._units.items())
        }
        timeline = {
            unit: [[iso_z(b), n] for b, n in sorted(buckets.items())]
            for unit, buckets in sorted(self._buckets.items())
        }
        return {
            "entries": self.entries,
            "first": iso_z(self.first),
            "last": iso_z(self.last),
            "units": units,
            "recurring": recurring,
            "timeline": {"bucket_s": self.bucket_s, "units": timeline},
            "sessions_by_day": {d: dict(v) for d, v in sorted(self._sessions.items())},
        }


def _latest(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


# Below this size one process reads the file; above it, one process per core reads a part.
PARALLEL_MIN_BYTES = 64 * 1024 * 1024


def _analyse_part(
    path: str, start: int, end: int, bucket_s: int, since: float | None
) -> JournalAnalysis:
    analysis = JournalAnalysis(bucket_s=bucket_s, since=since, continues=start > 0)
    with open(path, "rb") as fh:
        fh.seek(start)
        head = fh.read(1)
        fh.seek(start)

        def lines() -> Iterator[bytes]:
            remaining = end - start
            for line in fh:
                yield line
                remaining -= len(line)
                if remaining <= 0:
                    return

        name = f"{path} (part from byte {start})"
        source = iter_json(lines(), name) if head == b"{" else iter_short_iso(lines(), name)
        analysis.feed(source)
    analysis._kinds, analysis._sig_cache = {}, {}  # caches need not travel back
    return analysis


def _split(path: Path, parts: int) -> list[tuple[int, int]]:
    """Byte ranges of about equal size, each starting at a line start."""
    size = path.stat().st_size
    cuts = [0]
    with path.open("rb") as fh:
        for i in range(1, parts):
            fh.seek(size * i // parts)
            fh.readline()  # finish the line we landed in
            pos = fh.tell()
            if pos > cuts[-1] and pos < size:
                cuts.append(pos)
    cuts.append(size)
    return list(itertools.pairwise(cuts))


def analyse_path(
    path: str | Path, bucket_s: int = 600, since: float | None = None, workers: int | None = None
) -> JournalAnalysis:
    """Analyse a saved journal, reading a large uncompressed file with one process per core."""
    import os

    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise JournalError(f"{p}: cannot read the journal file ({exc.strerror})") from None
    workers = workers or min(4, os.cpu_count() or 1)
    if p.suffix == ".gz" or workers < 2 or size < PARALLEL_MIN_BYTES:
        return JournalAnalysis(bucket_s=bucket_s, since=since).feed(open_journal(p))
    import multiprocessing

    ranges = _split(p, workers)
    # fork: the workers inherit the imported modules instead of importing them again.
    with multiprocessing.get_context("fork").Pool(len(ranges)) as pool:
        parts = pool.starmap(_analyse_part, [(str(p), a, b, bucket_s, since) for a, b in ranges])
    merged = parts[0]
    for part in parts[1:]:
        merged.merge(part)
    return merged


def describe(item: dict[str, Any]) -> str:
    """One line for a person: what, how often, since when."""
    head = f"{item['unit']}: {item['count']}× '{item['signature']}'"
    if item.get("cadence_s"):
        since = item["regular_since"].replace("T", " ")[:16] + "Z"
        return f"{head}, every {human_period(item['cadence_s'])} since {since}"
    first = item["first"].replace("T", " ")[:16] + "Z"
    last = item["last"].replace("T", " ")[:16] + "Z"
    return f"{head}, between {first} and {last}"
