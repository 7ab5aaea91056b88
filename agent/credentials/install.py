"""``credentials install``: validate a credential, put it in place atomically, verify, roll back.

Order: read (file, Secrets Manager or SSM) → parse and check the required fields → one refresh
(unless told not to) → atomic replace with a 0600 backup of the previous file → record the
install in the history → optionally one real sync, rolling back to the backup when that sync
fails with a credential error. Nothing on disk changes until the new credential has proved
itself against the token endpoint.

The sync is the caller's: the command passes ``agent.sheets.run_sync`` in as ``verify_sync``
(a :class:`SyncCheck`), so this package never imports the sheets package that imports it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from agent.config import Settings
from agent.credentials import google as gcreds
from agent.credentials import remote
from agent.credentials.errors import CredentialError
from agent.credentials.files import (
    InstallResult,
    credential_kind,
    fsync_dir,
    install_bytes,
    parse_credential,
    restore_backup,
)
from agent.credentials.history import History, fingerprint
from agent.credentials.privdrop import ChildFailed, as_service_user
from agent.exitcodes import EXIT_CREDENTIAL, EXIT_FAILURE, EXIT_OK, EXIT_TRANSIENT


class SyncProof(Protocol):
    """What a verifying sync reports (``agent.sheets.SyncResult`` is one)."""

    @property
    def outcome(self) -> str:
        """``ok``, ``credential_error``, ``transient`` or ``error``."""
        ...

    @property
    def message(self) -> str: ...

    @property
    def error_class(self) -> str | None: ...

    def to_json(self) -> dict[str, Any]: ...


# One real sync with the credential just installed: the proof that the sheet accepts it.
SyncCheck = Callable[[], SyncProof]


@dataclass
class InstallOutcome:
    exit_code: int
    message: str
    cause: str | None = None
    result: InstallResult | None = None
    verified: bool = False
    sync: dict[str, Any] | None = None
    rolled_back: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == EXIT_OK

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "message": self.message,
            "cause": self.cause,
            "verified": self.verified,
            "install": self.result.to_json() if self.result else None,
            "sync": self.sync,
            "rolled_back": self.rolled_back,
        }


def _read_source(kind: str, name: str, settings: Settings) -> tuple[bytes, str]:
    if kind == "file":
        try:
            return Path(name).read_bytes(), f"file {name}"
        except FileNotFoundError:
            raise CredentialError("missing", f"{name}: no such file") from None
        except OSError as exc:
            raise CredentialError("permissions", f"{name}: {exc.strerror}") from None
    label = "Secrets Manager secret" if kind == "secret" else "SSM parameter"
    return remote.fetch(kind, name, settings), f"{label} {name}"


def install(
    settings: Settings,
    kind: str,
    name: str,
    *,
    verify: bool = True,
    verify_sync: SyncCheck | None = None,
    before_rename: Callable[[Path], None] | None = None,
    now: datetime | None = None,
) -> InstallOutcome:
    """Install the credential from ``kind`` (``file``, ``secret`` or ``parameter``) named ``name``.

    ``verify`` refreshes it once before anything on disk changes; ``verify_sync``, when given,
    runs one sync after the install and rolls back when that sync fails with a credential error.
    ``before_rename`` is called with the temporary file just before it replaces the target.
    """
    now = now or datetime.now(UTC)
    try:
        raw, label = _read_source(kind, name, settings)
        info = parse_credential(raw, label)
    except remote.SecretStoreError as exc:
        return InstallOutcome(EXIT_FAILURE, str(exc), cause="secret_store")
    except CredentialError as exc:
        return InstallOutcome(EXIT_CREDENTIAL, f"not installed: {exc}", cause=exc.cause)

    verified = False
    if verify:
        try:
            gcreds.refresh(info, settings)
            verified = True
        except CredentialError as exc:
            code = EXIT_TRANSIENT if exc.transient else EXIT_CREDENTIAL
            return InstallOutcome(
                code, f"not installed: {label} fails to refresh: {exc}", cause=exc.cause
            )

    g = settings.google
    target = Path(
        g.service_account_file if credential_kind(info) == "service_account" else g.token_file
    )

    def put_in_place() -> dict[str, Any]:
        result = install_bytes(raw, target, settings.service_user, before_rename=before_rename)
        History.for_settings(settings).installed(fingerprint(info), label, now)
        return result.to_json()

    try:
        # As root (the remediator's playbooks), the secrets directory is touched only as the
        # service user: a symlink it planted there leads nowhere it could not go itself.
        result = InstallResult(**as_service_user(settings.service_user, put_in_place))
    except (OSError, ChildFailed) as exc:
        why = exc.strerror if isinstance(exc, OSError) else str(exc)
        return InstallOutcome(EXIT_FAILURE, f"not installed: writing {target}: {why}", cause="io")
    outcome = InstallOutcome(
        EXIT_OK,
        f"installed {label} at {target}" if result.changed else f"{target} already current",
        result=result,
        verified=verified,
    )
    if verify_sync is None:
        return outcome

    sync = verify_sync()
    outcome.sync = sync.to_json()
    if sync.outcome == "credential_error":
        outcome.exit_code = EXIT_CREDENTIAL
        outcome.cause = sync.error_class
        if result.changed:
            outcome.rolled_back = as_service_user(settings.service_user, rollback, target)
            outcome.message = (
                f"rolled back: the sync failed with the new credential: {sync.message}"
            )
        else:
            outcome.message = f"the sync fails with this credential: {sync.message}"
    elif sync.outcome != "ok":
        # Not the credential's fault: keep it, say the proof is pending.
        outcome.exit_code = EXIT_TRANSIENT if sync.outcome == "transient" else EXIT_FAILURE
        outcome.message += f"; the verifying sync did not complete: {sync.message}"
    return outcome


def rollback(target: Path) -> bool:
    """Restore the backup over ``target``; with no backup, move the new file aside."""
    if restore_backup(target):
        return True
    if target.exists():
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        aside = target.with_name(f"{target.name}.rejected-{stamp}")
        os.replace(target, aside)
        with contextlib.suppress(OSError):
            os.chmod(aside, 0o600)
        fsync_dir(target.parent)
        return True
    return False
