"""Temporary SSH access to a Lightsail instance from ``get_instance_access_details``.

The private key and its short-lived certificate go into a private temporary directory (0700,
files 0600, outside any repository); the instance's ``hostKeys`` are pinned in a known-hosts file
under a ``HostKeyAlias`` (StrictHostKeyChecking=yes: no trust on first use). A control master
(``ControlPersist``) keeps the first connection open past the certificate's short life, so a
playbook run can keep using it. Everything is removed when the context ends — after success,
after an exception, and on SIGTERM/SIGHUP (turned into an exception so the cleanup runs).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from agent.aws.lightsail import LightsailError


class ExpiredCertificate(LightsailError):
    pass


def _private_write(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text if text.endswith("\n") else text + "\n")


def _inside_git_repo(path: Path) -> Path | None:
    for parent in [path, *path.parents]:
        if (parent / ".git").exists():
            return parent
    return None


def write_access(
    details: dict[str, Any], directory: Path, port: int = 22, now: float | None = None
) -> dict[str, Any]:
    """Write key, certificate and pinned host keys into ``directory`` (created 0700, must be new
    or empty). Returns the connection facts: host, port, user, files, ssh options."""
    now = time.time() if now is None else now
    name = details.get("instanceName") or "instance"
    expires = details.get("expiresAt")
    to_ts = getattr(expires, "timestamp", None)  # boto3 gives a datetime, a JSON file a number
    expires_ts = to_ts() if to_ts is not None else expires
    if expires_ts is not None and float(expires_ts) <= now:
        raise ExpiredCertificate(
            f"the certificate for instance {name!r} expired at "
            f"{time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime(float(expires_ts)))}; "
            "request new access details (they are valid for a short time only)"
        )
    for key in ("privateKey", "certKey", "ipAddress", "username"):
        if not details.get(key):
            raise LightsailError(f"access details for {name!r} lack {key}: cannot connect")
    host_keys = details.get("hostKeys") or []
    if not host_keys:
        # Without pinned host keys the only option would be trust on first use: refuse.
        raise LightsailError(
            f"access details for {name!r} carry no hostKeys: refusing to trust on first use"
        )
    repo = _inside_git_repo(directory.resolve())
    if repo is not None:
        raise LightsailError(f"{directory}: inside the repository {repo}; keys never go there")
    if len(str(directory.resolve())) + len("/cm-") + 40 >= 104:
        # ssh refuses a control socket path of 104+ bytes (sun_path); %C expands to 40 hex.
        raise LightsailError(
            f"{directory}: path too long for ssh's control socket; use a shorter directory "
            "(JADA_SSH_TMPDIR)"
        )
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    key_file = directory / "id"
    cert_file = directory / "id-cert.pub"
    known_hosts = directory / "known_hosts"
    _private_write(key_file, details["privateKey"])
    _private_write(cert_file, details["certKey"])
    alias = f"lightsail-{name}"
    _private_write(
        known_hosts,
        "".join(f"{alias} {hk['algorithm']} {hk['publicKey']}\n" for hk in host_keys),
    )
    options = [
        f"IdentityFile={key_file}",
        f"CertificateFile={cert_file}",
        "IdentitiesOnly=yes",
        f"UserKnownHostsFile={known_hosts}",
        "GlobalKnownHostsFile=/dev/null",
        f"HostKeyAlias={alias}",
        "StrictHostKeyChecking=yes",
        "UpdateHostKeys=no",
        "PasswordAuthentication=no",
        "KbdInteractiveAuthentication=no",
        "BatchMode=yes",
    ]
    return {
        "instance": name,
        "host": details["ipAddress"],
        "port": port,
        "user": details["username"],
        "dir": str(directory),
        "key_file": str(key_file),
        "cert_file": str(cert_file),
        "known_hosts": str(known_hosts),
        "host_key_alias": alias,
        "expires_at": float(expires_ts) if expires_ts is not None else None,
        "options": options,
        "control_path": str(directory / "cm-%C"),
    }


def ssh_argv(
    access: dict[str, Any],
    command: Sequence[str] = (),
    control_persist: str | None = "30m",
    ssh: str = "ssh",
) -> list[str]:
    """An ``ssh`` argv using the access (with a control master unless ``control_persist`` is None)."""
    argv = [ssh]
    for opt in access["options"]:
        argv += ["-o", opt]
    if control_persist:
        argv += [
            "-o",
            "ControlMaster=auto",
            "-o",
            f"ControlPath={access['control_path']}",
            "-o",
            f"ControlPersist={control_persist}",
        ]
    argv += ["-p", str(access["port"]), "-l", access["user"], access["host"]]
    if command:
        argv += ["--", *command]
    return argv


def ansible_vars(access: dict[str, Any], control_persist: str = "30m") -> dict[str, Any]:
    """Host variables that make Ansible's ssh connection use the access."""
    # ansible_ssh_args replaces ansible.cfg's ssh_args, so our ControlPersist/ControlPath win.
    common = " ".join(f"-o {o}" for o in access["options"] if not o.startswith("IdentityFile"))
    return {
        "ansible_host": access["host"],
        "ansible_port": access["port"],
        "ansible_user": access["user"],
        "ansible_ssh_private_key_file": access["key_file"],
        "ansible_ssh_args": (
            f"-o ControlMaster=auto -o ControlPersist={control_persist} "
            f"-o ControlPath={access['control_path']}"
        ),
        "ansible_ssh_common_args": common,
    }


def close_masters(directory: Path, ssh: str = "ssh") -> None:
    """Ask every control master with a socket in ``directory`` to exit."""
    if not directory.is_dir():
        return
    for sock in directory.rglob("cm-*"):
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(
                [ssh, "-o", f"ControlPath={sock}", "-O", "exit", "placeholder"],
                capture_output=True,
                timeout=10,
                check=False,
            )


def remove_access_dir(directory: Path) -> None:
    close_masters(directory)
    shutil.rmtree(directory, ignore_errors=True)


class Terminated(BaseException):
    """Raised from a SIGTERM/SIGHUP handler so that ``finally`` blocks run."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def cleanup_on_signals() -> Iterator[None]:
    """Turn SIGTERM/SIGHUP into an exception while the block runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def private_tempdir(prefix: str = "jada-ssh-") -> Path:
    """A new 0700 directory under the system temp dir (short path: ControlPath has a length cap)."""
    base = Path(os.environ.get("JADA_SSH_TMPDIR") or "/tmp")  # noqa: S108 - private 0700 dir
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


@contextlib.contextmanager
def temporary_access(
    details: dict[str, Any], port: int = 22, directory: Path | None = None
) -> Iterator[dict[str, Any]]:
    """Write the access into a private temporary directory; remove it (and masters) afterwards."""
    d = directory or private_tempdir()
    try:
        with cleanup_on_signals():
            yield write_access(details, d, port=port)
    finally:
        remove_access_dir(d)
