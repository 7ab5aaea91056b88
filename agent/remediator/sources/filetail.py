"""One tailed log file, in the manner of fail2ban.

The first start begins at the end; rotation by rename + create, by copytruncate and by delete +
recreate is noticed from the inode, a size below the saved offset, or a changed first-line hash;
the old file is drained to its end before the new one is read from its start;
``(path, inode, first-line hash, offset)`` is saved after every read, so a restart resumes
exactly where it stopped. Only complete lines are consumed; an over-long line is cut at 64 KiB
(the rest skipped to its newline) and counted. A file that does not exist yet is read from its
start when it appears. What to read is told by the watcher (:mod:`.watcher`); nothing polls.

Only regular files are read, opened with ``O_NOFOLLOW``: a log path swapped for a symlink (to
``/etc/shadow``, say, by a less privileged user who can write the log's directory), a directory
or a FIFO is never read nor blocks the service; it is a ``source`` fault (logged at most once a
minute, shown in ``remediator status``) until a regular file is back. A file that cannot be read
at first sight is read, once it can be, from its size as of that first sight, not from its
start. A restart checks the saved position against the file: same inode, first-line hash and
the hash of the bytes just before the offset (a reused inode with the same first line is another
file); a file truncated while we were stopped is looked for as its copytruncate copy first.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from agent.remediator.matcher import MAX_LINE, Stats
from agent.remediator.sources import FaultHook
from agent.remediator.state import Position, StateDB

__all__ = ["FileTail", "Sink", "open_regular"]

log = logging.getLogger(__name__)

# A sink gets a buffer and an end: ``buf[:end]`` is complete lines, the buffer is reused after.
Sink = Callable[[bytes | bytearray, int], None]

CHUNK = 4 * 1024 * 1024
DRAIN_GRACE = 60.0  # seconds a rotated-away file is still drained (a writer may not have reopened)
TAIL_HASH = 256  # bytes before the saved offset whose hash identifies the file at a restart

_RDONLY = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOFOLLOW


def open_regular(path: str) -> tuple[int, os.stat_result]:
    """Open ``path`` for reading if it is a regular file, never through a symlink.

    Raises ``OSError`` with a message a person can act on otherwise. ``O_NONBLOCK`` keeps a
    FIFO from blocking the open; the ``fstat`` after it refuses FIFOs, directories, devices."""
    try:
        fd = os.open(path, _RDONLY)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(exc.errno, "is a symbolic link; not followed") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        kind = (
            "a directory"
            if stat.S_ISDIR(st.st_mode)
            else "a FIFO"
            if stat.S_ISFIFO(st.st_mode)
            else "not a regular file"
        )
        raise OSError(errno.EINVAL, f"is {kind}; only regular files are read")
    return fd, st


def _tail_hash(fd: int, offset: int) -> str | None:
    if offset <= 0:
        return None
    n = min(offset, TAIL_HASH)
    data = os.pread(fd, n, offset - n)
    if len(data) != n:
        return "short"
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


def _first_line(fd: int, hint: int = 0) -> tuple[str | None, int]:
    """(hash, length with its newline) of the file's first line; (None, 0) until it is complete.

    With ``hint`` (the length known from before) only that much is read: this check runs on
    every event, and a 64 KiB read each time would be wasted.
    """
    head = os.pread(fd, hint + 1 if hint else MAX_LINE + 1, 0)
    nl = head.find(b"\n")
    if nl < 0 and hint:
        head = os.pread(fd, MAX_LINE + 1, 0)
        nl = head.find(b"\n")
    if nl < 0:
        return None, 0
    return hashlib.sha1(head[:nl], usedforsecurity=False).hexdigest(), nl + 1


def _first_line_hash(fd: int, hint: int = 0) -> str | None:
    return _first_line(fd, hint)[0]


@dataclass
class _Open:
    fd: int
    dev: int
    inode: int
    offset: int
    first_hash: str | None
    skipping: bool = False  # inside an over-long line, discarding up to its newline
    first_len: int = 0  # length of the first line + newline, to re-read just that much


class FileTail:
    """One tailed path; ``poll(sink)`` hands every new complete line to ``sink`` in buffers."""

    def __init__(
        self,
        path: str,
        state: StateDB,
        stats: Stats | None = None,
        on_fault: FaultHook | None = None,
    ):
        self.path = os.path.normpath(path)
        self.key = f"file:{self.path}"
        self.state = state
        self.stats = stats or Stats()
        self.on_fault = on_fault
        self.cur: _Open | None = None
        self.old: list[tuple[_Open, float]] = []  # rotated-away files still drained
        self.started = False
        # A file seen but not readable: (dev, inode, size at first sight), read from there.
        self.unopened: Position | None = None
        self.fault: str | None = None

    def _report(self, message: str | None) -> None:
        if message is None and self.fault is None:
            return
        self.fault = message
        if message is not None:
            log.debug("%s: %s", self.path, message)
        if self.on_fault is not None:
            self.on_fault(self.key, None if message is None else f"{self.path}: {message}")
        elif message is not None:
            log.error("%s: %s", self.path, message)

    # ---------------------------------------------------------------- open / restore
    def _open(self, offset: int | None) -> _Open | None:
        try:
            fd, st = open_regular(self.path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._report(f"cannot read the log: {exc.strerror or exc}")
            return None
        self._report(None)
        o = _Open(fd, st.st_dev, st.st_ino, st.st_size if offset is None else offset, None)
        o.first_hash, o.first_len = _first_line(fd)
        return o

    def _lstat(self) -> os.stat_result | None:
        try:
            return os.lstat(self.path)
        except FileNotFoundError:
            return None

    def _first_sight(self, st: os.stat_result | None) -> None:
        """Seen but unreadable: remember its size now, so its old lines never count."""
        if st is None or not stat.S_ISREG(st.st_mode):
            self._save_absent()
            return
        self.unopened = Position(self.path, st.st_dev, st.st_ino, None, st.st_size)
        self.state.save_position(self.key, self.unopened)

    def start(self) -> None:
        """Resume from the saved position; on the very first start, begin at the end."""
        self.started = True
        saved = self.state.position(self.key)
        if saved is None:
            self.cur = self._open(offset=None)  # at the end: old lines never count
            if self.cur is None:
                # absent on first start: when it appears, all of it is new; unreadable: from
                # its size now, once it can be read
                try:
                    st = self._lstat()
                except OSError as exc:
                    # Not even its size can be seen: this is not the first sight yet.
                    self._report(f"cannot see the log: {exc.strerror or exc}")
                    self.started = False
                    return
                self._first_sight(st)
            else:
                self._save()
            return
        st = self._lstat()
        if (
            saved.inode is not None
            and saved.first_hash is None
            and saved.tail_hash is None
            and saved.offset > 0
        ):
            self.unopened = saved  # never read yet: still from its first-sight size
        if st is not None and (st.st_dev, st.st_ino) == (saved.dev, saved.inode):
            self.cur = self._open(offset=saved.offset)
            c = self.cur
            if c is None:
                return
            if self.unopened is not None:
                self.unopened = None
                if c.offset > st.st_size:
                    c.offset = 0
                return
            same = (
                st.st_size >= saved.offset
                and (not saved.first_hash or c.first_hash == saved.first_hash)
                and (saved.tail_hash is None or _tail_hash(c.fd, saved.offset) == saved.tail_hash)
            )
            if not same:
                # Truncated (copytruncate) or another file on a reused inode: the lines after
                # our offset may be in the copy; finish them there, then read this one whole.
                copy = self._find_copy(
                    _Open(-1, st.st_dev, st.st_ino, saved.offset, saved.first_hash)
                )
                if copy is not None and (
                    saved.tail_hash is None or _tail_hash(copy.fd, saved.offset) == saved.tail_hash
                ):
                    log.info("%s: truncated while stopped; finishing its copy first", self.path)
                    self.old.append((copy, time.monotonic()))
                elif copy is not None:
                    os.close(copy.fd)
                log.info("%s: not the file we were reading; reading it from its start", self.path)
                c.offset = 0
            return
        if saved.inode is not None:
            # Rotated while we were stopped: finish the rotated file first if we can find it.
            rotated = self._find_rotated(saved)
            if rotated is not None:
                self.old.append((rotated, time.monotonic()))
        if st is not None:
            self.cur = self._open(offset=0)

    def _siblings(self) -> Iterator[tuple[str, os.stat_result]]:
        """``(path, lstat)`` of every entry of the tail's directory (none if unreadable)."""
        d = os.path.dirname(self.path)
        try:
            names = os.listdir(d)
        except OSError:
            return
        for name in names:
            p = os.path.join(d, name)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            yield p, st

    def _find_rotated(self, saved: Position) -> _Open | None:
        for p, st in self._siblings():
            if (st.st_dev, st.st_ino) == (saved.dev, saved.inode) and st.st_size >= saved.offset:
                try:
                    fd, _ = open_regular(p)
                except OSError:
                    continue
                if (saved.first_hash and _first_line_hash(fd) != saved.first_hash) or (
                    saved.tail_hash and _tail_hash(fd, saved.offset) != saved.tail_hash
                ):
                    os.close(fd)
                    continue
                log.info("%s: rotated to %s while stopped; finishing it first", self.path, p)
                return _Open(fd, st.st_dev, st.st_ino, saved.offset, saved.first_hash)
        return None

    def _find_copy(self, c: _Open) -> _Open | None:
        """The newest other file of the directory that starts with our old first line and is
        at least as long as what we read: what copytruncate copied."""
        if c.first_hash is None:
            return None
        best: tuple[float, str, os.stat_result] | None = None
        for p, st in self._siblings():
            if not stat.S_ISREG(st.st_mode):
                continue
            if (st.st_dev, st.st_ino) == (c.dev, c.inode) or st.st_size < c.offset:
                continue
            if best is None or st.st_mtime > best[0]:
                try:
                    fd, _ = open_regular(p)
                except OSError:
                    continue
                try:
                    same = _first_line(fd, c.first_len)[0] == c.first_hash
                finally:
                    os.close(fd)
                if same:
                    best = (st.st_mtime, p, st)
        if best is None:
            return None
        try:
            fd, st = open_regular(best[1])
        except OSError:
            return None
        return _Open(fd, st.st_dev, st.st_ino, c.offset, c.first_hash, first_len=c.first_len)

    def _save(self) -> None:
        c = self.cur
        if c is None:
            return
        self.state.save_position(
            self.key,
            Position(self.path, c.dev, c.inode, c.first_hash, c.offset, _tail_hash(c.fd, c.offset)),
        )

    def _save_absent(self) -> None:
        self.state.save_position(self.key, Position(self.path, None, None, None, 0))

    def rewind(self) -> None:
        """Forget what was read since the last saved position (its transaction failed): the
        next poll resumes from the database."""
        self.close()
        self.started = False
        self.unopened = None

    def close(self) -> None:
        for o, _ in self.old:
            os.close(o.fd)
        self.old = []
        if self.cur is not None:
            os.close(self.cur.fd)
            self.cur = None

    # ---------------------------------------------------------------- reading
    def _drain(self, o: _Open, sink: Sink) -> None:
        try:
            pending = os.fstat(o.fd).st_size - o.offset
        except OSError:
            return
        if pending <= 0:
            return
        # One buffer per drain, sized to what is there (a few KiB for an append, 4 MiB chunks for
        # a backlog) and filled in place: no fresh 4 MiB object and its page faults per chunk.
        buf = bytearray(min(CHUNK, max(pending + 1, 4096)))
        size = len(buf)
        while True:
            n = os.preadv(o.fd, [buf], o.offset)
            if n <= 0:
                return
            if o.skipping:
                nl = buf.find(b"\n", 0, n)
                o.offset += n if nl < 0 else nl + 1
                o.skipping = nl < 0
                continue
            last = buf.rfind(b"\n", 0, n)
            if last < 0:
                if n > MAX_LINE:
                    # An unterminated line past the limit: cut it, skip the rest up to its newline.
                    sink(bytes(buf[:MAX_LINE]) + b"\n", MAX_LINE + 1)
                    self.stats.cut += 1
                    o.offset += n
                    o.skipping = True
                    continue
                return  # an incomplete line: wait for its newline
            sink(buf, last + 1)
            o.offset += last + 1
            if o.first_hash is None:
                o.first_hash, o.first_len = _first_line(o.fd)
            if n < size and last + 1 < n:
                return  # the rest is an incomplete line at the end of the file

    def poll(self, sink: Sink) -> None:
        """Read whatever is new, following rotation; never reads a line twice."""
        if not self.started:
            self.start()
        now = time.monotonic()
        for o, since in list(self.old):
            self._drain(o, sink)
            if now - since > DRAIN_GRACE:
                os.close(o.fd)
                self.old.remove((o, since))
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            st = None
        except OSError as exc:
            self._report(str(exc))
            return
        c = self.cur
        if c is not None:
            if st is None or (st.st_dev, st.st_ino) != (c.dev, c.inode):
                # Renamed or deleted (and maybe recreated): finish the old file, keep it a while.
                self._drain(c, sink)
                self.old.append((c, now))
                self.cur = None
                self.stats.rotations += 1
                log.info("%s: rotated (inode %s gone from the path)", self.path, c.inode)
            else:
                fst = os.fstat(c.fd)
                truncated = fst.st_size < c.offset
                if not truncated and c.first_hash is not None and c.offset > 0:
                    truncated = _first_line_hash(c.fd, c.first_len) != c.first_hash
                if truncated:
                    log.info("%s: truncated (copytruncate), reading from its start", self.path)
                    self.stats.truncations += 1
                    copy = self._find_copy(c)
                    if copy is not None:
                        # Lines written after our last read but before the copy exist only in
                        # the copy now: finish them there first.
                        self._drain(copy, sink)
                        os.close(copy.fd)
                    c.offset = 0
                    c.skipping = False
                    c.first_hash, c.first_len = _first_line(c.fd)
        if self.cur is None and st is not None:
            u = self.unopened
            if u is not None and (st.st_dev, st.st_ino) == (u.dev, u.inode):
                # Unreadable when first seen: what it held then is old, like at a first start.
                self.cur = self._open(offset=u.offset if st.st_size >= u.offset else 0)
            elif u is not None:
                self.cur = self._open(offset=0)  # a new file since: all of it is new
            else:
                self.cur = self._open(offset=0)  # a new file: all of it is new
            if self.cur is not None:
                self.unopened = None
        if self.cur is not None:
            self._drain(self.cur, sink)
            self._save()
