"""What the remediator tells a person: escalations, breakers, healed incidents, failed
remediations and its own faults.

Every notice goes into the outbox (the state DB), once per incident and event; the sender
threads deliver it, so a slow channel never holds up reading the logs, and a restart or a
kill -9 loses nothing. The messages themselves are written by :mod:`agent.remediator.notify`.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from agent.config import Settings
from agent.remediator import notify as n
from agent.remediator.alerts import set_notice
from agent.remediator.outbox import Outbox
from agent.remediator.rules import Rule
from agent.remediator.state import StateDB
from agent.store import Incident, Store

log = logging.getLogger("jada-remediator")


def now_dt(t: float | None = None) -> datetime:
    """Wall time ``t`` (default: now) as the store records it."""
    return datetime.fromtimestamp(time.time() if t is None else t, UTC)


class Escalation:
    def __init__(self, settings: Settings, state: StateDB, outbox: Outbox):
        self.settings = settings
        self.state = state
        self.outbox = outbox
        self.host = n.host_of(settings)

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
        """The incident needs a person: mark it escalated and queue the notice once."""
        inc = store.update_incident(incident_id, status="escalated", cause=cause or None)
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

    def fault(self, state: str, f: Any) -> None:
        """A fault of the remediator itself (subscribed to :class:`Faults`, any thread)."""
        # It reaches a person like an incident does. The outbox lives in the state database:
        # when that is what fails, the log and `remediator status` remain (and the heartbeat
        # reports "degraded").
        try:
            self.outbox.enqueue(
                n.remediator_fault(self.host, state, f.kind, f.key, f.message, f.count),
                dedup=f"fault:{state}:{f.kind}:{f.key}:{f.first}",
            )
        except Exception as exc:
            log.warning("fault %s %s: not queued for a person: %s", f.kind, f.key, exc)

    def resolved(self, inc: Incident, how: str) -> None:
        if not self.settings.remediator.notify.announce_healed and not self.outbox.told(inc.id):
            return  # nobody was told it opened: not told it closed either
        self.outbox.enqueue(
            n.resolved(
                self.host, inc.id, inc.rule, inc.group, how, inc.opened, inc.resolved or now_dt()
            ),
            dedup=f"resolved:{inc.id}",
        )

    def remediation_failed(
        self, incident_id: int, rule: Rule, group: dict[str, str], rem: dict[str, Any]
    ) -> None:
        """A playbook failed: said at once, not when the breaker opens hours later."""
        artifact_dir = rem.get("artifact_dir") or ""
        self.outbox.enqueue(
            n.remediation_failed(
                self.host,
                incident_id,
                rule.name,
                group,
                str(rem.get("playbook") or ""),
                str(rem.get("status") or ""),
                str(rem.get("error") or rem.get("cause") or ""),
                n.failing_task(artifact_dir) if artifact_dir else "",
            ),
            dedup=f"failed:{rem.get('ident')}",
        )

    def reconcile(self, store: Store, rules: list[Rule]) -> None:
        """An escalation recorded but not queued (killed in between) is queued now."""
        for inc in store.list_incidents(["escalated"]):
            if inc.notified is not None or self.outbox.told(inc.id):
                continue
            rule = next((r for r in rules if r.name == inc.rule), None)
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
