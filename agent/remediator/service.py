"""The remediator service (``jada-agent remediator run``, unit ``jada-remediator.service``).

Blocking I/O at the edges, a clear core: watchdog's observer thread and the journalctl reader
thread put events on one queue; the core thread (the main thread) reads the files those events
name, runs the matcher and the engine, and opens, resolves or escalates incidents; one action
thread runs the remediation playbooks one at a time under the host's remediation lock. The
core blocks on its queue (a timer wakes it once a minute for housekeeping), never spins.

This module wires the parts and runs the core thread's loop (start, signals, housekeeping,
stop): :mod:`~agent.remediator.detection` (rules to sources, lines to the engine),
:mod:`~agent.remediator.incidents` (firings to incidents), :mod:`~agent.remediator.worker` (the
action thread), :mod:`~agent.remediator.escalation` (what a person is told), delivered by
:mod:`~agent.remediator.outbox` and :mod:`~agent.remediator.senders`.

Signals: SIGHUP reloads the rules (a broken rule file is logged and the old rules stay; windows,
cooldowns and breakers live in the state DB under the rule's name and are kept); SIGTERM
cancels a running playbook, kills its processes, records the interrupted remediation in its
incident, and exits. A remediation found still "running" at start-up (the service was killed)
is recorded as interrupted the same way.

Durability (README "Reliability"): the engine's decisions and the source positions commit in
one state transaction per buffer of lines, and a fire is a row of that same transaction (a
*firing*): nothing is decided that the database does not hold. A failed write (read-only or
full disk) rolls back, rebuilds memory from the database, rewinds the source to its saved
position, raises a fault and retries, so no line is lost or counted twice. Incidents are opened
in the store *after* the commit, from the firings; a firing with an action is the persisted job
queue (``new`` → ``queued`` → ``running`` → ``ran`` → ``done``), so a SIGTERM with work queued, or
a kill -9 anywhere, resumes at start with exactly one remediation per firing. The service's
clock is monotonic (:mod:`agent.remediator.clock`); one process per state database
(:class:`~agent.remediator.lock.InstanceLock`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import socket
import sqlite3
import sys
import threading
import time
from typing import Any

from agent import sdnotify
from agent.config import Settings
from agent.remediator.alerts import Alerts
from agent.remediator.clock import ServiceClock
from agent.remediator.detection import Detection
from agent.remediator.engine import Engine
from agent.remediator.escalation import Escalation, now_dt
from agent.remediator.faults import Faults
from agent.remediator.incidents import Incidents
from agent.remediator.lock import AlreadyRunning, InstanceLock
from agent.remediator.outbox import Outbox, Row
from agent.remediator.rules import RuleSet, load_rules
from agent.remediator.senders import Senders
from agent.remediator.state import StateDB, StateWriteError
from agent.remediator.worker import ActionWorker
from agent.store import Store, open_store

log = logging.getLogger("jada-remediator")

HOUSEKEEPING = 60.0
RETRY = 2.0  # seconds between retries of a failed write (faults active)


class StartError(RuntimeError):
    """The service cannot start; the message says why and what to do."""


class Remediator:
    def __init__(self, settings: Settings, journalctl: str = "journalctl"):
        self.settings = settings
        self.cfg = settings.remediator
        self.q: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()  # put() is reentrant
        try:
            self.state = StateDB(self.cfg.state_db)
        except (StateWriteError, sqlite3.Error, OSError) as exc:
            raise StartError(f"cannot open the state database {self.cfg.state_db}: {exc}") from None
        self.faults = Faults(self.state)
        self.clock = ServiceClock(self.state)
        self.engine = Engine(self.state)
        try:
            self.store: Store = open_store(settings)
        except sqlite3.OperationalError as exc:
            raise StartError(f"cannot open the store {settings.store.path}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            path = settings.store.path
            raise StartError(
                f"the store {path} is unreadable ({exc}); it holds the incidents, so it is not"
                " replaced automatically. Stop the services, then repair it with:\n"
                f"  sqlite3 {path} .recover | sqlite3 {path}.recovered"
                f" && mv {path} {path}.corrupt && mv {path}.recovered {path}"
            ) from None
        self.rules = RuleSet([], [])
        # Notifications: a durable outbox in the state DB, one sender thread per channel, and
        # the alerts thread (reminders, needs-you tasks, the daily forecast).
        self.outbox = Outbox(self.state, settings)
        self.escalation = Escalation(settings, self.state, self.outbox)
        self.faults.subscribe(self.escalation.fault)
        self.senders = Senders(self.outbox, on_delivered=self._delivered)
        self.alerts = Alerts(settings, self.state, self.outbox)
        self.alerts_thread: threading.Thread | None = None
        self.alerts_stop = threading.Event()
        self.stopping = False
        # The action thread runs the playbooks; the core thread reads the sources (detection)
        # and opens the incidents.
        self.worker = ActionWorker(
            settings,
            self.state,
            self.faults,
            self.escalation,
            rules=lambda: self.rules,
        )
        self.incidents = Incidents(
            self.store,
            self.state,
            self.clock,
            self.faults,
            self.escalation,
            rules=lambda: self.rules,
            queue_job=self.worker.put,
        )
        self.detection = Detection(
            self.state,
            self.clock,
            self.engine,
            self.faults,
            self.incidents,
            self.q,
            journalctl,
            journal_stall_check=self.cfg.journal_stall_check,
        )

    # ------------------------------------------------------------------ rules and sources
    def load(self) -> RuleSet:
        return load_rules(self.cfg.rules_dirs)

    def apply_rules(self, rules: RuleSet) -> None:
        self.rules = rules
        self.detection.apply(rules)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        os.umask(0o077)  # state, artifacts and results are nobody else's business
        # Faults of a previous run are over or will be raised again by this one.
        with contextlib.suppress(Exception):
            self.state.clear_all_faults(time.time())
        if self.state.moved_aside:
            self.faults.raise_(
                "state_write",
                "corrupt",
                f"the state database was unreadable; moved aside to"
                f" {self.state.moved_aside} and started afresh",
            )
        self.worker.recover_interrupted(self.store)
        self.apply_rules(self.load())
        self.recover_queue()
        self.detection.save_sources()
        self.detection.start()
        self.worker.start()
        self.escalation.reconcile(self.store, self.rules.rules)
        self.senders.start()
        self.alerts_thread = threading.Thread(target=self._alerts_loop, name="alerts", daemon=True)
        self.alerts_thread.start()
        self.detection.catch_up()  # with whatever was written while we were stopped

    def recover_queue(self) -> None:
        """Resume the persisted job queue and open the incidents of ``new`` firings (fired,
        but the incident was never opened: a failed write)."""
        try:
            self.worker.recover_queue(self.store)
        except Exception as exc:
            # Never a failed start: what could not be recovered now is kept for the next one.
            self.faults.write_failed("recovery at start", exc)
        self.incidents.process()

    def install_signals(self) -> None:
        """SIGHUP reloads, SIGTERM/SIGINT stop: as events on the queue, at once.

        The kernel may deliver a process signal to any thread (a watchdog observer, the
        action worker), and Python runs its handler only when the main thread next runs
        bytecode -- after its queue wait times out. So the C-level handler writes the
        signal number to a socket (``set_wakeup_fd``) and a reader thread queues it.
        """
        r, w = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        w.setblocking(False)
        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: None)
        signal.set_wakeup_fd(w.fileno(), warn_on_full_buffer=False)
        self._signal_socks = (r, w)
        threading.Thread(target=self._signal_reader, args=(r,), name="signals", daemon=True).start()

    def _signal_reader(self, r: socket.socket) -> None:
        while True:
            try:
                data = r.recv(64)
            except OSError:
                return
            if not data:
                return
            for signum in data:
                self.q.put(("hup",) if signum == signal.SIGHUP else ("term",))

    def run_forever(self) -> None:
        _release_startup_memory()
        sdnotify.notify("READY=1", f"STATUS=watching {len(self.rules.rules)} rules")
        log.info("remediator ready")
        wd = sdnotify.watchdog_interval()
        tick = min(HOUSEKEEPING, wd) if wd else HOUSEKEEPING
        last_house = next_retry = time.monotonic()
        while not self.stopping:
            try:
                # With a write failing, retry soon: the lines wait in their files meanwhile.
                event = self.q.get(timeout=RETRY if self.retrying else tick)
            except queue.Empty:
                event = ("tick",)
            try:
                self.dispatch(event)
            except Exception:
                log.exception("remediator: event %s failed", event[0])
            if wd:
                sdnotify.notify("WATCHDOG=1")
            # By the clock, not on idle ticks only: a busy queue must not postpone the retry.
            if self.retrying and time.monotonic() >= next_retry:
                next_retry = time.monotonic() + RETRY
                self.retry()
            if time.monotonic() - last_house >= HOUSEKEEPING:
                last_house = time.monotonic()
                try:
                    self.housekeeping()
                except Exception as exc:
                    self.faults.write_failed("housekeeping", exc)
        self.shutdown()

    @property
    def retrying(self) -> bool:
        return bool(self.detection.rewound) or any(
            k in ("state_write", "store_write") and key == "write" for k, key in self.faults.active
        )

    def retry(self) -> None:
        """After a failed write: read the rewound sources again, open the pending incidents."""
        self.detection.retry()
        self.incidents.process()

    def dispatch(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        if kind == "file":
            self.detection.on_file(event[1])
        elif kind == "journal":
            try:
                self.detection.read_journal(event[1])
            finally:
                event[1].done()  # the reader may hand over its next batch (it holds a few)
        elif kind == "hup":
            self.reload()
        elif kind == "term":
            log.info("SIGTERM: stopping")
            self.stopping = True
        elif kind == "call":  # tests and benchmarks: run a function on the core thread
            event[1]()

    def reload(self) -> None:
        sdnotify.notify("RELOADING=1")
        try:
            rules = self.load()
        except Exception as exc:
            log.error("SIGHUP: rules not reloaded, keeping the old ones: %s", exc)
        else:
            self.apply_rules(rules)
            log.info("SIGHUP: rules reloaded; windows, cooldowns and breakers kept")
            self.detection.catch_up()
        sdnotify.notify("READY=1")

    def housekeeping(self) -> None:
        self.detection.housekeeping(self.stopping)
        longest = max(
            [r.within for r in self.rules.rules]
            + [r.breaker.within for r in self.rules.rules if r.breaker]
            + [86400.0]
        )
        self.state.flush_deferred()
        self.state.purge(self.clock.now() - 2 * longest)
        self.clock.save()
        self.detection.save_sources()
        self.incidents.process()
        self.outbox.purge(time.time())

    def shutdown(self) -> None:
        sdnotify.notify("STOPPING=1")
        try:
            self.state.flush_deferred()
            self.clock.save()
        except Exception as exc:
            log.error("state not saved at stop: %s", exc)
        self.worker.stop()
        # Senders first: a delivery in flight gets a few seconds, then is killed; what was not
        # delivered stays in the outbox for the next start.
        self.alerts_stop.set()
        self.senders.stop()
        self.worker.join(timeout=60)
        if self.alerts_thread is not None:
            self.alerts_thread.join(timeout=5)
        self.detection.stop()
        self.store.close()
        self.state.close()
        log.info("remediator stopped")

    # ------------------------------------------------------------------ notices
    def _delivered(self, row: Row) -> None:
        # A person has been told: the incident says so (from the core thread, which owns
        # self.store; a sender thread has no store connection of its own).
        if row.incident_id is not None and row.event in ("needs_person", "breaker_opened"):
            iid = row.incident_id

            def mark() -> None:
                inc = self.store.get_incident(iid)
                if inc is not None and inc.notified is None:
                    self.store.update_incident(iid, notified=now_dt())

            self.q.put(("call", mark))

    def _alerts_loop(self) -> None:
        store = open_store(self.settings)  # its own connection: SQLite objects stay per thread
        try:
            while not self.alerts_stop.is_set():
                try:
                    self.alerts.tick(store)
                except Exception:
                    log.exception("notices: tick failed")
                self.alerts_stop.wait(self.settings.remediator.notify.check_every)
        finally:
            store.close()


def _release_startup_memory() -> None:
    """Give back to the system what start-up used and freed (parsing rules and settings,
    compiling patterns): glibc keeps freed heap pages mapped, so an idle service would carry
    them for its whole life. One call, before the wait that is the service's normal state."""
    import gc

    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to trim


def run_service(settings: Settings) -> int:
    """``jada-agent remediator run``: start, block until SIGTERM, exit 0.

    Exit 75 when another remediator holds this state database, 1 when the store is unreadable
    (with the command that repairs it)."""
    instance = InstanceLock(str(settings.remediator.state_db) + ".lock")
    try:
        instance.acquire()
    except AlreadyRunning as exc:
        print(f"jada-agent: {exc}", file=sys.stderr)
        return 75
    try:
        try:
            r = Remediator(settings)
        except StartError as exc:
            print(f"jada-agent: {exc}", file=sys.stderr)
            return 1
        r.install_signals()
        r.start()
        r.run_forever()
        return 0
    finally:
        instance.release()
