"""The host's listening sockets and the rows of each tab."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.sheets.collect import HEADERS, TABS, collect, deployed_at
from agent.sheets.ports import Listener, listeners
from agent.sheets.sync import _letters, _normalize
from agent.store import open_store

TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1
   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2222 1
   2: 0100007F:8AE2 0100007F:1F90 01 00000000:00000000 00:00000000 00000000   999        0 3333 1
"""
TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1
"""
UDP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when ref pointer drops
   0: 3500007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 5555 2
"""


def fake_proc(root: Path) -> Path:
    (root / "net").mkdir(parents=True)
    (root / "net" / "tcp").write_text(TCP)
    (root / "net" / "tcp6").write_text(TCP6)
    (root / "net" / "udp").write_text(UDP)
    for pid, comm, cgroup, inodes in (
        ("101", "sshd", "0::/system.slice/ssh.service\n", [1111, 4444]),
        ("202", "python3", "0::/system.slice/jada-agent.service\n", [2222]),
        ("303", "systemd-resolve", "0::/system.slice/systemd-resolved.service\n", [5555]),
    ):
        d = root / pid
        (d / "fd").mkdir(parents=True)
        (d / "comm").write_text(comm + "\n")
        (d / "cgroup").write_text(cgroup)
        for i, inode in enumerate(inodes):
            os.symlink(f"socket:[{inode}]", d / "fd" / str(i + 3))
    return root


def test_listening_sockets_are_read_with_their_process_and_unit(tmp_path: Path):
    got = listeners(fake_proc(tmp_path / "proc"))
    assert got == [
        Listener(22, "tcp", "0.0.0.0", "sshd", "ssh.service"),
        Listener(22, "tcp6", "::1", "sshd", "ssh.service"),
        Listener(53, "udp", "127.0.0.53", "systemd-resolve", "systemd-resolved.service"),
        Listener(8080, "tcp", "127.0.0.1", "python3", "jada-agent.service"),
    ]  # the established connection (state 01) is not a listener


def test_a_socket_whose_owner_cannot_be_seen_is_still_listed(tmp_path: Path):
    proc = fake_proc(tmp_path / "proc")
    for fd in (proc / "202" / "fd").iterdir():
        fd.unlink()
    got = listeners(proc)
    # Without the process, the owning user from the socket table still says whose it is.
    assert Listener(8080, "tcp", "127.0.0.1", "(user root)", "") in got


def test_a_socket_this_process_listens_on_is_found_on_the_real_host():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        found = [lst for lst in listeners() if lst.port == port]
    assert found and found[0].protocol == "tcp" and found[0].address == "127.0.0.1"
    assert found[0].process  # our own process is always visible


def test_rows_are_normalized_to_what_the_api_reads_back():
    assert _normalize([["a", 1, None, ""], [], [""]]) == [["a", "1"]]
    assert [_letters(n) for n in (1, 5, 26, 27, 702, 703)] == ["A", "E", "Z", "AA", "ZZ", "AAA"]


def test_collect_builds_every_tab_with_its_header(settings_factory, tmp_path: Path):
    s = settings_factory(sheets={"deployed_marker": str(tmp_path / "DEPLOYED")})
    (tmp_path / "DEPLOYED").write_text("x")
    os.utime(tmp_path / "DEPLOYED", (1_700_000_000, 1_700_000_000))
    now = datetime(2026, 5, 13, 15, 0, tzinfo=UTC)
    with open_store(s) as store:
        t = store.add_task("Fix e-signature page", priority=2, now=now)
        for minutes, outcome in ((0, "max_turns"), (2, "completed"), (5, "max_turns")):
            sess = store.start_session(t.id, now=now.replace(hour=0, minute=minutes))
            store.finish_session(sess.id, outcome, turns=30 if outcome == "max_turns" else 12)
        old = store.start_session(None, now=now - timedelta(days=40))
        store.finish_session(old.id, "completed")
        tabs = collect(store, s, now, ports=lambda: [Listener(22, "tcp", "0.0.0.0", "sshd", "")])
    assert list(tabs) == list(TABS)
    assert all(tabs[t][0] == HEADERS[t] for t in TABS)
    assert tabs["Sessions"][1:] == [["2026-05-13", "3 / 5", "completed=1, max_turns=2", "72"]]
    assert tabs["Tasks"][1] == ["1", "Fix e-signature page", "ready", "2", "2026-05-13 15:00:00"]
    assert tabs["Ports"][1] == ["22", "tcp", "0.0.0.0", "sshd", ""]
    assert tabs["Deployment"][1][:3] == [
        "test-host",
        tabs["Deployment"][1][1],
        "2023-11-14 22:13:20",
    ]
    assert tabs["Deployment"][1][3] == "2026-05-13 15:00:00"


def test_deployed_at_falls_back_to_the_virtualenv(settings_factory, tmp_path: Path):
    s = settings_factory(sheets={"deployed_marker": str(tmp_path / "absent")})
    assert deployed_at(s)  # the running interpreter's prefix always exists
