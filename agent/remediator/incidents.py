"""Firings to incidents, on the core thread: open, find, resolve, queue or escalate.

The engine's decisions are committed as *firings* in the state DB together with the lines that
caused them; :meth:`Incidents.process` then opens (or finds) each firing's incident in the
store, queues its remediation on the action thread or escalates it, and a failed store write
leaves the firing ``new`` to be retried in order. Only the core thread opens incidents, which
lets a map of the open ones spare a store query per log line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from agent.remediator.clock import ServiceClock
from agent.remediator.engine import Decision
from agent.remediator.escalation import Escalation, now_dt
from agent.remediator.faults import Faults
from agent.remediator.rules import Rule, RuleSet
from agent.remediator.state import Firing, StateDB, StateWriteError, group_key
from agent.store import Incident, Store

log = logging.getLogger("jada-remediator")

UNRESOLVED = ("open", "remediating", "escalated")
_NO_GROUP = group_key({})


class Incidents:
    def __init__(
        self,
        store: Store,
        state: StateDB,
        clock: ServiceClock,
        faults: Faults,
        escalation: Escalation,
        rules: Callable[[], RuleSet],
        queue_job: Callable[[int], None],
    ):
        self.store = store
        self.state = state
        self.clock = clock
        self.faults = faults
        self.escalation = escalation
        self.rules = rules  # the service's current rules (a SIGHUP replaces them)
        self.queue_job = queue_job
        self.open_ids: dict[tuple[str, str], int] | None = None
        self.pending_rules: set[str] = set()  # rules with a firing not yet in the store
        # rule -> group of the resolve firing last added in this read's transaction
        self._resolve_queued: dict[str, str] = {}
        self._ungrouped: tuple[RuleSet, set[str]] | None = None

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

    def resolvable(self) -> set[str]:
        """Rules that may have something to resolve (the matchers skip the others' lines)."""
        # Unresolved incidents are those found at start plus those opened here since (only
        # this thread opens them): a rule with none of those has nothing to resolve.
        if self.open_ids is None:
            self._unresolved("", {})
        names = {r for r, _ in self.open_ids or ()} | self.pending_rules
        if self._resolve_queued:
            # A fire not in the store yet whose resolve is already queued, for the only group
            # its resolve pattern can name: another resolve line changes nothing (decide would
            # drop it), so the matchers need not hand it over -- a backlog's every "sync ok".
            done = self._ungrouped_resolves()
            names -= {
                r
                for r, key in self._resolve_queued.items()
                if key == _NO_GROUP and r in done and r in self.pending_rules
            }
        return names

    def _ungrouped_resolves(self) -> set[str]:
        """Rules whose resolve pattern names none of their group_by fields (it resolves {})."""
        rs = self.rules()
        if self._ungrouped is None or self._ungrouped[0] is not rs:
            names = {r.name for r in rs.rules if r.resolve is not None and not r.resolve_groups}
            self._ungrouped = (rs, names)
        return self._ungrouped[1]

    def _may_be_unresolved(self, rule: str) -> bool:
        return rule in self.resolvable()

    def _opened(self, inc: Incident) -> Incident:
        if self.open_ids is not None:
            self.open_ids[(inc.rule, group_key(inc.group))] = inc.id
        return inc

    def begin_read(self) -> None:
        """A read's transaction begins: the resolve firings it adds are counted afresh (a
        rolled-back transaction took the earlier ones with it)."""
        self._resolve_queued = {}

    def decide(self, rule: Rule, d: Decision, line: str, t: float, key: str | None = None) -> None:
        """Act on the engine's decision, inside the batch's state transaction (``key``: the
        group's key when the caller has it)."""
        if d.outcome == "resolve":
            if rule.name in self.pending_rules:
                # A fire of this rule is not in the store yet: resolve after it, in order --
                # once: a second resolve with no fire between finds nothing more to close (a
                # backlog's every "sync ok" would otherwise be a firing and a commit each).
                key = group_key(d.group) if key is None else key
                if self._resolve_queued.get(rule.name) != key:
                    self.state.add_firing(rule.name, key, t, "resolve", 0, line[:300])
                    self._resolve_queued[rule.name] = key
            elif self._may_be_unresolved(rule.name):  # a healthy log's "sync ok" costs no query
                self.resolve(rule.name, d.group, line)
            return
        if d.fired or d.breaker_opened:
            # In the batch's transaction, with the fire itself: the incident is opened from it
            # after the commit (process), so a failed write loses neither.
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
                    now=now_dt(),
                )
                log.info("incident #%s (%s) resolved by a log line", inc.id, rule_name)
                if inc.status == "remediating":
                    continue  # the playbook's own verification: record() says how
                how = (
                    "the failure stopped after a person's fix"
                    if inc.status == "escalated"
                    else "the failure stopped by itself"
                )
                self.escalation.resolved(done, f"{how}; the log said: {line.strip()[:200]}")
        if self.open_ids is not None and not any(
            inc.rule == rule_name for inc in self.store.list_incidents(UNRESOLVED)
        ):
            for key in [k for k in self.open_ids if k[0] == rule_name]:
                del self.open_ids[key]  # nothing of the rule left open: skip queries again

    def process(self) -> None:
        """Open (or find) the incident of every committed firing; queue or escalate it."""
        try:
            pending = self.state.firings(("new",))
        except StateWriteError as exc:
            self.faults.write_failed("firings", exc)
            return
        self.pending_rules = {f.rule for f in pending}
        if not pending:
            return
        rules = self.rules().by_name()
        for f in pending:
            try:
                if f.kind == "resolve":
                    self.resolve(f.rule, f.group, f.summary)
                    self.state.delete_firing(f.id)
                else:
                    self._handle_firing(f, rules.get(f.rule))
            except Exception as exc:
                self.faults.write_failed(f"incident of {f.rule}", exc)
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
                    rule.name, group, summary=f.summary, now=now_dt(self.clock.to_wall(f.t))
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
                self.queue_job(f.id)
                return
            # An alert-only rule: its description is what the person needs to read.
            reason = rule.description or f"{rule.name} fired {f.count} times"
            self.escalation.escalate(self.store, inc.id, rule, group, reason)
            self.state.set_firing(f.id, "done", incident_id=inc.id)
            return
        # The breaker opened instead of this fire.
        b = rule.breaker
        reason = (
            f"circuit breaker open: more than {b.max_runs if b else '?'} remediations within"
            f" {int(b.within // 3600) if b else '?'}h; not retrying until a person resets it"
        )
        log.error("incident #%s: %s", inc.id, reason)
        self.escalation.escalate(
            self.store,
            inc.id,
            rule,
            group,
            reason,
            next_step=f"fix the cause, then: jada-agent remediator reset {rule.name}",
            event="breaker_opened",
        )
        self.state.set_firing(f.id, "done", incident_id=inc.id)
