"""OS-enforced confinement of one session command (Landlock + seccomp + rlimits).

A session's ``run_command`` is untrusted: the model chooses the arguments, and the workspace it
runs in may hold a hostile ``.gitconfig``, hooks or symlinks. Argument filtering is no boundary
(``git -c alias.x='!sh'`` runs a shell), so every command runs inside a boundary the kernel
enforces, built by :func:`prepare` in the session process and applied by :meth:`Confinement.apply`
in the forked child just before ``exec``:

- **Landlock** (kernel ABI >= 1; needs no namespace and no privilege, works under systemd's
  ``NoNewPrivileges=``): the task's workspace is the only writable tree; the system (``/usr``,
  the ``/lib*`` and ``/bin`` links, ``/etc`` except ``/etc/jada-agent``, a few ``/dev`` nodes) is
  read-only; everything else — the secrets directory, the store, other workspaces, ``/run``
  (``$CREDENTIALS_DIRECTORY``), ``/proc`` (other processes, the session's own memory holding the
  API key), ``/tmp`` — cannot be opened at all, whichever path or symlink leads there. From ABI 4
  TCP connect/bind are denied too, from ABI 6 signals and abstract Unix sockets outside the domain.
- **seccomp**: ``socket()`` and ``io_uring_setup()`` fail with ``EACCES`` unless the command is
  allowed the network (``daemon.network_commands``): no UDP, no Unix socket to the daemon or D-Bus.
- **rlimits**: address space (``daemon.command_memory_max``), no core dumps.
- its own session and process group, killed as a whole at the timeout or when its output passes
  the cap (:mod:`agent.daemon.tools` streams output into a bounded buffer).

Why Landlock and not bubblewrap: the daemon's unit runs with ``RestrictNamespaces=true``,
``PrivateUsers=true``, an empty capability bounding set and ``SystemCallFilter=~@mount``;
bubblewrap needs user, mount, PID and network namespaces and the mount system calls. Measured
with ``systemd-analyze security --offline=true`` on the rendered unit: 1.2 with Landlock (its
three system calls added to ``SystemCallFilter=``; 1.1 on the sandbox host), 2.2 with what
bubblewrap needs (``RestrictNamespaces=user mnt pid net ipc uts``, ``SystemCallFilter=@mount``):
over the 2.0 budget, and it would hand every process of the unit those namespaces too.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import resource
import stat
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

# System call numbers: the same on x86_64 and aarch64 (the new unified table).
_SYS_CREATE_RULESET = 444
_SYS_ADD_RULE = 445
_SYS_RESTRICT_SELF = 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_RULE_NET_PORT = 2

# LANDLOCK_ACCESS_FS_*
FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_REMOVE_DIR = 1 << 4
FS_REMOVE_FILE = 1 << 5
FS_MAKE_CHAR = 1 << 6
FS_MAKE_DIR = 1 << 7
FS_MAKE_REG = 1 << 8
FS_MAKE_SOCK = 1 << 9
FS_MAKE_FIFO = 1 << 10
FS_MAKE_BLOCK = 1 << 11
FS_MAKE_SYM = 1 << 12
FS_REFER = 1 << 13  # ABI 2
FS_TRUNCATE = 1 << 14  # ABI 3
FS_IOCTL_DEV = 1 << 15  # ABI 5
NET_BIND_TCP = 1 << 0  # ABI 4
NET_CONNECT_TCP = 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1

_FS_BY_ABI = {
    1: (1 << 13) - 1,
    2: (1 << 14) - 1,
    3: (1 << 15) - 1,
    4: (1 << 15) - 1,
    5: (1 << 16) - 1,
}
_FILE_ONLY = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV
READ_ONLY = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR

# The system a command may read and execute. /etc is added entry by entry (all but SKIP_ETC).
SYSTEM_TREES = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SKIP_ETC = frozenset({"jada-agent", "jada-remediator"})
DEVICES_RW = ("/dev/null", "/dev/zero", "/dev/full")
DEVICES_RO = ("/dev/urandom", "/dev/random")

# seccomp
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_SECCOMP_RET_ALLOW = 0x7FFF0000
_SECCOMP_RET_ERRNO = 0x00050000
_SECCOMP_RET_KILL_PROCESS = 0x80000000
_EACCES = 13
# (AUDIT_ARCH, socket, io_uring_setup, x32 bit or 0)
_ARCH = {
    "x86_64": (0xC000003E, 41, 425, 0x40000000),
    "aarch64": (0xC00000B7, 198, 425, 0),
}


class ConfinementError(Exception):
    """The kernel cannot confine a command: the command is refused, never run unconfined."""


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 when Landlock is missing or filtered out."""
    libc = _libc()
    abi = libc.syscall(
        ctypes.c_long(_SYS_CREATE_RULESET),
        ctypes.c_void_p(None),
        ctypes.c_size_t(0),
        ctypes.c_uint32(_CREATE_RULESET_VERSION),
    )
    return max(int(abi), 0)


@dataclass
class Confinement:
    """A ready Landlock ruleset (an fd) plus the limits; :meth:`apply` runs in the child."""

    ruleset_fd: int
    abi: int
    network: bool
    memory_max: int
    _seccomp: bytes = field(default=b"", repr=False)

    def apply(self) -> None:
        """In the forked child, before exec: limits, no new privileges, seccomp, Landlock."""
        libc = _libc()
        if self.memory_max > 0:
            resource.setrlimit(resource.RLIMIT_AS, (self.memory_max, self.memory_max))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise ConfinementError(f"prctl(NO_NEW_PRIVS): errno {ctypes.get_errno()}")
        if self._seccomp:
            buf = ctypes.create_string_buffer(self._seccomp, len(self._seccomp))
            prog = struct.pack("HxxxxxxP", len(self._seccomp) // 8, ctypes.addressof(buf))
            pbuf = ctypes.create_string_buffer(prog, len(prog))
            if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, pbuf, 0, 0) != 0:
                raise ConfinementError(f"seccomp: errno {ctypes.get_errno()}")
        rc = libc.syscall(
            ctypes.c_long(_SYS_RESTRICT_SELF), ctypes.c_int(self.ruleset_fd), ctypes.c_uint32(0)
        )
        if rc != 0:
            raise ConfinementError(f"landlock_restrict_self: errno {ctypes.get_errno()}")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.ruleset_fd)


def prepare(
    workspace: str,
    *,
    network: bool = False,
    memory_max: int = 0,
    extra_read: Iterable[str] = (),
) -> Confinement:
    """Build the ruleset for one command in ``workspace`` (raises ConfinementError)."""
    abi = landlock_abi()
    if abi < 1:
        raise ConfinementError(
            "this kernel offers no Landlock (or a seccomp filter hides it): commands cannot be"
            " confined, so none is run"
        )
    handled_fs = _FS_BY_ABI.get(abi, _FS_BY_ABI[5])
    handled_net = 0 if network or abi < 4 else NET_BIND_TCP | NET_CONNECT_TCP
    scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0
    if abi >= 6:
        attr = struct.pack("QQQ", handled_fs, handled_net, scoped)
    elif abi >= 4:
        attr = struct.pack("QQ", handled_fs, handled_net)
    else:
        attr = struct.pack("Q", handled_fs)
    libc = _libc()
    abuf = ctypes.create_string_buffer(attr, len(attr))
    fd = libc.syscall(
        ctypes.c_long(_SYS_CREATE_RULESET), abuf, ctypes.c_size_t(len(attr)), ctypes.c_uint32(0)
    )
    if fd < 0:
        raise ConfinementError(f"landlock_create_ruleset: errno {ctypes.get_errno()}")
    conf = Confinement(int(fd), abi, network, memory_max)
    try:
        _allow(libc, conf.ruleset_fd, workspace, handled_fs, required=True)
        for tree in (*SYSTEM_TREES, *extra_read):
            _allow(libc, conf.ruleset_fd, tree, READ_ONLY & handled_fs)
        with os.scandir("/etc") as it:
            for entry in it:
                # A symlink in /etc is skipped: its target is readable only if it lies in a
                # tree allowed here (/etc/localtime -> /usr/share/zoneinfo), never /run or /proc.
                if entry.name in SKIP_ETC or entry.is_symlink():
                    continue
                _allow(libc, conf.ruleset_fd, entry.path, READ_ONLY & handled_fs)
        for dev in DEVICES_RW:
            _allow(libc, conf.ruleset_fd, dev, _FILE_ONLY & ~FS_EXECUTE & handled_fs)
        for dev in DEVICES_RO:
            _allow(libc, conf.ruleset_fd, dev, FS_READ_FILE)
        if not network:
            conf._seccomp = _deny_sockets_filter()
    except BaseException:
        conf.close()
        raise
    return conf


def _allow(libc: ctypes.CDLL, ruleset: int, path: str, access: int, required: bool = False) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError as exc:
        if required:
            raise ConfinementError(f"{path}: {exc.strerror}") from None
        return
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            access &= _FILE_ONLY
        rule = struct.pack("=Qi", access, fd)
        rbuf = ctypes.create_string_buffer(rule, len(rule))
        rc = libc.syscall(
            ctypes.c_long(_SYS_ADD_RULE),
            ctypes.c_int(ruleset),
            ctypes.c_int(_RULE_PATH_BENEATH),
            rbuf,
            ctypes.c_uint32(0),
        )
        if rc != 0:
            raise ConfinementError(f"landlock_add_rule({path}): errno {ctypes.get_errno()}")
    finally:
        os.close(fd)


def _deny_sockets_filter() -> bytes:
    """A classic BPF seccomp program: socket() and io_uring_setup() fail with EACCES."""
    arch = _ARCH.get(platform.machine())
    if arch is None:
        raise ConfinementError(f"no seccomp filter for {platform.machine()}")
    audit_arch, nr_socket, nr_uring, x32 = arch
    ld_w_abs, jeq_k, jge_k, ret_k = 0x20, 0x15, 0x35, 0x06

    def insn(code: int, jt: int, jf: int, k: int) -> bytes:
        return struct.pack("HBBI", code, jt, jf, k)

    deny = _SECCOMP_RET_ERRNO | _EACCES
    prog = [
        insn(ld_w_abs, 0, 0, 4),  # seccomp_data.arch
        insn(jeq_k, 1, 0, audit_arch),
        insn(ret_k, 0, 0, _SECCOMP_RET_KILL_PROCESS),
        insn(ld_w_abs, 0, 0, 0),  # seccomp_data.nr
    ]
    if x32:
        prog.append(insn(jge_k, 0, 1, x32))
        prog.append(insn(ret_k, 0, 0, _SECCOMP_RET_KILL_PROCESS))
    prog += [
        insn(jeq_k, 2, 0, nr_socket),
        insn(jeq_k, 1, 0, nr_uring),
        insn(ret_k, 0, 0, _SECCOMP_RET_ALLOW),
        insn(ret_k, 0, 0, deny),
    ]
    return b"".join(prog)
