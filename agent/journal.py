"""The one reader of systemd journal entries, shared by the remediator's live journal source, its
offline tester (``remediator replay``) and the health audit, so that all three read an entry the
same way.

It owns: parsing one ``journalctl -o json`` line (:func:`parse_json`; the compact form journalctl
writes is read with ``bytes.find``, anything else with the JSON decoder), decoding ``MESSAGE``
(a string, or an array of byte values for data that is not UTF-8), attributing an entry to its
unit (:func:`attribute`: ``_SYSTEMD_UNIT``, and for the manager's own lines -- "x.service: Failed
with result 'exit-code'." comes from ``init.scope`` -- the ``UNIT=``/``USER_UNIT=`` it is about),
splitting ``journalctl -o short-iso`` text (:func:`split_syslog`) and reading leading timestamps
(:func:`parse_timestamp`, cached by their second; :func:`iso_z` to write them back and
:func:`epoch_of` to read those back).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, NamedTuple

# The fields :func:`parse_json` reads besides the ones journalctl always writes (``__CURSOR``,
# ``__REALTIME_TIMESTAMP``): a follower asks only for these (``--output-fields``), which makes
# journalctl's output a quarter smaller and its formatting cheaper.
FIELDS_READ = ("MESSAGE", "_SYSTEMD_UNIT", "UNIT", "USER_UNIT", "SYSLOG_IDENTIFIER", "PRIORITY")

# Units whose lines are about another unit: PID 1 (init.scope), the root slice, a user manager.
MANAGER_UNITS = frozenset({"", "init.scope", "-.slice"})

# A unit named inside a message from systemd itself ("port-sheet-sync.service: Main process ...").
_UNIT_IN_MESSAGE = re.compile(r"([A-Za-z0-9@:_.\\-]+\.(?:service|timer|socket|mount|path|scope))\b")


class JournalRecord(NamedTuple):
    """One journal entry as every reader sees it."""

    t: float | None  # __REALTIME_TIMESTAMP in seconds; None when the entry has none
    unit: str  # the unit the entry is attributed to (see :func:`attribute`)
    priority: int  # PRIORITY, or -1
    message: str
    cursor: str
    valid_utf8: bool  # False: MESSAGE was bytes that are not UTF-8 (decoded with U+FFFD)


def _is_manager(unit: str) -> bool:
    return unit in MANAGER_UNITS or (unit.startswith("user@") and unit.endswith(".service"))


def attribute(
    systemd_unit: str, unit: str = "", user_unit: str = "", ident: str = "", message: str = ""
) -> str:
    """The unit an entry belongs to.

    The unit of the process that logged it (``_SYSTEMD_UNIT``); for the service manager's own
    lines the unit they are about (``UNIT=``, ``USER_UNIT=``) -- what ``journalctl -u`` also
    selects; failing both, a unit named at the start of the message, then the syslog identifier
    (``ident`` or ``ident.service``).
    """
    if systemd_unit and not _is_manager(systemd_unit):
        return systemd_unit
    if unit or user_unit:
        return unit or user_unit
    if message:
        m = _UNIT_IN_MESSAGE.search(message[:200])
        if m:
            return m.group(1)
    if ident and ident not in ("systemd", "kernel"):
        return ident if "." in ident else ident + ".service"
    return systemd_unit or ident or ""


def decode_message(value: Any) -> tuple[str, bool]:
    """A journal MESSAGE as ``(text, valid_utf8)``: a string, or a list of byte values."""
    if isinstance(value, str):
        return value, True
    if isinstance(value, list):
        if value and not isinstance(value[0], int):
            return decode_message(value[0])  # a field logged twice: journalctl gives an array
        data = bytes(v & 0xFF for v in value if isinstance(v, int))
        try:
            return data.decode("utf-8"), True
        except UnicodeDecodeError:
            return data.decode("utf-8", "replace"), False
    return ("" if value is None else str(value)), True


_J_MSG = re.compile(rb'"MESSAGE":"([^"\\]*(?:\\.[^"\\]*)*)"')


def _field(line: bytes, key: bytes) -> str:
    """The plain (unescaped) string value of ``"KEY":"`` in one compact JSON line, or ""."""
    i = line.find(key)
    if i < 0:
        return ""
    i += len(key)
    j = line.find(b'"', i)
    return line[i:j].decode("utf-8", "replace") if j > i else ""


_new = tuple.__new__  # a NamedTuple built without its Python-level __new__: per-entry cost


def parse_json(line: bytes | str, cursor: bool = True) -> JournalRecord | None:
    """One ``journalctl -o json`` line; None for a blank line.

    Raises ``ValueError`` when the line is not a JSON object. journalctl writes compact JSON
    (``"KEY":"value"``), whose fields are found with ``bytes.find`` (a key in quotes followed by
    ``":"`` cannot occur inside a value, where quotes are escaped); a MESSAGE with escapes is
    decoded by the JSON decoder, and a line in any other form is decoded whole. Without
    ``cursor`` the cursor is left empty (a reader that does not resume saves the search).
    """
    if isinstance(line, str):
        line = line.encode("utf-8", "surrogatepass")
    if len(line) < 3 and not line.strip():
        return None
    i = line.find(b'"__REALTIME_TIMESTAMP":"')
    k = line.find(b'"MESSAGE":"')
    if i < 0 or k < 0:
        return _parse_record(line)
    j = line.find(b'"', i + 24)
    try:
        t: float | None = int(line[i + 24 : j]) / 1e6
    except ValueError:
        t = None
    e = line.find(b'"', k + 11)
    valid = True
    if line.find(b"\\", k + 11, e) >= 0:  # the value has escapes: decode it properly
        mm = _J_MSG.search(line, k)
        message = json.loads(b'"' + mm.group(1) + b'"') if mm else ""
    else:
        raw = line[k + 11 : e]
        try:
            message = raw.decode("utf-8")
        except UnicodeDecodeError:
            message, valid = raw.decode("utf-8", "replace"), False
    u = line.find(b'"_SYSTEMD_UNIT":"')
    systemd_unit = (
        line[u + 17 : line.find(b'"', u + 17)].decode("utf-8", "replace") if u >= 0 else ""
    )
    if systemd_unit in MANAGER_UNITS or systemd_unit.startswith("user@"):
        unit = attribute(
            systemd_unit,
            _field(line, b'"UNIT":"'),
            _field(line, b'"USER_UNIT":"'),
            _field(line, b'"SYSLOG_IDENTIFIER":"'),
            message,
        )
    else:
        unit = systemd_unit
    p = line.find(b'"PRIORITY":"')
    prio = line[p + 12] - 48 if p >= 0 and 48 <= line[p + 12] <= 57 else -1
    cur = _field(line, b'"__CURSOR":"') if cursor else ""
    return _new(JournalRecord, (t, unit, prio, message, cur, valid))


def _parse_record(line: bytes) -> JournalRecord:
    doc = json.loads(line)  # ValueError names what is wrong
    if not isinstance(doc, dict):
        raise ValueError(f"expected a JSON object, got {type(doc).__name__}")
    try:
        t: float | None = int(doc["__REALTIME_TIMESTAMP"]) / 1e6
    except (KeyError, TypeError, ValueError):
        t = None
    message, valid = decode_message(doc.get("MESSAGE"))
    unit = attribute(
        _str(doc.get("_SYSTEMD_UNIT")),
        _str(doc.get("UNIT")),
        _str(doc.get("USER_UNIT")),
        _str(doc.get("SYSLOG_IDENTIFIER")),
        message,
    )
    prio = _str(doc.get("PRIORITY"))
    return JournalRecord(
        t,
        unit,
        int(prio) if prio.isdigit() else -1,
        message,
        _str(doc.get("__CURSOR")),
        valid,
    )


def _str(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return decode_message(value)[0]


# --------------------------------------------------------------------------- text


_TS = re.compile(
    r"\[?(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<time>\d{2}:\d{2}:\d{2})(?:[.,](?P<frac>\d{1,9}))?"
    r"(?P<tz>Z|[+-]\d{2}:?\d{2}|\s?UTC)?\]?"
)
_SYSLOG = re.compile(r"\s+(?P<host>\S+)\s+(?P<ident>[^\s\[\]:]+)(?:\[\d+\])?:\s?(?P<msg>.*)$")
_SECONDS: dict[tuple[str, str, str], float | None] = {}
_SECONDS_MAX = 100_000


def _second(date: str, time: str, tz: str) -> float | None:
    try:
        dt = datetime.fromisoformat(f"{date}T{time}")
        if tz and tz not in ("Z", "UTC"):
            sign = 1 if tz[0] == "+" else -1
            digits = tz[1:].replace(":", "")
            offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:4]))
            dt = dt.replace(tzinfo=timezone(sign * offset))
        else:
            dt = dt.replace(tzinfo=UTC)
        return dt.timestamp()
    except (ValueError, OverflowError, OSError):
        return None  # 2026-13-45, an offset of 24 h or more, a year beyond the platform's range


def parse_timestamp(line: str) -> tuple[float, int] | None:
    """``(epoch seconds, end offset)`` of a leading ISO-8601 / RFC 3339 timestamp, else None.

    Naive times are UTC. The epoch of each distinct second is computed once (a log holds many
    lines per second); an impossible date is None, never an exception.
    """
    m = _TS.match(line)
    if m is None:
        return None
    date, time, frac, tz = m.group("date", "time", "frac", "tz")
    key = (date, time, (tz or "").strip())
    t = _SECONDS.get(key)
    if t is None:
        if key in _SECONDS:
            return None
        if len(_SECONDS) >= _SECONDS_MAX:
            _SECONDS.clear()
        t = _SECONDS[key] = _second(*key)
        if t is None:
            return None
    if frac:
        t += int(frac) / 10 ** len(frac)
    return t, m.end()


class SyslogLine(NamedTuple):
    t: float | None
    host: str
    ident: str
    message: str


def split_syslog(line: str) -> SyslogLine | None:
    """A ``journalctl -o short-iso`` line: ``TIMESTAMP HOST IDENT[PID]: MESSAGE``; else None."""
    parsed = parse_timestamp(line)
    if parsed is None:
        return None
    t, end = parsed
    s = _SYSLOG.match(line, end)
    if s is None:
        return None
    return SyslogLine(t, s["host"], s["ident"], s["msg"])


def epoch_of(text: str | None) -> float | None:
    """Epoch seconds of an ISO-8601 time as the reports write it (``2026-05-13T14:30:00Z``)."""
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def iso_z(ts: float | None, seconds: bool = True) -> str | None:
    """``2026-05-13T14:30:00Z`` (or ``2026-05-13 14:30Z``); a time out of range is clamped."""
    if ts is None:
        return None
    fmt = "%Y-%m-%dT%H:%M:%SZ" if seconds else "%Y-%m-%d %H:%MZ"
    return to_datetime(ts).strftime(fmt)


def to_datetime(ts: float) -> datetime:
    """An aware UTC datetime; times beyond what datetime holds become its minimum or maximum."""
    try:
        return datetime.fromtimestamp(ts, UTC)
    except (ValueError, OverflowError, OSError):
        return datetime.max.replace(tzinfo=UTC) if ts > 0 else datetime.min.replace(tzinfo=UTC)
