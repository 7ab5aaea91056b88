"""A fake of Google's OAuth 2.0 endpoints and the Sheets v4 API: one threaded HTTP server.

It speaks the real wire protocols so the real client libraries (google-auth, google-auth-oauthlib,
google-api-python-client) run against it unchanged:

- ``POST /token``: the refresh-token grant (client credentials in the form body, as google-auth
  sends them), the authorization-code grant with PKCE (S256) and HTTP Basic client auth (as
  requests-oauthlib sends it), and the JWT-bearer grant of service accounts (RS256 assertion
  checked against the account's public key).
- ``GET /o/oauth2/auth``: the consent page. In ``approve`` mode it redirects to the loopback
  ``redirect_uri`` with a code, in ``deny`` mode with ``error=access_denied``.
- ``/v4/spreadsheets/...``: ``spreadsheets.get``, ``spreadsheets.batchUpdate`` (addSheet),
  ``values.batchGet``, ``values.batchUpdate``, ``values.clear`` and ``values.batchClear``, with
  sheet contents held in memory. Bearer tokens must be access tokens this server issued.

It is strict: a wrong method, path, parameter, body or client authentication is answered with
400 and a message saying what was wrong, so a wrong request fails the test that made it. Every
request is logged (``requests()``) so tests can count API calls and see that nothing was written.

Switches (Python methods, and the same over HTTP as ``POST /_control/<method>`` with a JSON
object of keyword arguments): ``add_client``, ``issue_refresh_token``, ``revoke_all``,
``rotate_client_secret``, ``delete_client``, ``fail_token`` (answer an error from the reference
table on the next N token calls), ``delay_token``, ``fail_sheets``, ``delay_sheets``,
``set_consent``, ``add_service_account``, ``create_spreadsheet``, ``get_values``, ``requests``,
``clear_log``, ``reset``.

``python -m tests.fakes.google --host H --port P`` runs it in the foreground and prints its URL.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.base import LoopbackFake, QuietHandler, command_line

SHEETS_SCOPE = "https://www.googleapis.com/auth/spreadsheets"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"


# The token endpoint's error answers, as Google sends them (status, body). A str body is
# sent as text/plain, the way a 503 from Google's front end arrives.
def _oauth_error(status: int, error: str, description: str, **more: str) -> tuple[int, Any]:
    return status, {"error": error, "error_description": description, **more}


TOKEN_ERRORS: dict[str, tuple[int, Any]] = {
    "invalid_grant": _oauth_error(400, "invalid_grant", "Token has been expired or revoked."),
    "invalid_scope": _oauth_error(400, "invalid_scope", "Some requested scopes were invalid."),
    "invalid_client": _oauth_error(401, "invalid_client", "The OAuth client was not found."),
    "wrong_secret": _oauth_error(401, "invalid_client", "Unauthorized"),
    "deleted_client": _oauth_error(401, "deleted_client", "The OAuth client was deleted."),
    "unauthorized_client": _oauth_error(400, "unauthorized_client", "Unauthorized"),
    "invalid_rapt": _oauth_error(
        400,
        "invalid_grant",
        "reauth related error (invalid_rapt)",
        error_uri="https://support.google.com/a/answer/9368756",
        error_subtype="invalid_rapt",
    ),
    "internal_failure": (500, {"error": "internal_failure"}),
    "unavailable": (503, "Service Unavailable"),
    "rate_limited": _oauth_error(429, "rate_limit_exceeded", "Slow down."),
}

SHEETS_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
}


class Reject(Exception):
    """An answer other than 200: status, JSON (or text) body."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None):
        super().__init__(status, body)
        self.status = status
        self.body = body
        self.headers = headers or {}


def _bad(message: str) -> Reject:
    return Reject(400, {"error": "invalid_request", "error_description": message})


def _api_error(status: int, message: str) -> Reject:
    return Reject(
        status,
        {
            "error": {
                "code": status,
                "message": message,
                "status": SHEETS_STATUS.get(status, "UNKNOWN"),
            }
        },
    )


# --------------------------------------------------------------------------- A1 ranges

_A1 = re.compile(r"^([A-Z]+)?(\d+)?$")


def _col(letters: str) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + (ord(ch) - 64)
    return n - 1


def _letters(index: int) -> str:
    out = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        out = chr(65 + rem) + out
    return out


@dataclass
class A1Range:
    title: str
    row0: int
    col0: int
    row1: int | None  # exclusive; None: to the end
    col1: int | None

    def text(self) -> str:
        name = "'" + self.title.replace("'", "''") + "'"
        if self.row1 is None and self.col1 is None and self.row0 == 0 and self.col0 == 0:
            return name
        end_col = _letters((self.col1 or 26) - 1)
        end_row = "" if self.row1 is None else str(self.row1)
        return f"{name}!{_letters(self.col0)}{self.row0 + 1}:{end_col}{end_row}"


def parse_a1(text: str) -> A1Range:
    """``'Tab'!A1:E10``, ``Tab!A1``, ``Tab`` → an :class:`A1Range` (strict)."""
    if text.startswith("'"):
        m = re.match(r"^'((?:[^']|'')+)'(?:!(.*))?$", text)
        if not m:
            raise _bad(f"Unable to parse range: {text}")
        title, cells = m.group(1).replace("''", "'"), m.group(2)
    else:
        title, _, cells = text.partition("!")
        cells = cells or None
        if not title or "'" in title:
            raise _bad(f"Unable to parse range: {text}")
    if cells is None:
        return A1Range(title, 0, 0, None, None)
    start, _, end = cells.partition(":")
    ms, me = _A1.match(start), _A1.match(end or start)
    if not ms or not me or not start:
        raise _bad(f"Unable to parse range: {text}")
    c0 = _col(ms.group(1)) if ms.group(1) else 0
    r0 = int(ms.group(2)) - 1 if ms.group(2) else 0
    c1 = _col(me.group(1)) + 1 if me.group(1) else None
    r1 = int(me.group(2)) if me.group(2) else None
    if r0 < 0 or (r1 is not None and r1 <= r0) or (c1 is not None and c1 <= c0):
        raise _bad(f"Unable to parse range: {text}")
    return A1Range(title, r0, c0, r1, c1)


# --------------------------------------------------------------------------- state


@dataclass
class Client:
    client_id: str
    client_secret: str
    deleted: bool = False


@dataclass
class RefreshToken:
    client_id: str
    scopes: list[str]
    identity: str
    revoked: bool = False


@dataclass
class AccessToken:
    identity: str
    scopes: list[str]
    expires: float
    refresh_token: str | None = None


@dataclass
class Sheet:
    sheet_id: int
    title: str
    cells: dict[tuple[int, int], str] = field(default_factory=dict)

    def values(self, rng: A1Range) -> list[list[str]]:
        """Rows of the range with trailing empty cells and rows trimmed, as the API does."""
        if not self.cells:
            return []
        max_r = max(r for r, _ in self.cells) + 1
        max_c = max(c for _, c in self.cells) + 1
        r1 = min(max_r, rng.row1 if rng.row1 is not None else max_r)
        c1 = min(max_c, rng.col1 if rng.col1 is not None else max_c)
        rows: list[list[str]] = []
        for r in range(rng.row0, r1):
            row = [self.cells.get((r, c), "") for c in range(rng.col0, c1)]
            while row and row[-1] == "":
                row.pop()
            rows.append(row)
        while rows and not rows[-1]:
            rows.pop()
        return rows


@dataclass
class Spreadsheet:
    spreadsheet_id: str
    sheets: list[Sheet] = field(default_factory=list)
    next_id: int = 1000

    def find(self, title: str) -> Sheet | None:
        return next((s for s in self.sheets if s.title == title), None)


@dataclass
class Logged:
    method: str
    path: str
    kind: str  # token.refresh_token, consent, sheets.values.batchUpdate, ...
    status: int = 0
    at: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "path": self.path, "kind": self.kind, "status": self.status}


class FakeGoogle(LoopbackFake):
    """Google OAuth token + consent endpoints and Sheets v4 on one loopback HTTP server."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        super().__init__(host, port)
        self._lock = threading.RLock()
        self.reset()

    def handler_class(self) -> type[_Handler]:
        return type("Handler", (_Handler,), {"owner": self})

    @property
    def token_uri(self) -> str:
        return self.url + "/token"

    @property
    def auth_uri(self) -> str:
        return self.url + "/o/oauth2/auth"

    @property
    def sheets_endpoint(self) -> str:
        return self.url + "/"

    # ------------------------------------------------------------------ control
    def reset(self) -> dict[str, Any]:
        with self._lock:
            self.clients: dict[str, Client] = {}
            self.refresh_tokens: dict[str, RefreshToken] = {}
            self.access_tokens: dict[str, AccessToken] = {}
            self.codes: dict[str, dict[str, Any]] = {}
            self.service_accounts: dict[str, str] = {}  # client_email -> public key PEM
            self.spreadsheets: dict[str, Spreadsheet] = {}
            self.token_failures: list[tuple[str, str | None]] = []
            self.token_delays: list[float] = []
            self.sheets_failures: list[int] = []
            self.sheets_delays: list[float] = []
            self.consent_mode = "approve"
            self.consent_grant: list[str] | None = None
            self.forbidden: set[str] = set()  # identities the spreadsheet is not shared with
            self.rotate_refresh_tokens = False
            self.access_token_lifetime = 3599
            self.log: list[Logged] = []
            # Requests still in flight from before a reset (a client that timed out) must not
            # show up in the next test's log: each is logged only in its own generation.
            self.generation = getattr(self, "generation", 0) + 1
        return {}

    def add_client(
        self, client_id: str | None = None, client_secret: str | None = None
    ) -> dict[str, Any]:
        with self._lock:
            cid = client_id or f"{secrets.token_hex(6)}.apps.googleusercontent.com"
            c = Client(cid, client_secret or "GOCSPX-" + secrets.token_urlsafe(18))
            self.clients[cid] = c
            return {"client_id": c.client_id, "client_secret": c.client_secret}

    def issue_refresh_token(
        self,
        client_id: str | None = None,
        scopes: list[str] | None = None,
        identity: str = "operator@example.com",
    ) -> dict[str, Any]:
        """A new refresh token, returned as the whole authorized-user JSON a host stores."""
        with self._lock:
            if client_id is None:
                client_id = self.add_client()["client_id"]
            client = self.clients[client_id]
            token = "1//" + secrets.token_urlsafe(32)
            granted = list(scopes) if scopes is not None else [SHEETS_SCOPE]
            self.refresh_tokens[token] = RefreshToken(client_id, granted, identity)
            return {
                "type": "authorized_user",
                "client_id": client.client_id,
                "client_secret": client.client_secret,
                "refresh_token": token,
                "token_uri": self.token_uri,
                "scopes": granted,
                "account": identity,
            }

    def revoke_all(self, client_id: str | None = None) -> dict[str, Any]:
        with self._lock:
            n = 0
            for tok, rt in self.refresh_tokens.items():
                if client_id is None or rt.client_id == client_id:
                    rt.revoked = True
                    n += 1
                    for at in list(self.access_tokens):
                        if self.access_tokens[at].refresh_token == tok:
                            del self.access_tokens[at]
            return {"revoked": n}

    def revoke(self, refresh_token: str) -> dict[str, Any]:
        with self._lock:
            rt = self.refresh_tokens.get(refresh_token)
            if rt is None:
                raise _bad("unknown refresh token")
            rt.revoked = True
            for at in list(self.access_tokens):
                if self.access_tokens[at].refresh_token == refresh_token:
                    del self.access_tokens[at]
            return {"revoked": 1}

    def rotate_client_secret(self, client_id: str) -> dict[str, Any]:
        with self._lock:
            c = self.clients[client_id]
            c.client_secret = "GOCSPX-" + secrets.token_urlsafe(18)
            return {"client_id": client_id, "client_secret": c.client_secret}

    def delete_client(self, client_id: str) -> dict[str, Any]:
        with self._lock:
            self.clients[client_id].deleted = True
            return {}

    def fail_token(
        self, error: str, count: int = 1, description: str | None = None
    ) -> dict[str, Any]:
        """The next ``count`` token requests fail with ``error``; ``description`` replaces its
        ``error_description`` (an endpoint's text is outside input: tests send hostile ones)."""
        if error not in TOKEN_ERRORS:
            raise _bad(f"fail_token: error must be one of {', '.join(TOKEN_ERRORS)}")
        with self._lock:
            self.token_failures.extend([(error, description)] * count)
            return {}

    def delay_token(self, seconds: float, count: int = 1) -> dict[str, Any]:
        with self._lock:
            self.token_delays.extend([float(seconds)] * count)
            return {}

    def fail_sheets(self, status: int, count: int = 1) -> dict[str, Any]:
        with self._lock:
            self.sheets_failures.extend([int(status)] * count)
            return {}

    def delay_sheets(self, seconds: float, count: int = 1) -> dict[str, Any]:
        with self._lock:
            self.sheets_delays.extend([float(seconds)] * count)
            return {}

    def set_consent(self, mode: str, grant_scopes: list[str] | None = None) -> dict[str, Any]:
        """``approve`` or ``deny``; ``grant_scopes`` mimics a user unticking scopes (granular consent)."""
        if mode not in ("approve", "deny"):
            raise _bad("set_consent: mode must be approve or deny")
        self.consent_mode = mode
        self.consent_grant = grant_scopes
        return {}

    def forbid(self, identity: str) -> dict[str, Any]:
        with self._lock:
            self.forbidden.add(identity)
            return {}

    def add_service_account(self, client_email: str, public_key_pem: str) -> dict[str, Any]:
        with self._lock:
            self.service_accounts[client_email] = public_key_pem
            return {}

    def create_spreadsheet(self, spreadsheet_id: str, titles: list[str] | None = None) -> dict:
        with self._lock:
            ss = Spreadsheet(spreadsheet_id)
            for t in titles or ["Sheet1"]:
                ss.sheets.append(Sheet(ss.next_id, t))
                ss.next_id += 1
            self.spreadsheets[spreadsheet_id] = ss
            return {"spreadsheetId": spreadsheet_id}

    def get_values(self, spreadsheet_id: str, title: str) -> list[list[str]]:
        with self._lock:
            sheet = self.spreadsheets[spreadsheet_id].find(title)
            if sheet is None:
                raise _bad(f"no sheet {title!r}")
            return sheet.values(A1Range(title, 0, 0, None, None))

    def sheet_titles(self, spreadsheet_id: str) -> list[str]:
        with self._lock:
            return [s.title for s in self.spreadsheets[spreadsheet_id].sheets]

    def requests(self, prefix: str = "") -> list[dict[str, Any]]:
        with self._lock:
            return [e.to_json() for e in self.log if e.kind.startswith(prefix)]

    def clear_log(self) -> dict[str, Any]:
        with self._lock:
            self.log.clear()
            return {}

    CONTROL = (
        "reset",
        "add_client",
        "issue_refresh_token",
        "revoke_all",
        "revoke",
        "rotate_client_secret",
        "delete_client",
        "fail_token",
        "delay_token",
        "fail_sheets",
        "delay_sheets",
        "set_consent",
        "forbid",
        "add_service_account",
        "create_spreadsheet",
        "get_values",
        "sheet_titles",
        "requests",
        "clear_log",
    )

    # ------------------------------------------------------------------ OAuth
    def _client_auth(self, client_id: str, client_secret: str) -> Client:
        c = self.clients.get(client_id)
        if c is None:
            raise Reject(*TOKEN_ERRORS["invalid_client"])
        if c.deleted:
            raise Reject(*TOKEN_ERRORS["deleted_client"])
        if not secrets.compare_digest(c.client_secret, client_secret):
            raise Reject(*TOKEN_ERRORS["wrong_secret"])
        return c

    def _issue_access(self, identity: str, scopes: list[str], refresh: str | None) -> str:
        token = "ya29." + secrets.token_urlsafe(24)
        self.access_tokens[token] = AccessToken(
            identity, scopes, time.time() + self.access_token_lifetime, refresh
        )
        return token

    def token(self, form: dict[str, list[str]], headers: Any) -> dict[str, Any]:
        def one(name: str, required: bool = True) -> str | None:
            vals = form.get(name)
            if not vals:
                if required:
                    raise _bad(f"Missing required parameter: {name}")
                return None
            if len(vals) != 1:
                raise _bad(f"parameter {name} given {len(vals)} times")
            return vals[0]

        grant = one("grant_type")
        with self._lock:
            if self.token_failures:
                error, description = self.token_failures.pop(0)
                status, body = TOKEN_ERRORS[error]
                if description is not None and isinstance(body, dict):
                    body = {**body, "error_description": description}
                raise Reject(status, body)
            if grant == "refresh_token":
                return self._refresh_grant(form, one)
            if grant == "authorization_code":
                return self._code_grant(form, one, headers)
            if grant == JWT_BEARER:
                return self._jwt_grant(form, one)
        raise Reject(400, {"error": "unsupported_grant_type", "error_description": str(grant)})

    def _only(self, form: dict[str, list[str]], allowed: set[str]) -> None:
        extra = sorted(set(form) - allowed)
        if extra:
            raise _bad(f"unexpected parameter(s): {', '.join(extra)}")

    def _refresh_grant(self, form: dict[str, list[str]], one: Callable) -> dict[str, Any]:
        self._only(form, {"grant_type", "client_id", "client_secret", "refresh_token", "scope"})
        client = self._client_auth(one("client_id"), one("client_secret"))
        rt_text = one("refresh_token")
        rt = self.refresh_tokens.get(rt_text)
        if rt is None or rt.revoked or rt.client_id != client.client_id:
            raise Reject(*TOKEN_ERRORS["invalid_grant"])
        scope = one("scope", required=False)
        scopes = list(rt.scopes)
        if scope is not None:
            asked = scope.split()
            if not set(asked) <= set(rt.scopes):
                raise Reject(*TOKEN_ERRORS["invalid_scope"])
            scopes = asked
        body: dict[str, Any] = {
            "access_token": self._issue_access(rt.identity, scopes, rt_text),
            "expires_in": self.access_token_lifetime,
            "scope": " ".join(scopes),
            "token_type": "Bearer",
        }
        if self.rotate_refresh_tokens:
            new = "1//" + secrets.token_urlsafe(32)
            self.refresh_tokens[new] = RefreshToken(rt.client_id, rt.scopes, rt.identity)
            rt.revoked = True
            body["refresh_token"] = new
        return body

    def _code_grant(self, form: dict[str, list[str]], one: Callable, headers: Any) -> dict:
        self._only(form, {"grant_type", "code", "redirect_uri", "code_verifier", "client_id"})
        auth = headers.get("Authorization", "")
        if not auth.startswith("Basic "):
            raise _bad("the authorization-code grant needs HTTP Basic client authentication")
        try:
            cid, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
        except ValueError:
            raise _bad("malformed Basic credentials") from None
        client = self._client_auth(urllib.parse.unquote(cid), urllib.parse.unquote(secret))
        code = self.codes.pop(one("code"), None)
        if code is None or code["client_id"] != client.client_id:
            raise Reject(
                400, {"error": "invalid_grant", "error_description": "Malformed auth code."}
            )
        if one("redirect_uri") != code["redirect_uri"]:
            raise Reject(400, {"error": "redirect_uri_mismatch", "error_description": "Bad"})
        verifier = one("code_verifier")
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        if digest.rstrip(b"=").decode() != code["code_challenge"]:
            raise Reject(
                400, {"error": "invalid_grant", "error_description": "Invalid code verifier."}
            )
        issued = self.issue_refresh_token(client.client_id, code["scopes"], code["identity"])
        rt = issued["refresh_token"]
        return {
            "access_token": self._issue_access(code["identity"], code["scopes"], rt),
            "expires_in": self.access_token_lifetime,
            "refresh_token": rt,
            "scope": " ".join(code["scopes"]),
            "token_type": "Bearer",
        }

    def _jwt_grant(self, form: dict[str, list[str]], one: Callable) -> dict[str, Any]:
        from google.auth import exceptions as gexc
        from google.auth import jwt

        self._only(form, {"grant_type", "assertion"})
        assertion = one("assertion")
        try:
            unverified = jwt.decode(assertion, verify=False)
        except (ValueError, gexc.GoogleAuthError):
            raise Reject(
                400, {"error": "invalid_grant", "error_description": "Invalid JWT."}
            ) from None
        email = unverified.get("iss", "")
        pem = self.service_accounts.get(email)
        if pem is None:
            raise Reject(
                400,
                {"error": "invalid_grant", "error_description": "Invalid grant: account not found"},
            )
        try:
            # google-auth always addresses the assertion to Google's endpoint, whatever
            # token_uri the request is sent to; Google requires exactly that audience.
            claims = jwt.decode(assertion, certs=pem, audience=GOOGLE_TOKEN_AUDIENCE)
        except (ValueError, gexc.GoogleAuthError):
            raise Reject(
                400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
            ) from None
        scopes = str(claims.get("scope", "")).split()
        if not scopes:
            raise Reject(400, {"error": "invalid_scope", "error_description": "Empty scope"})
        return {
            "access_token": self._issue_access(email, scopes, None),
            "expires_in": self.access_token_lifetime,
            "token_type": "Bearer",
        }

    def consent(self, query: dict[str, list[str]]) -> str:
        """The consent page: a redirect to the loopback client (approve or deny)."""
        required = (
            "response_type",
            "client_id",
            "redirect_uri",
            "scope",
            "state",
            "code_challenge",
            "code_challenge_method",
            "access_type",
            "prompt",
        )
        q = {}
        for name in required:
            vals = query.get(name)
            if not vals or len(vals) != 1:
                raise _bad(f"consent: parameter {name} must be given once")
            q[name] = vals[0]
        if q["response_type"] != "code":
            raise _bad("consent: response_type must be code")
        if q["code_challenge_method"] != "S256":
            raise _bad("consent: PKCE with code_challenge_method=S256 is required")
        if q["access_type"] != "offline":
            raise _bad("consent: access_type=offline is required for a refresh token")
        if q["prompt"] != "consent":
            raise _bad("consent: prompt=consent is required to get a new refresh token")
        redirect = urllib.parse.urlsplit(q["redirect_uri"])
        if redirect.scheme != "http" or redirect.hostname not in ("127.0.0.1", "localhost"):
            raise _bad("consent: redirect_uri must be a loopback http address")
        with self._lock:
            if q["client_id"] not in self.clients:
                raise Reject(*TOKEN_ERRORS["invalid_client"])
            if self.consent_mode == "deny":
                params = {"error": "access_denied", "state": q["state"]}
            else:
                code = "4/" + secrets.token_urlsafe(24)
                asked = q["scope"].split()
                granted = [
                    x for x in asked if self.consent_grant is None or x in self.consent_grant
                ]
                self.codes[code] = {
                    "client_id": q["client_id"],
                    "redirect_uri": q["redirect_uri"],
                    "code_challenge": q["code_challenge"],
                    "scopes": granted,
                    "identity": "operator@example.com",
                }
                params = {"state": q["state"], "code": code, "scope": " ".join(granted)}
        sep = "&" if redirect.query else "?"
        return q["redirect_uri"] + sep + urllib.parse.urlencode(params)

    # ------------------------------------------------------------------ Sheets
    def _caller(self, headers: Any) -> AccessToken:
        auth = headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            raise _api_error(401, "Request is missing required authentication credential.")
        at = self.access_tokens.get(auth[7:])
        if at is None or at.expires < time.time():
            raise _api_error(401, "Request had invalid authentication credentials.")
        if SHEETS_SCOPE not in at.scopes:
            raise _api_error(403, "Request had insufficient authentication scopes.")
        return at

    def _spreadsheet(self, sid: str, caller: AccessToken) -> Spreadsheet:
        ss = self.spreadsheets.get(sid)
        if ss is None:
            raise _api_error(404, "Requested entity was not found.")
        if caller.identity in self.forbidden:
            raise _api_error(403, "The caller does not have permission")
        return ss

    def _route(self, method: str, rest: str) -> tuple[str, Callable[..., Any]] | None:
        """The call kind and handler for a path after ``/v4/spreadsheets/<id>``."""
        table = {
            ("GET", ""): ("sheets.spreadsheets.get", self._get),
            ("POST", ":batchUpdate"): ("sheets.spreadsheets.batchUpdate", self._batch_update),
            ("GET", "/values:batchGet"): ("sheets.values.batchGet", self._values_batch_get),
            ("POST", "/values:batchUpdate"): (
                "sheets.values.batchUpdate",
                self._values_batch_update,
            ),
            ("POST", "/values:batchClear"): ("sheets.values.batchClear", self._values_batch_clear),
        }
        if (method, rest) in table:
            return table[(method, rest)]
        mc = re.match(r"^/values/([^/]+):clear$", rest)
        if mc and method == "POST":
            rng = urllib.parse.unquote(mc.group(1))
            return "sheets.values.clear", lambda ss, _body: self._values_batch_clear(
                ss, {"ranges": [rng]}
            )
        return None

    def sheets(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        body: Any,
        headers: Any,
        entry: Logged,
    ) -> Any:
        """Route one Sheets v4 call (``entry.kind`` names it, even when it is refused)."""
        m = re.match(r"^/v4/spreadsheets/([^/:]+)(.*)$", path)
        if not m:
            raise _bad(f"unknown Sheets path {path}")
        sid, rest = urllib.parse.unquote(m.group(1)), m.group(2)
        route = self._route(method, rest)
        if route is None:
            raise _bad(f"unknown Sheets call {method} {path}")
        entry.kind, handler = route
        if query.get("alt", ["json"]) != ["json"]:
            raise _bad("alt must be json")
        with self._lock:
            delay = self.sheets_delays.pop(0) if self.sheets_delays else 0.0
        if delay:
            time.sleep(delay)
        with self._lock:
            caller = self._caller(headers)
            if self.sheets_failures:
                status = self.sheets_failures.pop(0)
                raise _api_error(status, f"Injected failure {status}.")
            ss = self._spreadsheet(sid, caller)
            arg = query if method == "GET" else body
            return handler(ss, arg)

    def _sheet_for(self, ss: Spreadsheet, text: str) -> tuple[Sheet, A1Range]:
        rng = parse_a1(text)
        sheet = ss.find(rng.title)
        if sheet is None:
            raise _api_error(400, f"Unable to parse range: {text}")
        return sheet, rng

    def _get(self, ss: Spreadsheet, query: dict[str, list[str]]) -> dict[str, Any]:
        allowed = {"alt", "fields", "includeGridData"}
        extra = sorted(set(query) - allowed)
        if extra:
            raise _bad(f"spreadsheets.get: unexpected parameter(s) {', '.join(extra)}")
        if query.get("includeGridData", ["false"]) != ["false"]:
            raise _bad("spreadsheets.get: this fake does not serve grid data")
        sheets = []
        for i, s in enumerate(ss.sheets):
            rows = max((r for r, _ in s.cells), default=-1) + 1
            cols = max((c for _, c in s.cells), default=-1) + 1
            sheets.append(
                {
                    "properties": {
                        "sheetId": s.sheet_id,
                        "title": s.title,
                        "index": i,
                        "sheetType": "GRID",
                        "gridProperties": {
                            "rowCount": max(1000, rows),
                            "columnCount": max(26, cols),
                        },
                    }
                }
            )
        return {"spreadsheetId": ss.spreadsheet_id, "sheets": sheets}

    def _batch_update(self, ss: Spreadsheet, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or set(body) - {"requests", "includeSpreadsheetInResponse"}:
            raise _bad("spreadsheets.batchUpdate: body must be {requests: [...]}")
        reqs = body.get("requests")
        if not isinstance(reqs, list) or not reqs:
            raise _bad("spreadsheets.batchUpdate: requests must be a non-empty list")
        replies = []
        for r in reqs:
            if not isinstance(r, dict) or list(r) != ["addSheet"]:
                raise _bad(f"spreadsheets.batchUpdate: this fake serves addSheet only, got {r!r}")
            props = r["addSheet"].get("properties", {})
            title = props.get("title")
            if not isinstance(title, str) or not title:
                raise _bad("addSheet: properties.title is required")
            if ss.find(title) is not None:
                raise _api_error(
                    400,
                    f'Invalid requests[0].addSheet: A sheet with the name "{title}" already exists.',
                )
            sheet = Sheet(ss.next_id, title)
            ss.next_id += 1
            ss.sheets.append(sheet)
            replies.append(
                {"addSheet": {"properties": {"sheetId": sheet.sheet_id, "title": title}}}
            )
        return {"spreadsheetId": ss.spreadsheet_id, "replies": replies}

    def _values_batch_get(self, ss: Spreadsheet, query: dict[str, list[str]]) -> dict:
        allowed = {"alt", "ranges", "majorDimension", "valueRenderOption"}
        extra = sorted(set(query) - allowed)
        if extra:
            raise _bad(f"values.batchGet: unexpected parameter(s) {', '.join(extra)}")
        if query.get("majorDimension", ["ROWS"]) != ["ROWS"]:
            raise _bad("values.batchGet: this fake serves majorDimension=ROWS only")
        ranges = query.get("ranges") or []
        if not ranges:
            raise _bad("values.batchGet: at least one ranges= is required")
        out = []
        for text in ranges:
            sheet, rng = self._sheet_for(ss, text)
            vr: dict[str, Any] = {"range": rng.text(), "majorDimension": "ROWS"}
            vals = sheet.values(rng)
            if vals:
                vr["values"] = vals
            out.append(vr)
        return {"spreadsheetId": ss.spreadsheet_id, "valueRanges": out}

    def _values_batch_update(self, ss: Spreadsheet, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _bad("values.batchUpdate: body must be a JSON object")
        extra = set(body) - {"valueInputOption", "data", "includeValuesInResponse"}
        if extra:
            raise _bad(f"values.batchUpdate: unexpected field(s) {', '.join(sorted(extra))}")
        if body.get("valueInputOption") not in ("RAW", "USER_ENTERED"):
            raise _bad("values.batchUpdate: valueInputOption must be RAW or USER_ENTERED")
        user_entered = body["valueInputOption"] == "USER_ENTERED"
        data = body.get("data")
        if not isinstance(data, list) or not data:
            raise _bad("values.batchUpdate: data must be a non-empty list of ValueRange")
        responses = []
        total_cells = total_rows = 0
        for vr in data:
            if not isinstance(vr, dict) or set(vr) - {"range", "values", "majorDimension"}:
                raise _bad(f"values.batchUpdate: bad ValueRange {str(vr)[:80]}")
            sheet, rng = self._sheet_for(ss, vr.get("range", ""))
            values = vr.get("values")
            if not isinstance(values, list) or not all(isinstance(r, list) for r in values):
                raise _bad("values.batchUpdate: values must be a list of rows")
            for i, row in enumerate(values):
                if rng.row1 is not None and rng.row0 + i >= rng.row1:
                    raise _bad(f"values.batchUpdate: more rows than the range {vr['range']}")
                for j, cell in enumerate(row):
                    if rng.col1 is not None and rng.col0 + j >= rng.col1:
                        raise _bad(f"values.batchUpdate: more columns than {vr['range']}")
                    if cell is not None and not isinstance(cell, str | int | float | bool):
                        raise _bad(f"values.batchUpdate: a cell must be a scalar: {cell!r}")
                    key = (rng.row0 + i, rng.col0 + j)
                    text = "" if cell is None else str(cell)
                    if user_entered and text.startswith("="):
                        # Parsed as a formula; this fake evaluates none, as Sheets shows it.
                        text = "#NAME?"
                    if text == "":
                        sheet.cells.pop(key, None)
                    else:
                        sheet.cells[key] = text
                    total_cells += 1
            total_rows += len(values)
            responses.append({"spreadsheetId": ss.spreadsheet_id, "updatedRange": rng.text()})
        return {
            "spreadsheetId": ss.spreadsheet_id,
            "totalUpdatedRows": total_rows,
            "totalUpdatedCells": total_cells,
            "totalUpdatedSheets": len({r["updatedRange"].split("!")[0] for r in responses}),
            "responses": responses,
        }

    def _values_batch_clear(self, ss: Spreadsheet, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or set(body) - {"ranges"}:
            raise _bad("values.batchClear: body must be {ranges: [...]}")
        ranges = body.get("ranges") or []
        cleared = []
        for text in ranges:
            sheet, rng = self._sheet_for(ss, text)
            for key in list(sheet.cells):
                r, c = key
                in_rows = r >= rng.row0 and (rng.row1 is None or r < rng.row1)
                if in_rows and c >= rng.col0 and (rng.col1 is None or c < rng.col1):
                    del sheet.cells[key]
            cleared.append(rng.text())
        return {"spreadsheetId": ss.spreadsheet_id, "clearedRanges": cleared}


class _Handler(QuietHandler):
    owner: FakeGoogle
    protocol_version = "HTTP/1.1"

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        if isinstance(body, str):
            self.send_body(status, body.encode(), "text/plain; charset=utf-8", headers)
        else:
            self.send_json(status, body, "application/json; charset=UTF-8", headers)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self, method: str) -> None:
        split = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
        raw = self._body()
        entry = Logged(method, split.path, "unknown")
        generation = self.owner.generation
        try:
            status, body, headers = self._dispatch(method, split.path, query, raw, entry)
        except Reject as r:
            status, body, headers = r.status, r.body, r.headers
        except Exception as exc:  # a bug in the fake must show, not hang the client
            status, body, headers = 500, {"error": "fake_bug", "error_description": repr(exc)}, {}
        entry.status = status
        if entry.kind != "control":
            with self.owner._lock:
                if self.owner.generation == generation:
                    self.owner.log.append(entry)
        # A client that timed out and left must not turn the answer into an error here.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._send(status, body, headers)

    def _dispatch(
        self, method: str, path: str, query: dict[str, list[str]], raw: bytes, entry: Logged
    ) -> tuple[int, Any, dict[str, str]]:
        fake = self.owner
        if path.startswith("/_control/"):
            entry.kind = "control"
            return 200, self._control(method, path[len("/_control/") :], raw), {}
        if path == "/token":
            entry.kind = "token"
            if method != "POST":
                raise _bad("the token endpoint takes POST")
            ctype = self.headers.get("Content-Type", "")
            if not ctype.startswith("application/x-www-form-urlencoded"):
                raise _bad("the token endpoint takes application/x-www-form-urlencoded")
            form = urllib.parse.parse_qs(raw.decode(), keep_blank_values=True)
            entry.kind = "token." + (form.get("grant_type") or ["?"])[0].rsplit(":", 1)[-1]
            with fake._lock:
                delay = fake.token_delays.pop(0) if fake.token_delays else 0.0
            if delay:
                time.sleep(delay)
            return 200, fake.token(form, self.headers), {}
        if path == "/o/oauth2/auth":
            entry.kind = "consent"
            if method != "GET":
                raise _bad("the consent page takes GET")
            return 302, "redirecting", {"Location": fake.consent(query)}
        if path.startswith("/v4/spreadsheets/"):
            entry.kind = "sheets"
            body: Any = None
            if method == "POST":
                try:
                    body = json.loads(raw or b"null")
                except ValueError:
                    raise _bad("the request body is not JSON") from None
            elif raw:
                raise _bad(f"{method} with a body")
            return 200, fake.sheets(method, path, query, body, self.headers, entry), {}
        raise _bad(f"no such endpoint: {method} {path}")

    def _control(self, method: str, name: str, raw: bytes) -> dict[str, Any]:
        fake = self.owner
        if method != "POST" or name not in fake.CONTROL:
            raise _bad(f"control: POST /_control/<one of {', '.join(fake.CONTROL)}>")
        try:
            kwargs = json.loads(raw or b"{}")
        except ValueError:
            raise _bad("control: body must be a JSON object") from None
        if not isinstance(kwargs, dict):
            raise _bad("control: body must be a JSON object")
        try:
            result = getattr(fake, name)(**kwargs)
        except TypeError as exc:
            raise _bad(f"control {name}: {exc}") from None
        except KeyError as exc:
            raise _bad(f"control {name}: unknown {exc}") from None
        return {"result": result}

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")


def control(url: str, name: str, **kwargs: Any) -> Any:
    """Flip a switch on a fake running in another process (``POST /_control/<name>``)."""
    import urllib.request

    req = urllib.request.Request(  # noqa: S310 - loopback/sandbox http only
        url.rstrip("/") + "/_control/" + name,
        data=json.dumps(kwargs).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback/sandbox only
        return json.loads(resp.read())["result"]


def main(argv: list[str] | None = None) -> int:
    p = command_line("Fake Google OAuth + Sheets v4 server")
    p.add_argument("--spreadsheet", default="", help="create this spreadsheet at start")
    args = p.parse_args(argv)
    fake = FakeGoogle(args.host, args.port)
    if args.spreadsheet:
        fake.create_spreadsheet(args.spreadsheet)
    return fake.run_in_foreground()


if __name__ == "__main__":
    raise SystemExit(main())
