"""The detection half of the core thread: rules to sources, sources to the engine.

The rules name their sources (a file, or a journal unit); this module keeps one tail per file
and one journal reader for all the units, turns their events into queue items for the core
thread, and reads on that thread: each buffer of lines goes through its matcher and the engine,
and the engine's decisions (:meth:`Incidents.decide`) commit in one state transaction with the
source's new position. A failed write rolls back, rewinds the source to its saved position and
marks it to be read again (:meth:`Detection.retry`), so no line is lost or counted twice.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from typing import Any

from agent.remediator.clock import ServiceClock
from agent.remediator.engine import Decision, Engine
from agent.remediator.faults import Faults
from agent.remediator.incidents import Incidents
from agent.remediator.matcher import Matcher, Stats
from agent.remediator.rules import Rule, RuleSet
from agent.remediator.sources.filetail import FileTail
from agent.remediator.sources.journald import JournalSource, entries_to_look_at
from agent.remediator.sources.watcher import FileWatcher
from agent.remediator.state import StateDB, StateWriteError

log = logging.getLogger("jada-remediator")


class Detection:
    def __init__(
        self,
        state: StateDB,
        clock: ServiceClock,
        engine: Engine,
        faults: Faults,
        incidents: Incidents,
        q: queue.SimpleQueue[tuple[Any, ...]],
        journalctl: str = "journalctl",
        journal_stall_check: float = 0.0,
    ):
        self.state = state
        self.clock = clock
        self.engine = engine
        self.faults = faults
        self.incidents = incidents
        self.q = q  # the core thread's queue: ("file", path) and ("journal", entries)
        self.journalctl = journalctl
        self.journal_stall_check = journal_stall_check
        self.journal_floor = 0.0
        self.matchers: dict[str, Matcher] = {}
        self.journal_rules: dict[str, list[Rule]] = {}
        self.journal_matchers: dict[str, Matcher] = {}
        self.tails: dict[str, FileTail] = {}
        self.stats = Stats()
        self.watcher: FileWatcher | None = None
        self.journal: JournalSource | None = None
        self.pending: set[str] = set()
        self.pending_lock = threading.Lock()
        self.rewound: set[str] = set()  # sources to read again after a failed write

    # ------------------------------------------------------------------ rules and sources
    def apply(self, rules: RuleSet) -> None:
        """Follow what ``rules`` name: new tails started, dropped ones closed."""
        by_source = rules.sources()
        self.matchers = {
            key: Matcher(rs, resolvable=self.incidents.resolvable)
            for key, rs in by_source.items()
            if key.startswith("file:")
        }
        self.journal_rules = {
            key.split(":", 1)[1]: rs for key, rs in by_source.items() if key.startswith("journal:")
        }
        # The newest time a journal rule has counted or fired at: entries read from here on
        # (after the saved cursor) came after it.
        names = {r.name for rs in self.journal_rules.values() for r in rs}
        self.journal_floor = max(
            [0.0]
            + [w[-1] for (rule, _g), w in self.state.windows.items() if rule in names and w]
            + [f for (rule, _g), (f, _b) in self.state.groups.items() if rule in names and f]
        )
        self.journal_matchers = {
            unit: Matcher(rs, resolvable=self.incidents.resolvable)
            for unit, rs in self.journal_rules.items()
        }
        paths = {key.split(":", 1)[1] for key in self.matchers}
        for p in list(self.tails):
            if p not in paths:
                self.tails.pop(p).close()
        for p in paths:
            if p not in self.tails:
                tail = FileTail(p, self.state, self.stats, on_fault=self.source_fault)
                try:
                    with self.state.batch():
                        tail.start()
                except StateWriteError as exc:
                    self.faults.write_failed(f"file:{p}", exc)
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
                    emit=self.journal_event,
                    journalctl=self.journalctl,
                    on_fault=self.source_fault,
                    stall_check=self.journal_stall_check,
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

    def file_event(self, path: str) -> None:
        with self.pending_lock:
            if path in self.pending:
                return  # already queued: one read covers every event until then
            self.pending.add(path)
        self.q.put(("file", path))

    def journal_event(self, entries: list[Any]) -> None:
        self.q.put(("journal", entries))

    def source_fault(self, key: str, message: str | None) -> None:
        """Sources report trouble (and its end) here, from any thread."""
        if message is None:
            self.faults.clear("source", key)
        else:
            self.faults.raise_("source", key, message)

    def start(self) -> None:
        """Start watching the files and following the journal."""
        self.watcher = FileWatcher(self.file_event)
        self.watcher.set_paths(self.tails)
        self.watcher.start()
        if self.journal is not None:
            self.journal.start()

    def catch_up(self) -> None:
        """Read every file from its saved position (what was written while we were not looking)."""
        for path in self.tails:
            self.file_event(path)

    def housekeeping(self, stopping: bool) -> None:
        if self.journal is not None and not self.journal.alive() and not stopping:
            self.source_fault("journal", "the journal reader stopped; restarting it")
            self.journal.start()
        if self.watcher is not None:
            for path in self.watcher.rescan():
                self.file_event(path)

    def retry(self) -> None:
        """After a failed write: read the rewound sources again."""
        rewound, self.rewound = self.rewound, set()
        for key in rewound:
            if key.startswith("file:"):
                self.file_event(key[5:])
            elif key == "journal" and self.journal is not None:
                self.journal.restart()

    def save_sources(self) -> None:
        """A snapshot of the sources for ``remediator status`` (another process)."""
        from agent.remediator.status import SOURCES_META

        snap = {
            "files": {p: {"fault": t.fault} for p, t in self.tails.items()},
            "journal": self.journal.status() if self.journal is not None else None,
        }
        with contextlib.suppress(Exception):
            self.state.set_meta(SOURCES_META, json.dumps(snap))

    def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        if self.journal is not None:
            self.journal.stop()
        for tail in self.tails.values():
            tail.close()

    # ------------------------------------------------------------------ reading
    def on_file(self, path: str) -> None:
        """A queued file event: later events for the path queue a new read."""
        with self.pending_lock:
            self.pending.discard(path)
        self.read_file(path)

    def read_file(self, path: str) -> None:
        tail = self.tails.get(path)
        matcher = self.matchers.get(f"file:{path}")
        if tail is None or matcher is None:
            return
        if f"file:{path}" in self.rewound:
            self.rewound.discard(f"file:{path}")
        now = self.clock.now()
        self.incidents.begin_read()

        engine, decide = self.engine, self.incidents.decide
        rules, count, saturated = matcher.rules, engine.count, engine.saturated
        resolvable = self.incidents.resolvable

        def sink(buf: bytes | bytearray, end: int) -> None:
            # What each line is to the rules comes from the matcher (remembered for lines
            # alike); only counted matches reach the engine -- not those of a group it says
            # is saturated now (a flood in cooldown: the matcher does not even hand over a
            # line that is nothing else) -- and only fires and resolve lines the incidents.
            for line, found in matcher.classified(
                buf, end, self.stats, engine.classify_keyed, saturated, now
            ):
                names = None
                for i, outcome, group, key in found:
                    if outcome == "counted":
                        sat = saturated.get(key)
                        if sat is not None and sat[0] == now:
                            continue
                        d = count(rules[i], group, now, key)
                        if d.fired or d.breaker_opened:
                            decide(rules[i], d, line, now)
                    elif outcome == "resolve":
                        if names is None:  # asked once a line, after this line's fires
                            names = resolvable()
                        if rules[i].name in names:
                            decide(rules[i], Decision("resolve", group=group), line, now, key[1])

        try:
            with self.engine.batch():  # position, windows and firings commit together
                tail.poll(sink)
        except Exception as exc:
            # Rolled back and memory rebuilt: read these lines again from the saved position.
            tail.rewind()
            self.rewound.add(f"file:{path}")
            self.faults.write_failed(f"file:{path}", exc)
            return
        self._write_ok()
        self.incidents.process()

    def read_journal(self, entries: list[Any]) -> None:
        journal = self.journal
        if journal is None or "journal" in self.rewound:
            return  # a rewound journal is read again from the saved cursor
        entries = [e for e in entries if getattr(e, "gen", 0) == journal.generation]
        if not entries:
            return
        self.incidents.begin_read()
        try:
            with self.engine.batch():  # the whole batch and its last cursor commit together
                now, wall = self.clock.now(), time.time()
                for e in entries_to_look_at(entries, self.journal_matchers):
                    # The entry's own age on the service clock: a catch-up after a restart
                    # keeps its spacing, a wall clock stepped back changes nothing. Never
                    # before an entry already counted: the journal's order is the order of
                    # events, and a window counts only what is not after its newest time
                    # (two entries of one microsecond either side of a restart would lose a
                    # count to the readings' jitter).
                    t = max(self.clock.since_wall(e.t, now, wall), self.journal_floor)
                    self.journal_floor = t
                    for rule in self.journal_matchers[e.unit].rules_for(e.message):
                        d = self.engine.observe(rule, e.message, t)
                        if d.outcome != "nomatch":
                            self.incidents.decide(rule, d, e.message, t)
                cursor = next((e.cursor for e in reversed(entries) if e.cursor), "")
                if cursor:
                    self.state.save_cursor(journal.key, cursor)
        except Exception as exc:
            self.rewound.add("journal")
            journal.invalidate()  # entries already queued from this child are dropped
            self.faults.write_failed("journal", exc)
            return
        self._write_ok()
        self.incidents.process()

    def _write_ok(self) -> None:
        if self.faults.active:
            self.faults.clear("state_write", "write")
            if not self.state.firings(("new",)):
                self.faults.clear("store_write", "write")
