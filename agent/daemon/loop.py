"""The orchestrator loop: take the next ready task, run one session, record it, repeat.

One entry point, :func:`run_daemon` (``jada-agent daemon``, unit ``jada-agent.service``):

1. take the store's session lease (only its holder runs sessions; a standby re-tries every
   ``lease_ttl/3``), finish sessions left ``running`` by a dead daemon as ``interrupted``;
2. tell systemd ``READY=1``; purge records older than ``store.retention_days`` (and daily);
3. loop: budget spent → wait for the UTC rollover; no ready task → wait; else run a session.
   Waiting blocks on the wake socket (``tasks add`` nudges it) with a timeout: no spinning;
4. SIGTERM/SIGINT: a running session is cut short and recorded as ``interrupted``, the task is
   put back to ``ready``, the lease is released.

A heartbeat thread renews the lease and sends watchdog pings while the main thread keeps its
promised check-in time (an idle wait's timeout, or a session's deadline), so a hung loop stops
the pings and systemd restarts the daemon.

Log lines (stdout → journal) are meant for people and the health audit::

    session 12 task 3 started
    session 12 task 3 ended outcome=max_turns turns=30 exit=1 (turn cap reached: expected, task stays open)
    budget spent: 5/5 sessions today, next at 2026-05-14T00:00:00Z

Over 450 lines on purpose: the steps above (lease, purge, budget, auth pause, session, finish)
share the daemon's state and read in order here; a session itself runs in ``session.py`` and
``runners.py``, the tools it may call in ``tools.py``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from agent import sdnotify
from agent.config import ConfigError, Settings
from agent.daemon.runners import (
    AnthropicRunner,
    CommandRunner,
    SessionContext,
    SessionInterrupted,
    SessionResult,
    runner_for,
)
from agent.daemon.tools import Workspace
from agent.daemon.wake import Waker
from agent.dashboard import LEASE, Budget, raise_needs_you
from agent.dashboard.budget import iso_short
from agent.dashboard.wake import socket_path
from agent.logline import one_line
from agent.store import Store, Task, open_store, utcnow

log = logging.getLogger("jada-agent.daemon")

KEY_NAME = "anthropic-api-key"
KEY_QUESTION = "Replace the Anthropic API key"


class ApiKeyMissing(Exception):
    pass


def api_key_path(settings: Settings) -> Path:
    """``$CREDENTIALS_DIRECTORY/anthropic-api-key`` under systemd (LoadCredential=), else the file."""
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if creds and (Path(creds) / KEY_NAME).is_file():
        return Path(creds) / KEY_NAME
    return Path(settings.daemon.api_key_file)


def read_api_key(settings: Settings) -> str:
    path = api_key_path(settings)
    try:
        st = path.stat()
        key = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ApiKeyMissing(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ApiKeyMissing(f"{path} cannot be read ({type(exc).__name__})") from None
    if not key:
        raise ApiKeyMissing(f"{path} is empty")
    if st.st_mode & 0o077:
        log.warning("%s is mode %o: it should be 0600", path, st.st_mode & 0o777)
    return key


def _key_signature(settings: Settings) -> tuple[str, int, int, int] | None:
    path = api_key_path(settings)
    try:
        st = path.stat()
    except OSError:
        return None
    return (str(path), st.st_ino, st.st_mtime_ns, st.st_size)


def check_settings(settings: Settings) -> None:
    """What the daemon needs beyond the schema; raises ConfigError naming the key."""
    # The rest is checked when the settings are read (DaemonSettings.check); this one depends
    # on the top-level state_dir too.
    path = socket_path(settings)
    if len(os.fsencode(path)) > 107:
        raise ConfigError(
            settings.source, "daemon.wake_socket", "a socket path of at most 107 bytes", str(path)
        )


class Daemon:
    """The loop and its state; :meth:`run` until :meth:`request_stop`."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store | None = None,
        now: Callable[[], datetime] = utcnow,
        runner: AnthropicRunner | CommandRunner | None = None,
        out: Any = None,
        isolate: bool = False,
    ):
        check_settings(settings)
        self.settings = settings
        self.d = settings.daemon
        self.store = store or open_store(settings)
        self.now = now
        self.runner = runner or runner_for(settings)
        # True in the service: each session runs in a child process (see agent.daemon.session).
        self.isolate = isolate
        self.out = out or sys.stdout
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.budget = Budget(self.store, self.d.sessions_per_day, now)
        self.waker = Waker(socket_path(settings))
        self.stop = threading.Event()
        self.leader = False
        self.lost_lease = threading.Event()
        self._interruptible = False
        self._check_in = time.monotonic() + 60  # when the main thread promises to be back
        self._last_said: str | None = None
        self._purged_day: date | None = None
        self._auth_block: tuple[Any, int | None] | None = None
        self._backoff_until: datetime | None = None
        self._heartbeat: threading.Thread | None = None
        self.watchdog = self.d.watchdog_interval or sdnotify.watchdog_sec() or 0.0

    # ------------------------------------------------------------------ output
    def say(self, line: str) -> None:
        # One event, one line: details quote API errors and task titles (outside input).
        print(one_line(line), file=self.out, flush=True)

    def say_once(self, line: str) -> None:
        """A waiting state is logged when it starts, not on every wake-up."""
        if line != self._last_said:
            self.say(line)
            self._last_said = line

    # ------------------------------------------------------------------ signals
    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        # The kernel may deliver SIGTERM to the heartbeat thread; the Python handler then runs
        # only when the main thread wakes from its (hour-long) idle wait. The C-level handler
        # writes to the waker's pipe, which ends that wait at once, whichever thread got it.
        signal.set_wakeup_fd(self.waker.signal_fd(), warn_on_full_buffer=False)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.request_stop()
        if self._interruptible:
            self._interruptible = False
            raise SessionInterrupted(signal.Signals(signum).name)

    def request_stop(self) -> None:
        self.stop.set()
        self.waker.wake()

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        if self.stop.is_set():
            raise SessionInterrupted("stopping")
        self._interruptible = True
        try:
            yield
        finally:
            self._interruptible = False

    # ------------------------------------------------------------------ lease and heartbeat
    def _dead_holder(self) -> str | None:
        lease = self.store.get_lease(LEASE)
        if lease is None:
            return None
        host, _, rest = lease.owner.partition(":")
        pid_text = rest.partition(":")[0]
        if host != socket.gethostname() or not pid_text.isdigit() or int(pid_text) == os.getpid():
            return None
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            return lease.owner  # same host, process gone: no need to wait for expiry
        except PermissionError:
            return None
        return None

    def try_lead(self) -> bool:
        got = self.store.acquire_lease(
            LEASE, self.owner, self.d.lease_ttl, now=self.now(), replace=self._dead_holder()
        )
        if got is None:
            return False
        self.leader = True
        self.lost_lease.clear()
        self.say(f"session lease taken ({self.owner}): this daemon runs sessions")
        if self.waker.sock is None and self.waker.bind():
            # The previous holder on this host is gone: its nudges now come here.
            self.say(f"wake socket {self.waker.path} taken over")
        self.recover_interrupted()
        return True

    def _heartbeat_loop(self) -> None:
        renew = self.d.lease_ttl / 3
        period = min(renew, self.watchdog / 2) if self.watchdog else renew
        store: Store | None = None
        next_renew = time.monotonic() + renew
        while not self.stop.wait(period):
            if self.watchdog and time.monotonic() < self._check_in + period:
                sdnotify.notify("WATCHDOG=1")
            if self.leader and time.monotonic() >= next_renew:
                next_renew = time.monotonic() + renew
                try:
                    # SQLite connections are per thread: this thread has its own.
                    store = store or open_store(self.settings)
                    if store.acquire_lease(LEASE, self.owner, self.d.lease_ttl) is None:
                        # We stalled past the TTL and another daemon took over (and will record
                        # our session as interrupted). Stop like on SIGTERM; exit 1 so that
                        # systemd restarts us as a standby.
                        self.say("session lease lost to another daemon: stopping")
                        self.lost_lease.set()
                        self.leader = False
                        os.kill(os.getpid(), signal.SIGTERM)
                except Exception as exc:  # the store is down: keep trying, the lease may expire
                    log.warning("cannot renew the session lease: %s", exc)
        if store is not None:
            store.close()

    # ------------------------------------------------------------------ recovery
    def recover_interrupted(self) -> None:
        """Sessions left running by a daemon that is gone: interrupted, counted, task reopened."""
        for s in self.store.list_sessions(outcomes=["running"]):
            if s.owner == self.owner:
                continue
            self.store.finish_session(
                s.id,
                "interrupted",
                turns=s.turns,
                input_tokens=s.input_tokens,
                output_tokens=s.output_tokens,
                exit_code=143,
                now=self.now(),
            )
            if s.task_id is not None:
                task = self.store.get_task(s.task_id)
                if task is not None and task.status == "running":
                    self.store.set_task_status(
                        task.id,
                        "ready",
                        note=f"session {s.id} was interrupted (its daemon stopped mid-session)"
                        f" after {s.turns} turns",
                        now=self.now(),
                    )
            self.say(
                f"session {s.id} task {s.task_id} ended outcome=interrupted turns={s.turns}"
                " exit=143 (found running at start-up: its daemon stopped mid-session; counts"
                " against the day)"
            )

    # ------------------------------------------------------------------ waiting
    def wait(self, seconds: float) -> bool:
        seconds = max(0.0, seconds)
        self._check_in = time.monotonic() + seconds
        nudged = self.waker.wait(seconds)
        self._check_in = time.monotonic() + 60
        return nudged

    def _seconds_until(self, at: datetime) -> float:
        return max(0.0, (at - self.now()).total_seconds())

    # ------------------------------------------------------------------ one step
    def purge_if_due(self) -> None:
        today = self.now().date()
        if self._purged_day == today:
            return
        self._purged_day = today
        cut = self.now() - timedelta(days=self.settings.store.retention_days)
        removed = self.store.purge(cut)
        if removed:
            self.say(
                f"purged {removed} records older than {self.settings.store.retention_days} days"
            )

    def auth_paused(self) -> bool:
        if self._auth_block is None:
            return False
        signature, question_id = self._auth_block
        answered = False
        if question_id is not None:
            q = self.store.get_task(question_id)
            answered = q is None or q.status == "done"
        if answered or _key_signature(self.settings) != signature:
            self._auth_block = None
            self.say(
                "sessions resumed: the Anthropic API key was replaced or the question answered"
            )
            return False
        return True

    def step(self) -> float | None:
        """Do what is due now; return how long to wait (None: go again at once)."""
        if not self.leader and not self.try_lead():
            holder = self.store.get_lease(LEASE)
            who = holder.owner if holder else "another daemon"
            self.say_once(f"standing by: {who} holds the session lease")
            return self.d.lease_ttl / 3
        self.purge_if_due()
        if self.auth_paused():
            qid = self._auth_block[1] if self._auth_block else None  # set whenever paused
            self.say_once(
                f"sessions paused: the Anthropic API key needs a person (task {qid});"
                " no budget is spent until it is replaced"
            )
            return self.d.poll_interval
        if self._backoff_until is not None:
            if self.now() < self._backoff_until:
                self.say_once(
                    "Anthropic API unavailable: next session not before"
                    f" {iso_short(self._backoff_until)}"
                )
                return self._seconds_until(self._backoff_until)
            self._backoff_until = None
        state = self.budget.state()
        if state.spent:
            self.say_once(f"budget spent: {state.describe()}")
            sdnotify.notify(f"STATUS=budget spent: {state.describe()}")
            # Nothing can change that before the rollover (a nudge still wakes us to re-check).
            return self._seconds_until(state.rollover) + 0.001
        task = self.store.next_ready_task()
        if task is None:
            self.say_once(f"no ready task: waiting ({state.left} sessions left today)")
            sdnotify.notify(f"STATUS=idle, {state.left}/{state.per_day} sessions left today")
            return min(self.d.poll_interval, self._seconds_until(state.rollover) + 0.001)
        self._last_said = None
        self.run_session(task)
        return None

    def run(self) -> int:
        self.install_signal_handlers()
        if not self.waker.bind():
            self.say(f"wake socket {self.waker.path} is in use by another daemon: nudges go there")
        self.say(
            f"jada-agent daemon starting: runner={self.d.runner} model={self.d.model}"
            f" sessions_per_day={self.d.sessions_per_day} max_turns={self.d.max_turns}"
            f" store={self.settings.store.backend}"
        )
        self._heartbeat = threading.Thread(
            target=self._heartbeat_loop, name="heartbeat", daemon=True
        )
        self._heartbeat.start()
        # Ready now, not after the first step: that step may run a two-hour session, and
        # systemd would kill a unit that is not ready within TimeoutStartSec.
        sdnotify.notify("READY=1", "STATUS=running")
        try:
            while not self.stop.is_set():
                try:
                    pause = self.step()
                except Exception as exc:
                    # The store or the network failed (a fleet table throttled, a disk full):
                    # say so and try again later rather than crash-looping.
                    log.exception("loop step failed")
                    self.say(f"store or loop error ({type(exc).__name__}: {exc}); retrying in 30s")
                    pause = 30.0
                if pause is not None and not self.stop.is_set():
                    self.wait(pause)
        finally:
            sdnotify.notify("STOPPING=1")
            self.shutdown()
        return 1 if self.lost_lease.is_set() else 0

    def shutdown(self) -> None:
        self.stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=5)
        if self.leader and not self.lost_lease.is_set():
            with contextlib.suppress(Exception):
                self.store.release_lease(LEASE, self.owner)
        self.leader = False
        self.waker.close()
        self.say("jada-agent daemon stopped")

    # ------------------------------------------------------------------ sessions
    def workspace_for(self, task: Task) -> Workspace:
        root = task.workspace or os.path.join(self.d.workspace_root, f"task-{task.id}")
        return Workspace(root)

    def _needs_you(self, title: str, body: str, priority: int = 100) -> int:
        task, new = raise_needs_you(self.store, title, body, priority=priority)
        if new:
            self.say(f"needs-you task {task.id} created: {title}")
        return task.id

    def _key_problem(self, why: str, session_id: int | None, task: Task) -> None:
        key_file = self.d.api_key_file
        host = self.settings.host_name or socket.gethostname()
        qid = self._needs_you(
            KEY_QUESTION,
            f"The Anthropic API key in {key_file} {why}"
            + (f" (session {session_id}, task {task.id})" if session_id else f" (task {task.id})")
            + ".\nReplace it (ansible-playbook site.yml -l "
            f"{host} with jada_agent_anthropic_api_key set in your vault), or write the new key"
            f" to {key_file} (mode 0600, owner {self.settings.service_user}).\n"
            f"Then run: jada-agent tasks done <this task's id>\n"
            "Sessions are paused until then; no budget is spent meanwhile.",
        )
        self._auth_block = (_key_signature(self.settings), qid)

    def run_session(self, task: Task) -> SessionResult | None:
        try:
            api_key = read_api_key(self.settings)
        except ApiKeyMissing as exc:
            if self.d.runner == "anthropic":
                self._key_problem(f"is missing: {exc}", None, task)
                return None
            api_key = ""
        started = self.now()
        session = self.store.start_session(task.id, now=started, owner=self.owner)
        self.store.set_task_status(task.id, "running", now=started)
        self.say(f"session {session.id} task {task.id} started")
        sdnotify.notify(f"STATUS=session {session.id} on task {task.id}")
        try:
            workspace = self.workspace_for(task)
        except OSError as exc:
            result = SessionResult("error", detail=f"workspace unusable: {exc}")
        else:
            ctx = SessionContext(
                settings=self.settings,
                store=self.store,
                task=self.store.get_task(task.id) or task,
                session=session,
                workspace=workspace,
                api_key=api_key,
                stop=self.stop,
                progress=lambda t, i, o: self.store.update_session(session.id, t, i, o),
                interruptible=self.interruptible,
            )
            self._check_in = time.monotonic() + self.d.session_timeout + 60
            try:
                result = self._run_child(ctx) if self.isolate else self.runner.run(ctx)
            except SessionInterrupted:
                result = SessionResult("interrupted", detail="daemon stopping: task stays open")
            except Exception as exc:  # a bug must not kill the daemon or lose the record
                log.exception("session %s crashed", session.id)
                result = SessionResult("error", detail=f"runner crashed: {type(exc).__name__}")
            finally:
                self._check_in = time.monotonic() + 60
        self.finish(task, session.id, result)
        return result

    def _run_child(self, ctx: SessionContext) -> SessionResult:
        from agent.daemon import session as child

        proc = child.spawn()
        try:
            assert proc.stdin is not None and proc.stdout is not None
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.write(
                    child.request(
                        self.settings, ctx.task, ctx.session, ctx.api_key, str(ctx.workspace.real)
                    )
                )
                proc.stdin.close()
            try:
                with self.interruptible():
                    proc.wait(timeout=self.d.session_timeout + 120)
            except SessionInterrupted:
                # Stopping: the child records what it spent and answers "interrupted".
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                return SessionResult("timeout", detail="session process overran session_timeout")
            got = child.parse_result(proc.stdout.read())
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for f in (proc.stdin, proc.stdout):
                if f is not None:
                    f.close()
        if got is None and self.stop.is_set():
            return SessionResult("interrupted", detail="daemon stopping: task stays open")
        if got is None:
            return SessionResult(
                "error", detail=f"session process exited {proc.returncode} without a result"
            )
        return got

    def _keeps_failing(self, task_id: int) -> bool:
        """The task's last ``max_task_errors`` sessions (this one included) all ended in error."""
        mine = [s for s in self.store.list_sessions() if s.task_id == task_id]
        last = mine[-self.d.max_task_errors :]
        return len(last) == self.d.max_task_errors and all(
            s.outcome == "error" and s.exit_code != 75 for s in last
        )

    def finish(self, task: Task, session_id: int, r: SessionResult) -> None:
        # From here on a SIGTERM must not cut the bookkeeping short.
        self._interruptible = False
        at = self.now()
        self.store.finish_session(
            session_id, r.outcome, r.turns, r.input_tokens, r.output_tokens, r.exit_code, now=at
        )
        if r.outcome == "completed":
            self.store.set_task_status(
                task.id,
                "done",
                note=f"completed by session {session_id}: {r.summary or r.detail}",
                now=at,
            )
        elif r.outcome == "needs_you":
            qid = r.question_id
            if qid is None and r.question is not None:
                qid = self.store.add_task(
                    r.question["title"],
                    body=r.question["body"],
                    priority=task.priority,
                    kind="needs_you",
                    status="needs_you",
                ).id
                self.store.add_dependency(task.id, qid)
            self.store.set_task_status(
                task.id, "blocked", note=f"session {session_id} asked a person: task {qid}", now=at
            )
        else:
            why = {
                "max_turns": f"session {session_id} reached the {self.d.max_turns}-turn cap;"
                " the next session continues from the progress notes",
                "interrupted": f"session {session_id} was interrupted after {r.turns} turns",
            }.get(r.outcome, f"session {session_id} ended {r.outcome}: {r.detail}")
            status = "ready"
            if r.outcome == "max_turns":
                # Round robin: a task that used a whole session yields to the other ready
                # tasks of its priority, so one endless task cannot take every session.
                self.store.yield_task(task.id)
                why += "; it yields to the other ready tasks of its priority (round robin)"
            if r.outcome == "error" and not r.transient and self._keeps_failing(task.id):
                status = "failed"
                why += (
                    f"; {self.d.max_task_errors} sessions in a row ended in error: marked failed"
                    " (see the notes; `jada-agent tasks reopen` to try again)"
                )
            self.store.set_task_status(task.id, status, note=why, now=at)
            if r.outcome == "auth_error":
                self._key_problem("was refused (HTTP 401)", session_id, task)
            if r.transient:
                self._backoff_until = at + timedelta(seconds=self.d.error_backoff)
        if r.outcome not in ("auth_error", "interrupted") and r.turns > 0:
            # The API took the key: a question asking a person to replace it is answered.
            for q in self.store.list_tasks(["needs_you"]):
                if q.title == KEY_QUESTION:
                    self.store.set_task_status(
                        q.id, "done", note=f"the key works again (session {session_id})", now=at
                    )
                    self.say(f"needs-you task {q.id} closed: the Anthropic API key works again")
        tokens = f" tokens={r.input_tokens}/{r.output_tokens}" if r.input_tokens else ""
        self.say(
            f"session {session_id} task {task.id} ended outcome={r.outcome} turns={r.turns}"
            f" exit={r.exit_code}{tokens} ({r.detail})"
        )


def run_daemon(settings: Settings) -> int:
    """``jada-agent daemon``: run the orchestrator until SIGTERM; 0 on a clean stop."""
    daemon = Daemon(settings, isolate=True)
    try:
        return daemon.run()
    finally:
        daemon.store.close()
