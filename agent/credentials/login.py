"""``credentials login``: re-authenticate on the operator's machine and produce a token file.

``InstalledAppFlow`` with a loopback redirect on 127.0.0.1, PKCE (S256), offline access and
forced consent (``prompt=consent``, so Google issues a *new* refresh token even when the user had
granted access before), the required scopes. The token is written 0600 with the same atomic
install as on a host, and can be pushed to Secrets Manager for the hosts to pull.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.config import Settings
from agent.credentials import remote
from agent.credentials.errors import scrub
from agent.credentials.files import install_bytes

PROMPT = "Open this URL in a browser to authorize jada-agent:\n{url}"


@dataclass
class LoginOutcome:
    exit_code: int
    message: str
    path: str | None = None
    pushed_to: str | None = None
    scopes: list[str] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.exit_code == 0,
            "message": self.message,
            "path": self.path,
            "pushed_to": self.pushed_to,
            "scopes": self.scopes,
        }


def client_config(path: Path, settings: Settings) -> dict[str, Any]:
    """The OAuth client from a client-secrets file, on the configured consent/token endpoints."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror}") from None
    except ValueError:
        raise ValueError(f"{path}: not valid JSON") from None
    kind = next((k for k in ("installed", "web") if isinstance(data, dict) and k in data), None)
    if kind is None:
        raise ValueError(f"{path}: expected an OAuth client file with an 'installed' section")
    section = dict(data[kind])
    for name in ("client_id", "client_secret"):
        if not isinstance(section.get(name), str) or not section[name]:
            raise ValueError(f"{path}: {kind}.{name}: expected a non-empty string")
    # The settings name the endpoints (Google's by default), so the fakes work the same way.
    section["auth_uri"] = settings.google.auth_uri
    section["token_uri"] = settings.google.token_uri
    section.setdefault("redirect_uris", ["http://127.0.0.1"])
    return {"installed": section}


def login(
    settings: Settings,
    client_secrets: Path,
    out: Path,
    *,
    open_browser: bool = True,
    push_secret: str | None = None,
    timeout: float | None = None,
) -> LoginOutcome:
    """Run the consent flow and write the authorized-user token to ``out`` (0600)."""
    from google_auth_oauthlib.flow import InstalledAppFlow, WSGITimeoutError
    from oauthlib.oauth2.rfc6749.errors import AccessDeniedError, OAuth2Error

    try:
        cfg = client_config(client_secrets, settings)
    except ValueError as exc:
        return LoginOutcome(1, str(exc))
    # We check the granted scopes ourselves below; oauthlib would raise a bare Warning.
    os.environ.setdefault("OAUTHLIB_RELAX_TOKEN_SCOPE", "1")

    class Flow(InstalledAppFlow):
        # run_local_server's code exchange passes no timeout; every HTTP call here has one.
        def fetch_token(self, **kwargs: Any) -> Any:
            kwargs.setdefault("timeout", settings.google.timeout)
            return super().fetch_token(**kwargs)

    flow = Flow.from_client_config(
        cfg, scopes=list(settings.google.scopes), autogenerate_code_verifier=True
    )
    try:
        # The consent URL goes to stderr, so stdout holds only the result (``--json``).
        with contextlib.redirect_stdout(sys.stderr):
            creds = flow.run_local_server(
                host="127.0.0.1",
                port=0,
                open_browser=open_browser,
                authorization_prompt_message=PROMPT,
                timeout_seconds=timeout if timeout is not None else settings.google.login_timeout,
                access_type="offline",
                prompt="consent",
            )
    except WSGITimeoutError:
        return LoginOutcome(3, "no consent arrived before the timeout; run the login again")
    except AccessDeniedError:
        return LoginOutcome(2, "consent was denied in the browser; nothing written")
    except OAuth2Error as exc:
        secret = cfg["installed"]["client_secret"]
        return LoginOutcome(2, scrub(f"the token exchange failed: {exc.error}", (secret,)))
    if not creds.refresh_token:
        return LoginOutcome(2, "the token endpoint issued no refresh token; nothing written")
    granted = list(getattr(creds, "granted_scopes", None) or creds.scopes or [])
    missing = sorted(set(settings.google.scopes) - set(granted))
    if missing:
        return LoginOutcome(
            2, "consent granted fewer scopes than required (missing " + ", ".join(missing) + ")"
        )
    token = {
        "type": "authorized_user",
        "client_id": creds.client_id,
        "client_secret": creds.client_secret,
        "refresh_token": creds.refresh_token,
        "token_uri": settings.google.token_uri,
        "scopes": granted,
    }
    data = (json.dumps(token, indent=2) + "\n").encode()
    # On the operator's machine the file belongs to whoever runs the login.
    install_bytes(data, out, pwd.getpwuid(os.geteuid()).pw_name)
    outcome = LoginOutcome(0, f"wrote {out} (0600)", path=str(out), scopes=granted)
    if push_secret:
        try:
            remote.push(push_secret, data, settings)
        except remote.SecretStoreError as exc:
            outcome.exit_code = 1
            outcome.message += f"; pushing to the secret store failed: {exc}"
            return outcome
        outcome.pushed_to = push_secret
        outcome.message += f"; pushed to Secrets Manager secret {push_secret}"
    return outcome
