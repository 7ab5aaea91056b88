"""Listening sockets of the host, for the Ports tab: port, protocol, process and systemd unit.

Read from ``/proc/net/{tcp,tcp6,udp,udp6}`` (TCP in LISTEN, UDP bound with no peer), with each
socket inode mapped to its process through ``/proc/<pid>/fd`` and the unit taken from
``/proc/<pid>/cgroup``. Sockets of processes we may not inspect (another user's, without root)
are still listed, with the owning user (from the socket table) in place of the process: mapping
a socket to another user's process needs root or CAP_SYS_PTRACE, which the sync's unit, running
as the service user, does not have. ``proc_root`` lets tests read a prepared tree.
"""

from __future__ import annotations

import os
import pwd
import re
from dataclasses import dataclass
from pathlib import Path

_TCP_LISTEN = "0A"
_UDP_UNCONN = "07"
_SOCKET = re.compile(r"^socket:\[(\d+)\]$")
_UNIT = re.compile(r"/([^/]+\.(?:service|scope|socket))$")


@dataclass(frozen=True, order=True)
class Listener:
    port: int
    protocol: str  # tcp, tcp6, udp, udp6
    address: str
    process: str = ""
    unit: str = ""

    def row(self) -> list[str]:
        return [str(self.port), self.protocol, self.address, self.process, self.unit]


def _addr(hex_addr: str, v6: bool) -> str:
    if not v6:
        b = bytes.fromhex(hex_addr)[::-1]
        return ".".join(str(x) for x in b)
    raw = bytes.fromhex(hex_addr)
    # /proc prints IPv6 as four host-order 32-bit words.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    import ipaddress

    return str(ipaddress.IPv6Address(words))


def _sockets(proc: Path) -> dict[int, tuple[int, str, str, int]]:
    """inode → (port, protocol, address, owner uid) of listening sockets."""
    out: dict[int, tuple[int, str, str, int]] = {}
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        try:
            lines = (proc / "net" / proto).read_text().splitlines()[1:]
        except OSError:
            continue
        want = _TCP_LISTEN if proto.startswith("tcp") else _UDP_UNCONN
        for line in lines:
            parts = line.split()
            if len(parts) < 10 or parts[3] != want:
                continue
            local_hex, port_hex = parts[1].rsplit(":", 1)
            inode = int(parts[9])
            if inode == 0:
                continue
            uid = int(parts[7])
            out[inode] = (int(port_hex, 16), proto, _addr(local_hex, proto.endswith("6")), uid)
    return out


def _owners(proc: Path, inodes: set[int]) -> dict[int, int]:
    """inode → pid, for the inodes asked about."""
    owners: dict[int, int] = {}
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        fd_dir = Path(entry.path) / "fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd_dir / fd)
            except OSError:
                continue
            m = _SOCKET.match(target)
            if m and int(m.group(1)) in inodes:
                owners.setdefault(int(m.group(1)), int(entry.name))
    return owners


def _process(proc: Path, pid: int) -> tuple[str, str]:
    try:
        comm = (proc / str(pid) / "comm").read_text().strip()
    except OSError:
        comm = ""
    unit = ""
    try:
        for line in (proc / str(pid) / "cgroup").read_text().splitlines():
            m = _UNIT.search(line.split(":", 2)[-1])
            if m:
                unit = m.group(1)
                break
    except OSError:
        pass
    return comm, unit


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def listeners(proc_root: str | os.PathLike[str] = "/proc") -> list[Listener]:
    """Every listening socket on the host, sorted by port, protocol, address."""
    proc = Path(proc_root)
    socks = _sockets(proc)
    owners = _owners(proc, set(socks)) if socks else {}
    seen: set[Listener] = set()
    for inode, (port, proto, addr, uid) in socks.items():
        if inode in owners:
            comm, unit = _process(proc, owners[inode])
        else:
            comm, unit = f"(user {_user(uid)})", ""
        seen.add(Listener(port, proto, addr, comm, unit))
    return sorted(seen)
