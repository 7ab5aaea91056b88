"""Watchdog pings go out while the main loop keeps its promised check-in, and stop when it hangs."""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest


@pytest.fixture
def notify_socket(monkeypatch):
    d = Path(tempfile.mkdtemp(prefix="jn-"))
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(d / "n.sock"))
    monkeypatch.setenv("NOTIFY_SOCKET", str(d / "n.sock"))
    yield s
    s.close()
    shutil.rmtree(d, ignore_errors=True)


def _pings(sock: socket.socket, seconds: float) -> int:
    n = 0
    end = time.monotonic() + seconds
    sock.settimeout(0.05)
    while time.monotonic() < end:
        with contextlib.suppress(TimeoutError):
            n += sock.recv(1024).decode().splitlines().count("WATCHDOG=1")
    return n


def test_pings_stop_when_the_main_loop_misses_its_check_in(make_daemon, notify_socket) -> None:
    d = make_daemon(watchdog_interval="0.2s")
    d._check_in = time.monotonic() + 60  # the loop promised to be back within a minute
    beat = threading.Thread(target=d._heartbeat_loop, daemon=True)
    beat.start()
    try:
        assert _pings(notify_socket, 0.6) >= 3
        d._check_in = time.monotonic() - 10  # it did not come back: hung
        _pings(notify_socket, 0.15)  # let an in-flight ping drain
        assert _pings(notify_socket, 0.6) == 0
    finally:
        d.stop.set()
        beat.join(2)
