"""The causes a Google credential can fail with, and how an error is classified into one.

Classification reads the OAuth ``error`` field of the token endpoint's answer (a rotated client
secret is a 401 ``invalid_client``, not a 400), never the HTTP status alone. Messages built here
carry the status, the OAuth error and its description — never a token, secret or fragment.
"""

from __future__ import annotations

import re
from typing import Any

CAUSES = (
    "ok",
    "missing",
    "corrupt",
    "permissions",
    "revoked_or_expired",
    "client_rotated_or_deleted",
    "scope_mismatch",
    "reauth_required",
    "unauthorized_client",
    "transient",
)

# Causes a new credential (from the secret store, or a re-authentication) can heal.
REPLACEABLE = frozenset(
    {
        "missing",
        "corrupt",
        "revoked_or_expired",
        "client_rotated_or_deleted",
        "scope_mismatch",
        "reauth_required",
    }
)

_OAUTH_CAUSE = {
    "invalid_grant": "revoked_or_expired",
    "invalid_client": "client_rotated_or_deleted",
    "deleted_client": "client_rotated_or_deleted",
    "invalid_scope": "scope_mismatch",
    "unauthorized_client": "unauthorized_client",
    "invalid_rapt": "reauth_required",
    "rapt_required": "reauth_required",
}
_RETRYABLE_OAUTH = {"internal_failure", "server_error", "temporarily_unavailable"}

_SECRETISH = re.compile(r"(1//[\w-]{8,}|ya29\.[\w.-]+|GOCSPX-[\w-]+|-----BEGIN[^-]*-----)")


def scrub(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Remove token-shaped strings and the given secrets from a message before it is shown."""
    for s in secrets:
        if s and len(s) >= 6:
            text = text.replace(s, "[redacted]")
    return _SECRETISH.sub("[redacted]", text)


class CredentialError(Exception):
    """A credential could not be used; ``cause`` is one of :data:`CAUSES`.

    ``str(e)`` is safe to log: ``HTTP Error 400: invalid_grant: Token has been expired or revoked.``
    """

    def __init__(
        self,
        cause: str,
        message: str,
        *,
        status: int | None = None,
        oauth_error: str | None = None,
    ):
        super().__init__(message)
        self.cause = cause
        self.status = status
        self.oauth_error = oauth_error

    @property
    def transient(self) -> bool:
        return self.cause == "transient"


def classify_token_answer(status: int | None, body: Any, fallback: str) -> CredentialError:
    """A :class:`CredentialError` from the token endpoint's answer (status and decoded body).

    ``body`` is the JSON object the endpoint sent (or None/text when it sent none); ``fallback``
    is the library's own message, used only when the body says nothing.
    """
    error = description = subtype = None
    if isinstance(body, dict):
        error = body.get("error")
        description = body.get("error_description")
        subtype = body.get("error_subtype")
    if not isinstance(error, str):
        error = None
    code = subtype if subtype in ("invalid_rapt", "rapt_required") else error
    if error:
        detail = f"{error}: {description}" if description else error
        if subtype:
            detail += f" ({subtype})" if subtype not in str(description) else ""
    else:
        detail = fallback.strip() or "no answer body"
    message = f"HTTP Error {status}: {detail}" if status else detail
    message = scrub(message)
    if status is not None and (status >= 500 or status == 429):
        return CredentialError("transient", message, status=status, oauth_error=error)
    if code in _RETRYABLE_OAUTH:
        return CredentialError("transient", message, status=status, oauth_error=error)
    if code in _OAUTH_CAUSE:
        return CredentialError(_OAUTH_CAUSE[code], message, status=status, oauth_error=code)
    if "Reauthentication is needed" in fallback:
        return CredentialError("reauth_required", message, status=status, oauth_error=code)
    if status == 401:
        return CredentialError(
            "client_rotated_or_deleted", message, status=status, oauth_error=error
        )
    # Another 4xx from the token endpoint: only a new consent can produce a usable token.
    return CredentialError("reauth_required", message, status=status, oauth_error=error)


def transport_error(exc: BaseException, what: str = "token endpoint") -> CredentialError:
    """A refused connection, timeout or DNS failure: transient, whatever the endpoint."""
    reason = type(exc).__name__
    inner: Any = exc.args[0] if exc.args else None
    if isinstance(inner, BaseException):
        reason = type(inner).__name__
        # requests wraps urllib3's error: name the innermost reason (timeout, refused, DNS).
        deeper = getattr(inner, "args", ())
        if deeper and isinstance(deeper[0], BaseException):
            reason = f"{reason} ({type(deeper[0]).__name__})"
        for arg in deeper:
            r = getattr(arg, "reason", None)
            if r is not None:
                reason = f"{type(inner).__name__} ({type(r).__name__})"
                break
    return CredentialError("transient", f"{what} unreachable: {reason}")
