"""The Google fake is strict (a wrong request fails loudly) and switchable over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.fakes.google import FakeGoogle, control, parse_a1


def call(url: str, method: str = "GET", body: bytes | None = None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - loopback fake
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def test_an_unknown_path_is_a_400_naming_it(fake: FakeGoogle):
    status, body = call(fake.url + "/v5/nothing")
    assert status == 400
    assert "no such endpoint: GET /v5/nothing" in body["error_description"]


def test_the_token_endpoint_refuses_get_json_and_unknown_parameters(fake: FakeGoogle):
    assert call(fake.token_uri)[0] == 400
    status, body = call(fake.token_uri, "POST", b"{}", {"Content-Type": "application/json"})
    assert status == 400 and "x-www-form-urlencoded" in body["error_description"]
    token = fake.issue_refresh_token()
    form = urllib.parse.urlencode(
        {
            "grant_type": "refresh_token",
            "client_id": token["client_id"],
            "client_secret": token["client_secret"],
            "refresh_token": token["refresh_token"],
            "extra": "1",
        }
    ).encode()
    status, body = call(fake.token_uri, "POST", form, FORM)
    assert status == 400 and "unexpected parameter(s): extra" in body["error_description"]


def test_a_missing_refresh_parameter_is_named(fake: FakeGoogle):
    form = urllib.parse.urlencode({"grant_type": "refresh_token", "client_id": "x"}).encode()
    status, body = call(fake.token_uri, "POST", form, FORM)
    assert status == 400
    assert body["error_description"] == "Missing required parameter: client_secret"


def test_the_consent_page_requires_pkce_offline_access_and_forced_consent(fake: FakeGoogle):
    client = fake.add_client()
    q = {
        "response_type": "code",
        "client_id": client["client_id"],
        "redirect_uri": "http://127.0.0.1:9/",
        "scope": "s",
        "state": "st",
        "code_challenge": "c",
        "code_challenge_method": "plain",
        "access_type": "offline",
        "prompt": "consent",
    }
    status, body = call(fake.auth_uri + "?" + urllib.parse.urlencode(q))
    assert status == 400 and "S256" in body["error_description"]
    q.update(code_challenge_method="S256", prompt="select_account")
    status, body = call(fake.auth_uri + "?" + urllib.parse.urlencode(q))
    assert status == 400 and "prompt=consent" in body["error_description"]


def test_sheets_calls_need_a_bearer_token_the_fake_issued(fake: FakeGoogle):
    status, body = call(fake.url + "/v4/spreadsheets/sheet-under-test?alt=json")
    assert status == 401 and body["error"]["status"] == "UNAUTHENTICATED"
    status, _ = call(
        fake.url + "/v4/spreadsheets/sheet-under-test?alt=json",
        headers={"Authorization": "Bearer ya29.made-up"},
    )
    assert status == 401


def test_a1_ranges_parse_strictly():
    r = parse_a1("'It''s'!B2:C10")
    assert (r.title, r.row0, r.col0, r.row1, r.col1) == ("It's", 1, 1, 10, 3)
    assert parse_a1("Tasks").row1 is None
    with pytest.raises(Exception, match="Unable to parse range"):
        parse_a1("Tasks!A0:B")


def test_switches_work_over_http_for_another_process(fake: FakeGoogle):
    token = control(fake.url, "issue_refresh_token")
    assert token["refresh_token"] in fake.refresh_tokens
    assert control(fake.url, "revoke_all") == {"revoked": 1}
    with pytest.raises(urllib.error.HTTPError) as exc:
        control(fake.url, "fail_token", error="no_such_error")
    assert exc.value.code == 400
    with pytest.raises(urllib.error.HTTPError):
        control(fake.url, "format_disk")


def test_the_module_runs_the_fake_in_the_foreground_and_prints_its_url():
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fakes.google",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--spreadsheet",
            "demo",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = proc.stdout.readline().strip()  # type: ignore[union-attr]
        assert url.startswith("http://127.0.0.1:")
        assert control(url, "sheet_titles", spreadsheet_id="demo") == ["Sheet1"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _service(fake: FakeGoogle):
    import google_auth_httplib2
    import httplib2
    from google.oauth2.credentials import Credentials
    from googleapiclient.discovery import build

    token = fake.issue_refresh_token()
    creds = Credentials(
        None,
        refresh_token=token["refresh_token"],
        token_uri=fake.token_uri,
        client_id=token["client_id"],
        client_secret=token["client_secret"],
    )
    http = google_auth_httplib2.AuthorizedHttp(creds, http=httplib2.Http(timeout=5))
    return build(
        "sheets",
        "v4",
        http=http,
        static_discovery=True,
        client_options={"api_endpoint": fake.sheets_endpoint},
    )


def test_values_clear_and_batch_clear_work_through_the_real_client(fake: FakeGoogle):
    values = _service(fake).spreadsheets().values()
    body = {
        "valueInputOption": "RAW",
        "data": [{"range": "Sheet1!A1:B3", "values": [["a", "b"], ["c", "d"], ["e", "f"]]}],
    }
    values.batchUpdate(spreadsheetId="sheet-under-test", body=body).execute()
    values.clear(spreadsheetId="sheet-under-test", range="Sheet1!A3:B3", body={}).execute()
    assert fake.get_values("sheet-under-test", "Sheet1") == [["a", "b"], ["c", "d"]]
    values.batchClear(spreadsheetId="sheet-under-test", body={"ranges": ["Sheet1!B1:B2"]}).execute()
    assert fake.get_values("sheet-under-test", "Sheet1") == [["a"], ["c"]]
    kinds = [e["kind"] for e in fake.requests("sheets.")]
    assert kinds == ["sheets.values.batchUpdate", "sheets.values.clear", "sheets.values.batchClear"]


def test_a_write_past_its_range_is_refused(fake: FakeGoogle):
    from googleapiclient.errors import HttpError

    values = _service(fake).spreadsheets().values()
    body = {"valueInputOption": "RAW", "data": [{"range": "Sheet1!A1:A1", "values": [["a", "b"]]}]}
    with pytest.raises(HttpError) as exc:
        values.batchUpdate(spreadsheetId="sheet-under-test", body=body).execute()
    assert exc.value.resp.status == 400
    assert b"more columns than Sheet1!A1:A1" in exc.value.content
