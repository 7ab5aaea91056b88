"""The wake socket: `tasks add` ends the daemon's idle wait at once; no polling."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time
from pathlib import Path

import pytest

from agent.daemon.wake import Waker
from agent.dashboard.wake import nudge


@pytest.fixture
def sock_dir():
    # Short path: a Unix socket path is limited to 107 bytes.
    d = Path(tempfile.mkdtemp(prefix="jw-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_a_nudge_ends_the_wait_and_silence_lets_it_time_out(sock_dir) -> None:
    w = Waker(sock_dir / "d.sock")
    assert w.bind()
    t = time.monotonic()
    assert w.wait(0.2) is False
    assert time.monotonic() - t >= 0.19
    for _ in range(10):
        assert nudge(sock_dir / "d.sock")
    assert w.wait(5) is True
    assert w.wait(0) is False  # ten nudges, one wake-up: the queue was drained
    w.close()
    assert not (sock_dir / "d.sock").exists()
    assert nudge(sock_dir / "d.sock") is False  # nobody listens: tasks add still succeeds


def test_the_socket_is_group_writable_only(sock_dir) -> None:
    w = Waker(sock_dir / "d.sock")
    w.bind()
    assert stat.S_IMODE(os.stat(sock_dir / "d.sock").st_mode) == 0o660
    w.close()


def test_a_stale_socket_is_replaced_but_a_live_one_is_left_to_its_daemon(sock_dir) -> None:
    first = Waker(sock_dir / "d.sock")
    assert first.bind()
    second = Waker(sock_dir / "d.sock")
    assert second.bind() is False  # the first daemon still listens
    assert nudge(sock_dir / "d.sock") and first.wait(1)
    first.sock.close()  # killed without cleaning up: the file stays, nobody receives
    first.sock = None
    assert (sock_dir / "d.sock").exists()
    assert second.bind() is True
    assert nudge(sock_dir / "d.sock") and second.wait(1)
    second.close()
    first.close()


def test_another_thread_or_a_signal_handler_can_end_the_wait(sock_dir) -> None:
    w = Waker(None)  # even without a socket (a standby daemon)
    w.wake()
    assert w.wait(5) is True
    w.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the daemon side as another user")
def test_root_can_nudge_a_daemon_running_as_the_service_user(sock_dir) -> None:
    nobody = 65534
    sock_dir.chmod(0o755)
    state = sock_dir / "state"
    state.mkdir()
    os.chown(state, nobody, nobody)
    r, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the daemon side
        code = 2
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(nobody)
            os.setuid(nobody)
            waker = Waker(state / "d.sock")
            waker.bind()
            os.write(wfd, b"ready")
            code = 0 if waker.wait(10) else 1
            waker.close()
        finally:
            os._exit(code)
    os.close(wfd)
    assert os.read(r, 5) == b"ready"
    os.close(r)
    assert os.stat(state / "d.sock").st_uid == nobody
    assert nudge(state / "d.sock") is True
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
