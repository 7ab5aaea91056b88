"""The durable notification outbox: nothing lost between a failure and a person.

Every message is a row of the ``outbox`` table of the remediator's state database (one per
channel: event, incident, thread, body, attempts, next attempt, delivered at), written before
anything is sent, so a message queued before a stop or a ``kill -9`` is sent after the restart
(at least once: a kill between the send and its record sends it again).

The senders (:mod:`agent.remediator.senders`) deliver them, one thread per channel. A failed
attempt is retried with exponential backoff (``retry_min`` doubling up to ``retry_max``) until
``give_up_after`` from the message's creation; giving up is logged and counted in
``remediator status``.

The outbox is bounded: at most ``max_pending`` undelivered messages per channel; beyond that,
and while it lasts, one summary row per channel counts the rest ("N more notifications").
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.config import Settings
from agent.remediator.notify import Channel, Notice, channels, overflow
from agent.remediator.state import StateDB

log = logging.getLogger("jada-remediator")

BATCH = 20  # messages handed to one delivery process
KEEP_DONE = 30 * 86400.0  # delivered and given-up rows are kept this long (status, audits)


@dataclass
class Row:
    id: int
    event: str
    incident_id: int | None
    thread: str
    channel: str
    title: str
    body: dict[str, Any]
    created: float
    attempts: int
    raw_body: str = ""  # the body as stored: a summary changed since it was read differs


_COLS = "id, event, incident_id, thread, channel, title, body, created, attempts"


def _row(r: tuple[Any, ...]) -> Row:
    return Row(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]), r[7], r[8], r[6])


class Outbox:
    """The table: enqueue, due rows, outcomes, status. Shared by the service's threads."""

    def __init__(
        self,
        state: StateDB,
        settings: Settings,
        clock: Callable[[], float] = time.time,
        on_enqueue: Callable[[str], None] | None = None,
    ):
        self.state = state
        self.cfg = settings.remediator.notify
        self.host = settings.host_name or os.uname().nodename
        self.channels = channels(settings)
        self.clock = clock
        self.on_enqueue = on_enqueue

    def _exec(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        with self.state.lock:
            return self.state.db.execute(sql, args)

    # ------------------------------------------------------------------ writing
    def enqueue(self, notice: Notice, dedup: str | None = None) -> int:
        """One row per channel (none twice for the same ``dedup``); returns rows added."""
        if not self.channels:
            log.warning(
                "%s%s: no notification channel is configured (remediator.notify.webhook_url,"
                " sns_topic_arn or urls); nobody is told",
                notice.event,
                f" (incident #{notice.incident_id})" if notice.incident_id else "",
            )
            return 0
        now = self.clock()
        added = 0
        body = json.dumps(notice.to_row())
        with self.state.batch():
            for ch in self.channels:
                if (
                    dedup is not None
                    and self._exec(
                        "SELECT 1 FROM outbox WHERE channel = ? AND dedup = ?", (ch.name, dedup)
                    ).fetchone()
                ):
                    continue
                summary = self._pending_summary(ch.name)
                if summary is not None or self.pending(ch.name) >= self.cfg.max_pending:
                    self._fold(ch.name, summary, notice, now)
                    continue
                self._exec(
                    "INSERT INTO outbox (event, incident_id, thread, channel, dedup, title, body,"
                    " created, next_attempt) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        notice.event,
                        notice.incident_id,
                        notice.thread,
                        ch.name,
                        dedup,
                        notice.title,
                        body,
                        now,
                        now,
                    ),
                )
                added += 1
        for ch in self.channels:
            if self.on_enqueue is not None:
                self.on_enqueue(ch.name)
        return added

    def _pending_summary(self, channel: str) -> Row | None:
        r = self._exec(
            f"SELECT {_COLS} FROM outbox WHERE channel = ? AND event = 'overflow'"  # noqa: S608
            " AND delivered IS NULL AND failed IS NULL",
            (channel,),
        ).fetchone()
        return _row(r) if r else None

    def _fold(self, channel: str, summary: Row | None, notice: Notice, now: float) -> None:
        """Count a message beyond the bound into the channel's one summary row."""
        if summary is None:
            count, first, last = 0, None, None
        else:
            f = summary.body["payload"]
            count, first, last = f["count"], f["first_incident"], f["last_incident"]
        count += 1
        if notice.incident_id is not None:
            first = notice.incident_id if first is None else min(first, notice.incident_id)
            last = notice.incident_id if last is None else max(last, notice.incident_id)
        msg = overflow(self.host, count, first, last)
        if summary is None:
            log.warning(
                "notifications to %s: more than %d pending; the rest are counted in one summary",
                channel,
                self.cfg.max_pending,
            )
            self._exec(
                "INSERT INTO outbox (event, incident_id, thread, channel, dedup, title, body,"
                " created, next_attempt) VALUES ('overflow', NULL, ?, ?, NULL, ?, ?, ?, ?)",
                (msg.thread, channel, msg.title, json.dumps(msg.to_row()), now, now),
            )
        else:
            self._exec(
                "UPDATE outbox SET body = ? WHERE id = ?", (json.dumps(msg.to_row()), summary.id)
            )

    # ------------------------------------------------------------------ reading
    def pending(self, channel: str | None = None) -> int:
        sql = "SELECT COUNT(*) FROM outbox WHERE delivered IS NULL AND failed IS NULL"
        args: tuple[Any, ...] = ()
        if channel is not None:
            sql += " AND channel = ? AND event != 'overflow'"
            args = (channel,)
        return int(self._exec(sql, args).fetchone()[0])

    def told(self, incident_id: int) -> bool:
        """Whether any message about this incident was queued (a person follows its thread)."""
        return (
            self._exec(
                "SELECT 1 FROM outbox WHERE incident_id = ? LIMIT 1", (incident_id,)
            ).fetchone()
            is not None
        )

    def due(self, channel: str, now: float, limit: int = BATCH) -> list[Row]:
        # A retry scheduled further ahead than the longest backoff means the clock stepped
        # back: due now, rather than hours late.
        rows = self._exec(
            f"SELECT {_COLS} FROM outbox WHERE channel = ? AND delivered IS NULL"  # noqa: S608
            " AND failed IS NULL AND (next_attempt <= ? OR next_attempt > ?)"
            " ORDER BY (event = 'overflow'), id LIMIT ?",
            (channel, now, now + self.cfg.retry_max, limit),
        ).fetchall()
        return [_row(r) for r in rows]

    def next_due(self, channel: str) -> float | None:
        r = self._exec(
            "SELECT MIN(next_attempt) FROM outbox WHERE channel = ? AND delivered IS NULL"
            " AND failed IS NULL",
            (channel,),
        ).fetchone()
        if not r or r[0] is None:
            return None
        return min(r[0], self.clock() + self.cfg.retry_max)

    # ------------------------------------------------------------------ outcomes
    def delivered(self, row: Row, now: float) -> None:
        """``row`` as read was sent. A summary that grew meanwhile (a flood still folding into
        it while it was on its way) stays due: the person gets the final count too."""
        cur = self._exec(
            "UPDATE outbox SET delivered = ?, attempts = attempts + 1, last_error = NULL"
            " WHERE id = ? AND (event != 'overflow' OR body = ?)",
            (now, row.id, row.raw_body),
        )
        if not cur.rowcount and row.event == "overflow":
            self._exec(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt = ? WHERE id = ?",
                (now, row.id),
            )
            log.info("notification #%d (%s) grew while sent: sending it again", row.id, row.event)

    def attempt_failed(self, row: Row, error: str, now: float) -> bool:
        """Schedule the retry, or give up past ``give_up_after``; True when given up."""
        attempts = row.attempts + 1
        delay = min(self.cfg.retry_max, self.cfg.retry_min * 2 ** (attempts - 1))
        if now + delay - row.created > self.cfg.give_up_after:
            self._exec(
                "UPDATE outbox SET failed = ?, attempts = ?, last_error = ? WHERE id = ?",
                (now, attempts, error, row.id),
            )
            log.error(
                "notification #%d (%s%s) to %s: given up after %d attempts over %s: %s",
                row.id,
                row.event,
                f", incident #{row.incident_id}" if row.incident_id else "",
                row.channel,
                attempts,
                _span(now - row.created),
                error,
            )
            return True
        self._exec(
            "UPDATE outbox SET attempts = ?, next_attempt = ?, last_error = ? WHERE id = ?",
            (attempts, now + delay, error, row.id),
        )
        log.warning(
            "notification #%d (%s) to %s failed (attempt %d), retrying in %s: %s",
            row.id,
            row.event,
            row.channel,
            attempts,
            _span(delay),
            error,
        )
        return False

    def orphans(self) -> int:
        """Give up the rows of channels no longer configured (their URL is gone)."""
        names = [c.name for c in self.channels]
        marks = ",".join("?" * len(names)) or "''"
        cur = self._exec(
            f"UPDATE outbox SET failed = ?, last_error = 'channel no longer configured'"  # noqa: S608
            f" WHERE delivered IS NULL AND failed IS NULL AND channel NOT IN ({marks})",
            (self.clock(), *names),
        )
        return int(cur.rowcount or 0)

    def purge(self, now: float) -> None:
        self._exec(
            "DELETE FROM outbox WHERE (delivered IS NOT NULL AND delivered < ?)"
            " OR (failed IS NOT NULL AND failed < ?)",
            (now - KEEP_DONE, now - KEEP_DONE),
        )


def _span(seconds: float) -> str:
    s = int(seconds)
    return f"{s}s" if s < 120 else f"{s // 60}m" if s < 7200 else f"{s / 3600:.1f}h"


def status(db: Any, configured: list[Channel] | None = None) -> dict[str, Any]:
    """The outbox section of ``remediator status`` (``db`` a sqlite3 connection)."""
    from datetime import UTC, datetime

    def iso(t: float | None) -> str | None:
        return None if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    per: dict[str, dict[str, Any]] = {}
    for c in configured or []:
        per[c.name] = {"pending": 0, "failed": 0, "delivered": 0, "last_delivered": None}
    try:
        rows = db.execute(
            "SELECT channel, SUM(delivered IS NULL AND failed IS NULL), SUM(failed IS NOT NULL),"
            " SUM(delivered IS NOT NULL), MAX(delivered) FROM outbox GROUP BY channel"
        ).fetchall()
        fails = db.execute(
            "SELECT id, event, incident_id, channel, attempts, failed, last_error FROM outbox"
            " WHERE failed IS NOT NULL ORDER BY failed DESC LIMIT 5"
        ).fetchall()
        oldest = db.execute(
            "SELECT MIN(created) FROM outbox WHERE delivered IS NULL AND failed IS NULL"
        ).fetchone()[0]
        errs = db.execute(
            "SELECT channel, last_error FROM outbox WHERE delivered IS NULL AND failed IS NULL"
            " AND last_error IS NOT NULL ORDER BY id DESC"
        ).fetchall()
    except Exception as exc:  # an older or absent outbox table: say so, do not fail
        return {"error": f"outbox unreadable: {type(exc).__name__}: {exc}"}
    for ch, pend, failed, done, last in rows:
        per[ch] = {
            "pending": int(pend or 0),
            "failed": int(failed or 0),
            "delivered": int(done or 0),
            "last_delivered": iso(last),
        }
    for ch, err in errs:
        per.get(ch, {}).setdefault("last_error", err)
    return {
        "channels": per,
        "pending": sum(c["pending"] for c in per.values()),
        "failed": sum(c["failed"] for c in per.values()),
        "oldest_pending": iso(oldest),
        "last_delivered": max(
            (c["last_delivered"] for c in per.values() if c["last_delivered"]), default=None
        ),
        "recent_give_ups": [
            {
                "id": i,
                "event": ev,
                "incident": inc,
                "channel": ch,
                "attempts": n,
                "at": iso(t),
                "error": err,
            }
            for i, ev, inc, ch, n, t, err in fails
        ],
    }
