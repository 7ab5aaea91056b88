"""Credential files on disk: reading and validating them, their permissions, and atomic install.

A credential is replaced the only way that cannot lose it: a temporary file in the same
directory, created 0600, written and fsynced, renamed over the old one, the directory fsynced.
The previous file is kept as a 0600 backup (``<name>.bak``) so a failed verification can roll
back, and a corrupt or unreadable file is moved aside (``<name>.corrupt-<UTC time>``), never
silently overwritten. A crash at any point leaves either the old file or the new one in place.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pwd
import stat
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.credentials.errors import CredentialError

AUTHORIZED_USER_FIELDS = ("client_id", "client_secret", "refresh_token")
SERVICE_ACCOUNT_FIELDS = ("client_email", "private_key", "token_uri")


def parse_credential(raw: bytes | str, where: str) -> dict[str, Any]:
    """Parse and validate credential JSON; raises ``CredentialError('corrupt', ...)``.

    The message names ``where`` and the missing or malformed field, never a value.
    """
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        info = json.loads(text)
    except UnicodeDecodeError:
        raise CredentialError("corrupt", f"{where}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise CredentialError(
            "corrupt", f"{where}: not valid JSON (line {exc.lineno}, column {exc.colno})"
        ) from None
    if not isinstance(info, dict):
        raise CredentialError("corrupt", f"{where}: expected a JSON object")
    kind = info.get("type", "authorized_user")
    if kind == "service_account":
        required = SERVICE_ACCOUNT_FIELDS
    elif kind == "authorized_user":
        required = AUTHORIZED_USER_FIELDS
    else:
        raise CredentialError(
            "corrupt", f"{where}: type: expected authorized_user or service_account"
        )
    for name in required:
        value = info.get(name)
        if not isinstance(value, str) or not value.strip():
            raise CredentialError(
                "corrupt", f"{where}: {name}: expected a non-empty string (field missing or empty)"
            )
    scopes = info.get("scopes")
    if scopes is not None and not (
        isinstance(scopes, list) and all(isinstance(s, str) for s in scopes)
    ):
        raise CredentialError("corrupt", f"{where}: scopes: expected a list of strings")
    return info


def credential_kind(info: dict[str, Any]) -> str:
    return "service_account" if info.get("type") == "service_account" else "authorized_user"


def same_credential(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """True when two credentials would authenticate the same way (ignoring access tokens)."""
    keys = (
        "type",
        "client_id",
        "client_secret",
        "refresh_token",
        "client_email",
        "private_key_id",
        "private_key",
    )
    return all(a.get(k) == b.get(k) for k in keys)


def secrets_of(info: dict[str, Any] | None) -> tuple[str, ...]:
    """The values that must never appear in output, for :func:`errors.scrub`."""
    if not info:
        return ()
    keys = ("client_secret", "refresh_token", "token", "access_token", "private_key")
    return tuple(str(info[k]) for k in keys if isinstance(info.get(k), str))


# --------------------------------------------------------------------------- ownership


def expected_owner(service_user: str) -> tuple[int, int, str]:
    """(uid, gid, note) of the service user; the current user when it does not exist here."""
    try:
        pw = pwd.getpwnam(service_user)
        return pw.pw_uid, pw.pw_gid, service_user
    except KeyError:
        uid = os.geteuid()
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = str(uid)
        return uid, os.getegid(), f"{name} (service user {service_user!r} does not exist here)"


def _chown_if_root(fd_or_path: int | str, service_user: str) -> None:
    if os.geteuid() != 0:
        return
    uid, gid, _ = expected_owner(service_user)
    if isinstance(fd_or_path, int):
        os.fchown(fd_or_path, uid, gid)
    else:
        os.chown(fd_or_path, uid, gid, follow_symlinks=False)


def ensure_dir(directory: Path, service_user: str) -> None:
    """Create the secrets directory 0700 (owned by the service user when run as root)."""
    if not directory.exists():
        directory.mkdir(mode=0o700, parents=True)
        _chown_if_root(str(directory), service_user)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fix_permissions(path: Path, service_user: str) -> list[str]:
    """Make the file 0600 and its directory 0700, owned by the service user; say what changed.

    Raises PermissionError when an owner must change and this process is not root.
    """
    done = []
    uid, gid, _ = expected_owner(service_user)
    for p, mode in ((path.parent, 0o700), (path, 0o600)):
        if not p.exists():
            continue
        st = p.lstat()
        if stat.S_ISLNK(st.st_mode):
            raise PermissionError(f"{p} is a symlink; refusing to change what it points to")
        if st.st_uid != uid:
            if os.geteuid() != 0:
                raise PermissionError(f"{p} is owned by uid {st.st_uid}; only root can chown it")
            os.chown(p, uid, gid, follow_symlinks=False)
            done.append(f"chown {uid}:{gid} {p}")
        if stat.S_IMODE(st.st_mode) != mode:
            os.chmod(p, mode, follow_symlinks=False)
            done.append(f"chmod {mode:04o} {p}")
    return done


# --------------------------------------------------------------------------- atomic install


@dataclass
class InstallResult:
    path: str
    changed: bool
    backup: str | None = None
    kept_aside: str | None = None
    stale_temp_removed: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        # Every field, by name: install.py rebuilds the result from it (InstallResult(**json)).
        return asdict(self)


def backup_path(target: Path) -> Path:
    return target.with_name(target.name + ".bak")


def _temp_prefix(target: Path) -> str:
    return f".{target.name}.tmp-"


def _write_new(directory: Path, name: str, data: bytes, service_user: str) -> Path:
    """Create ``name`` (exclusive, 0600), write, fsync. Never follows a planted symlink."""
    path = directory / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask cannot widen it, but a narrower one must not stick
        _chown_if_root(fd, service_user)
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    os.close(fd)
    return path


class UnsafePath(OSError):
    """A symlink, FIFO, device or directory where a credential file should be: refused."""


def _read_regular(target: Path) -> bytes | None:
    """The bytes of ``target`` if it is a regular file; None when absent.

    Opened with ``O_NOFOLLOW | O_NONBLOCK`` and checked on the open descriptor, so a symlink (to
    ``/etc/passwd`` or a root-only file) or a FIFO is refused, never followed or blocked on, and
    nothing is moved aside.
    """
    try:
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePath(
                errno.ELOOP,
                "is a symlink; refusing to read or replace it (nothing was changed)",
                str(target),
            ) from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            return b""  # unreadable: the caller keeps it aside as damaged, never reads it
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePath(
                errno.EINVAL,
                "is not a regular file; refusing to read or replace it (nothing was changed)",
                str(target),
            )
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def install_bytes(
    data: bytes,
    target: Path,
    service_user: str,
    *,
    before_rename: Callable[[Path], None] | None = None,
) -> InstallResult:
    """Atomically replace ``target`` with ``data`` (already validated by the caller).

    ``before_rename`` is called with the fsynced temporary file just before the rename; tests use
    it to crash the process at the worst moment.
    """
    directory = target.parent
    ensure_dir(directory, service_user)
    mode = stat.S_IMODE(directory.stat().st_mode)
    if mode & 0o002:
        # Anyone could swap the new credential for theirs, or read it through a link: refuse.
        raise UnsafePath(
            errno.EPERM,
            f"the directory has mode {mode:04o}, writable by anyone; refusing to install into it"
            " until it is 0700 (jada-agent credentials fix-permissions)",
            str(directory),
        )
    result = InstallResult(path=str(target), changed=True)
    # Temporary files of an install that crashed before its rename: the old file is intact and
    # these hold nothing that was ever live, so they go.
    for stale in directory.glob(_temp_prefix(target) + "*"):
        with contextlib.suppress(OSError):
            stale.unlink()
            result.stale_temp_removed.append(str(stale))

    old: bytes | None = None
    old_ok = False
    present = _read_regular(target)
    if present is not None:
        try:
            old = present
            parse_credential(old, str(target))
            old_ok = True
        except CredentialError:
            old_ok = False
        if old_ok and old == data:
            result.changed = False
            return result
        if not old_ok:
            # Keep the evidence: rename aside (same directory, so it is atomic), 0600.
            aside = target.with_name(f"{target.name}.corrupt-{_stamp()}")
            os.rename(target, aside)
            with contextlib.suppress(OSError):
                os.chmod(aside, 0o600)  # a regular file: _read_regular checked it
            result.kept_aside = str(aside)
            fsync_dir(directory)

    if old_ok and old is not None:
        # The backup is written the same atomic way, so a crash never leaves half a backup.
        bak = backup_path(target)
        tmp = _write_new(directory, f"{_temp_prefix(target)}bak-{os.getpid()}", old, service_user)
        os.replace(tmp, bak)
        result.backup = str(bak)

    tmp = _write_new(directory, f"{_temp_prefix(target)}{os.getpid()}", data, service_user)
    if before_rename is not None:
        before_rename(tmp)
    os.replace(tmp, target)
    fsync_dir(directory)
    return result


def restore_backup(target: Path) -> bool:
    """Put the ``.bak`` copy back over ``target`` (atomic rename); False when there is none."""
    bak = backup_path(target)
    if not bak.exists():
        return False
    if not stat.S_ISREG(bak.lstat().st_mode):
        raise UnsafePath(errno.EINVAL, "is not a regular file; not restored", str(bak))
    os.replace(bak, target)
    fsync_dir(target.parent)
    return True


# --------------------------------------------------------------------------- permissions


@dataclass
class Finding:
    """One check of ``credentials diagnose``: what was checked, whether it passed, and what was seen."""

    check: str
    ok: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"check": self.check, "ok": self.ok, "detail": self.detail}


def permission_findings(path: Path, service_user: str) -> list[Finding]:
    """File mode 0600 and owner the service user; directory 0700 (same owner)."""
    out = []
    uid, _gid, who = expected_owner(service_user)
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):
        out.append(Finding("file_mode", False, f"{path} is a symlink; expected a regular file"))
    else:
        mode = stat.S_IMODE(st.st_mode)
        out.append(
            Finding(
                "file_mode",
                mode == 0o600,
                f"{path} has mode {mode:04o}" + ("" if mode == 0o600 else "; expected 0600"),
            )
        )
    out.append(
        Finding(
            "file_owner",
            st.st_uid == uid,
            f"{path} is owned by uid {st.st_uid}; expected uid {uid}: {who}",
        )
    )
    dst = path.parent.stat()
    dmode = stat.S_IMODE(dst.st_mode)
    out.append(
        Finding(
            "dir_mode",
            dmode == 0o700,
            f"{path.parent} has mode {dmode:04o}" + ("" if dmode == 0o700 else "; expected 0700"),
        )
    )
    out.append(
        Finding(
            "dir_owner",
            dst.st_uid == uid,
            f"{path.parent} is owned by uid {dst.st_uid}; expected uid {uid}: {who}",
        )
    )
    return out
