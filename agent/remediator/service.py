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
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import socket
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
from agent.remediator.engine import Decision, Engine
from agent.remediator.lock import LockBusy, RemediationLock
from agent.remediator.outbox import Outbox, Row, Senders
from agent.remediator.rules import Rule, RuleSet, load_rules
from agent.remediator.sources import FileTail, FileWatcher, JournalSource, Matcher, Stats
from agent.remediator.state import StateDB, group_key
from agent.store import Incident, Store, open_store

log = logging.getLogger("jada-remediator")

UNRESOLVED = ("open", "remediating", "escalated")
HOUSEKEEPING = 60.0
LOCK_OWNER = "jada-remediator"


@dataclass
class Job:
    incident_id: int
    rule: Rule
    group: dict[str, str]


def _now_dt(t: float | None = None) -> datetime:
    return datetime.fromtimestamp(time.time() if t is None else t, UTC)


class Remediator:
    def __init__(self, settings: Settings, journalctl: str = "journalctl"):
        self.settings = settings
        self.cfg = settings.remediator
        self.q: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()  # put() is reentrant
        self.state = StateDB(self.cfg.state_db)
        self.engine = Engine(self.state)
        self.store: Store = open_store(settings)
        self.rules = RuleSet([], [])
        self.matchers: dict[str, Matcher] = {}
        self.journal_rules: dict[str, list[Rule]] = {}
        self.tails: dict[str, FileTail] = {}
        self.stats = Stats()
        self.watcher: FileWatcher | None = None
        self.journal: JournalSource | None = None
        self.journalctl = journalctl
        self.jobs: queue.Queue[Job | None] = queue.Queue()
        self.cancel = threading.Event()
        self.worker: threading.Thread | None = None
        # Notifications: a durable outbox in the state DB, one sender thread per channel, and
        # the alerts thread (reminders, needs-you tasks, the daily forecast).
        self.host = n.host_of(settings)
        self.outbox = Outbox(self.state, settings)
        self.senders = Senders(self.outbox, on_delivered=self._delivered)
        self.alerts = Alerts(settings, self.state, self.outbox)
        self.alerts_thread: threading.Thread | None = None
        self.alerts_stop = threading.Event()
        self.pending: set[str] = set()
        self.pending_lock = threading.Lock()
        self.stopping = False
        self.lock = RemediationLock(self.cfg.lock_file)
        self.open_ids: dict[tuple[str, str], int] | None = None

    # ------------------------------------------------------------------ rules and sources
    def load(self) -> RuleSet:
        return load_rules(self.cfg.rules_dirs)

    def apply_rules(self, rules: RuleSet) -> None:
        self.rules = rules
        by_source = rules.sources()
        self.matchers = {
            key: Matcher(rs) for key, rs in by_source.items() if key.startswith("file:")
        }
        self.journal_rules = {
            key.split(":", 1)[1]: rs for key, rs in by_source.items() if key.startswith("journal:")
        }
        paths = {key.split(":", 1)[1] for key in self.matchers}
        for p in list(self.tails):
            if p not in paths:
                self.tails.pop(p).close()
        for p in paths:
            if p not in self.tails:
                tail = FileTail(p, self.state, self.stats)
                with self.state.batch():
                    tail.start()
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
                    units, self.state, emit=self._journal_event, journalctl=self.journalctl
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

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        os.umask(0o077)  # state, artifacts and results are nobody else's business
        self.recover_interrupted()
        self.apply_rules(self.load())
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
        sdnotify.notify("READY=1", f"STATUS=watching {len(self.rules.rules)} rules")
        log.info("remediator ready")
        wd = sdnotify.watchdog_interval()
        tick = min(HOUSEKEEPING, wd) if wd else HOUSEKEEPING
        last_house = time.monotonic()
        while not self.stopping:
            try:
                event = self.q.get(timeout=tick)
            except queue.Empty:
                event = ("tick",)
            try:
                self.dispatch(event)
            except Exception:
                log.exception("remediator: event %s failed", event[0])
            if wd:
                sdnotify.notify("WATCHDOG=1")
            if time.monotonic() - last_house >= HOUSEKEEPING:
                last_house = time.monotonic()
                self.housekeeping()
        self.shutdown()

    def dispatch(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        if kind == "file":
            path = event[1]
            with self.pending_lock:
                self.pending.discard(path)
            self.read_file(path)
        elif kind == "journal":
            self.read_journal(event[1])
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
        if self.watcher is not None:
            for path in self.watcher.rescan():
                self._file_event(path)
        longest = max(
            [r.within for r in self.rules.rules]
            + [r.breaker.within for r in self.rules.rules if r.breaker]
            + [86400.0]
        )
        self.state.purge(time.time() - 2 * longest)
        self.outbox.purge(time.time())

    def shutdown(self) -> None:
        sdnotify.notify("STOPPING=1")
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
        now = time.time()

        def sink(buf: bytes | bytearray, end: int) -> None:
            for rule, line in matcher.scan(buf, self.stats, end):
                self.decide(rule, self.engine.observe(rule, line, now), line, now)

        with self.state.batch():  # position and windows commit together
            tail.poll(sink)

    def read_journal(self, entries: list[Any]) -> None:
        now = time.time()
        with self.state.batch():
            for e in entries:
                # The entry's own time (bounded by now): a catch-up after a restart keeps spacing.
                t = min(e.t, now)
                for rule in self.journal_rules.get(e.unit, ()):
                    d = self.engine.observe(rule, e.message, t)
                    if d.outcome != "nomatch":
                        self.decide(rule, d, e.message, t)
                if e.cursor and self.journal is not None:
                    self.state.save_cursor(self.journal.key, e.cursor)

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

    def _opened(self, inc: Incident) -> Incident:
        if self.open_ids is not None:
            self.open_ids[(inc.rule, group_key(inc.group))] = inc.id
        return inc

    def decide(self, rule: Rule, d: Decision, line: str, t: float) -> None:
        if d.outcome == "resolve":
            for inc in self.store.list_incidents(UNRESOLVED):
                if inc.rule == rule.name and all(inc.group.get(k) == v for k, v in d.group.items()):
                    done = self.store.update_incident(
                        inc.id,
                        status="resolved",
                        summary=f"{inc.summary}\nresolved by: {line[:300]}".strip(),
                        now=_now_dt(t),
                    )
                    log.info("incident #%s (%s) resolved by a log line", inc.id, rule.name)
                    if inc.status == "remediating":
                        continue  # the playbook's own verification: record() says how
                    how = (
                        "the failure stopped after a person's fix"
                        if inc.status == "escalated"
                        else "the failure stopped by itself"
                    )
                    self.announce_resolved(done, f"{how}; the log said: {line.strip()[:200]}")
            return
        if d.fired:
            inc = self._unresolved(rule.name, d.group)
            if inc is None:
                inc = self._opened(
                    self.store.open_incident(rule.name, d.group, summary=line[:300], now=_now_dt(t))
                )
                log.info(
                    "incident #%s opened: %s fired (%d within %ss)",
                    inc.id,
                    rule.name,
                    d.count,
                    int(rule.within),
                )
            else:
                log.info("incident #%s: %s fired again (%d)", inc.id, rule.name, d.count)
            if rule.action is not None:
                self.jobs.put(Job(inc.id, rule, d.group))
            else:
                # An alert-only rule: its description is what the person needs to read.
                reason = rule.description or f"{rule.name} fired {d.count} times"
                self.escalate(self.store, inc.id, rule, d.group, reason)
        elif d.breaker_opened:
            inc = self._unresolved(rule.name, d.group) or self._opened(
                self.store.open_incident(rule.name, d.group, summary=line[:300], now=_now_dt(t))
            )
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
                d.group,
                reason,
                next_step=f"fix the cause, then: jada-agent remediator reset {rule.name}",
                event="breaker_opened",
            )

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
                job = self.jobs.get()
                if job is None or self.cancel.is_set():
                    return
                try:
                    self.remediate(store, job)
                except Exception:
                    log.exception("remediation of incident #%s failed", job.incident_id)
        finally:
            store.close()

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
            log.warning("incident #%s: not remediated, lock busy: %s", job.incident_id, exc)
            store.update_incident(
                job.incident_id,
                remediation={"status": "skipped", "error": f"remediation lock busy: {exc}"},
            )
            return
        try:
            store.update_incident(job.incident_id, status="remediating")
            config_file = self.settings.source if os.path.isfile(self.settings.source) else None

            def started(rem: actions_mod.Remediation) -> None:
                self.state.add_running(
                    rem.ident, job.incident_id, rule.name, rem.started, rem.artifact_dir
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
            self.state.remove_running(rem.ident)
        finally:
            self.lock.release(LOCK_OWNER)
        if rem.status == "canceled":
            rem.error = (
                rem.error + "; " if rem.error else ""
            ) + "interrupted: the remediator stopped"
        self.record(store, job, rem)

    def record(self, store: Store, job: Job, rem: actions_mod.Remediation) -> None:
        status = {"recovered": "resolved", "needs_human": "escalated"}.get(rem.outcome, "open")
        current = store.get_incident(job.incident_id)
        if current is not None and current.status == "resolved" and status == "open":
            status = "resolved"  # a resolve line closed it while the playbook ran: keep it closed
        log.info(
            "incident #%s: %s %s -> %s (%s, rc %s, %.1fs)",
            job.incident_id,
            rem.playbook,
            rem.status,
            rem.outcome,
            rem.cause or "no cause given",
            rem.rc,
            rem.duration or 0.0,
        )
        inc = store.update_incident(
            job.incident_id,
            status=status,
            cause=rem.cause or None,
            remediation=rem.to_json(),
        )
        if rem.outcome == "needs_human":
            self.escalate(
                store,
                job.incident_id,
                job.rule,
                job.group,
                f"{rem.playbook} could not repair it",
                cause=rem.cause,
                next_step=rem.next_step,
                findings=_findings(rem),
            )
        elif status == "resolved":
            acts = "; ".join(rem.actions[:4])
            how = (
                f"healed by {rem.playbook}"
                if rem.outcome == "recovered"
                else f"the failure stopped while {rem.playbook} ran ({rem.outcome})"
            )
            self.announce_resolved(inc, how + (f" ({acts})" if acts else ""))
        elif rem.outcome == "failed" and not self.cancel.is_set():
            # At once, not when the breaker opens hours later.
            self.outbox.enqueue(
                n.remediation_failed(
                    self.host,
                    job.incident_id,
                    job.rule.name,
                    job.group,
                    rem.playbook,
                    rem.status,
                    rem.error or rem.cause,
                    n.failing_task(rem.artifact_dir) if rem.artifact_dir else "",
                ),
                dedup=f"failed:{rem.ident}",
            )

    def recover_interrupted(self) -> None:
        """Record remediations that were running when the service last died."""
        for run in self.state.list_running():
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
            self.state.remove_running(run["ident"])


def _findings(rem: actions_mod.Remediation) -> list[str]:
    """The failed checks the playbook reported (``findings`` of its result file), as lines."""
    import json

    path = os.path.join(rem.artifact_dir, "jada-result.json") if rem.artifact_dir else ""
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


def run_service(settings: Settings) -> int:
    """``jada-agent remediator run``: start, block until SIGTERM, exit 0."""
    r = Remediator(settings)
    r.install_signals()
    r.start()
    r.run_forever()
    return 0
