"""Sandbox hosts: real systemd machines booted with systemd-nspawn, reached over SSH.

Each machine is a copy-on-write overlay on a cached Debian bookworm rootfs, booted with
``systemd-nspawn -b`` inside its own network namespace.  A veth pair joins that namespace to the
host with a link-local /30 (``169.254.N.1`` on the host, ``169.254.N.2`` in the guest), so Ansible
reaches it over SSH exactly as it reaches a cloud VM, and loopback fakes bound to
``machine.host_address`` are reachable from the guest.

Works on hosts whose PID 1 is not systemd (no machined, no system bus).  Needs root and the host
packages ``debootstrap systemd-container eatmydata zstd iproute2 openssh-client``.

Stdlib only.  See ``tests/sandbox/README.md`` and ``python -m tests.sandbox --help``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = [
    "Machine",
    "SandboxError",
    "build",
    "down",
    "down_all",
    "get",
    "inventory",
    "list_machines",
    "machine",
    "preflight",
    "up",
]

# --------------------------------------------------------------------------------------------
# Configuration

#: Bump when the build recipe below changes in a way that must invalidate cached images.
RECIPE_VERSION = 2
SUITE = "bookworm"
PACKAGES: tuple[str, ...] = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "python3-venv",
    "sudo",
    "iproute2",
    "procps",
    "logrotate",
)
ADMIN_USER = "admin"
MASKED_UNITS: tuple[str, ...] = (
    "apt-daily.timer",
    "apt-daily.service",
    "apt-daily-upgrade.timer",
    "apt-daily-upgrade.service",
    "e2scrub_all.timer",
    "e2scrub_all.service",
    "e2scrub_reap.service",
)

CACHE_DIR = Path(os.environ.get("JADA_SANDBOX_CACHE", "/var/cache/jada-sandbox"))
RUN_DIR = Path(os.environ.get("JADA_SANDBOX_RUN", "/run/jada-sandbox"))
DATA_DIR = Path(os.environ.get("JADA_SANDBOX_DATA", "/var/lib/jada-sandbox"))
DEFAULT_MIRROR = "http://deb.debian.org/debian"
SOURCES_FILE = Path("/etc/apt/sources.list.d/debian.sources")

NETNS_PREFIX = "jada-"
IFACE_PREFIX = "jsb"  # host end "jsb<N>", peer "jsb<N>g" renamed to host0 in the netns


def _cgroup_roots() -> tuple[Path, ...]:
    """Hierarchies a machine gets its own directory in: hybrid (v1 name=systemd + v2 unified,
    as measured on the project's machines) or, failing that, a pure cgroup v2 mount."""
    hybrid = (Path("/sys/fs/cgroup/systemd"), Path("/sys/fs/cgroup/unified"))
    if all(root.is_dir() for root in hybrid):
        return hybrid
    if Path("/sys/fs/cgroup/cgroup.controllers").is_file():
        return (Path("/sys/fs/cgroup"),)
    return ()


CGROUP_ROOTS = _cgroup_roots()
PROPAGATE_DIR = Path("/run/systemd/nspawn/propagate")
# 169.254.0.0/24 and 169.254.255.0/24 are reserved (RFC 3927); 169.254.169.x is the
# conventional cloud metadata range, keep clear of it.
SLOTS = tuple(n for n in range(1, 255) if n != 169)
#: Static ssh options valid for *any* sandbox: OpenSSH expands %h to the target address, and
#: ``RUN_DIR/_addr/ADDRESS`` links to that machine's state dir (pinned known_hosts, control
#: sockets that ``down`` closes).  Used where options cannot be per host, e.g. molecule.yml.
BY_ADDRESS_SSH_OPTIONS: tuple[str, ...] = (
    f"-o UserKnownHostsFile={RUN_DIR}/_addr/%h/known_hosts",
    "-o GlobalKnownHostsFile=/dev/null",
    "-o StrictHostKeyChecking=yes",
    "-o IdentitiesOnly=yes",
    "-o ControlMaster=auto",
    "-o ControlPersist=60s",
    f"-o ControlPath={RUN_DIR}/_addr/%h/cp-%r",
    "-o LogLevel=ERROR",
)
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

BOOT_TIMEOUT = float(os.environ.get("JADA_SANDBOX_BOOT_TIMEOUT", "60"))
STOP_TIMEOUT = 20.0


class SandboxError(RuntimeError):
    """A sandbox operation failed; the message says what and where to look."""


# --------------------------------------------------------------------------------------------
# Small helpers


def _log(msg: str) -> None:
    if os.environ.get("JADA_SANDBOX_QUIET") != "1":
        print(f"[sandbox] {msg}", file=sys.stderr, flush=True)


def _run(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    check: bool = True,
    capture: bool = True,
    timeout: float | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    args = [str(c) for c in cmd]
    proc = subprocess.run(
        args,
        check=False,
        text=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.PIPE if capture else None,
        timeout=timeout,
        env=env,
    )
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout or "").strip()[-2000:]
        raise SandboxError(f"command failed ({proc.returncode}): {shlex.join(args)}\n{detail}")
    return proc


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    tmp.replace(path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive for our purposes.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise SandboxError(
            f"invalid sandbox name {name!r}: use 1-40 chars of [a-z0-9-], starting alphanumeric"
        )


def preflight() -> str | None:
    """Return why sandboxes cannot run here, or None if they can."""
    if os.geteuid() != 0:
        return "sandbox hosts need root (systemd-nspawn, netns, overlay mounts)"
    missing = [
        tool
        for tool in ("systemd-nspawn", "debootstrap", "zstd", "ip", "nsenter", "ssh", "ssh-keygen")
        if shutil.which(tool) is None
    ]
    if missing:
        return (
            "missing host tools: "
            + ", ".join(missing)
            + " (apt-get install --no-install-recommends"
            " debootstrap systemd-container eatmydata zstd iproute2 openssh-client)"
        )
    if not CGROUP_ROOTS:
        return "need cgroup hierarchies /sys/fs/cgroup/{systemd,unified} or a cgroup2 mount"
    return None


# --------------------------------------------------------------------------------------------
# Build: the cached base rootfs


def _mirror() -> str:
    override = os.environ.get("JADA_SANDBOX_MIRROR")
    if override:
        return override
    try:
        for line in SOURCES_FILE.read_text().splitlines():
            if line.startswith("URIs:"):
                for uri in line.split()[1:]:
                    if "security" not in uri:
                        return uri
    except OSError:
        pass
    return DEFAULT_MIRROR


def cache_key() -> str:
    """Hash of everything that determines the base image's content."""
    recipe = json.dumps(
        {
            "recipe": RECIPE_VERSION,
            "suite": SUITE,
            "packages": sorted(PACKAGES),
            "admin": ADMIN_USER,
            "masked": sorted(MASKED_UNITS),
        },
        sort_keys=True,
    )
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def _paths() -> tuple[Path, Path]:
    key = cache_key()
    return CACHE_DIR / f"base-{SUITE}-{key}.tar.zst", CACHE_DIR / f"base-{SUITE}-{key}"


SSHD_DROPIN = """\
# jada-sandbox: key-only logins, root allowed (like a fresh cloud VM's bootstrap access)
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
MaxStartups 100:30:200
MaxSessions 50
"""


def _slim_and_configure(root: Path) -> None:
    """Turn a fresh debootstrap tree into the sandbox base image."""
    env = {"PATH": GUEST_PATH, "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"}
    _run(["chroot", root, "apt-get", "clean"], env=env)
    for sub in (
        "var/lib/apt/lists",
        "usr/share/doc",
        "usr/share/man",
        "usr/share/info",
        "var/cache/apt",
        "var/log/apt",
        "var/cache/debconf",
    ):
        target = root / sub
        if target.is_dir():
            for child in target.iterdir():
                if child.is_dir() and not child.is_symlink():
                    if sub == "var/lib/apt/lists" and child.name == "partial":
                        continue
                    shutil.rmtree(child)
                elif sub != "var/cache/debconf":
                    child.unlink()
    (root / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
    for log in (root / "var/log").glob("*.log"):
        log.write_text("")
    # Identity: generated per boot / per machine.
    (root / "etc/machine-id").write_text("")
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    (root / "etc/hostname").unlink(missing_ok=True)
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    # No DNS is reachable from the netns: fail lookups fast instead of hanging.
    resolv = root / "etc/resolv.conf"
    if resolv.is_symlink() or resolv.exists():
        resolv.unlink()
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    for unit in MASKED_UNITS:
        link = root / "etc/systemd/system" / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    _write(root / "etc/ssh/sshd_config.d/jada-sandbox.conf", SSHD_DROPIN)
    # Cloud-VM-like admin user with passwordless sudo (key login only).
    _run(
        [
            "chroot",
            root,
            "useradd",
            "--create-home",
            "--shell",
            "/bin/bash",
            "--groups",
            "sudo",
            ADMIN_USER,
        ],
        env=env,
    )
    _run(["chroot", root, "usermod", "--password", "*", ADMIN_USER], env=env)
    _write(root / f"etc/sudoers.d/90-{ADMIN_USER}", f"{ADMIN_USER} ALL=(ALL) NOPASSWD:ALL\n", 0o440)
    (root / "root/.ssh").mkdir(mode=0o700, exist_ok=True)
    _write(root / "etc/jada-sandbox-release", f"recipe={RECIPE_VERSION} key={cache_key()}\n")


# What the image's tarball keeps of each file: numeric owners, extended attributes, ACLs.
_TAR_KEEP = ["--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls"]


def _extract(tarball: Path, dest: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".extract-", dir=dest.parent))
    try:
        zstd = subprocess.Popen(["zstd", "-dc", "-T0", str(tarball)], stdout=subprocess.PIPE)
        tar = subprocess.run(
            ["tar", *_TAR_KEEP, "-C", str(tmp), "-xpf", "-"],
            stdin=zstd.stdout,
            capture_output=True,
            text=True,
            check=False,
        )
        assert zstd.stdout is not None
        zstd.stdout.close()
        if zstd.wait() != 0 or tar.returncode != 0:
            raise SandboxError(f"extracting {tarball} failed: {tar.stderr.strip()}")
        tmp.chmod(0o755)
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _archive(src: Path, tarball: Path) -> None:
    tmp = tarball.with_name(tarball.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as out:
        tar = subprocess.Popen(
            ["tar", *_TAR_KEEP, "-C", str(src), "-cf", "-", "."],
            stdout=subprocess.PIPE,
        )
        zstd = subprocess.run(
            ["zstd", "-q", "-T2", "-3"], stdin=tar.stdout, stdout=out, check=False
        )
        assert tar.stdout is not None
        tar.stdout.close()
        if tar.wait() != 0 or zstd.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise SandboxError(f"archiving {src} into {tarball} failed")
    tmp.replace(tarball)


def build(*, force: bool = False) -> Path:
    """Return the extracted base rootfs, building and caching it first if needed.

    Safe to call from several processes at once: the first builds, the others wait on a lock.
    """
    reason = preflight()
    if reason:
        raise SandboxError(reason)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tarball, base = _paths()
    with _flock(CACHE_DIR / "build.lock"):
        if force:
            shutil.rmtree(base, ignore_errors=True)
            tarball.unlink(missing_ok=True)
        if (base / "etc/jada-sandbox-release").is_file():
            return base
        shutil.rmtree(base, ignore_errors=True)  # a half-extracted leftover
        for stale in CACHE_DIR.glob(f"{base.name}.*"):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
        if tarball.is_file():
            t0 = time.monotonic()
            _extract(tarball, base)
            _log(f"extracted cached base {tarball.name} in {time.monotonic() - t0:.1f}s")
            return base
        t0 = time.monotonic()
        tmp = Path(tempfile.mkdtemp(prefix=base.name + ".build-", dir=CACHE_DIR))
        try:
            mirror = _mirror()
            _log(f"debootstrap {SUITE} from {mirror} (about a minute)")
            cmd = [
                "debootstrap",
                "--variant=minbase",
                "--include=" + ",".join(PACKAGES),
                SUITE,
                str(tmp),
                mirror,
            ]
            if shutil.which("eatmydata"):
                cmd.insert(0, "eatmydata")
            proc = _run(cmd, check=False, env={**os.environ, "LC_ALL": "C"})
            if proc.returncode != 0:
                log = tmp / "debootstrap/debootstrap.log"
                tail = log.read_text()[-3000:] if log.is_file() else proc.stderr[-3000:]
                raise SandboxError(f"debootstrap failed ({proc.returncode}):\n{tail}")
            _slim_and_configure(tmp)
            _archive(tmp, tarball)
            tmp.chmod(0o755)
            tmp.rename(base)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        size = tarball.stat().st_size / 1e6
        _log(f"built base {base.name} in {time.monotonic() - t0:.0f}s ({size:.0f} MB cached)")
        return base


# --------------------------------------------------------------------------------------------
# Machines


@dataclasses.dataclass
class Machine:
    """A running sandbox host.  The first eight fields are the harness' JSON contract."""

    name: str
    address: str
    host_address: str
    user: str
    port: int
    identity_file: str
    admin_user: str
    state_dir: str
    known_hosts_file: str = ""
    netns: str = ""
    slot: int = 0
    pid: int = 0
    leader_pid: int = 0

    # -- SSH -----------------------------------------------------------------------------

    @property
    def ssh_options(self) -> list[str]:
        """``-o`` options that pin the host key and isolate the control socket."""
        return _dash_o(
            f"UserKnownHostsFile={self.known_hosts_file}",
            "GlobalKnownHostsFile=/dev/null",
            "StrictHostKeyChecking=yes",
            "IdentitiesOnly=yes",
            "BatchMode=yes",
            "ConnectTimeout=5",
            "LogLevel=ERROR",
        )

    @property
    def ssh_common_args(self) -> str:
        """String for ``ansible_ssh_common_args``: pinned host key + per-machine ControlPath."""
        extra = _dash_o(
            "ControlMaster=auto", "ControlPersist=60s", f"ControlPath={self.state_dir}/cp-%r"
        )
        return shlex.join(self.ssh_options + extra)

    def ssh_argv(self, user: str | None = None) -> list[str]:
        return [
            "ssh",
            "-i",
            self.identity_file,
            *self.ssh_options,
            "-p",
            str(self.port),
            "-l",
            user or self.user,
            self.address,
        ]

    def run(
        self,
        cmd: str | Sequence[str],
        *,
        user: str | None = None,
        check: bool = False,
        input: str | None = None,
        timeout: float | None = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in the guest over SSH (as root unless ``user`` is given)."""
        remote = cmd if isinstance(cmd, str) else shlex.join(cmd)
        return subprocess.run(
            [*self.ssh_argv(user), "--", remote],
            input=input,
            text=True,
            capture_output=True,
            check=check,
            timeout=timeout,
            stdin=None if input is not None else subprocess.DEVNULL,
        )

    def nsenter(
        self, cmd: Sequence[str], *, check: bool = False, timeout: float | None = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in the guest's namespaces directly (no SSH), as root."""
        self.leader_pid = _find_leader(self.pid) or self.leader_pid  # changes on reboot
        return _nsenter(self.leader_pid, cmd, check=check, timeout=timeout)

    def wait_ready(self, timeout: float = BOOT_TIMEOUT) -> None:
        """Wait until systemd is up and SSH answers, e.g. after the guest rebooted."""
        _wait_booted_and_ssh(self, timeout)

    def to_json(self) -> dict[str, object]:
        data = dataclasses.asdict(self)
        data["ssh_common_args"] = self.ssh_common_args
        return data

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Machine:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})  # type: ignore[arg-type]


def _dash_o(*options: str) -> list[str]:
    return [arg for option in options for arg in ("-o", option)]


def _nsenter(
    leader: int, cmd: Sequence[str], *, check: bool = False, timeout: float | None = 60
) -> subprocess.CompletedProcess[str]:
    argv = ["nsenter", "-t", str(leader), "-a", "env", "-i", f"PATH={GUEST_PATH}", *cmd]
    return subprocess.run(
        argv, text=True, capture_output=True, check=check, timeout=timeout, stdin=subprocess.DEVNULL
    )


def _state_dir(name: str) -> Path:
    return RUN_DIR / name


def _data_dir(name: str) -> Path:
    return DATA_DIR / "machines" / name


def _iface(slot: int) -> str:
    return f"{IFACE_PREFIX}{slot}"


def _host_used_slots() -> set[int]:
    """Slots whose 169.254.N.0/24 already appears on the host (addresses or routes)."""
    used: set[int] = set()
    for cmd in (["ip", "-4", "-o", "addr"], ["ip", "-4", "route"]):
        out = _run(cmd, check=False).stdout
        for match in re.finditer(r"169\.254\.(\d+)\.\d+", out):
            used.add(int(match.group(1)))
    return used


def _allocate(name: str) -> tuple[Path, int]:
    """Create the state dir and claim a free /30 slot, atomically across processes."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    with _flock(RUN_DIR / ".alloc.lock"):
        state = _state_dir(name)
        if state.exists():
            raise SandboxError(f"sandbox {name!r} already exists ({state}); run down first")
        used = _host_used_slots()
        for other in RUN_DIR.iterdir():
            slot_file = other / "slot"
            if slot_file.is_file():
                with contextlib.suppress(ValueError, OSError):
                    used.add(int(slot_file.read_text()))
        free = [n for n in SLOTS if n not in used]
        if not free:
            raise SandboxError("no free 169.254.N.0/30 slot left")
        slot = free[0]
        state.mkdir(mode=0o700)
        (state / "slot").write_text(str(slot))
        return state, slot


def _prepare_overlay(name: str, base: Path) -> Path:
    data = _data_dir(name)
    shutil.rmtree(data, ignore_errors=True)
    for sub in ("upper", "work", "merged"):
        (data / sub).mkdir(parents=True)
    merged = data / "merged"
    _run(
        [
            "mount",
            "-t",
            "overlay",
            f"jada-sandbox-{name}",
            "-o",
            f"lowerdir={base},upperdir={data / 'upper'},workdir={data / 'work'}",
            merged,
        ]
    )
    return merged


def _passwd_ids(root: Path, user: str) -> tuple[int, int]:
    for line in (root / "etc/passwd").read_text().splitlines():
        parts = line.split(":")
        if parts[0] == user:
            return int(parts[2]), int(parts[3])
    raise SandboxError(f"user {user!r} missing from {root}/etc/passwd")


def _personalize(name: str, merged: Path, state: Path, address: str, host_address: str) -> str:
    """Inject hostname, hosts, SSH client key and a fresh host key; return the host key line."""
    key = state / "id_ed25519"
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"jada-sandbox-{name}", "-f", key])
    pub = (state / "id_ed25519.pub").read_text()
    _write(merged / "etc/hostname", f"{name}\n")
    _write(
        merged / "etc/hosts",
        f"127.0.0.1\tlocalhost\n127.0.1.1\t{name}\n{address}\t{name}\n"
        f"{host_address}\tsandbox-controller\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n",
    )
    for home, user in ((merged / "root", "root"), (merged / "home" / ADMIN_USER, ADMIN_USER)):
        uid, gid = _passwd_ids(merged, user)
        ssh_dir = home / ".ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        auth = ssh_dir / "authorized_keys"
        auth.write_text(pub)
        auth.chmod(0o600)
        for path in (ssh_dir, auth):
            os.chown(path, uid, gid)
    hostkey = merged / "etc/ssh/ssh_host_ed25519_key"
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{name}", "-f", hostkey])
    hostkey.chmod(0o600)
    # Pin the key the guest will present, read back from the overlay (no trust on first use).
    return " ".join((merged / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()[:2])


def _setup_network(netns: str, slot: int) -> tuple[str, str]:
    host_addr, guest_addr = f"169.254.{slot}.1", f"169.254.{slot}.2"
    iface, peer = _iface(slot), f"{_iface(slot)}g"
    # The slot and the name are ours now: anything still using them is a crashed run's leftover.
    if Path(f"/sys/class/net/{iface}").exists():
        _run(["ip", "link", "del", iface], check=False)
    if Path(f"/run/netns/{netns}").exists():
        _run(["ip", "netns", "del", netns], check=False)
    _run(["ip", "netns", "add", netns])
    _run(["ip", "link", "add", iface, "type", "veth", "peer", "name", peer])
    _run(["ip", "link", "set", peer, "netns", netns])
    _run(["ip", "-n", netns, "link", "set", peer, "name", "host0"])
    _run(["ip", "addr", "add", f"{host_addr}/30", "dev", iface])
    _run(["ip", "link", "set", iface, "up"])
    _run(["ip", "-n", netns, "addr", "add", f"{guest_addr}/30", "dev", "host0"])
    _run(["ip", "-n", netns, "link", "set", "lo", "up"])
    _run(["ip", "-n", netns, "link", "set", "host0", "up"])
    _run(["ip", "-n", netns, "route", "add", "default", "via", host_addr])
    return host_addr, guest_addr


def _cgroup_dirs(name: str) -> list[Path]:
    return [root / f"machine-{name}" for root in CGROUP_ROOTS]


SUPERVISOR = """\
stop=0
child=
trap 'stop=1; [ -n "$child" ] && kill -TERM "$child" 2>/dev/null' TERM INT HUP
while :; do
    "$@" &
    child=$!
    while :; do
        wait "$child"
        rc=$?
        kill -0 "$child" 2>/dev/null || break
    done
    if [ "$stop" != 0 ] || [ "$rc" != 133 ]; then
        exit "$rc"
    fi
    echo "jada-sandbox: guest rebooted, booting it again" >&2
done
"""


def _find_leader(supervisor: int) -> int:
    """PID of the guest's init: the child of the supervisor's current systemd-nspawn."""
    for child in _children(supervisor):
        try:
            comm = Path(f"/proc/{child}/comm").read_text().strip()
        except OSError:
            continue
        if comm == "systemd-nspawn":
            kids = _children(child)
            return kids[0] if kids else 0
    return 0


def _boot(name: str, merged: Path, state: Path, netns: str) -> int:
    null = state / "null"
    if not null.exists():
        _run(["mknod", "-m", "666", null, "c", "1", "3"])
    procs = []
    for cg in _cgroup_dirs(name):
        cg.mkdir(exist_ok=True)
        procs.append(str(cg / "cgroup.procs"))
    nspawn = [
        "systemd-nspawn",
        "--quiet",
        "--register=no",
        "--keep-unit",
        "--console=pipe",
        "--resolv-conf=off",
        f"--bind={null}:/dev/null",
        # nspawn's own seccomp filter denies Landlock, which a real VM has: the daemon confines
        # its session commands with it (agent/daemon/confine.py).
        "--system-call-filter=landlock_create_ruleset landlock_add_rule landlock_restrict_self",
        "-M",
        name,
        "-D",
        str(merged),
        f"--network-namespace-path=/run/netns/{netns}",
        "-b",
    ]
    # The supervisor moves itself into the machine's own cgroups, runs nspawn, boots again when
    # the guest reboots (nspawn exits 133) and turns SIGTERM into a clean poweroff of the guest.
    script = "".join(f"echo $$ > {shlex.quote(p)} || exit 1\n" for p in procs) + SUPERVISOR
    console = open(state / "console.log", "ab")  # noqa: SIM115 - handed to the child
    try:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", script, "jada-sandbox-supervisor", *nspawn],
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=console,
            start_new_session=True,
            close_fds=True,
        )
    finally:
        console.close()
    (state / "pid").write_text(str(proc.pid))
    # Reap it from a daemon thread if we are a long-lived process (pytest), so it never zombies.
    threading.Thread(target=proc.wait, daemon=True).start()
    return proc.pid


def _console_tail(state: Path) -> str:
    try:
        return (state / "console.log").read_text(errors="replace")[-2000:]
    except OSError:
        return ""


def _wait_booted(name: str, pid: int, state: Path, deadline: float) -> int:
    leader = 0
    last = ""
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            raise SandboxError(f"systemd-nspawn for {name!r} exited early:\n{_console_tail(state)}")
        leader = _find_leader(pid)
        if leader:
            proc = _nsenter(leader, ["systemctl", "is-system-running"], timeout=10)
            last = proc.stdout.strip()
            if last in ("running", "degraded"):
                return leader
        time.sleep(0.05)
    raise SandboxError(f"{name!r} did not boot (last state {last!r}):\n{_console_tail(state)}")


def _wait_booted_and_ssh(m: Machine, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    m.leader_pid = _wait_booted(m.name, m.pid, Path(m.state_dir), deadline)
    _wait_ssh(m, deadline)


def _wait_ssh(m: Machine, deadline: float) -> None:
    while time.monotonic() < deadline:
        with (
            contextlib.suppress(OSError),
            socket.create_connection((m.address, m.port), timeout=1) as sock,
        ):
            sock.settimeout(1)
            if sock.recv(64).startswith(b"SSH-"):
                break
        time.sleep(0.05)
    last = None
    while time.monotonic() < deadline:
        last = m.run("true", timeout=15)
        if last.returncode == 0:
            return
        time.sleep(0.1)
    detail = last.stderr if last is not None else "port 22 never answered"
    raise SandboxError(f"SSH to {m.name!r} at {m.address} failed: {detail}")


def up(name: str, *, timeout: float = BOOT_TIMEOUT) -> Machine:
    """Boot sandbox ``name`` and return it once SSH works.  Cleans up after itself on failure."""
    _check_name(name)
    base = build()
    t0 = time.monotonic()
    deadline = t0 + timeout
    state, slot = _allocate(name)
    netns = f"{NETNS_PREFIX}{name}"
    try:
        host_addr, guest_addr = f"169.254.{slot}.1", f"169.254.{slot}.2"
        (state / "netns").write_text(netns)
        merged = _prepare_overlay(name, base)
        hostkey = _personalize(name, merged, state, guest_addr, host_addr)
        known_hosts = state / "known_hosts"
        known_hosts.write_text(f"{guest_addr} {hostkey}\n{name} {hostkey}\n")
        link = RUN_DIR / "_addr" / guest_addr
        link.parent.mkdir(exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(f"../{name}")
        _setup_network(netns, slot)
        pid = _boot(name, merged, state, netns)
        m = Machine(
            name=name,
            address=guest_addr,
            host_address=host_addr,
            user="root",
            port=22,
            identity_file=str(state / "id_ed25519"),
            admin_user=ADMIN_USER,
            state_dir=str(state),
            known_hosts_file=str(known_hosts),
            netns=netns,
            slot=slot,
            pid=pid,
        )
        _wait_booted_and_ssh(m, deadline - time.monotonic())
        _write(state / "machine.json", json.dumps(m.to_json(), indent=2) + "\n", 0o600)
        _log(f"{name} up at {guest_addr} in {time.monotonic() - t0:.2f}s")
        return m
    except BaseException:
        with contextlib.suppress(Exception):
            down(name)
        raise


def get(name: str) -> Machine:
    """The recorded machine ``name`` (raises if it is not up)."""
    path = _state_dir(name) / "machine.json"
    try:
        return Machine.from_json(json.loads(path.read_text()))
    except OSError as exc:
        raise SandboxError(f"sandbox {name!r} is not up (no {path})") from exc


def list_machines() -> list[dict[str, object]]:
    """Every recorded machine (including half-created ones) with an ``alive`` flag."""
    out: list[dict[str, object]] = []
    if not RUN_DIR.is_dir():
        return out
    for state in sorted(p for p in RUN_DIR.iterdir() if p.is_dir() and NAME_RE.match(p.name)):
        entry: dict[str, object] = {"name": state.name, "state_dir": str(state)}
        with contextlib.suppress(OSError, ValueError):
            entry.update(json.loads((state / "machine.json").read_text()))
        pid = 0
        with contextlib.suppress(OSError, ValueError):
            pid = int((state / "pid").read_text())
        entry["alive"] = bool(pid) and _pid_alive(pid)
        out.append(entry)
    return out


def _kill_cgroup(cg: Path) -> None:
    """SIGKILL everything left in a cgroup tree, then remove it bottom-up."""
    if not cg.is_dir():
        return
    for _ in range(50):
        pids: list[int] = []
        for procs in cg.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids += [int(p) for p in procs.read_text().split()]
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    dirs = sorted(
        (p for p in cg.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
    )
    for d in [*dirs, cg]:
        for _ in range(20):
            try:
                d.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.05)


def _stop(pid: int, timeout: float) -> None:
    if not pid or not _pid_alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)  # nspawn turns this into a clean poweroff of the guest
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid_alive(pid):
        time.sleep(0.05)
    if _pid_alive(pid):
        _log(f"nspawn {pid} ignored SIGTERM for {timeout:.0f}s; killing it")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def _is_mounted(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mountinfo") as fh:
        return any(line.split()[4] == target for line in fh)


def down(name: str, *, timeout: float = STOP_TIMEOUT) -> bool:
    """Power off and remove sandbox ``name``.  Idempotent; copes with a half-done ``up``.

    Returns whether there was anything to remove.
    """
    _check_name(name)
    state = _state_dir(name)
    existed = any(p.exists() for p in (state, _data_dir(name), *_cgroup_dirs(name)))
    t0 = time.monotonic()
    pid = slot = 0
    with contextlib.suppress(OSError, ValueError):
        pid = int((state / "pid").read_text())
    with contextlib.suppress(OSError, ValueError):
        slot = int((state / "slot").read_text())
    netns = f"{NETNS_PREFIX}{name}"
    # Close any SSH control masters first so none lingers on a dead address.
    if state.is_dir():
        for sock in state.glob("cp-*"):
            _run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "x"], check=False, timeout=5)
    _stop(pid, timeout)
    for cg in _cgroup_dirs(name):
        _kill_cgroup(cg)
    if slot:
        _run(["ip", "link", "del", _iface(slot)], check=False)
    if Path(f"/run/netns/{netns}").exists():
        _run(["ip", "netns", "del", netns], check=False)
    shutil.rmtree(PROPAGATE_DIR / name, ignore_errors=True)
    data = _data_dir(name)
    merged = data / "merged"
    if _is_mounted(merged) and _run(["umount", merged], check=False).returncode != 0:
        time.sleep(0.2)
        _run(["umount", "-l", merged], check=False)
    if not _is_mounted(merged):
        shutil.rmtree(data, ignore_errors=True)
    with _flock(RUN_DIR / ".alloc.lock"):
        link = RUN_DIR / "_addr" / f"169.254.{slot}.2"
        if slot and link.is_symlink() and os.readlink(link) == f"../{name}":
            link.unlink()
        shutil.rmtree(state, ignore_errors=True)
        netns_dir = Path("/run/netns")
        if netns_dir.is_dir() and not any(netns_dir.iterdir()) and _is_mounted(netns_dir):
            _run(["umount", netns_dir], check=False)
    if pid:
        _log(f"{name} down in {time.monotonic() - t0:.2f}s")
    return existed


def down_all() -> list[str]:
    """Remove every sandbox recorded under RUN_DIR/DATA_DIR (other sessions' too)."""
    names = {str(entry["name"]) for entry in list_machines()}
    machines = DATA_DIR / "machines"
    if machines.is_dir():
        names |= {p.name for p in machines.iterdir() if p.is_dir()}
    names = {n for n in names if NAME_RE.match(n)}
    for name in sorted(names):
        down(name)
    return sorted(names)


@contextlib.contextmanager
def machine(name: str, *, timeout: float = BOOT_TIMEOUT) -> Iterator[Machine]:
    """``with machine("web1") as m: m.run("uname -a")`` — always torn down afterwards."""
    m = up(name, timeout=timeout)
    try:
        yield m
    finally:
        down(name)


# --------------------------------------------------------------------------------------------
# Ansible inventory


def inventory(
    names: Sequence[str],
    path: str | os.PathLike[str] | None = None,
    *,
    fmt: str = "ini",
    group: str = "sandbox",
    become_user: str | None = None,
) -> str:
    """Render an Ansible inventory for the named machines; write it to ``path`` if given.

    With ``become_user="admin"`` hosts are reached as the sudo user with ``become`` enabled
    (cloud-VM-like); by default as root.
    """
    machines = [get(n) for n in names]
    hostvars: dict[str, dict[str, object]] = {}
    for m in machines:
        hv: dict[str, object] = {
            "ansible_host": m.address,
            "ansible_port": m.port,
            "ansible_user": become_user or m.user,
            "ansible_ssh_private_key_file": m.identity_file,
            "ansible_ssh_common_args": m.ssh_common_args,
            "ansible_python_interpreter": "/usr/bin/python3",
            "sandbox_host_address": m.host_address,
        }
        if become_user:
            hv["ansible_become"] = True
        hostvars[m.name] = hv
    if fmt == "yaml":
        # JSON is valid YAML; keeps this module stdlib-only.
        text = json.dumps({group: {"hosts": hostvars}}, indent=2) + "\n"
    elif fmt == "ini":
        lines = [f"[{group}]"]
        for host, hv in hostvars.items():
            parts = [host]
            for key, value in hv.items():
                text_value = str(value)  # the INI parser literal_evals: True, 22 keep their types
                if " " in text_value or "'" in text_value or '"' in text_value:
                    text_value = "'" + text_value.replace("'", "\\'") + "'"
                parts.append(f"{key}={text_value}")
            lines.append(" ".join(parts))
        text = "\n".join(lines) + "\n"
    else:
        raise SandboxError(f"unknown inventory format {fmt!r} (ini or yaml)")
    if path is not None:
        _write(Path(path), text, 0o600)
    return text
