"""systemd's readiness protocol (``sd_notify``) without a dependency.

A ``Type=notify`` service tells systemd it is ready (``READY=1``), what it is doing
(``STATUS=...``), that it is alive (``WATCHDOG=1``, when ``WatchdogSec=`` is set) and that it is
stopping (``STOPPING=1``) by sending datagrams to the socket named in ``$NOTIFY_SOCKET`` (a path,
or an abstract socket when it starts with ``@``). Outside systemd every call is a no-op.
"""

from __future__ import annotations

import os
import socket


def notify(*states: str) -> bool:
    """Send ``KEY=VALUE`` lines to systemd; False when not run by systemd or the send failed."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(addr)
            sock.sendall("\n".join(states).encode("utf-8"))
    except OSError:
        return False
    return True


def watchdog_sec() -> float | None:
    """``WatchdogSec=`` in seconds when systemd asked this process for pings, else None."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 1e6
    except ValueError:
        return None


def watchdog_interval() -> float | None:
    """Half of ``WatchdogSec=`` in seconds (how often to send ``WATCHDOG=1``), or None."""
    sec = watchdog_sec()
    return sec / 2 if sec else None
