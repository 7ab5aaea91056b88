"""The client end of the daemon's wake socket: where it is, and one nudge.

``jada-agent tasks add|done|reopen`` nudge an idle daemon so it looks at the queue at once
instead of at its next timeout; the daemon's end (:class:`agent.daemon.wake.Waker`) binds the
socket. A nudge nobody receives is not an error: the daemon looks at the queue anyway when it
next wakes.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from agent.config import Settings


def socket_path(settings: Settings) -> Path:
    """``daemon.wake_socket``, by default ``<state_dir>/daemon.sock``."""
    return Path(settings.daemon.wake_socket or os.path.join(settings.state_dir, "daemon.sock"))


def nudge(path: str | os.PathLike[str]) -> bool:
    """Tell a daemon listening on ``path`` to look at the queue now; False if none listens."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.setblocking(False)
            s.sendto(b"!", os.fspath(path))
    except OSError:
        # Nobody listens (no such file, refused, full queue, not ours to write): no daemon woken.
        return False
    return True
