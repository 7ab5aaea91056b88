"""Line sources: files tailed through watchdog (inotify) and the systemd journal.

Files, in the manner of fail2ban: the first start begins at the end; rotation by rename +
create, by copytruncate and by delete + recreate is noticed from the inode, a size below the
saved offset, or a changed first-line hash; the old file is drained to its end before the new
one is read from its start; ``(path, inode, first-line hash, offset)`` is saved after every
read, so a restart resumes exactly where it stopped. Only complete lines are consumed; an
over-long line is cut at 64 KiB (the rest skipped to its newline) and counted; a line is decoded
only when a rule must look at it, with replacement, and an invalid one is counted. A file that does not exist yet is read from its start
when it appears. Nothing polls: watchdog's observer thread reports directory events, and the
core reads the files those events name.

The matcher that picks, in the buffers read here, the lines the rules must look at lives in
:mod:`agent.remediator.matcher` (its byte prefilter in :mod:`agent.remediator.fastpath`); a
journal entry is parsed by the shared reader :mod:`agent.journal`.

The journal: one ``journalctl -f -o json`` child for all the rules' units, resuming after the
saved cursor (see :class:`JournalSource` for why a child and not python-systemd).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from agent import journal
from agent.remediator.matcher import MAX_LINE, Matcher, Stats
from agent.remediator.state import Position, StateDB

__all__ = [
    "MAX_LINE",
    "FileTail",
    "FileWatcher",
    "JournalEntry",
    "JournalSource",
    "Matcher",
    "Stats",
]

log = logging.getLogger(__name__)

# A sink gets a buffer and an end: ``buf[:end]`` is complete lines, the buffer is reused after.
Sink = Callable[[bytes | bytearray, int], None]

CHUNK = 4 * 1024 * 1024
DRAIN_GRACE = 60.0  # seconds a rotated-away file is still drained (a writer may not have reopened)


# --------------------------------------------------------------------------- files


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

    def __init__(self, path: str, state: StateDB, stats: Stats | None = None):
        self.path = os.path.normpath(path)
        self.key = f"file:{self.path}"
        self.state = state
        self.stats = stats or Stats()
        self.cur: _Open | None = None
        self.old: list[tuple[_Open, float]] = []  # rotated-away files still drained
        self.started = False

    # ---------------------------------------------------------------- open / restore
    def _open(self, offset: int | None) -> _Open | None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        except PermissionError:
            log.error("%s: cannot read the log (permission denied)", self.path)
            return None
        st = os.fstat(fd)
        o = _Open(fd, st.st_dev, st.st_ino, st.st_size if offset is None else offset, None)
        o.first_hash, o.first_len = _first_line(fd)
        return o

    def start(self) -> None:
        """Resume from the saved position; on the very first start, begin at the end."""
        self.started = True
        saved = self.state.position(self.key)
        if saved is None:
            self.cur = self._open(offset=None)  # at the end: old lines never count
            if self.cur is None:
                # absent on first start: when it appears, all of it is new
                self._save_absent()
            else:
                self._save()
            return
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        if st is not None and (st.st_dev, st.st_ino) == (saved.dev, saved.inode):
            self.cur = self._open(offset=saved.offset)
            if self.cur is not None and (
                st.st_size < saved.offset
                or (saved.first_hash and self.cur.first_hash != saved.first_hash)
            ):
                log.info("%s: truncated while stopped, reading from its start", self.path)
                self.cur.offset = 0
            return
        if saved.inode is not None:
            # Rotated while we were stopped: finish the rotated file first if we can find it.
            rotated = self._find_rotated(saved)
            if rotated is not None:
                self.old.append((rotated, time.monotonic()))
        if st is not None:
            self.cur = self._open(offset=0)

    def _find_rotated(self, saved: Position) -> _Open | None:
        d = os.path.dirname(self.path)
        try:
            names = os.listdir(d)
        except OSError:
            return None
        for name in names:
            p = os.path.join(d, name)
            try:
                st = os.stat(p)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == (saved.dev, saved.inode) and st.st_size >= saved.offset:
                fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
                if saved.first_hash and _first_line_hash(fd) != saved.first_hash:
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
        d = os.path.dirname(self.path)
        best: tuple[float, str, os.stat_result] | None = None
        try:
            names = os.listdir(d)
        except OSError:
            return None
        for name in names:
            p = os.path.join(d, name)
            try:
                st = os.stat(p)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == (c.dev, c.inode) or st.st_size < c.offset:
                continue
            if best is None or st.st_mtime > best[0]:
                try:
                    fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
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
        fd = os.open(best[1], os.O_RDONLY | os.O_CLOEXEC)
        st = best[2]
        return _Open(fd, st.st_dev, st.st_ino, c.offset, c.first_hash, first_len=c.first_len)

    def _save(self) -> None:
        c = self.cur
        if c is None:
            return
        self.state.save_position(
            self.key, Position(self.path, c.dev, c.inode, c.first_hash, c.offset)
        )

    def _save_absent(self) -> None:
        self.state.save_position(self.key, Position(self.path, None, None, None, 0))

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
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        except OSError as exc:
            log.warning("%s: %s", self.path, exc)
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
            self.cur = self._open(offset=0)  # a new file: all of it is new
        if self.cur is not None:
            self._drain(self.cur, sink)
            self._save()


class FileWatcher:
    """Watchdog (inotify) on the directories of the tailed files; events become ``notify(path)``."""

    def __init__(self, notify: Callable[[str], None]):
        from watchdog.observers import Observer

        self.notify = notify
        self.observer = Observer()
        self.observer.daemon = True
        self.by_dir: dict[str, set[str]] = {}
        self.watches: dict[str, Any] = {}
        self.missing: set[str] = set()

    def set_paths(self, paths: Iterable[str]) -> None:
        wanted: dict[str, set[str]] = {}
        for p in paths:
            wanted.setdefault(os.path.dirname(p), set()).add(p)
        for d in list(self.watches):
            if d not in wanted:
                self.observer.unschedule(self.watches.pop(d))
        self.by_dir = wanted
        self.missing = set()
        for d in wanted:
            if d in self.watches:
                continue
            if not os.path.isdir(d):
                self.missing.add(d)  # retried by rescan() on the service's housekeeping timer
                continue
            self.watches[d] = self.observer.schedule(_Handler(self, d), d, recursive=False)

    def rescan(self) -> list[str]:
        """Start watching directories that have appeared since; return their files."""
        found = [d for d in self.missing if os.path.isdir(d)]
        for d in found:
            self.missing.discard(d)
            self.watches[d] = self.observer.schedule(_Handler(self, d), d, recursive=False)
        return [p for d in found for p in self.by_dir.get(d, ())]

    def start(self) -> None:
        self.observer.start()

    def stop(self) -> None:
        self.observer.stop()
        self.observer.join(timeout=5)


class _Handler:
    """Any event in a watched directory may concern its tails (a rename names the new path
    only as ``dest_path``; a rotated file is still drained), so all of them are notified."""

    def __init__(self, watcher: FileWatcher, directory: str):
        self.watcher = watcher
        self.directory = directory

    def dispatch(self, event: Any) -> None:
        if event.is_directory and event.src_path == self.directory:
            return
        for p in self.watcher.by_dir.get(self.directory, ()):
            self.watcher.notify(p)


# --------------------------------------------------------------------------- journal


@dataclass
class JournalEntry:
    unit: str
    message: str
    t: float  # __REALTIME_TIMESTAMP in seconds
    cursor: str


def _machine_id(path: str = "/etc/machine-id") -> str | None:
    """This machine's id (32 hex digits), or None where there is none."""
    try:
        with open(path, encoding="ascii") as fh:
            value = fh.read().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return value if len(value) == 32 and all(c in "0123456789abcdef" for c in value) else None


@dataclass
class JournalSource:
    """Follows ``journalctl -f -o json`` for the rules' units, resuming after the saved cursor.

    Why a child and not ``systemd.journal``: python-systemd is a compiled extension that is not
    on PyPI as a wheel, so it would not install from the wheelhouse into the venv; journalctl is
    on every systemd host, speaks the same journal API, and a pipe read blocks (no spinning, no
    ``journal.wait()`` loop to get right). The child runs in its own process group and is
    restarted with a back-off if it dies. Entries go to ``emit`` from the reader thread.
    """

    units: list[str]
    state: StateDB
    emit: Callable[[list[JournalEntry]], None]
    journalctl: str = "journalctl"
    key: str = "journal"
    proc: subprocess.Popen[bytes] | None = None
    thread: threading.Thread | None = None
    stopping: threading.Event = field(default_factory=threading.Event)
    stats: Stats = field(default_factory=Stats)

    def command(self) -> list[str]:
        exe = shutil.which(self.journalctl) or self.journalctl
        # --follow implies "this boot" unless --merge, and journalctl takes "this boot" from
        # /proc/sys/kernel/random/boot_id: in a unit with ProtectKernelTunables= or
        # ProtectControlGroups= systemd mounts a fresh /proc, which in a container (nspawn
        # overmounts that file with the container's boot id) shows the host kernel's id, so no
        # entry ever matched. --merge drops the boot filter -- also right after a reboot, when
        # the saved cursor is in the previous boot and its last entries must not be skipped --
        # and the machine-id match keeps other machines' journals (journal-remote, linked
        # container journals) out.
        cmd = [exe, "--follow", "--merge", "--output=json", "--no-pager", "--quiet"]
        machine = _machine_id()
        if machine:
            cmd.append(f"_MACHINE_ID={machine}")
        for u in self.units:
            cmd.append(f"--unit={u}")
        cursor = self.state.cursor(self.key)
        if cursor:
            cmd += [f"--after-cursor={cursor}", "--no-tail"]
        else:
            cmd.append("--lines=0")  # first start: from now on, like a file's end
        return cmd

    def start(self) -> None:
        self.stopping.clear()
        self.thread = threading.Thread(target=self._run, name="journal", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        backoff = 1.0
        while not self.stopping.is_set():
            cmd = self.command()
            try:
                self.proc = subprocess.Popen(
                    cmd,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"},
                )
            except OSError as exc:
                log.error("journal: cannot start %s: %s", cmd[0], exc)
                self.proc = None
            if self.proc is not None:
                started = time.monotonic()
                self._read(self.proc)
                rc = self.proc.wait()
                err = (self.proc.stderr.read() if self.proc.stderr else b"").decode(
                    "utf-8", "replace"
                )
                if self.stopping.is_set():
                    return
                log.warning("journal: journalctl exited (%s): %s", rc, err.strip()[:300])
                if "cursor" in err.lower() and self.state.cursor(self.key):
                    # The saved cursor is gone (journal vacuumed, machine-id changed): a cursor
                    # that cannot be found would fail forever, so start again from now.
                    log.error("journal: the saved cursor is no longer valid; following from now")
                    self.state.save_cursor(self.key, "")
                    backoff = 0.1
                if time.monotonic() - started > 60:
                    backoff = 1.0
            if self.stopping.wait(backoff):
                return
            backoff = min(backoff * 2, 60.0)

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        # readline blocks on the pipe; a unit's journal is a few lines a minute, so each entry
        # is handed over as it arrives (the detection latency matters, the batching would not).
        for raw in proc.stdout:
            entry = self.parse(raw)
            if entry is not None:
                self.emit([entry])

    def parse(self, raw: bytes) -> JournalEntry | None:
        """One line of journalctl's output, read by the shared :mod:`agent.journal` reader."""
        self.stats.lines += 1
        self.stats.bytes += len(raw)
        try:
            rec = journal.parse_json(raw)
        except ValueError:
            log.warning("journal: unreadable entry skipped (%d bytes)", len(raw))
            return None
        if rec is None:
            return None
        if not rec.valid_utf8:
            self.stats.invalid_utf8 += 1
        msg = rec.message
        if len(msg) > MAX_LINE:
            msg = msg[:MAX_LINE]
            self.stats.cut += 1
        return JournalEntry(
            unit=rec.unit,
            message=msg,
            t=time.time() if rec.t is None else rec.t,
            cursor=rec.cursor,
        )

    def stop(self) -> None:
        self.stopping.set()
        p = self.proc
        if p is not None and p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        if self.thread is not None:
            self.thread.join(timeout=5)
