"""Journal entries for the audit: a saved export (``journalctl -o json`` or ``-o short-iso``
text, gzip or not) or this host's live journal, streamed as :data:`Entry` tuples.

Each entry is parsed and attributed to its unit by the shared reader :mod:`agent.journal` (the
same rules as the remediator's journal source and ``replay``); this module adds the streaming,
the format detection and errors that name the file, the line and the expected form.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, cast

from agent import journal

# One entry as the analysis sees it: (epoch seconds, unit or "", priority or -1, message).
Entry = tuple[float, str, int, str]


class JournalError(ValueError):
    """A journal file cannot be read; the message names the file, the line and the expected form."""


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
    if p.suffix == ".gz":
        import gzip  # here: a live audit (and its import time on every host) never needs it
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
    # Only the fields the parser reads (journalctl always adds the cursor and the timestamps):
    # less than half the bytes to format, pipe and scan, the same entries.
    cmd = [journalctl, "-o", "json", "--no-pager", "--since", f"@{int(since)}",
           "--output-fields=" + ",".join(journal.FIELDS_READ)]  # fmt: skip
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
