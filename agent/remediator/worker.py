"""The action thread: remediation playbooks, one at a time, under the host's remediation lock.

The job queue is persisted: a firing with an action moves ``queued`` → ``running`` → ``ran`` →
``done`` in the state DB, and the in-memory queue holds only firing ids. The result of a run
goes with its firing into the state DB before the store hears of it, so a kill -9 anywhere
replays the record at the next start (:meth:`ActionWorker.recover_queue`), and a remediation
found still running at start is recorded as interrupted (:meth:`ActionWorker.recover_interrupted`).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.config import Settings
from agent.remediator import actions as actions_mod
from agent.remediator.escalation import Escalation
from agent.remediator.faults import Faults
from agent.remediator.lock import LockBusy, RemediationLock
from agent.remediator.rules import Rule, RuleSet
from agent.remediator.state import StateDB, StateWriteError
from agent.store import Store, open_store

log = logging.getLogger("jada-remediator")

JOB_RETRY = 10.0  # seconds before a job whose write failed is tried again
LOCK_OWNER = "jada-remediator"


@dataclass
class Job:
    incident_id: int
    rule: Rule
    group: dict[str, str]
    firing_id: int | None = None


class ActionWorker:
    def __init__(
        self,
        settings: Settings,
        state: StateDB,
        faults: Faults,
        escalation: Escalation,
        rules: Callable[[], RuleSet],
    ):
        self.settings = settings
        self.cfg = settings.remediator
        self.state = state
        self.faults = faults
        self.escalation = escalation
        self.rules = rules  # the service's current rules (a SIGHUP replaces them)
        self.jobs: queue.Queue[int | None] = queue.Queue()  # firing ids
        self.cancel = threading.Event()
        self.thread: threading.Thread | None = None
        self.lock = RemediationLock(self.cfg.lock_file)

    def start(self) -> None:
        self.thread = threading.Thread(target=self._work, name="actions", daemon=True)
        self.thread.start()

    def put(self, firing_id: int) -> None:
        self.jobs.put(firing_id)

    def stop(self) -> None:
        """Cancel a running playbook and end the thread (without waiting: see :meth:`join`)."""
        self.cancel.set()
        self.jobs.put(None)

    def join(self, timeout: float) -> None:
        if self.thread is not None:
            self.thread.join(timeout=timeout)

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
                    retry = threading.Timer(JOB_RETRY, self.jobs.put, args=(firing_id,))
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
        rule = self.rules().by_name().get(f.rule)
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
            self.escalation.escalate(
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
            self.escalation.resolved(inc, how + (f" ({acts})" if acts else ""))
        elif outcome == "failed" and not self.cancel.is_set():
            self.escalation.remediation_failed(job.incident_id, job.rule, job.group, rem)

    def recover_interrupted(self, store: Store) -> None:
        """Record remediations that were running when the service last died."""
        try:
            by_ident = {f.ident: f for f in self.state.firings(("running",)) if f.ident}
            runs = self.state.list_running()
        except StateWriteError as exc:
            self.faults.write_failed("recovery at start", exc)
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
                store.update_incident(
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
                self.faults.write_failed("recovery at start", exc)

    def recover_queue(self, store: Store) -> None:
        """Resume the persisted job queue and leave no incident "remediating" for ever.

        - ``ran``: the playbook finished, the store never heard: record its result now;
        - ``running`` without a running record: killed before the playbook started: run it;
        - ``queued``: queued when the service stopped: run it;
        - an incident still "remediating" that no job will finish (a kill -9 of an older
          version): back to "open", so the next fire remediates it.

        (``new`` firings, whose incident was never opened, are the core's: process_firings.)
        """
        rules = self.rules().by_name()
        running = {r["ident"] for r in self.state.list_running()}
        for f in self.state.firings(("ran", "running", "queued")):
            rule = rules.get(f.rule)
            if f.status == "ran":
                if rule is not None and f.incident_id is not None:
                    log.warning(
                        "incident #%s: recording the remediation that ended as the service stopped",
                        f.incident_id,
                    )
                    self.record(store, Job(f.incident_id, rule, f.group, f.id), f.result or {})
                self.state.set_firing(f.id, "done")
                continue
            if f.status == "running" and f.ident in running:
                continue  # recover_interrupted keeps it until it can record it
            if f.status == "running":
                self.state.set_firing(f.id, "queued")
            log.info("incident #%s: resuming the queued remediation", f.incident_id)
            self.jobs.put(f.id)
        waiting = {f.incident_id for f in self.state.firings(("queued", "running"))}
        for inc in store.list_incidents(("remediating",)):
            log.warning(
                "incident #%s was left remediating by a stop; %s",
                inc.id,
                "its remediation is queued again" if inc.id in waiting else "back to open",
            )
            store.update_incident(inc.id, status="open")


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
