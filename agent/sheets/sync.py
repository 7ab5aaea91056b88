"""The port-sheet sync job: push the dashboard's state to the Google Sheet in a constant number of calls.

One run, whatever the row count:

1. ``spreadsheets.get`` (tab titles only);
2. ``spreadsheets.batchUpdate`` with one ``addSheet`` per missing tab — only when one is missing;
3. ``values.batchGet`` of the tabs that existed, to see what the sheet holds;
4. ``values.batchUpdate`` of the tabs that differ, each range padded with blanks over the rows and
   columns it used to hold, so stale rows are cleared in the same call — or nothing at all when
   the sheet already holds this state.

So three requests in steady state, two when nothing changed. 429 and 5xx answers and network
failures are retried with exponential backoff up to ``sheets.max_retries`` times; a credential
error is never retried. Every HTTP call has a timeout. Each run logs exactly one line with the
historical ``[port-sheet]`` prefix, is recorded in the store, and ends with an exit code:
0 ok, 2 credential error, 3 transient (retries exhausted), 1 anything else.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import google_auth_httplib2
import httplib2
from google.auth import exceptions as gexc
from googleapiclient import discovery_cache
from googleapiclient.discovery import build_from_document
from googleapiclient.errors import HttpError

from agent.config import ConfigError, Settings
from agent.credentials import CredentialError, load_for_use
from agent.credentials.errors import classify_token_answer, scrub, transport_error
from agent.credentials.files import secrets_of
from agent.credentials.history import History, fingerprint
from agent.exitcodes import EXIT_CREDENTIAL, EXIT_FAILURE, EXIT_OK, EXIT_TRANSIENT
from agent.logline import one_line
from agent.sheets.collect import DEPLOYMENT, LAST_SYNC_COL, Rows, collect, data_rows
from agent.sheets.ports import Listener
from agent.store import Store, SyncRun, open_store

PREFIX = "[port-sheet]"
_EXIT = {"ok": EXIT_OK, "credential_error": EXIT_CREDENTIAL, "transient": EXIT_TRANSIENT}


class ApiError(Exception):
    """The Sheets API refused a call: ``status`` and Google's message."""

    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status} {message}".strip())
        self.status = status


class NetworkError(Exception):
    """The Sheets API could not be reached (timeout, refused, DNS) after every retry."""


@dataclass
class SyncResult:
    outcome: str  # ok | credential_error | transient | error
    message: str  # the one log line, without the prefix
    rows: int = 0
    requests: int = 0
    seconds: float = 0.0
    error_class: str | None = None
    created_tabs: list[str] = field(default_factory=list)
    written_tabs: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return _EXIT.get(self.outcome, EXIT_FAILURE)

    @property
    def line(self) -> str:
        # One line whatever the message holds (an endpoint's error_description comes from outside).
        return f"{PREFIX} {one_line(self.message)}"

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "exit_code": self.exit_code,
            "message": self.line,
            "rows": self.rows,
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "error_class": self.error_class,
            "created_tabs": self.created_tabs,
            "written_tabs": self.written_tabs,
        }


class _CountingHttp(google_auth_httplib2.AuthorizedHttp):
    """AuthorizedHttp that counts API requests (token refreshes go around it, uncounted)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.count = 0

    def request(self, *args: Any, **kwargs: Any) -> Any:
        self.count += 1
        return super().request(*args, **kwargs)


@functools.cache
def _discovery() -> dict[str, Any]:
    """The Sheets v4 discovery document bundled with googleapiclient, minus schema bodies.

    The schemas serve only to render docstrings, which googleapiclient builds eagerly: about
    0.65 s per process for the Spreadsheet and Request schemas. Requests are built from the
    methods and parameters alone, so dropping the bodies changes nothing on the wire.
    """
    doc = json.loads(discovery_cache.get_static_doc("sheets", "v4"))
    doc["schemas"] = {name: {"id": name, "type": "object"} for name in doc["schemas"]}
    return doc


def _letters(n: int) -> str:
    """Column letters of the 1-based column ``n``."""
    out = ""
    while n:
        n, rem = divmod(n - 1, 26)
        out = chr(65 + rem) + out
    return out


def _quote(title: str) -> str:
    return "'" + title.replace("'", "''") + "'"


def _normalize(rows: list[list[Any]]) -> Rows:
    """Strings, trailing blanks trimmed: the shape ``values.batchGet`` answers with."""
    out: Rows = []
    for row in rows:
        cells = ["" if c is None else str(c) for c in row]
        while cells and cells[-1] == "":
            cells.pop()
        out.append(cells)
    while out and not out[-1]:
        out.pop()
    return out


class SheetsWriter:
    """The Sheets v4 calls of one run, with bounded retries and a request count."""

    def __init__(self, credentials: Any, settings: Settings, sleep: Callable = time.sleep):
        s = settings.sheets
        self.settings = settings
        self.http = _CountingHttp(credentials, http=httplib2.Http(timeout=s.timeout))
        self.service = build_from_document(
            _discovery(), http=self.http, client_options={"api_endpoint": s.endpoint}
        )
        self.sleep = sleep

    @property
    def requests(self) -> int:
        return self.http.count

    def _execute(self, request: Any) -> Any:
        s = self.settings.sheets
        attempt = 0
        while True:
            try:
                return request.execute(num_retries=0)
            except HttpError as exc:
                status = int(exc.resp.status)
                if (status == 429 or status >= 500) and attempt < s.max_retries:
                    self.sleep(s.retry_base_delay * (2**attempt))
                    attempt += 1
                    continue
                raise ApiError(status, _reason(exc)) from None
            except gexc.RefreshError as exc:
                # The API said 401 and the library's refresh failed: a credential error.
                body = exc.args[1] if len(exc.args) > 1 else None
                err = body.get("error") if isinstance(body, dict) else None
                status = 401 if err in ("invalid_client", "deleted_client") else 400
                fallback = str(exc.args[0]) if exc.args else ""
                raise classify_token_answer(status, body, fallback) from None
            except gexc.TransportError as exc:
                # The token endpoint, not the API, was unreachable during a refresh.
                raise transport_error(exc) from None
            except (TimeoutError, OSError, httplib2.HttpLib2Error) as exc:
                if attempt < s.max_retries:
                    self.sleep(s.retry_base_delay * (2**attempt))
                    attempt += 1
                    continue
                raise NetworkError(f"Sheets API unreachable: {type(exc).__name__}") from None

    def push(self, spreadsheet_id: str, tabs: dict[str, Rows]) -> SyncResult:
        sheets = self.service.spreadsheets()
        values = None  # the values resource, built on first use
        meta = self._execute(
            sheets.get(spreadsheetId=spreadsheet_id, fields="sheets.properties(sheetId,title)")
        )
        existing = {s["properties"]["title"] for s in meta.get("sheets", [])}
        missing = [t for t in tabs if t not in existing]
        if missing:
            body = {"requests": [{"addSheet": {"properties": {"title": t}}} for t in missing]}
            try:
                self._execute(sheets.batchUpdate(spreadsheetId=spreadsheet_id, body=body))
            except ApiError as exc:
                # A retry after a lost answer finds the tabs made by the first attempt.
                if exc.status != 400 or "already exists" not in str(exc):
                    raise
        current: dict[str, Rows] = {t: [] for t in missing}
        present = [t for t in tabs if t in existing]
        if present:
            values = values or sheets.values()
            got = self._execute(
                values.batchGet(
                    spreadsheetId=spreadsheet_id,
                    ranges=[_quote(t) for t in present],
                    majorDimension="ROWS",
                )
            )
            ranges = got.get("valueRanges", [])
            for title, vr in zip(present, ranges, strict=True):
                current[title] = _normalize(vr.get("values", []))

        desired = {t: _normalize(rows) for t, rows in tabs.items()}
        # "Last sync" is when the sheet was last written; alone it is not a change.
        dep, cur_dep = desired.get(DEPLOYMENT), current.get(DEPLOYMENT, [])
        if dep and len(dep) > 1 and len(cur_dep) > 1 and len(cur_dep[1]) > LAST_SYNC_COL:
            probe = [list(r) for r in dep]
            probe[1][LAST_SYNC_COL] = cur_dep[1][LAST_SYNC_COL]
            dep_changed = probe != cur_dep
        else:
            dep_changed = dep != cur_dep
        changed = [t for t in tabs if t != DEPLOYMENT and desired[t] != current[t]]
        if dep_changed or changed:
            changed.append(DEPLOYMENT)
        data = []
        for title in changed:
            rows, old = desired[title], current[title]
            height = max(len(rows), len(old), 1)
            width = max([len(r) for r in rows + old] + [1])
            padded = [r + [""] * (width - len(r)) for r in rows]
            padded += [[""] * width for _ in range(height - len(rows))]
            data.append(
                {"range": f"{_quote(title)}!A1:{_letters(width)}{height}", "values": padded}
            )
        if data:
            values = values or sheets.values()
            # RAW: a task title such as "=IMPORTXML(...)" stays text, never a formula.
            self._execute(
                values.batchUpdate(
                    spreadsheetId=spreadsheet_id, body={"valueInputOption": "RAW", "data": data}
                )
            )
        return SyncResult(
            "ok", "", rows=data_rows(tabs), created_tabs=missing, written_tabs=changed
        )


def _reason(exc: HttpError) -> str:
    try:
        return str(json.loads(exc.content)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return str(getattr(exc, "reason", "") or "")


def _record_failure(
    settings: Settings, history: History, info: dict[str, Any] | None, cause: str
) -> None:
    """Note the token's first failure in the history (best effort: never fails the run)."""
    from agent.credentials.google import active_path, read_file

    with contextlib.suppress(CredentialError, OSError):
        history.failed(
            fingerprint(info or read_file(active_path(settings))[0]), cause, datetime.now(UTC)
        )


def _default_log(line: str) -> None:
    print(one_line(line), flush=True)


def run_sync(
    settings: Settings,
    *,
    store: Store | None = None,
    ports: Callable[[], list[Listener]] | None = None,
    now: datetime | None = None,
    log: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> SyncResult:
    """One sync run: credentials, rows, API calls, one log line, one store record."""
    log = log or _default_log
    started = now or datetime.now(UTC)
    t0 = time.monotonic()
    own_store = store is None
    writer: SheetsWriter | None = None
    info: dict[str, Any] | None = None
    history = History.for_settings(settings)
    try:
        if not settings.sheets.spreadsheet_id:
            raise ConfigError(settings.source, "sheets.spreadsheet_id", "a spreadsheet ID")
        if store is None:
            store = open_store(settings)
        refreshed, info = load_for_use(settings)
        writer = SheetsWriter(refreshed.credentials, settings, sleep=sleep)
        tabs = collect(store, settings, started, ports)
        result = writer.push(settings.sheets.spreadsheet_id, tabs)
        result.requests = writer.requests
        result.seconds = time.monotonic() - t0
        result.message = (
            f"sync ok rows={result.rows} requests={result.requests} in {result.seconds:.2f}s"
        )
        history.used(fingerprint(info), datetime.now(UTC))
    except CredentialError as exc:
        if exc.transient:
            result = SyncResult("transient", f"transient error: {exc}", error_class=exc.cause)
        elif exc.cause == "permissions":
            # Its own prefix: the permission rule runs the permission audit, not a token refresh.
            result = SyncResult(
                "credential_error", f"permission error: {exc}", error_class=exc.cause
            )
        else:
            result = SyncResult("credential_error", f"token error: {exc}", error_class=exc.cause)
            _record_failure(settings, history, info, exc.cause)
    except ApiError as exc:
        if exc.status in (429,) or exc.status >= 500:
            outcome = "transient"
        elif exc.status in (401, 403):
            outcome = "credential_error"  # the identity cannot use the sheet: a human acts
        else:
            outcome = "error"
        result = SyncResult(outcome, f"api error: {exc}", error_class=f"http_{exc.status}")
    except NetworkError as exc:
        result = SyncResult("transient", f"transient error: {exc}", error_class="network")
    except Exception as exc:  # one line, one record, exit 1 — never a traceback in the journal
        text = scrub(str(exc), secrets_of(info))
        result = SyncResult("error", f"error: {type(exc).__name__}: {text}", error_class="error")
    if writer is not None:
        result.requests = writer.requests
    result.seconds = time.monotonic() - t0
    finished = datetime.now(UTC)
    log(result.line)
    if store is not None:
        try:
            store.record_sync_run(
                SyncRun(
                    started=started,
                    finished=finished,
                    outcome=result.outcome,
                    rows=result.rows,
                    requests=result.requests,
                    error_class=result.error_class,
                )
            )
        except Exception as exc:  # the run's outcome stands even if the record fails
            print(f"{PREFIX} could not record the run: {type(exc).__name__}", file=sys.stderr)
        if own_store:
            store.close()
    return result


__all__ = ["PREFIX", "SyncResult", "run_sync"]
