"""The remediator service (``jada-agent remediator run``, unit ``jada-remediator.service``).

Blocking I/O at the edges, a clear core: watchdog's observer thread and the journalctl reader
thread put events on one queue; the core thread (the main thread) reads the files those events
name, runs the matcher and the engine, and opens, resolves or escalates incidents; one action
thread runs the remediation playbooks one at a time under the host's remediation lock. The
core blocks on its queue (a timer wakes it once a minute for housekeeping), never spins.

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
import json
import logging
import os
import queue
import signal
import socket
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agent import sdnotify
from agent.config import Settings
from agent.remediator import actions as actions_mod
from agent.remediator import notify as n
from agent.remediator.alerts import Alerts, set_notice
from agent.remediator.clock import ServiceClock
from agent.remediator.engine import Decision, Engine
from agent.remediator.faults import Faults
from agent.remediator.lock import AlreadyRunning, InstanceLock, LockBusy, RemediationLock
from agent.remediator.matcher import Matcher, Stats
from agent.remediator.outbox import Outbox, Row, Senders
from agent.remediator.rules import Rule, RuleSet, load_rules
from agent.remediator.sources.filetail import FileTail
from agent.remediator.sources.journald import JournalSource, entries_to_look_at
from agent.remediator.sources.watcher import FileWatcher
from agent.remediator.state import Firing, StateDB, StateWriteError, group_key
from agent.store import Incident, Store, open_store

log = logging.getLogger("jada-remediator")

UNRESOLVED = ("open", "remediating", "escalated")
HOUSEKEEPING = 60.0
RETRY = 2.0  # seconds between retries of a failed write (faults active)
LOCK_OWNER = "jada-remediator"


class StartError(RuntimeError):
    """The service cannot start; the message says why and what to do."""


@dataclass
class Job:
    incident_id: int
    rule: Rule
    group: dict[str, str]
    firing_id: int | None = None


def _now_dt(t: float | None = None) -> datetime:
    return datetime.fromtimestamp(time.time() if t is None else t, UTC)


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
        self.matchers: dict[str, Matcher] = {}
        self.journal_rules: dict[str, list[Rule]] = {}
        self.journal_matchers: dict[str, Matcher] = {}
        self.tails: dict[str, FileTail] = {}
        self.stats = Stats()
        self.watcher: FileWatcher | None = None
        self.journal: JournalSource | None = None
        self.journalctl = journalctl
        self.jobs: queue.Queue[int | None] = queue.Queue()  # firing ids
        self.cancel = threading.Event()
        self.worker: threading.Thread | None = None
        # Notifications: a durable outbox in the state DB, one sender thread per channel, and
        # the alerts thread (reminders, needs-you tasks, the daily forecast).
        self.host = n.host_of(settings)
        self.outbox = Outbox(self.state, settings)
        self.faults.subscribe(self._fault_notice)
        self.senders = Senders(self.outbox, on_delivered=self._delivered)
        self.alerts = Alerts(settings, self.state, self.outbox)
        self.alerts_thread: threading.Thread | None = None
        self.alerts_stop = threading.Event()
        self.pending: set[str] = set()
        self.pending_lock = threading.Lock()
        self.stopping = False
        self.lock = RemediationLock(self.cfg.lock_file)
        self.open_ids: dict[tuple[str, str], int] | None = None
        self.rewound: set[str] = set()  # sources to read again after a failed write
        self.pending_rules: set[str] = set()  # rules with a firing not yet in the store
        # rule -> group of the resolve firing last added in this read's transaction (reset per
        # read: a rolled-back transaction took its firings with it)
        self._resolve_queued: dict[str, str] = {}

    # ------------------------------------------------------------------ rules and sources
    def load(self) -> RuleSet:
        return load_rules(self.cfg.rules_dirs)

    def apply_rules(self, rules: RuleSet) -> None:
        self.rules = rules
        by_source = rules.sources()
        self.matchers = {
            key: Matcher(rs, resolvable=self._resolvable)
            for key, rs in by_source.items()
            if key.startswith("file:")
        }
        self.journal_rules = {
            key.split(":", 1)[1]: rs for key, rs in by_source.items() if key.startswith("journal:")
        }
        self.journal_matchers = {
            unit: Matcher(rs, resolvable=self._resolvable)
            for unit, rs in self.journal_rules.items()
        }
        paths = {key.split(":", 1)[1] for key in self.matchers}
        for p in list(self.tails):
            if p not in paths:
                self.tails.pop(p).close()
        for p in paths:
            if p not in self.tails:
                tail = FileTail(p, self.state, self.stats, on_fault=self._source_fault)
                try:
                    with self.state.batch():
                        tail.start()
                except StateWriteError as exc:
                    self._write_failed(f"file:{p}", exc)
                    tail.rewind()
                self.tails[p] = tail
        if self.watcher is not None:
            self.watcher.set_paths(paths)
        units = sorted(self.journal_rules)
        if self.journal is None or self.journal.units != units:
            if self.journal is not None:
                self.journal.stop()
                self.journal = None
            if units:
                self.journal = JournalSource(
                    units,
                    self.state,
                    emit=self._journal_event,
                    journalctl=self.journalctl,
                    on_fault=self._source_fault,
                )
                if self.watcher is not None:  # started: follow immediately
                    self.journal.start()
        log.info(
            "rules: %d (%s); files: %d; journal units: %s",
            len(rules.rules),
            ", ".join(r.name for r in rules.rules) or "none",
            len(paths),
            ", ".join(units) or "none",
        )

    def _file_event(self, path: str) -> None:
        with self.pending_lock:
            if path in self.pending:
                return  # already queued: one read covers every event until then
            self.pending.add(path)
        self.q.put(("file", path))

    def _journal_event(self, entries: list[Any]) -> None:
        self.q.put(("journal", entries))

    def _source_fault(self, key: str, message: str | None) -> None:
        """Sources report trouble (and its end) here, from any thread."""
        if message is None:
            self.faults.clear("source", key)
        else:
            self.faults.raise_("source", key, message)

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
        self.recover_interrupted()
        self.apply_rules(self.load())
        self.recover_queue()
        self.save_sources()
        self.watcher = FileWatcher(self._file_event)
        self.watcher.set_paths(self.tails)
        self.watcher.start()
        if self.journal is not None:
            self.journal.start()
        self.worker = threading.Thread(target=self._work, name="actions", daemon=True)
        self.worker.start()
        self.reconcile_notices()
        self.senders.start()
        self.alerts_thread = threading.Thread(target=self._alerts_loop, name="alerts", daemon=True)
        self.alerts_thread.start()
        # Catch up with whatever was written while we were stopped.
        for path in self.tails:
            self._file_event(path)

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
                    self._write_failed("housekeeping", exc)
        self.shutdown()

    @property
    def retrying(self) -> bool:
        return bool(self.rewound) or any(
            k in ("state_write", "store_write") and key == "write" for k, key in self.faults.active
        )

    def retry(self) -> None:
        """After a failed write: read the rewound sources again, open the pending incidents."""
        rewound, self.rewound = self.rewound, set()
        for key in rewound:
            if key.startswith("file:"):
                self._file_event(key[5:])
            elif key == "journal" and self.journal is not None:
                self.journal.restart()
        self.process_firings()

    def dispatch(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        if kind == "file":
            path = event[1]
            with self.pending_lock:
                self.pending.discard(path)
            self.read_file(path)
        elif kind == "journal":
            try:
                self.read_journal(event[1])
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
            for path in self.tails:
                self._file_event(path)
        sdnotify.notify("READY=1")

    def housekeeping(self) -> None:
        if self.journal is not None and not self.journal.alive() and not self.stopping:
            self._source_fault("journal", "the journal reader stopped; restarting it")
            self.journal.start()
        if self.watcher is not None:
            for path in self.watcher.rescan():
                self._file_event(path)
        longest = max(
            [r.within for r in self.rules.rules]
            + [r.breaker.within for r in self.rules.rules if r.breaker]
            + [86400.0]
        )
        self.state.flush_deferred()
        self.state.purge(self.clock.now() - 2 * longest)
        self.clock.save()
        self.save_sources()
        self.process_firings()
        self.outbox.purge(time.time())

    def save_sources(self) -> None:
        """A snapshot of the sources for ``remediator status`` (another process)."""
        from agent.remediator.status import SOURCES_META

        snap = {
            "files": {p: {"fault": t.fault} for p, t in self.tails.items()},
            "journal": self.journal.status() if self.journal is not None else None,
        }
        with contextlib.suppress(Exception):
            self.state.set_meta(SOURCES_META, json.dumps(snap))

    def shutdown(self) -> None:
        sdnotify.notify("STOPPING=1")
        try:
            self.state.flush_deferred()
            self.clock.save()
        except Exception as exc:
            log.error("state not saved at stop: %s", exc)
        self.cancel.set()
        self.jobs.put(None)
        # Senders first: a delivery in flight gets a few seconds, then is killed; what was not
        # delivered stays in the outbox for the next start.
        self.alerts_stop.set()
        self.senders.stop()
        if self.worker is not None:
            self.worker.join(timeout=60)
        if self.alerts_thread is not None:
            self.alerts_thread.join(timeout=5)
        if self.watcher is not None:
            self.watcher.stop()
        if self.journal is not None:
            self.journal.stop()
        for tail in self.tails.values():
            tail.close()
        self.store.close()
        self.state.close()
        log.info("remediator stopped")

    # ------------------------------------------------------------------ reading
    def read_file(self, path: str) -> None:
        tail = self.tails.get(path)
        matcher = self.matchers.get(f"file:{path}")
        if tail is None or matcher is None:
            return
        if f"file:{path}" in self.rewound:
            self.rewound.discard(f"file:{path}")
        now = self.clock.now()
        self._resolve_queued = {}

        def sink(buf: bytes | bytearray, end: int) -> None:
            for rule, line in matcher.scan(buf, self.stats, end):
                self.decide(rule, self.engine.observe(rule, line, now), line, now)

        try:
            with self.engine.batch():  # position, windows and firings commit together
                tail.poll(sink)
        except Exception as exc:
            # Rolled back and memory rebuilt: read these lines again from the saved position.
            tail.rewind()
            self.rewound.add(f"file:{path}")
            self._write_failed(f"file:{path}", exc)
            return
        self._write_ok()
        self.process_firings()

    def read_journal(self, entries: list[Any]) -> None:
        journal = self.journal
        if journal is None or "journal" in self.rewound:
            return  # a rewound journal is read again from the saved cursor
        entries = [e for e in entries if getattr(e, "gen", 0) == journal.generation]
        if not entries:
            return
        self._resolve_queued = {}
        try:
            with self.engine.batch():  # the whole batch and its last cursor commit together
                for e in entries_to_look_at(entries, self.journal_matchers):
                    # The entry's own age on the service clock: a catch-up after a restart
                    # keeps its spacing, a wall clock stepped back changes nothing.
                    t = self.clock.since_wall(e.t)
                    for rule in self.journal_matchers[e.unit].rules_for(e.message):
                        d = self.engine.observe(rule, e.message, t)
                        if d.outcome != "nomatch":
                            self.decide(rule, d, e.message, t)
                cursor = next((e.cursor for e in reversed(entries) if e.cursor), "")
                if cursor:
                    self.state.save_cursor(journal.key, cursor)
        except Exception as exc:
            self.rewound.add("journal")
            journal.invalidate()  # entries already queued from this child are dropped
            self._write_failed("journal", exc)
            return
        self._write_ok()
        self.process_firings()

    def _write_failed(self, where: str, exc: BaseException) -> None:
        kind = "state_write" if isinstance(exc, StateWriteError) else "store_write"
        self.faults.raise_(
            kind, "write", f"{where}: {type(exc).__name__}: {exc}; the lines will be read again"
        )

    def _write_ok(self) -> None:
        if self.faults.active:
            self.faults.clear("state_write", "write")
            if not self.state.firings(("new",)):
                self.faults.clear("store_write", "write")

    # ------------------------------------------------------------------ incidents
    def _unresolved(self, rule: str, group: dict[str, str]) -> Incident | None:
        # Only this thread opens incidents, so a map filled once at start and on every open
        # finds them without scanning the store; the row itself is re-read, since the action
        # thread or a person may have resolved it meanwhile.
        if self.open_ids is None:
            self.open_ids = {
                (i.rule, group_key(i.group)): i.id for i in self.store.list_incidents(UNRESOLVED)
            }
        inc_id = self.open_ids.get((rule, group_key(group)))
        inc = self.store.get_incident(inc_id) if inc_id is not None else None
        return inc if inc is not None and inc.status in UNRESOLVED else None

    def _resolvable(self) -> set[str]:
        # Unresolved incidents are those found at start plus those opened here since (only
        # this thread opens them): a rule with none of those has nothing to resolve.
        if self.open_ids is None:
            self._unresolved("", {})
        return {r for r, _ in self.open_ids or ()} | self.pending_rules

    def _may_be_unresolved(self, rule: str) -> bool:
        return rule in self._resolvable()

    def _opened(self, inc: Incident) -> Incident:
        if self.open_ids is not None:
            self.open_ids[(inc.rule, group_key(inc.group))] = inc.id
        return inc

    def decide(self, rule: Rule, d: Decision, line: str, t: float) -> None:
        if d.outcome == "resolve":
            if rule.name in self.pending_rules:
                # A fire of this rule is not in the store yet: resolve after it, in order --
                # once: a second resolve with no fire between finds nothing more to close (a
                # backlog's every "sync ok" would otherwise be a firing and a commit each).
                key = group_key(d.group)
                if self._resolve_queued.get(rule.name) != key:
                    self.state.add_firing(rule.name, key, t, "resolve", 0, line[:300])
                    self._resolve_queued[rule.name] = key
            elif self._may_be_unresolved(rule.name):  # a healthy log's "sync ok" costs no query
                self.resolve(rule.name, d.group, line)
            return
        if d.fired or d.breaker_opened:
            # In the batch's transaction, with the fire itself: the incident is opened from it
            # after the commit (process_firings), so a failed write loses neither.
            kind = "fire" if d.fired else "breaker"
            self.state.add_firing(rule.name, group_key(d.group), t, kind, d.count, line[:300])
            self.pending_rules.add(rule.name)
            self._resolve_queued.pop(rule.name, None)

    def resolve(self, rule_name: str, group: dict[str, str], line: str) -> None:
        for inc in self.store.list_incidents(UNRESOLVED):
            if inc.rule == rule_name and all(inc.group.get(k) == v for k, v in group.items()):
                done = self.store.update_incident(
                    inc.id,
                    status="resolved",
                    summary=f"{inc.summary}\nresolved by: {line[:300]}".strip(),
                    now=_now_dt(),
                )
                log.info("incident #%s (%s) resolved by a log line", inc.id, rule_name)
                if inc.status == "remediating":
                    continue  # the playbook's own verification: record() says how
                how = (
                    "the failure stopped after a person's fix"
                    if inc.status == "escalated"
                    else "the failure stopped by itself"
                )
                self.announce_resolved(done, f"{how}; the log said: {line.strip()[:200]}")
        if self.open_ids is not None and not any(
            inc.rule == rule_name for inc in self.store.list_incidents(UNRESOLVED)
        ):
            for key in [k for k in self.open_ids if k[0] == rule_name]:
                del self.open_ids[key]  # nothing of the rule left open: skip queries again

    def process_firings(self) -> None:
        """Open (or find) the incident of every committed firing; queue or escalate it."""
        try:
            pending = self.state.firings(("new",))
        except StateWriteError as exc:
            self._write_failed("firings", exc)
            return
        self.pending_rules = {f.rule for f in pending}
        if not pending:
            return
        rules = self.rules.by_name()
        for f in pending:
            try:
                if f.kind == "resolve":
                    self.resolve(f.rule, f.group, f.summary)
                    self.state.delete_firing(f.id)
                else:
                    self._handle_firing(f, rules.get(f.rule))
            except Exception as exc:
                self._write_failed(f"incident of {f.rule}", exc)
                return  # retried on the next tick, in order
        self.pending_rules = set()
        self.faults.clear("store_write", "write")

    def _handle_firing(self, f: Firing, rule: Rule | None) -> None:
        group = f.group
        if rule is None:
            log.warning("firing of %s dropped: the rule no longer exists", f.rule)
            self.state.set_firing(f.id, "done")
            return
        inc = self._unresolved(rule.name, group)
        if inc is None:
            # Opened at the fire's own time (a catch-up after a restart keeps the log's time).
            inc = self._opened(
                self.store.open_incident(
                    rule.name, group, summary=f.summary, now=_now_dt(self.clock.to_wall(f.t))
                )
            )
            if f.kind == "fire":
                log.info(
                    "incident #%s opened: %s fired (%d within %ss)",
                    inc.id,
                    rule.name,
                    f.count,
                    int(rule.within),
                )
        elif f.kind == "fire":
            log.info("incident #%s: %s fired again (%d)", inc.id, rule.name, f.count)
        if f.kind == "fire":
            if rule.action is not None:
                self.state.set_firing(f.id, "queued", incident_id=inc.id)
                self.jobs.put(f.id)
                return
            # An alert-only rule: its description is what the person needs to read.
            reason = rule.description or f"{rule.name} fired {f.count} times"
            self.escalate(self.store, inc.id, rule, group, reason)
            self.state.set_firing(f.id, "done", incident_id=inc.id)
            return
        # The breaker opened instead of this fire.
        b = rule.breaker
        reason = (
            f"circuit breaker open: more than {b.max_runs if b else '?'} remediations within"
            f" {int(b.within // 3600) if b else '?'}h; not retrying until a person resets it"
        )
        log.error("incident #%s: %s", inc.id, reason)
        self.escalate(
            self.store,
            inc.id,
            rule,
            group,
            reason,
            next_step=f"fix the cause, then: jada-agent remediator reset {rule.name}",
            event="breaker_opened",
        )
        self.state.set_firing(f.id, "done", incident_id=inc.id)

    def escalate(
        self,
        store: Store,
        incident_id: int,
        rule: Rule,
        group: dict[str, str],
        reason: str,
        cause: str = "",
        next_step: str = "",
        findings: list[str] | None = None,
        event: str = "needs_person",
    ) -> None:
        inc = store.update_incident(incident_id, status="escalated", cause=cause or None)
        # Into the outbox (the state DB), once per incident and event: the sender threads
        # deliver it, so a slow channel never holds up reading the logs, and a restart or a
        # kill -9 loses nothing.
        if event == "breaker_opened":
            notice = n.breaker_opened(self.host, incident_id, rule.name, group, reason)
        else:
            notice = n.needs_person(
                self.host,
                incident_id,
                rule.name,
                group,
                reason,
                cause=cause or (inc.cause or ""),
                findings=findings,
                next_step=next_step,
            )
        self.outbox.enqueue(notice, dedup=f"{event}:{incident_id}")
        set_notice(self.state, f"remind:incident:{incident_id}", time.time())

    def _fault_notice(self, state: str, f: Any) -> None:
        # A fault of the remediator itself reaches a person like an incident does. The outbox
        # lives in the state database: when that is what fails, the log and `remediator status`
        # remain (and the heartbeat reports "degraded").
        try:
            self.outbox.enqueue(
                n.remediator_fault(self.host, state, f.kind, f.key, f.message, f.count),
                dedup=f"fault:{state}:{f.kind}:{f.key}:{f.first}",
            )
        except Exception as exc:
            log.warning("fault %s %s: not queued for a person: %s", f.kind, f.key, exc)

    def announce_resolved(self, inc: Incident, how: str) -> None:
        if not self.settings.remediator.notify.announce_healed and not self.outbox.told(inc.id):
            return  # nobody was told it opened: not told it closed either
        self.outbox.enqueue(
            n.resolved(
                self.host, inc.id, inc.rule, inc.group, how, inc.opened, inc.resolved or _now_dt()
            ),
            dedup=f"resolved:{inc.id}",
        )

    def _delivered(self, row: Row) -> None:
        # A person has been told: the incident says so (from the core thread, which owns
        # self.store; a sender thread has no store connection of its own).
        if row.incident_id is not None and row.event in ("needs_person", "breaker_opened"):
            iid = row.incident_id

            def mark() -> None:
                inc = self.store.get_incident(iid)
                if inc is not None and inc.notified is None:
                    self.store.update_incident(iid, notified=_now_dt())

            self.q.put(("call", mark))

    def reconcile_notices(self) -> None:
        """An escalation recorded but not queued (killed in between) is queued now."""
        for inc in self.store.list_incidents(["escalated"]):
            if inc.notified is not None or self.outbox.told(inc.id):
                continue
            rule = next((r for r in self.rules.rules if r.name == inc.rule), None)
            if rule is None:
                continue
            last = inc.remediations[-1] if inc.remediations else {}
            self.outbox.enqueue(
                n.needs_person(
                    self.host,
                    inc.id,
                    inc.rule,
                    inc.group,
                    rule.description or "escalated (recovered at start-up)",
                    cause=inc.cause or "",
                    next_step=str(last.get("next_step") or ""),
                ),
                dedup=f"needs_person:{inc.id}",
            )

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

    # ------------------------------------------------------------------ remediations
    def _work(self) -> None:
        store = open_store(self.settings)  # its own connection: SQLite objects stay per thread
        try:
            while True:
                firing_id = self.jobs.get()
                if firing_id is None or self.cancel.is_set():
                    return  # what is still queued stays queued in the state DB: resumed at start
                try:
                    self.run_job(store, firing_id)
                except Exception as exc:
                    log.exception("remediation of firing %s failed", firing_id)
                    self.faults.raise_("store_write", "remediation", f"firing {firing_id}: {exc}")
                    # Still queued in the state DB (the write that failed did not move it):
                    # try again in a while rather than only at the next start.
                    retry = threading.Timer(RETRY * 5, self.jobs.put, args=(firing_id,))
                    retry.daemon = True
                    retry.start()
                else:
                    self.faults.clear("store_write", "remediation")
        finally:
            store.close()

    def run_job(self, store: Store, firing_id: int) -> None:
        found = [f for f in self.state.firings(("queued",)) if f.id == firing_id]
        if not found:
            return  # already taken (a duplicate put at start)
        f = found[0]
        rule = self.rules.by_name().get(f.rule)
        assert f.incident_id is not None
        if rule is None or rule.action is None:
            log.warning("incident #%s: %s has no action any more", f.incident_id, f.rule)
            self.state.set_firing(f.id, "done")
            return
        self.remediate(store, Job(f.incident_id, rule, f.group, f.id))

    def remediate(self, store: Store, job: Job) -> None:
        rule, action = job.rule, job.rule.action
        assert action is not None
        try:
            self.lock.acquire(
                LOCK_OWNER,
                ttl=action.timeout + 120,
                wait=action.timeout,
                pid=os.getpid(),
                cancel=self.cancel,
            )
        except LockBusy as exc:
            if self.cancel.is_set():
                log.info(
                    "incident #%s: remediation left queued for the next start", job.incident_id
                )
                return
            log.warning("incident #%s: not remediated, lock busy: %s", job.incident_id, exc)
            store.update_incident(
                job.incident_id,
                remediation={"status": "skipped", "error": f"remediation lock busy: {exc}"},
            )
            if job.firing_id is not None:
                self.state.set_firing(job.firing_id, "done")
            return
        try:
            store.update_incident(job.incident_id, status="remediating")
            config_file = self.settings.source if os.path.isfile(self.settings.source) else None

            def started(rem: actions_mod.Remediation) -> None:
                self.state.add_running(
                    rem.ident,
                    job.incident_id,
                    rule.name,
                    rem.started,
                    rem.artifact_dir,
                    firing_id=job.firing_id,
                )

            log.info("incident #%s: running %s", job.incident_id, action.playbook)
            rem = actions_mod.run_playbook(
                private_data_dir=self.cfg.private_data_dir,
                playbook=action.playbook,
                extravars=action.extravars,
                incident_id=job.incident_id,
                rule_name=rule.name,
                group=job.group,
                timeout=action.timeout,
                artifacts_keep=self.cfg.artifacts_keep,
                cancel=self.cancel,
                config_file=config_file,
                on_start=started,
            )
            if rem.status == "canceled":
                rem.error = (
                    rem.error + "; " if rem.error else ""
                ) + "interrupted: the remediator stopped"
            # The result goes with its firing in the state DB first: a kill before the store
            # has it replays this record at the next start instead of losing it.
            self.state.remove_running(rem.ident, firing_id=job.firing_id, result=rem.to_json())
        finally:
            try:
                self.lock.release(LOCK_OWNER, pid=os.getpid())
            except LockBusy as exc:
                # Broken as stale while we ran (a ttl too short for the run): say so, go on.
                log.warning(
                    "incident #%s: the remediation lock was no longer ours: %s",
                    job.incident_id,
                    exc,
                )
        self.record(store, job, rem.to_json())
        if job.firing_id is not None:
            self.state.set_firing(job.firing_id, "done")

    def record(self, store: Store, job: Job, rem: dict[str, Any]) -> None:
        outcome = rem.get("outcome", "failed")
        status = {"recovered": "resolved", "needs_human": "escalated"}.get(outcome, "open")
        current = store.get_incident(job.incident_id)
        if current is not None and current.status == "resolved" and status == "open":
            status = "resolved"  # a resolve line closed it while the playbook ran: keep it closed
        log.info(
            "incident #%s: %s %s -> %s (%s, rc %s, %.1fs)",
            job.incident_id,
            rem.get("playbook"),
            rem.get("status"),
            outcome,
            rem.get("cause") or "no cause given",
            rem.get("rc"),
            rem.get("duration") or 0.0,
        )
        inc = store.update_incident(
            job.incident_id,
            status=status,
            cause=rem.get("cause") or None,
            remediation=rem,
        )
        if outcome == "needs_human":
            self.escalate(
                store,
                job.incident_id,
                job.rule,
                job.group,
                f"{rem.get('playbook')} could not repair it",
                cause=rem.get("cause") or "",
                next_step=rem.get("next_step") or "",
                findings=_findings(rem),
            )
        elif status == "resolved":
            acts = "; ".join([str(x) for x in rem.get("actions") or []][:4])
            how = (
                f"healed by {rem.get('playbook')}"
                if outcome == "recovered"
                else f"the failure stopped while {rem.get('playbook')} ran ({outcome})"
            )
            self.announce_resolved(inc, how + (f" ({acts})" if acts else ""))
        elif outcome == "failed" and not self.cancel.is_set():
            # At once, not when the breaker opens hours later.
            artifact_dir = rem.get("artifact_dir") or ""
            self.outbox.enqueue(
                n.remediation_failed(
                    self.host,
                    job.incident_id,
                    job.rule.name,
                    job.group,
                    str(rem.get("playbook") or ""),
                    str(rem.get("status") or ""),
                    str(rem.get("error") or rem.get("cause") or ""),
                    n.failing_task(artifact_dir) if artifact_dir else "",
                ),
                dedup=f"failed:{rem.get('ident')}",
            )

    def recover_interrupted(self) -> None:
        """Record remediations that were running when the service last died."""
        try:
            by_ident = {f.ident: f for f in self.state.firings(("running",)) if f.ident}
            runs = self.state.list_running()
        except StateWriteError as exc:
            self._write_failed("recovery at start", exc)
            return
        for run in runs:
            killed = actions_mod.kill_marked(run["ident"])
            log.warning(
                "incident #%s: remediation %s was interrupted by a stop (%d processes killed)",
                run["incident_id"],
                run["ident"],
                killed,
            )
            try:
                self.store.update_incident(
                    run["incident_id"],
                    status="open",
                    remediation={
                        "ident": run["ident"],
                        "status": "interrupted",
                        "outcome": "failed",
                        "artifact_dir": run["artifact_dir"],
                        "error": "the remediator stopped during this run",
                    },
                )
            except Exception as exc:
                log.error("cannot record interrupted remediation %s: %s", run["ident"], exc)
                continue  # kept: recorded at the next start
            f = by_ident.get(run["ident"])
            try:
                self.state.remove_running(run["ident"])
                if f is not None:
                    self.state.set_firing(f.id, "done")
            except StateWriteError as exc:
                self._write_failed("recovery at start", exc)

    def recover_queue(self) -> None:
        """Resume the persisted job queue and leave no incident "remediating" for ever.

        - ``ran``: the playbook finished, the store never heard: record its result now;
        - ``running`` without a running record: killed before the playbook started: run it;
        - ``queued``: queued when the service stopped: run it;
        - ``new``: fired but the incident was never opened (a failed write): open it;
        - an incident still "remediating" that no job will finish (a kill -9 of an older
          version): back to "open", so the next fire remediates it.
        """
        try:
            self._recover_queue()
        except Exception as exc:
            # Never a failed start: what could not be recovered now is kept for the next one.
            self._write_failed("recovery at start", exc)
        self.process_firings()

    def _recover_queue(self) -> None:
        rules = self.rules.by_name()
        running = {r["ident"] for r in self.state.list_running()}
        for f in self.state.firings(("ran", "running", "queued")):
            rule = rules.get(f.rule)
            if f.status == "ran":
                if rule is not None and f.incident_id is not None:
                    log.warning(
                        "incident #%s: recording the remediation that ended as the service stopped",
                        f.incident_id,
                    )
                    self.record(self.store, Job(f.incident_id, rule, f.group, f.id), f.result or {})
                self.state.set_firing(f.id, "done")
                continue
            if f.status == "running" and f.ident in running:
                continue  # recover_interrupted keeps it until it can record it
            if f.status == "running":
                self.state.set_firing(f.id, "queued")
            log.info("incident #%s: resuming the queued remediation", f.incident_id)
            self.jobs.put(f.id)
        waiting = {f.incident_id for f in self.state.firings(("queued", "running"))}
        for inc in self.store.list_incidents(("remediating",)):
            log.warning(
                "incident #%s was left remediating by a stop; %s",
                inc.id,
                "its remediation is queued again" if inc.id in waiting else "back to open",
            )
            self.store.update_incident(inc.id, status="open")


def _findings(rem: dict[str, Any]) -> list[str]:
    """The failed checks the playbook reported (``findings`` of its result file), as lines."""
    artifact_dir = rem.get("artifact_dir") or ""
    path = os.path.join(artifact_dir, "jada-result.json") if artifact_dir else ""
    try:
        with open(path, encoding="utf-8") as fh:
            found = json.load(fh).get("findings") or []
    except (OSError, ValueError, AttributeError):
        return []
    out = []
    for f in found if isinstance(found, list) else []:
        if isinstance(f, dict):
            out.append(f"{f.get('check', '?')}: {f.get('detail', '')}".strip())
        else:
            out.append(str(f))
    return out[:8]


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
