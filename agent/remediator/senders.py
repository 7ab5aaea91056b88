"""The outbox's senders: one thread per channel, each batch through a delivery process.

A dead or slow channel never delays another. Each batch goes to a delivery process
(``agent/remediator/deliver.py``) that the thread kills when a message is not answered within
``notify.timeout`` -- a total deadline, so an endpoint trickling one byte a second is cut off --
or when the service stops (a stop waits a few seconds at most). The rows, their retries and
their bounds are the outbox's (:mod:`agent.remediator.outbox`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from agent.remediator.notify import Channel
from agent.remediator.outbox import Outbox, Row

log = logging.getLogger("jada-remediator")

STARTUP_DEADLINE = 30.0  # the delivery process must load its libraries within this
STOP_GRACE = 2.0  # how long a stop lets a delivery run before killing it


def deliver_batch(
    channel: Channel,
    rows: list[dict[str, Any]],
    timeout: float,
    on_result: Callable[[int, bool, str], None],
    stop: threading.Event | None = None,
    started: Callable[[subprocess.Popen[bytes]], None] | None = None,
) -> None:
    """Send ``rows`` through a delivery process; each must be answered within ``timeout``.

    ``on_result(id, ok, error)`` is called once per row answered; on the deadline (or ``stop``)
    the process group is killed and the row in flight gets ``(id, False, "deadline ...")``; rows
    not reached are left alone (no attempt counted).
    """
    job = {
        "channel": {"kind": channel.kind, "spec": channel.spec},
        "timeout": timeout,
        "messages": rows,
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("JADA_REMEDIATION")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.remediator.deliver"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # a library's traceback may quote the URL
        start_new_session=True,  # one killpg takes it and anything it started
        env=env,
    )
    if started is not None:
        started(proc)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(json.dumps(job).encode("utf-8"))
        proc.stdin.close()
    except OSError:
        pass
    fd = proc.stdout.fileno()
    buf = b""
    pending = [r["id"] for r in rows]
    ready = False
    deadline = time.monotonic() + STARTUP_DEADLINE
    stopping_at: float | None = None
    why = ""
    try:
        while pending:
            now = time.monotonic()
            if stop is not None and stop.is_set() and stopping_at is None:
                stopping_at = now + STOP_GRACE
            limit = min(deadline, stopping_at) if stopping_at else deadline
            if now >= limit:
                why = (
                    "the service is stopping"
                    if stopping_at and now >= stopping_at
                    else f"deadline: no answer within {timeout:g}s"
                    if ready
                    else "deadline: the delivery process did not start"
                )
                break
            r, _, _ = select.select([fd], [], [], min(0.2, limit - now))
            if not r:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                why = f"the delivery process ended (exit {proc.poll()})"
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                try:
                    out = json.loads(line)
                except ValueError:
                    continue
                if out.get("ready"):
                    ready = True
                elif out.get("id") in pending:
                    pending.remove(out["id"])
                    on_result(out["id"], bool(out.get("ok")), str(out.get("error") or ""))
                deadline = time.monotonic() + timeout
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        proc.stdout.close()
    # The message in flight failed this attempt; those behind it were not tried. A stop leaves
    # it pending: it may have gone out (at least once), it is sent again after the restart.
    if pending and "stopping" not in why:
        on_result(pending[0], False, why)


class Sender(threading.Thread):
    """Delivers one channel's rows, oldest first; waits on its wake event or its next retry."""

    def __init__(
        self,
        outbox: Outbox,
        channel: Channel,
        stop: threading.Event,
        on_delivered: Callable[[Row], None] | None = None,
    ):
        super().__init__(name=f"notify-{channel.name}", daemon=True)
        self.outbox = outbox
        self.channel = channel
        self.stop_event = stop
        self.wake = threading.Event()
        self.on_delivered = on_delivered
        self.proc: subprocess.Popen[bytes] | None = None

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                if self.step():
                    continue
                nxt = self.outbox.next_due(self.channel.name)
                wait = 60.0 if nxt is None else max(0.05, min(60.0, nxt - self.outbox.clock()))
            except Exception:
                log.exception("notifications to %s: sender error", self.channel.name)
                wait = 5.0
            self.wake.wait(wait)
            self.wake.clear()

    def step(self) -> bool:
        """Send what is due now; False when nothing was."""
        rows = self.outbox.due(self.channel.name, self.outbox.clock())
        if not rows:
            return False
        by_id = {r.id: r for r in rows}

        def result(rid: int, ok: bool, error: str) -> None:
            row = by_id[rid]
            now = self.outbox.clock()
            if ok:
                self.outbox.delivered(row, now)
                log.info(
                    "notification #%d (%s%s) delivered to %s",
                    row.id,
                    row.event,
                    f", incident #{row.incident_id}" if row.incident_id else "",
                    self.channel.name,
                )
                if self.on_delivered is not None:
                    self.on_delivered(row)
            else:
                self.outbox.attempt_failed(row, error, now)

        def started(p: subprocess.Popen[bytes]) -> None:
            self.proc = p

        deliver_batch(
            self.channel,
            [{"id": r.id, **r.body} for r in rows],
            self.outbox.cfg.timeout,
            result,
            stop=self.stop_event,
            started=started,
        )
        self.proc = None
        return not self.stop_event.is_set()


class Senders:
    """One :class:`Sender` per configured channel."""

    def __init__(self, outbox: Outbox, on_delivered: Callable[[Row], None] | None = None):
        self.outbox = outbox
        self.stop_event = threading.Event()
        self.threads = {
            c.name: Sender(outbox, c, self.stop_event, on_delivered) for c in outbox.channels
        }
        outbox.on_enqueue = self.wake

    def start(self) -> None:
        given_up = self.outbox.orphans()
        if given_up:
            log.warning("%d queued notifications were for channels no longer configured", given_up)
        for t in self.threads.values():
            t.start()
        if self.threads:
            log.info(
                "notification channels: %s; %d messages queued",
                ", ".join(self.threads),
                self.outbox.pending(),
            )

    def wake(self, channel: str) -> None:
        t = self.threads.get(channel)
        if t is not None:
            t.wake.set()

    def stop(self, timeout: float = STOP_GRACE + 2) -> None:
        """Stop every sender; a delivery in flight is killed after ``STOP_GRACE``."""
        self.stop_event.set()
        for t in self.threads.values():
            t.wake.set()
        end = time.monotonic() + timeout
        for t in self.threads.values():
            t.join(max(0.0, end - time.monotonic()))
            p = t.proc
            if t.is_alive() and p is not None and p.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(p.pid, signal.SIGKILL)
