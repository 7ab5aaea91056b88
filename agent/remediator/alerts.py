"""The notices nobody triggers by a log line: reminders, needs-you tasks, the credential forecast.

The service's ``alerts`` thread calls :meth:`Alerts.tick` every ``notify.check_every``:

- a reminder every ``remind_every`` while an incident stays escalated or a needs-you task we
  announced stays open;
- a needs-you task that appears in the store (a daemon session asked, or a person added one)
  is announced once. The remediator looks in the store rather than being told by the daemon:
  that still works when the daemon itself is what is broken. Tasks that the remediator's own
  playbooks created (recorded as ``needs-you task N`` in a remediation's actions) are covered by
  their incident's message and are not announced twice; while a remediation runs, new tasks
  wait for the next tick (the playbook may be creating one);
- once a day, ``jada-agent credentials forecast``: a token forecast to stop working within
  ``warn_days`` is announced once per forecast expiry, before its first failure.

When each notice last went out is kept in the state database (``notice`` table), so a restart
neither repeats nor forgets. The clock is a parameter: tests drive it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from agent.config import Settings
from agent.remediator import notify as n
from agent.remediator.outbox import Outbox
from agent.remediator.state import StateDB
from agent.store import Store

log = logging.getLogger("jada-remediator")

DAY = 86400.0
_OWN_TASK = re.compile(r"needs-you task (\d+)")


def get_notice(state: StateDB, key: str) -> float | None:
    with state.lock:
        row = state.db.execute("SELECT t FROM notice WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None


def set_notice(state: StateDB, key: str, t: float) -> None:
    with state.lock:
        state.db.execute(
            "INSERT INTO notice VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET t = excluded.t",
            (key, t),
        )


def forget_notices(state: StateDB, prefix: str, keep: set[str]) -> None:
    """Drop the ``prefix*`` notice rows of what is no longer open (a closed incident or task is
    never recalled again): the table holds what is open, not every incident ever."""
    with state.lock:
        rows = state.db.execute(
            "SELECT key FROM notice WHERE substr(key, 1, ?) = ?", (len(prefix), prefix)
        ).fetchall()
        gone = [(k,) for (k,) in rows if k not in keep]
        if gone:
            state.db.executemany("DELETE FROM notice WHERE key = ?", gone)


def run_forecast(settings: Settings) -> dict[str, Any]:
    """``jada-agent credentials forecast --json`` in a child (the Google libraries stay out of
    the service's memory)."""
    argv = [sys.executable, "-m", "agent"]
    if settings.source and not settings.source.startswith("<") and "(absent" not in settings.source:
        argv += ["-c", settings.source]
    proc = subprocess.run(
        [*argv, "credentials", "forecast", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    try:
        return dict(json.loads(proc.stdout))
    except ValueError:
        raise RuntimeError(f"credentials forecast: exit {proc.returncode}, no JSON") from None


class Alerts:
    def __init__(
        self,
        settings: Settings,
        state: StateDB,
        outbox: Outbox,
        clock: Callable[[], float] = time.time,
        forecast: Callable[[], dict[str, Any]] | None = None,
    ):
        self.settings = settings
        self.cfg = settings.remediator.notify
        self.state = state
        self.outbox = outbox
        self.clock = clock
        self.host = n.host_of(settings)
        self.forecast_fn = forecast or (lambda: run_forecast(settings))

    def tick(self, store: Store) -> None:
        now = self.clock()
        for part in (self.incident_reminders, self.tasks):
            try:
                part(store, now)
            except Exception:
                log.exception("notices: %s failed", part.__name__)
        try:
            self.forecast(now)
        except Exception as exc:
            log.error("notices: credential forecast failed: %s", exc)

    # ------------------------------------------------------------------ reminders
    def incident_reminders(self, store: Store, now: float) -> None:
        escalated = store.list_incidents(["escalated"])
        forget_notices(
            self.state, "remind:incident:", {f"remind:incident:{i.id}" for i in escalated}
        )
        for inc in escalated:
            key = f"remind:incident:{inc.id}"
            last = get_notice(self.state, key)
            if last is None:
                set_notice(self.state, key, now)  # the clock starts when it is first seen
                continue
            if now - last < self.cfg.remind_every:
                continue
            next_step = ""
            for rem in reversed(inc.remediations):
                if rem.get("next_step"):
                    next_step = str(rem["next_step"])
                    break
            self.outbox.enqueue(
                n.incident_reminder(
                    self.host,
                    inc.id,
                    inc.rule,
                    inc.group,
                    inc.opened,
                    datetime.fromtimestamp(now, UTC),
                    next_step,
                )
            )
            set_notice(self.state, key, now)

    # ------------------------------------------------------------------ needs-you tasks
    def tasks(self, store: Store, now: float) -> None:
        open_tasks = store.list_tasks(["needs_you"])
        forget_notices(self.state, "task:", {f"task:{t.id}" for t in open_tasks})
        fresh = [t for t in open_tasks if get_notice(self.state, f"task:{t.id}") is None]
        if fresh:
            if self.state.list_running():
                return  # a playbook may be creating one right now: decide on the next tick
            own = self._own_tasks(store)
            for t in fresh:
                if t.id in own:
                    set_notice(self.state, f"task:{t.id}", -1.0)  # its incident said it
                    continue
                self.outbox.enqueue(
                    n.needs_you_task(self.host, t.id, t.title, t.body), dedup=f"task:{t.id}"
                )
                log.info("needs-you task #%s announced: %s", t.id, t.title)
                set_notice(self.state, f"task:{t.id}", now)
        for t in open_tasks:
            last = get_notice(self.state, f"task:{t.id}")
            if last is None or last < 0 or now - last < self.cfg.remind_every:
                continue
            self.outbox.enqueue(
                n.task_reminder(
                    self.host, t.id, t.title, t.created, datetime.fromtimestamp(now, UTC)
                )
            )
            set_notice(self.state, f"task:{t.id}", now)

    @staticmethod
    def _own_tasks(store: Store) -> set[int]:
        own: set[int] = set()
        for inc in store.list_incidents():
            for rem in inc.remediations:
                for action in rem.get("actions") or []:
                    own.update(int(m) for m in _OWN_TASK.findall(str(action)))
        return own

    # ------------------------------------------------------------------ forecast
    def forecast(self, now: float) -> None:
        if self.settings.google.credential_type != "authorized_user":
            return
        if not os.path.exists(self.settings.google.token_file):
            return  # no token yet: nothing to forecast (diagnose says what is missing)
        last = get_notice(self.state, "forecast")
        if last is not None and now - last < DAY:
            return
        set_notice(self.state, "forecast", now)
        fc = self.forecast_fn()
        days = fc.get("days_left")
        if days is None or not 0 < float(days) <= self.cfg.warn_days:
            log.info("credential forecast: %s", fc.get("reason") or "nothing to report")
            return
        log.warning("credential forecast: %s days left: %s", days, fc.get("reason"))
        self.outbox.enqueue(
            n.credential_forecast(self.host, fc), dedup=f"forecast:{fc.get('expires_at')}"
        )
