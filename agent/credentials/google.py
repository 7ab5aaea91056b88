"""Building Google credentials from a file and refreshing them, with every pitfall handled.

- ``Credentials.from_authorized_user_info`` ignores ``token_uri``: credentials are built here
  with the configured token endpoint (so the loopback fakes work and nothing silently talks to
  Google).
- Every HTTP call has a timeout (``google.timeout``).
- The token endpoint's status and OAuth ``error`` field are captured so a failure is classified
  on the error code and logged as ``HTTP Error 400: invalid_grant: ...``.
"""

from __future__ import annotations

import json
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import google.auth.transport
import google.auth.transport.requests
from google.auth import exceptions as gexc
from google.oauth2 import credentials as user_credentials
from google.oauth2 import service_account

from agent.config import Settings
from agent.credentials.errors import (
    CredentialError,
    classify_token_answer,
    scrub,
    transport_error,
)
from agent.credentials.files import credential_kind, parse_credential, secrets_of


class RecordingRequest(google.auth.transport.Request):
    """google-auth's requests transport with a fixed timeout that remembers the last answer."""

    def __init__(self, timeout: float):
        self._inner = google.auth.transport.requests.Request()
        self.timeout = timeout
        self.last_status: int | None = None
        self.last_body: Any = None

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: Any = None,
        headers: Any = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Any:
        resp = self._inner(
            url, method=method, body=body, headers=headers, timeout=self.timeout, **kwargs
        )
        self.last_status = resp.status
        try:
            data = json.loads(resp.data)
        except (ValueError, TypeError):
            data = None
        # Keep only the error fields: the body of a 200 holds the access token.
        if isinstance(data, dict) and "error" in data:
            keep = ("error", "error_description", "error_subtype", "error_uri")
            self.last_body = {k: data[k] for k in keep if k in data}
        else:
            self.last_body = None
        return resp


def build(info: dict[str, Any], settings: Settings) -> Any:
    """Credentials for ``info`` (authorized-user or service-account JSON) on the configured endpoints."""
    g = settings.google
    if credential_kind(info) == "service_account":
        try:
            creds = service_account.Credentials.from_service_account_info(info, scopes=g.scopes)
        except (ValueError, KeyError) as exc:
            raise CredentialError(
                "corrupt", f"service account key unusable: {type(exc).__name__}"
            ) from None
        return creds.with_token_uri(g.token_uri)
    return user_credentials.Credentials(
        token=None,
        refresh_token=info["refresh_token"],
        token_uri=g.token_uri,
        client_id=info["client_id"],
        client_secret=info["client_secret"],
        scopes=list(g.scopes),
    )


@dataclass
class Refreshed:
    credentials: Any
    granted_scopes: list[str] | None


def refresh(info: dict[str, Any], settings: Settings) -> Refreshed:
    """One refresh against the configured token endpoint; raises a classified CredentialError.

    A refresh that succeeds but grants less than ``google.scopes`` is a ``scope_mismatch``.
    """
    creds = build(info, settings)
    request = RecordingRequest(settings.google.timeout)
    try:
        creds.refresh(request)
    except gexc.RefreshError as exc:
        fallback = str(exc.args[0]) if exc.args else ""
        err = classify_token_answer(
            request.last_status, request.last_body, scrub(fallback, secrets_of(info))
        )
        raise err from None
    except gexc.TransportError as exc:
        raise transport_error(exc) from None
    granted = getattr(creds, "granted_scopes", None)
    if granted is not None:
        granted = list(granted)
        missing = sorted(set(settings.google.scopes) - set(granted))
        if missing:
            raise CredentialError(
                "scope_mismatch",
                "granted scopes lack " + ", ".join(missing),
            )
    return Refreshed(creds, granted)


def read_file(path: Path) -> tuple[dict[str, Any], bytes]:
    """Read and validate one credential file; a CredentialError names the cause."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CredentialError("missing", f"credential file missing: {path}") from None
    except PermissionError:
        raise CredentialError(
            "permissions", f"{path}: Permission denied (credential file unreadable)"
        ) from None
    except IsADirectoryError:
        raise CredentialError("corrupt", f"{path} is a directory") from None
    return parse_credential(raw, str(path)), raw


def active_path(settings: Settings) -> Path:
    g = settings.google
    return Path(g.service_account_file if g.credential_type == "service_account" else g.token_file)


def load_for_use(settings: Settings) -> tuple[Refreshed, dict[str, Any]]:
    """The configured credential, read and refreshed: what the sync job uses."""
    path = active_path(settings)
    refuse_if_exposed(path)
    info, _raw = read_file(path)
    return refresh(info, settings), info


def refuse_open_directory(directory: Path) -> None:
    """Refuse a secrets directory that others may write to: anyone could swap the credential.

    Raised as a ``permissions`` error, so the sync fails loudly and the permission audit (0700)
    runs, exactly as for a world-readable file.
    """
    try:
        mode = stat.S_IMODE(directory.stat().st_mode)
    except OSError:
        return
    if mode & 0o002:
        raise CredentialError(
            "permissions",
            f"{directory} has mode {mode:04o}, writable by anyone; refusing its credentials"
            " until it is 0700",
        )


def refuse_if_exposed(path: Path) -> None:
    """Refuse a credential file that its group or others can read or write (as ssh does a key).

    Using it anyway would hide the exposure; refusing makes the sync fail loudly, so the
    remediator's permission rule runs the permission audit, which restores 0600.
    """
    refuse_open_directory(path.parent)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return  # read_file names missing and unreadable files
    if mode & 0o077:
        raise CredentialError(
            "permissions",
            f"{path} has mode {mode:04o}, readable beyond its owner; refusing it until it is 0600",
        )
