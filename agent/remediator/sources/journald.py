"""The systemd journal: one ``journalctl -f -o json`` child for all the rules' units.

It resumes after the saved cursor (see :class:`JournalSource` for why a child and not
python-systemd); each line is read by the shared :mod:`agent.journal` reader. Entries are handed
to the service's core in batches, a bounded number at a time: a backlog of a million entries
costs the core a transaction per batch, and its memory stays flat (journalctl waits on the
pipe meanwhile; nothing is dropped).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent import journal
from agent.remediator.matcher import MAX_LINE, Matcher, Stats
from agent.remediator.sources import FaultHook
from agent.remediator.state import StateDB, StateWriteError

__all__ = ["JournalBatch", "JournalEntry", "JournalSource", "entries_to_look_at"]

log = logging.getLogger(__name__)

READ_SIZE = 1024 * 1024  # one read of the pipe: a batch of up to ~1000 entries under a backlog
PIPE_SIZE = 1024 * 1024  # asked of the kernel (fs.pipe-max-size is 1 MiB by default)
MAX_BATCHES = 4  # batches handed over and not yet consumed before the reader waits
MAX_ENTRY = 16 * 1024 * 1024  # an unterminated entry longer than this is skipped


@dataclass
class JournalEntry:
    unit: str
    message: str
    t: float  # __REALTIME_TIMESTAMP in seconds
    cursor: str
    gen: int = 0  # the JournalSource generation (child) that read it: stale ones are dropped


class JournalBatch(list[JournalEntry]):
    """The entries of one read of journalctl's output, handed to the core at once.

    The consumer calls :meth:`done` when it has read them (whatever became of them): the reader
    hands over a bounded number of batches at a time, so an unconsumed batch holds it back.
    """

    release: Callable[[], None] | None = None

    def done(self) -> None:
        release, self.release = self.release, None
        if release is not None:
            release()


def entries_to_look_at(
    entries: Sequence[JournalEntry], matchers: Mapping[str, Matcher]
) -> list[JournalEntry]:
    """The entries, in order, that hold a literal of one of their unit's rules.

    One prefilter pass over each unit's messages of the batch (:meth:`Matcher.texts_to_look_at`);
    the rest -- nearly all of a healthy journal -- are never looked at one by one.
    """
    by_unit: dict[str, list[int]] = {}
    for i, e in enumerate(entries):
        if e.unit in matchers:
            by_unit.setdefault(e.unit, []).append(i)
    look: list[int] = []
    for unit, idx in by_unit.items():
        found = matchers[unit].texts_to_look_at([entries[i].message for i in idx])
        look.extend(idx[k] for k in found)
    return [entries[i] for i in sorted(look)]


def _child_env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}


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
    restarted with a back-off (1 s doubling to 60 s) if it dies; its stderr is drained by a
    thread of its own (a child writing more than a pipe holds to an unread stderr would block,
    and detection would stop without a word) and its last lines are kept for the message. A
    line that is not a JSON object is skipped and counted. Entries go to ``emit`` from the
    reader thread in batches (:class:`JournalBatch`, one per read of the pipe; at most
    ``MAX_BATCHES`` not yet consumed), tagged with the generation of the child that read them:
    ``restart()`` (after a failed write, to read again from the saved cursor) makes what is
    still queued stale. A dead child is a ``journal`` fault until entries flow again.

    A child that is alive but stuck (it reads nothing while the journal holds newer entries of
    the units) would leave detection blind with every process looking healthy -- the failure
    this agent exists to end. Every ``stall_check`` seconds a thread asks the journal for the
    units' newest entry (``journalctl --lines=1``, the same filters); when it is not the last
    entry the child handed over, twice in a row with nothing read in between (and nothing
    waiting for the core), the child is stuck: a ``journal`` fault, and a new child from the
    saved cursor.
    """

    units: list[str]
    state: StateDB
    emit: Callable[[JournalBatch], None]
    journalctl: str = "journalctl"
    key: str = "journal"
    proc: subprocess.Popen[bytes] | None = None
    thread: threading.Thread | None = None
    stopping: threading.Event = field(default_factory=threading.Event)
    stats: Stats = field(default_factory=Stats)
    on_fault: FaultHook | None = None
    generation: int = 0
    restarts: int = 0
    last_entry: float | None = None  # wall time an entry last arrived
    started_at: float | None = None
    since: float | None = None  # wall time followed from while there is no saved cursor
    stderr_tail: list[str] = field(default_factory=list)
    faulty: bool = False
    _quick: threading.Event = field(default_factory=threading.Event)
    _room: threading.Condition = field(default_factory=threading.Condition)
    _waiting: int = 0  # batches emitted and not yet consumed
    _bad_logged: float = 0.0
    stall_check: float = 0.0  # seconds between asking the journal what it holds (0: never)
    last_cursor: str | None = None  # of the last entry the child handed over
    stalls: int = 0
    _stall_thread: threading.Thread | None = None
    _unread: str | None = None  # last_cursor when the previous check found newer entries

    def command(self) -> list[str]:
        # --follow implies "this boot" unless --merge, and journalctl takes "this boot" from
        # /proc/sys/kernel/random/boot_id: in a unit with ProtectKernelTunables= or
        # ProtectControlGroups= systemd mounts a fresh /proc, which in a container (nspawn
        # overmounts that file with the container's boot id) shows the host kernel's id, so no
        # entry ever matched. --merge drops the boot filter -- also right after a reboot, when
        # the saved cursor is in the previous boot and its last entries must not be skipped --
        # and the machine-id match keeps other machines' journals (journal-remote, linked
        # container journals) out.
        cmd = [*self._filters(), "--follow"]
        cmd.append("--output-fields=" + ",".join(journal.FIELDS_READ))
        cursor = self.state.cursor(self.key)
        if cursor:
            cmd += [f"--after-cursor={cursor}", "--no-tail"]
        else:
            # First start: from now on, like a file's end -- by time, not from the tail
            # (--lines=0): journalctl 252 (Debian 12) following a unit with no entry yet from
            # the tail loses that unit's first entries (systemd#25649), i.e. the first failures
            # on a fresh host. The time of the first start is kept, so a child restarted before
            # the first entry came skips nothing logged meanwhile.
            if self.since is None:
                self.since = time.time()
            cmd.append(f"--since=@{self.since:.6f}")
        return cmd

    def _filters(self) -> list[str]:
        """journalctl and the arguments that pick the rules' entries (follower and check)."""
        exe = shutil.which(self.journalctl) or self.journalctl
        cmd = [exe, "--merge", "--output=json", "--no-pager", "--quiet"]
        machine = _machine_id()
        if machine:
            cmd.append(f"_MACHINE_ID={machine}")
        cmd += [f"--unit={u}" for u in self.units]
        return cmd

    def start(self) -> None:
        self.stopping.clear()
        self.thread = threading.Thread(target=self._run, name="journal", daemon=True)
        self.thread.start()
        if self.stall_check > 0 and not (self._stall_thread and self._stall_thread.is_alive()):
            self._stall_thread = threading.Thread(
                target=self._watch, name="journal-stall", daemon=True
            )
            self._stall_thread.start()

    def _watch(self) -> None:
        while not self.stopping.wait(self.stall_check):
            try:
                self.check_stalled()
            except Exception:  # the check must never end the watch
                log.exception("journal: the stall check failed")

    def newest(self) -> tuple[str, float] | None:
        """The cursor and time (seconds) of the newest entry of the units in the journal."""
        cmd = [*self._filters(), "--lines=1", "--output-fields=__CURSOR"]
        try:
            out = subprocess.run(
                cmd,
                capture_output=True,
                stdin=subprocess.DEVNULL,
                timeout=30,
                check=False,
                env=_child_env(),
            ).stdout
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("journal: cannot ask the journal for its newest entry: %s", exc)
            return None
        for raw in reversed(out.splitlines()):
            try:
                rec = journal.parse_json(raw)
            except ValueError:
                continue
            if rec is not None and rec.cursor:
                return rec.cursor, (rec.t if rec.t is not None else 0.0)
        return None

    def check_stalled(self) -> bool:
        """One look for a stuck child (see the class); True when it was found stuck and
        replaced."""
        p = self.proc
        if p is None or p.poll() is not None or self._waiting:
            self._unread = None  # dead (restarted elsewhere), or the core is behind, not it
            return False
        seen = self.last_cursor or self.state.cursor(self.key) or None
        newest = self.newest()
        behind = newest is not None and newest[0] != seen
        if behind and seen is None and self.since is not None and newest is not None:
            behind = newest[1] >= self.since  # an entry from before we followed is not ours
        if not behind:
            self._unread = None
            return False
        if self._unread is None or self._unread != (seen or ""):
            self._unread = seen or ""  # behind now: stuck if still so, unchanged, next time
            return False
        self._unread = None
        self.stalls += 1
        self._fault(
            f"journalctl (pid {p.pid}) is running but has handed over nothing for"
            f" {self.stall_check:g}s while the journal holds newer entries of"
            f" {', '.join(self.units)}; starting a new one from the saved cursor"
        )
        self.restart()
        return True

    def _fault(self, message: str | None) -> None:
        if message is None and not self.faulty:
            return
        self.faulty = message is not None
        if self.on_fault is not None:
            self.on_fault("journal", message)
        elif message is not None:
            log.error("journal: %s", message)

    def status(self) -> dict[str, Any]:
        p = self.proc
        alive = p is not None and p.poll() is None
        thread = self.thread is not None and self.thread.is_alive()
        return {
            "units": list(self.units),
            "state": "running" if alive and thread else "stopped" if not thread else "restarting",
            "pid": p.pid if alive and p is not None else None,
            "restarts": self.restarts,
            "started_at": self.started_at,
            "last_entry": self.last_entry,
            "bad_entries": self.stats.bad_entries,
            "stalls": self.stalls,
            "stderr": self.stderr_tail[-5:],
        }

    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def invalidate(self) -> None:
        """Entries read so far by this child are stale (they will be read again)."""
        self.generation += 1

    def restart(self) -> None:
        """Read again from the saved cursor: a new child, at once."""
        self.generation += 1
        self._quick.set()
        p = self.proc
        if p is not None and p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        if not self.alive() and not self.stopping.is_set():
            self.start()

    def _drain_stderr(self, stream: Any) -> None:
        logged = 0.0
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip()[:500]
            self.stderr_tail = [*self.stderr_tail[-19:], line]
            now = time.monotonic()
            if now - logged >= 60.0:
                logged = now
                log.warning("journal: journalctl says: %s", line)

    def _run(self) -> None:
        backoff = 1.0
        while not self.stopping.is_set():
            gen = self.generation  # before the cursor: a restart() meanwhile makes it stale
            try:
                cmd = self.command()
            except StateWriteError as exc:
                # The saved cursor cannot be read (a read-only or failing state disk): wait and
                # ask again. Following from "now" instead would skip what was written since.
                self._fault(f"cannot read the saved cursor: {exc}; retrying in {backoff:g}s")
                if self.stopping.wait(backoff):
                    return
                backoff = min(backoff * 2, 60.0)
                continue
            self.stderr_tail = []
            try:
                self.proc = subprocess.Popen(
                    cmd,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    env=_child_env(),
                )
            except OSError as exc:
                self._fault(f"cannot start {cmd[0]}: {exc}; retrying in {backoff:g}s")
                self.proc = None
            if self.proc is not None and gen != self.generation:
                # restart() came between the cursor and the child: its cursor may be older
                # than the one saved since, and no one would stop it. Start again.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait()
                for stream in (self.proc.stdout, self.proc.stderr):
                    if stream is not None:
                        stream.close()
                self._quick.clear()
                continue
            if self.proc is not None:
                started = time.monotonic()
                self.started_at = time.time()
                drain = threading.Thread(
                    target=self._drain_stderr,
                    args=(self.proc.stderr,),
                    name="journal-stderr",
                    daemon=True,
                )
                drain.start()
                self._read(self.proc, gen)
                rc = self.proc.wait()
                drain.join(timeout=5)
                err = "\n".join(self.stderr_tail)
                if self.stopping.is_set():
                    return
                self.restarts += 1
                if self._quick.is_set():
                    self._quick.clear()
                    backoff = 0.1  # a restart on purpose: no fault, no waiting
                    if self.stopping.wait(backoff):
                        return
                    continue
                self._fault(
                    f"journalctl exited ({rc}): {err.strip()[-300:] or 'no message'};"
                    f" restarting in {backoff:g}s"
                )
                if "cursor" in err.lower() and self.state.cursor(self.key):
                    # The saved cursor is gone (journal vacuumed, machine-id changed): a cursor
                    # that cannot be found would fail forever, so start again from now.
                    log.error("journal: the saved cursor is no longer valid; following from now")
                    with contextlib.suppress(Exception):
                        self.state.save_cursor(self.key, "")
                    self.since = None
                    backoff = 0.1
                if time.monotonic() - started > 60:
                    backoff = 1.0
            if self.stopping.wait(backoff):
                return
            backoff = min(backoff * 2, 60.0)

    def _read(self, proc: subprocess.Popen[bytes], gen: int = 0) -> None:
        """Hand the child's entries over in batches: whatever one read of the pipe holds.

        An idle unit's entry arrives alone and is handed over at once (detection latency); a
        backlog comes as pipe-fulls of entries, one batch each, so the core commits one
        transaction per batch instead of one per entry. At most ``MAX_BATCHES`` batches wait for
        the core: beyond that this thread stops reading, the pipe fills and journalctl blocks
        in its write -- backpressure down to the journal files, nothing dropped, memory bounded.
        """
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        with contextlib.suppress(OSError, AttributeError):
            # A bigger pipe means fewer, fuller batches under a backlog (best effort).
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        rest = b""
        while True:
            try:
                data = os.read(fd, READ_SIZE)
            except InterruptedError:
                continue
            if not data:
                break
            if rest:
                data = rest + data
            last = data.rfind(b"\n") + 1
            if last == 0:
                # No newline yet: keep it, unless an entry grows without end (hostile input).
                rest = data if len(data) <= MAX_ENTRY else b""
                if not rest:
                    self.stats.bad_entries += 1
                    log.warning("journal: an entry over %d bytes skipped", MAX_ENTRY)
                continue
            rest = data[last:]
            batch = self._batch(data, last, gen)
            if batch and not self._hand_over(batch):
                return

    def _batch(self, data: bytes, end: int, gen: int) -> JournalBatch:
        entries = JournalBatch()
        for raw in data[:end].split(b"\n"):
            if not raw:
                continue
            try:
                entry = self.parse(raw)
            except Exception as exc:  # one odd entry must never end the reader
                self.stats.bad_entries += 1
                log.warning("journal: entry skipped: %s: %s", type(exc).__name__, exc)
                continue
            if entry is not None:
                entry.gen = gen
                entries.append(entry)
        if entries:
            self.last_entry = time.time()
            self.last_cursor = entries[-1].cursor or self.last_cursor
            self._fault(None)
        return entries

    def _hand_over(self, batch: JournalBatch) -> bool:
        """Emit ``batch`` once fewer than ``MAX_BATCHES`` wait; False when stopping instead."""
        with self._room:
            while self._waiting >= MAX_BATCHES and not self.stopping.is_set():
                self._room.wait()
            if self.stopping.is_set():
                return False
            self._waiting += 1
        batch.release = self._consumed
        self.emit(batch)
        return True

    def _consumed(self) -> None:
        with self._room:
            self._waiting = max(self._waiting - 1, 0)
            self._room.notify_all()

    def parse(self, raw: bytes) -> JournalEntry | None:
        """One line of journalctl's output, read by the shared :mod:`agent.journal` reader."""
        self.stats.lines += 1
        self.stats.bytes += len(raw)
        try:
            rec = journal.parse_json(raw)
        except ValueError:
            self.stats.bad_entries += 1
            now = time.monotonic()
            if now - self._bad_logged >= 60.0:
                self._bad_logged = now
                log.warning(
                    "journal: entry skipped, not a JSON object (%d bytes; %d so far)",
                    len(raw),
                    self.stats.bad_entries,
                )
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
        with self._room:
            self._room.notify_all()  # a reader waiting for room ends
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
