"""The offline tester (like ``fail2ban-regex``): feed logs and rules, see what would fire.

Input is plain text with a leading ISO-8601 / RFC 3339 timestamp, ``journalctl -o short-iso``
output (``TIMESTAMP HOST IDENT[PID]: MESSAGE``) or a ``journalctl -o json`` export (told apart by
the log's first byte); a line without a timestamp takes the previous line's (before any dated
line: the epoch). A journal rule applies to JSON entries attributed to its unit -- by the same
reader as the live journal source (:mod:`agent.journal`), so systemd's own lines about the unit
(``UNIT=``) count here as they do live -- and to text lines whose syslog identifier names the
unit (``x.service`` or ``x``); a file rule applies to every text line.

It decides exactly as the live service: the same :class:`~agent.remediator.matcher.Matcher`
(one RE2 pass of the rules' literals, lines cut at ``MAX_LINE``) picks the lines, and the live
:class:`~agent.remediator.engine.Engine` counts them, so cooldown and breaker apply as they
would live, on the lines' own times. It streams: logs are read in 512 KiB chunks into one
buffer, only the lines a rule may match (and, for the count, the undated ones) become Python
strings, and only their timestamps are parsed (cached by second), so memory stays flat whatever
the log's size. A JSON export costs per chunk: its newlines counted (a memchr per entry, in C
alone: CPython has no faster count of a byte), one RE2 pass for the lines that do not start as
journalctl writes an entry (only those are searched for a timestamp), the prefilter's passes;
nothing else for an entry no rule may match. Each log is taken in its own order (as the
service would have read it); several logs are merged by time.
"""

from __future__ import annotations

import heapq
import io
import itertools
import os
import re
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, cast

import re2

from agent import journal
from agent.journal import parse_timestamp
from agent.remediator.engine import Engine
from agent.remediator.matcher import MAX_LINE, Matcher, Stats, decode
from agent.remediator.regex import UNANCHORED
from agent.remediator.rules import Rule
from agent.remediator.state import StateDB

__all__ = ["Report", "RuleReport", "parse_timestamp", "render_text", "replay"]

# 512 KiB: each chunk is searched by several passes (line count, the prefilter's RE2 passes),
# which then read it from the CPU's cache, not from memory (4 MiB: ~10 % slower on an export).
CHUNK = 512 * 1024
_TS_KEY = b'"__REALTIME_TIMESTAMP"'

# The start of a line that is not a timestamp (``[``? ``YYYY-MM-DD[T ]HH:MM:SS``), written as
# "differs at the k-th character" since RE2 has no negative lookahead, never consuming the
# newline that starts the next line. After a ``\n`` it is found with memchr: ~1 GB/s.
_TS_CLASSES = [rb"\d"] * 4 + [b"-"] + [rb"\d"] * 2 + [b"-"] + [rb"\d"] * 2 + [b"[T ]"]
_TS_CLASSES += [rb"\d"] * 2 + [b":"] + [rb"\d"] * 2 + [b":"] + [rb"\d"] * 2
_NOT = {rb"\d": rb"[^\d\n]", b"-": b"[^-\n]", b":": b"[^:\n]", b"[T ]": b"[^T \n]"}
_NOT_TS = (
    rb"(?:\[?(?:"
    + b"|".join(
        b"".join(_TS_CLASSES[:k]) + b"(?:" + _NOT[_TS_CLASSES[k]] + b"|$)" for k in range(1, 19)
    )
    + rb")|[^\d\[\n]|\[(?:[^\d\n]|$)|$)"
)
_UNDATED_FIRST = re2.compile(b"(?m)" + _NOT_TS)
_UNDATED_NEXT = re2.compile(b"(?m)\n" + _NOT_TS)
_TS_VALUE = re.compile(rb'"__REALTIME_TIMESTAMP"\s*:\s*"(\d+)"')

# journalctl starts every JSON entry with its cursor, then ``__REALTIME_TIMESTAMP``: a line that
# starts so holds a timestamp by construction. Only the other lines (found by one RE2 pass that
# skips from newline to newline with memchr and reads ~15 bytes of each) are searched for one:
# counting the key over the whole export was a second byte-by-byte pass as slow as counting
# the lines themselves.
_JOURNAL_START = b'{"__CURSOR":"s='
_OTHER_START = re2.compile(
    b"\n(?:"
    + b"|".join(
        re.escape(_JOURNAL_START[:k]) + b"[^" + re.escape(_JOURNAL_START[k : k + 1]) + b"]"
        for k in range(len(_JOURNAL_START))
    )
    + b")"
)
_TWO_KEYS = re2.compile(_TS_KEY + b"[^\n]*" + _TS_KEY)
_LONG_LINE = 512  # bytes: above it, newlines are counted faster one by one than by bytes.count

# A buffer and the end of its complete lines.
Chunk = tuple[bytes | bytearray, int]

# A log to replay: a path, an open binary stream, or lines of text.
Log = str | os.PathLike[str] | IO[bytes] | Iterable[str]


@dataclass
class RuleReport:
    name: str
    matched: int = 0
    ignored: int = 0
    fired: list[dict[str, Any]] = field(default_factory=list)
    breaker_opened: list[dict[str, Any]] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)
    # Why it did not fire (text output only; the --json shape is fixed):
    max_window: int = 0  # the most matches a window ever held
    cooling: int = 0  # matches that reached the threshold during a cooldown
    silenced: int = 0  # matches that reached it with the breaker open

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "matched": self.matched,
            "ignored": self.ignored,
            "fired": self.fired,
        }


@dataclass
class Report:
    lines: int = 0
    undated: int = 0
    rules: list[RuleReport] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "undated": self.undated,
            "rules": [r.to_json() for r in self.rules],
        }


def format_at(t: float) -> str:
    dt = journal.to_datetime(t)  # a time out of datetime's range is clamped, never a crash
    if dt.microsecond:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0") + "Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- reading


def _open(log: Log) -> tuple[IO[bytes] | None, Iterable[str] | None]:
    if isinstance(log, str | os.PathLike):
        return open(log, "rb"), None  # closed by _chunks
    if isinstance(log, io.IOBase) or hasattr(log, "read"):
        return cast(IO[bytes], log), None  # a binary stream, by the contract of Log
    return None, log


def _chunks(log: Log) -> Iterator[Chunk]:
    """``(buffer, end)``: ``buffer[:end]`` is complete lines (the last line completed with a
    newline), ~CHUNK bytes each.

    A file is read into one reused buffer, never copied out of it (no fresh CHUNK object per
    chunk: at a GB/s the copies cost as much as the search); a buffer is valid until the next
    one is asked for.
    """
    fh, lines = _open(log)
    if lines is not None:
        batch: list[str] = []
        size = 0
        for line in lines:
            batch.append(line.rstrip("\r\n"))
            size += len(line) + 1
            if size >= CHUNK:
                data = ("\n".join(batch) + "\n").encode("utf-8", "surrogatepass")
                yield data, len(data)
                batch, size = [], 0
        if batch:
            data = ("\n".join(batch) + "\n").encode("utf-8", "surrogatepass")
            yield data, len(data)
        return
    assert fh is not None
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    have = 0  # bytes of an unfinished line kept at the front of buf
    skipping = False  # inside a line already cut at MAX_LINE: drop it up to its newline
    try:
        while True:
            n = fh.readinto(view[have:]) if hasattr(fh, "readinto") else 0
            if not hasattr(fh, "readinto"):
                data = fh.read(CHUNK - have)
                n = len(data)
                buf[have : have + n] = data
            if not n:
                break
            size = have + n
            if skipping:
                nl = buf.find(b"\n", 0, size)
                if nl < 0:
                    have = 0
                    continue
                buf[: size - nl - 1] = buf[nl + 1 : size]
                size -= nl + 1
                skipping = False
            last = buf.rfind(b"\n", 0, size)
            if last < 0:
                if size > MAX_LINE:  # one line longer than the cap: keep its head only
                    head = bytes(buf[:MAX_LINE]) + b"\n"
                    yield head, len(head)
                    have, skipping = 0, True
                else:
                    have = size
                continue
            yield buf, last + 1
            have = size - last - 1
            buf[:have] = buf[last + 1 : size]
        if have and not skipping:
            tail = bytes(buf[:have]) + b"\n"
            yield tail, len(tail)
    finally:
        view.release()
        fh.close()


def _count_undated(buf: bytes | bytearray, end: int) -> int:
    """Lines of ``buf[:end]`` (complete lines) that do not start with a timestamp."""
    n = sum(1 for _ in _UNDATED_NEXT.finditer(buf, 0, end - 1))
    return n + (_UNDATED_FIRST.match(buf, 0, end) is not None)


class _Reader:
    """Turns one log into ``(t, text, [(rule index, searched text)])`` events, in file order."""

    def __init__(self, rules: list[Rule], report: Report, text: Matcher, json_: Matcher):
        self.rules = rules
        self.report = report
        self.text_matcher = text
        self.json_matcher = json_
        self.stats = Stats()
        # Journal rules by unit and by syslog identifier (``x.service`` or ``x``).
        self.by_unit: dict[str, list[int]] = {}
        for i, r in enumerate(rules):
            if r.source.kind == "journal":
                self.by_unit.setdefault(r.source.target, []).append(i)
        self.by_ident: dict[str, list[int]] = {}
        for unit, idxs in self.by_unit.items():
            for name in {unit, unit.rsplit(".", 1)[0]}:
                self.by_ident.setdefault(name, []).extend(idxs)

    def events(self, log: Log) -> Iterator[tuple[float, str, list[tuple[int, str]]]]:
        chunks = _chunks(log)
        first = next(chunks, None)
        if first is None:
            return
        rest = _prepend(first, chunks)
        if bytes(first[0][: min(first[1], 4096)]).lstrip()[:1] == b"{":
            yield from self._json(rest)
        else:
            yield from self._text(rest)

    def _text(self, chunks: Iterable[Chunk]) -> Iterator[tuple[float, str, list[tuple[int, str]]]]:
        report, rules, stats = self.report, self.rules, self.stats
        last = 0.0  # the time of the last dated line before ``done``
        for buf, end in chunks:
            report.lines += buf.count(b"\n", 0, end)
            report.undated += _count_undated(buf, end)
            done = 0  # lines before this offset have given ``last`` what they could
            for s, raw, idxs in self.text_matcher.candidates(buf, end, stats):
                if not idxs:
                    continue
                line = decode(raw.rstrip(b"\r"), stats)
                parsed = parse_timestamp(line)
                if parsed is None:
                    t = self._previous_time(buf, s, done, last)
                    ident, message = None, line
                else:
                    t, ts_end = parsed
                    # the syslog identifier matters only to journal rules
                    syslog = journal._SYSLOG.match(line, ts_end) if self.by_ident else None
                    ident, message = (syslog["ident"], syslog["msg"]) if syslog else (None, line)
                last, done = t, s
                pairs = []
                for i in sorted(idxs):
                    r = rules[i]
                    if r.source.kind == "file":
                        pairs.append((i, line))
                    elif ident is not None and i in self.by_ident.get(ident, ()):
                        pairs.append((i, message))
                if pairs:
                    yield t, line, pairs
            last = self._previous_time(buf, end, done, last)

    @staticmethod
    def _previous_time(buf: bytes | bytearray, pos: int, floor: int, last: float) -> float:
        """The time of the last dated line starting before ``pos`` (and at or after ``floor``;
        before that, ``last``)."""
        e = pos - 1
        while e > floor:
            s = buf.rfind(b"\n", 0, e) + 1
            if s < floor:
                break
            head = buf[s : min(e, s + 64)].decode("utf-8", "replace")
            parsed = parse_timestamp(head)
            if parsed is not None:
                return parsed[0]
            e = s - 1
        return last

    def _json(self, chunks: Iterable[Chunk]) -> Iterator[tuple[float, str, list[tuple[int, str]]]]:
        report, stats = self.report, self.stats
        last = 0.0
        long_lines = True  # journalctl's entries are several hundred bytes at the least
        for buf, end in chunks:
            n = _count_newlines(buf, end) if long_lines else buf.count(b"\n", 0, end)
            long_lines = n * _LONG_LINE <= end
            report.lines += n
            report.undated += _count_undated_json(buf, end, n)
            for s, raw, idxs in self.json_matcher.candidates(buf, end, stats):
                if not idxs:
                    continue
                try:
                    rec = journal.parse_json(raw)
                except ValueError:
                    rec = None
                if rec is None:
                    continue
                if rec.t is None:
                    k = buf.rfind(_TS_KEY, 0, s)
                    t = last if k < 0 else _json_time(buf, k)
                else:
                    t = rec.t
                message = rec.message[:MAX_LINE]
                pairs = [(i, message) for i in self.by_unit.get(rec.unit, ()) if i in idxs]
                if pairs:
                    yield t, message, pairs
            k = buf.rfind(_TS_KEY, 0, end)
            if k >= 0:
                last = _json_time(buf, k)


def _count_newlines(buf: bytes | bytearray, end: int) -> int:
    """Newlines in ``buf[:end]`` (complete lines), found with memchr by C code alone.

    ``bytes.count`` of one byte is a byte-at-a-time loop in CPython (~3 GB/s here), and a
    Python loop of ``find`` calls pays ~100 ns of interpreter and argument parsing per line;
    iterating a ``BytesIO`` over the lines, each dropped as soon as it is counted, runs memchr
    and nothing else per line in C (each line is copied into a short-lived bytes object, cheap
    for lines of journal entries' length: faster than either for lines longer than
    ``_LONG_LINE`` bytes)."""
    numbers = itertools.count()
    with memoryview(buf) as view:
        deque(zip(io.BytesIO(view[:end]), numbers, strict=False), maxlen=0)
    return next(numbers)


def _search(rx: re2._Regexp, buf: bytes | bytearray, pos: int, end: int) -> int:
    """Where ``rx`` first matches in ``buf[pos:end]``, or -1 (RE2 itself: no match object)."""
    raw = getattr(rx, "_regexp", None)
    if raw is not None and UNANCHORED is not None:
        return int(raw.Match(UNANCHORED, buf, pos, end)[0][0])
    m = rx.search(buf, pos, end)
    return -1 if m is None else m.start()


def _count_undated_json(buf: bytes | bytearray, end: int, lines: int) -> int:
    """Lines of ``buf[:end]`` (``lines`` complete lines) without ``"__REALTIME_TIMESTAMP"``.

    A line that starts as journalctl writes an entry has one; any other line (a blank line, a
    hand-written object, another tool's JSON) is searched, one by one while they are few; a
    chunk of many is counted in bulk instead (one line at a time would be a Python call each).
    """
    undated = 0
    odd, most = 0, 16 + end // 4096  # ~500 ns a line here, ~0.2 ns a byte in bulk
    if not buf.startswith(_JOURNAL_START, 0, end):
        e = buf.find(b"\n", 0, end)
        undated += buf.find(_TS_KEY, 0, e) < 0
    pos = 0
    while True:
        s = _search(_OTHER_START, buf, pos, end)
        if s < 0:
            return undated
        odd += 1
        if odd > most:
            return _count_undated_bulk(buf, end, lines)
        e = buf.find(b"\n", s + 1, end)
        undated += buf.find(_TS_KEY, s + 1, e) < 0
        pos = e  # the newline that ends this line may start another such line


def _count_undated_bulk(buf: bytes | bytearray, end: int, lines: int) -> int:
    """The same count for a chunk of mostly other lines: the lines minus the key's occurrences,
    plus the extra occurrences of the few lines that hold it more than once."""
    undated = lines - buf.count(_TS_KEY, 0, end)
    pos = 0
    while True:
        s = _search(_TWO_KEYS, buf, pos, end)
        if s < 0:
            return undated
        ls, e = buf.rfind(b"\n", 0, s) + 1, buf.find(b"\n", s, end)
        undated += buf.count(_TS_KEY, ls, e) - 1
        pos = e + 1


def _json_time(buf: bytes | bytearray, k: int) -> float:
    m = _TS_VALUE.match(buf, k)
    return int(m.group(1)) / 1e6 if m else 0.0


def _journal_rule(rule: Rule) -> bool:
    return rule.source.kind == "journal"


def _prepend(first: Chunk, rest: Iterator[Chunk]) -> Iterator[Chunk]:
    yield first
    yield from rest


# --------------------------------------------------------------------------- deciding


def replay(rules: list[Rule], logs: Iterable[Log]) -> Report:
    """Run ``rules`` over ``logs`` (paths, binary streams or lines) and report what fired when."""
    report = Report(rules=[RuleReport(r.name) for r in rules])
    reader = _Reader(
        rules,
        report,
        # Replay reports counts and fires, not resolutions: lines that could only resolve a
        # rule are not handed to it (the engine would find no match in them).
        Matcher(rules, resolvable=tuple),
        Matcher(rules, form="json", resolvable=tuple, only=_journal_rule),
    )
    streams = [reader.events(log) for log in logs]
    events = streams[0] if len(streams) == 1 else heapq.merge(*streams, key=lambda e: e[0])
    engine = Engine(StateDB(":memory:"))
    with engine.batch():  # one transaction: nobody else writes to this in-memory state
        _decide(rules, report, engine, events)
    return report


def _decide(
    rules: list[Rule],
    report: Report,
    engine: Engine,
    events: Iterable[tuple[float, str, list[tuple[int, str]]]],
) -> None:
    for t, text, pairs in events:
        for i, searched in pairs:
            rule, rep = rules[i], report.rules[i]
            d = engine.observe(rule, searched, t)
            if d.outcome == "ignored":
                rep.ignored += 1
            elif d.outcome == "counted":
                rep.matched += 1
                if len(rep.examples) < 3:
                    rep.examples.append(text)
                rep.max_window = max(rep.max_window, d.count)
                rep.cooling += d.cooling
                rep.silenced += d.silenced
                if d.fired:
                    rep.fired.append({"at": format_at(t), "group": d.group, "count": d.count})
                elif d.breaker_opened:
                    rep.breaker_opened.append({"at": format_at(t), "group": d.group})


def render_text(report: Report, rules: list[Rule]) -> str:
    """A human summary in the manner of ``fail2ban-regex``."""
    out = [f"Lines: {report.lines} ({report.undated} without a timestamp)", ""]
    for rule, rep in zip(rules, report.rules, strict=True):
        out.append(f"Rule {rule.name} ({rule.source.describe()}; {rule.file})")
        out.append(f"  match:   {rule.match.pattern}")
        out.append(
            f"  counted: {rep.matched}   ignored: {rep.ignored}   threshold: {rule.threshold}"
            f" within {_dur(rule.within)}, cooldown {_dur(rule.cooldown)}"
        )
        for ex in rep.examples:
            out.append(f"    | {ex[:160]}")
        if rep.fired:
            for f in rep.fired:
                group = ", ".join(f"{k}={v}" for k, v in f["group"].items())
                out.append(
                    f"  FIRED at {f['at']}  ({f['count']} in window{'; ' + group if group else ''})"
                )
        else:
            out.append(
                f"  never fired: at most {rep.max_window} of {rule.threshold} matches"
                f" within {_dur(rule.within)}"
            )
        if rep.cooling:
            out.append(f"  {rep.cooling} time(s) the threshold was reached during a cooldown")
        if rep.silenced:
            out.append(f"  {rep.silenced} time(s) the threshold was reached with the breaker open")
        for b in rep.breaker_opened:
            out.append(f"  BREAKER OPENED at {b['at']}  (group {b['group'] or '{}'})")
        out.append("")
    return "\n".join(out)


def _dur(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
