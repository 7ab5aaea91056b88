"""The journal analysis: failures per unit, recurring signatures, failed runs, a timeline.

Feed it entries (:mod:`agent.health.readers`) with :meth:`JournalAnalysis.add`; read the findings
with :meth:`JournalAnalysis.result`. It is built for size: a week's export of a million entries
is streamed, a line is classified once per digit-free shape and a signature computed once per
distinct message (both caches bounded). Parts of one journal read in parallel
(:mod:`agent.health.parallel`) merge in order.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agent.health.readers import Entry
from agent.health.signatures import (
    FAIL,
    LATE_S,
    OK,
    RUN_BURST_S,
    RUN_END,
    SESSION,
    SESSION_END,
    cadence,
    classify,
    describe,
    normalise,
)
from agent.journal import iso_z

_DIGITS = b"0123456789"


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

    def __getstate__(self) -> dict[str, Any]:
        # A part read by a worker process travels back pickled: its caches need not.
        return self.__dict__ | {"_kinds": {}, "_sig_cache": {}}

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
            kind = classify(message)
            self._kinds[shape] = kind
        if kind == SESSION:
            self._session_line(ts, message)
        failing = kind in (RUN_END, FAIL) or 0 <= prio <= 3
        if self.continues and failing and unit not in self._settled:
            # A failure line this long after the part's start no longer depends on the state
            # the part before left: from here on the unit is counted here.
            if kind != RUN_END and ts > (self.first or ts) + RUN_BURST_S + LATE_S:
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
        if kind == RUN_END:
            self._run_end(unit, us, ts, message)
            return
        if kind != FAIL and not 0 <= prio <= 3:
            if kind == OK and (us.last_success is None or ts > us.last_success):
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
        m = SESSION_END.search(message)
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
