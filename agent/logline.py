"""One event, one log line: escaping of every field that reaches the journal or a log file.

The remediator and the health audit read the sync's and the daemon's output line by line, and a
line such as ``[port-sheet] sync ok`` resolves an incident. A field that comes from outside (a
token endpoint's ``error_description``, an API error message, a file name) must therefore never
start a line of its own: line breaks, other control characters (ANSI escapes included) and the
Unicode line separators are written as ``\\n``, ``\\x1b``, ``\\u2028``. Printable text, tabs and
backslashes are left as they are, so ordinary messages read the same.
"""

from __future__ import annotations

import logging
import re

_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r"}


def _escape(m: re.Match[str]) -> str:
    ch = m.group()
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def one_line(text: object) -> str:
    """``text`` as a single printable line (control characters escaped, tabs kept)."""
    return _UNSAFE.sub(_escape, str(text))


class OneLineFormatter(logging.Formatter):
    """A formatter whose message part is always one line; a traceback still follows it."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = one_line(record.message)
        return super().formatMessage(record)
