"""Waking the idle daemon at once when a task is added, without polling.

The daemon binds a Unix datagram socket (``daemon.wake_socket``, by default
``<state_dir>/daemon.sock``) and blocks in ``select`` on it with a timeout (the next budget
rollover, lease check or watchdog ping). ``jada-agent tasks add`` sends one byte to it. The
socket is made group-writable (0660) so that an operator in the service group can nudge it;
root can always. A stale socket left by a killed daemon is detected (nobody receives) and
replaced; a socket in use by another live daemon is left alone. The client end (the socket's
path and the nudge) is :mod:`agent.dashboard.wake`.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
from pathlib import Path

from agent.dashboard.wake import nudge

SUN_PATH_MAX = 107


class Waker:
    """The daemon's end: the wake socket plus an internal pipe that signal handlers write to."""

    def __init__(self, path: str | os.PathLike[str] | None):
        self.path = Path(path) if path is not None else None
        self.sock: socket.socket | None = None
        self._r, self._w = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        for s in (self._r, self._w):
            s.setblocking(False)

    def bind(self) -> bool:
        """Listen on the wake socket; False when another live daemon already does."""
        if self.path is None or self.sock is not None:
            return self.sock is not None
        if len(os.fsencode(self.path)) > SUN_PATH_MAX:
            raise OSError(f"{self.path}: a Unix socket path must be at most {SUN_PATH_MAX} bytes")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            sock.bind(os.fspath(self.path))
        except OSError:
            if nudge(self.path):  # somebody receives: a live daemon owns it
                sock.close()
                return False
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            sock.bind(os.fspath(self.path))
        os.chmod(self.path, 0o660)
        sock.setblocking(False)
        self.sock = sock
        return True

    def wake(self) -> None:
        """From a signal handler or another thread: end the current wait now."""
        with contextlib.suppress(OSError):
            self._w.send(b"!")

    def signal_fd(self) -> int:
        """The (non-blocking) fd for ``signal.set_wakeup_fd``: a signal ends the wait."""
        return self._w.fileno()

    def wait(self, timeout: float) -> bool:
        """Block until nudged or ``timeout`` seconds pass; True when nudged."""
        fds = [self._r] + ([self.sock] if self.sock is not None else [])
        ready, _, _ = select.select(fds, [], [], max(0.0, timeout))
        for s in ready:
            # Drain every queued nudge: ten `tasks add` in a row make one wake-up.
            while True:
                try:
                    s.recv(64)
                except (BlockingIOError, InterruptedError):
                    break
        return bool(ready)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
            if self.path is not None:
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
        with contextlib.suppress(ValueError):  # not the main thread: nothing was set here
            old = signal.set_wakeup_fd(-1)
            if old not in (-1, self._w.fileno()):
                signal.set_wakeup_fd(old)  # somebody else's: leave it
        self._r.close()
        self._w.close()
