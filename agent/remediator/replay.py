"""The offline rule tester (like ``fail2ban-regex``): feed logs and rules, see what would fire.

Input lines are plain text with a leading ISO-8601 / RFC 3339 timestamp, ``journalctl -o
short-iso`` output (``TIMESTAMP HOST IDENT[PID]: MESSAGE``) or ``journalctl -o json`` entries
(``__REALTIME_TIMESTAMP``, ``MESSAGE``, ``_SYSTEMD_UNIT``); a line without a timestamp takes the
previous line's (before any dated line: the epoch). A journal rule applies to JSON entries of
its unit and to text lines whose syslog identifier names the unit (``x.service`` or ``x``); a
file rule applies to every text line. Windows use the lines' own times, lines of several logs
are merged by time, and the live :class:`~agent.remediator.engine.Engine` decides, so cooldown
and breaker apply exactly as they would live.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from agent.remediator.engine import Engine
from agent.remediator.rules import Rule
from agent.remediator.state import StateDB

_TS = re.compile(
    r"^\[?(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<time>\d{2}:\d{2}:\d{2})(?:[.,](?P<frac>\d{1,9}))?"
    r"(?P<tz>Z|[+-]\d{2}:?\d{2}|\s?UTC)?\]?"
)
_SYSLOG = re.compile(r"\s+(?P<host>\S+)\s+(?P<ident>[^\s\[\]:]+)(?:\[\d+\])?:\s?(?P<msg>.*)$")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class Entry:
    t: float
    text: str  # the whole line (text) or MESSAGE (json)
    message: str  # what a journal rule searches: MESSAGE, or the text after IDENT[PID]:
    unit: str | None  # _SYSTEMD_UNIT of a JSON entry
    ident: str | None  # syslog identifier of a text line
    is_json: bool


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


def parse_timestamp(line: str) -> tuple[float, int] | None:
    """``(epoch seconds, end offset)`` of a leading timestamp; naive times are taken as UTC."""
    m = _TS.match(line)
    if m is None:
        return None
    try:
        dt = datetime.fromisoformat(f"{m['date']}T{m['time']}")
    except ValueError:
        return None
    tz = (m["tz"] or "").strip()
    if tz and tz not in ("Z", "UTC"):
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:4]))
        dt = dt.replace(tzinfo=timezone(sign * offset))
    else:
        dt = dt.replace(tzinfo=UTC)
    t = dt.timestamp()
    if m["frac"]:
        t += int(m["frac"]) / 10 ** len(m["frac"])
    return t, m.end()


def journal_message(value: Any) -> str:
    """A journal MESSAGE as text: a string, or (non-UTF-8 data) a list of byte values."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        try:
            return bytes(value).decode("utf-8", "replace")
        except (TypeError, ValueError):
            return ""
    return "" if value is None else str(value)


def parse_lines(lines: Iterable[str], report: Report) -> list[Entry]:
    """Entries of one log; counts lines and undated lines into ``report``."""
    out: list[Entry] = []
    last = EPOCH.timestamp()
    for raw in lines:
        line = raw.rstrip("\r\n")
        report.lines += 1
        if line.startswith("{"):
            try:
                doc = json.loads(line)
            except ValueError:
                doc = None
            if isinstance(doc, dict) and ("MESSAGE" in doc or "__REALTIME_TIMESTAMP" in doc):
                ts = doc.get("__REALTIME_TIMESTAMP")
                try:
                    last = int(ts) / 1e6
                except (TypeError, ValueError):
                    report.undated += 1
                msg = journal_message(doc.get("MESSAGE"))
                out.append(Entry(last, msg, msg, doc.get("_SYSTEMD_UNIT"), None, True))
                continue
        parsed = parse_timestamp(line)
        ident = None
        message = line
        if parsed is None:
            report.undated += 1
        else:
            last, end = parsed
            s = _SYSLOG.match(line, end)
            if s is not None:
                ident, message = s["ident"], s["msg"]
        out.append(Entry(last, line, message, None, ident, False))
    return out


def applies(rule: Rule, entry: Entry) -> str | None:
    """The text ``rule`` searches in ``entry``, or None when the rule does not read it."""
    if rule.source.kind == "file":
        return None if entry.is_json else entry.text
    unit = rule.source.target
    if entry.is_json:
        return entry.message if entry.unit == unit else None
    if entry.ident is not None and entry.ident in (unit, unit.rsplit(".", 1)[0]):
        return entry.message
    return None


def format_at(t: float) -> str:
    dt = datetime.fromtimestamp(t, UTC)
    if dt.microsecond:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0") + "Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def replay(rules: list[Rule], logs: Iterable[Iterable[str]]) -> Report:
    """Run ``rules`` over ``logs`` (each an iterable of lines) and report what fired when."""
    report = Report(rules=[RuleReport(r.name) for r in rules])
    entries: list[Entry] = []
    for log in logs:
        entries.extend(parse_lines(log, report))
    entries.sort(key=lambda e: e.t)  # stable: the order within one second is kept
    engine = Engine(StateDB(":memory:"))
    for entry in entries:
        for rule, rep in zip(rules, report.rules, strict=True):
            text = applies(rule, entry)
            if text is None:
                continue
            d = engine.observe(rule, text, entry.t)
            if d.outcome == "ignored":
                rep.ignored += 1
            elif d.outcome == "counted":
                rep.matched += 1
                if len(rep.examples) < 3:
                    rep.examples.append(entry.text)
                rep.max_window = max(rep.max_window, d.count)
                rep.cooling += d.cooling
                rep.silenced += d.silenced
                if d.fired:
                    rep.fired.append({"at": format_at(entry.t), "group": d.group, "count": d.count})
                elif d.breaker_opened:
                    rep.breaker_opened.append({"at": format_at(entry.t), "group": d.group})
    return report


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
