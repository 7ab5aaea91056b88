"""One session in a child process (``python -m agent.daemon.session``).

The daemon runs each session in a child so that the idle daemon stays small (the Anthropic SDK
alone costs ~50 MB that would otherwise stay resident), and a leak or crash inside a session
cannot take the loop down. The request (settings, task and session ids, the API key) arrives as
one JSON document on stdin — never on the command line or in the environment — and the
:class:`~agent.daemon.runners.SessionResult` leaves as JSON on stdout. SIGTERM cuts the session
short: the child answers ``interrupted`` with the turns it had spent.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

from agent import config
from agent.daemon import bounded
from agent.daemon.runners import SessionContext, SessionInterrupted, SessionResult, runner_for
from agent.daemon.tools import Workspace
from agent.store import Session, Task, open_store


def request(
    settings: config.Settings, task: Task, session: Session, api_key: str, workspace: str
) -> bytes:
    return json.dumps(
        {
            "settings": config.to_dict(settings),
            "source": settings.source,
            "task_id": task.id,
            "session_id": session.id,
            "workspace": workspace,
            "api_key": api_key,
        }
    ).encode()


def spawn() -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "agent.daemon.session"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )


def parse_result(raw: bytes) -> SessionResult | None:
    for line in reversed(raw.decode("utf-8", "replace").splitlines()):
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and "outcome" in data:
            fields = {f.name for f in dataclasses.fields(SessionResult)}
            return SessionResult(**{k: v for k, v in data.items() if k in fields})
    return None


class _Interrupter:
    def __init__(self) -> None:
        self.stop = threading.Event()
        self.armed = False

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stop.set()
        if self.armed:
            self.armed = False
            raise SessionInterrupted(signal.Signals(signum).name)

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        if self.stop.is_set():
            raise SessionInterrupted("stopping")
        self.armed = True
        try:
            yield
        finally:
            self.armed = False


def _die_with_parent() -> None:
    """Linux: get SIGTERM if the daemon dies (SIGKILL), so no session runs on orphaned."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def child_main() -> int:
    parent = os.getppid()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent()
    if os.getppid() != parent:  # the daemon died before prctl took effect
        return 1
    # Commands that escape their process group (setsid) come back to us, and die with it.
    bounded.become_subreaper()
    req: dict[str, Any] = json.loads(sys.stdin.buffer.read())
    settings = config.from_dict(req["settings"], req["source"])
    intr = _Interrupter()
    signal.signal(signal.SIGTERM, intr.on_signal)
    signal.signal(signal.SIGINT, intr.on_signal)
    with open_store(settings) as store:
        task = store.get_task(req["task_id"])
        session = next(
            (s for s in store.list_sessions(outcomes=["running"]) if s.id == req["session_id"]),
            None,
        )
        if task is None or session is None:
            result = SessionResult("error", detail="session or task vanished from the store")
        else:
            ctx = SessionContext(
                settings=settings,
                store=store,
                task=task,
                session=session,
                workspace=Workspace(req["workspace"]),
                api_key=req["api_key"],
                stop=intr.stop,
                progress=lambda t, i, o: store.update_session(session.id, t, i, o),
                interruptible=intr.interruptible,
            )
            try:
                result = runner_for(settings).run(ctx)
            except SessionInterrupted:
                result = SessionResult("interrupted", detail="daemon stopping: task stays open")
            except Exception as exc:  # reported as data; the traceback goes to the journal
                import traceback

                traceback.print_exc()
                result = SessionResult("error", detail=f"runner crashed: {type(exc).__name__}")
    sys.stdout.write(json.dumps(dataclasses.asdict(result)) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(child_main())
