"""``credentials diagnose``: every cause produced for real by the fake and classified correctly."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest

from agent.credentials import diagnose
from agent.credentials.history import History, fingerprint
from tests.fakes.google import FakeGoogle
from tests.integration.google.conftest import (
    assert_no_secret,
    closed_port,
    run_agent,
    write_config,
    write_secret_file,
)


def test_a_live_token_is_ok_with_every_check_passing(installed):
    s, _ = installed()
    d = diagnose(s)
    assert d.cause == "ok"
    assert d.repair is None
    assert [f.check for f in d.findings] == [
        "file_present",
        "file_valid",
        "file_mode",
        "file_owner",
        "dir_mode",
        "dir_owner",
        "scopes",
        "refresh",
    ]
    assert all(f.ok for f in d.findings)


def test_a_missing_file_is_missing_and_sends_the_operator_to_reauth(gsettings):
    s = gsettings()
    d = diagnose(s)
    assert d.cause == "missing"
    assert not d.machine_fixable
    assert d.next_step == "ansible-playbook playbooks/reauth.yml -l test-host"


@pytest.mark.parametrize(
    ("content", "named"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"client_id": "x", "client_secret": "y"}', "refresh_token"),
        (b'["a list"]', "JSON object"),
        (b'{"type": "external_account"}', "type"),
    ],
)
def test_a_damaged_file_is_corrupt_and_the_finding_names_the_problem(gsettings, content, named):
    s = gsettings()
    write_secret_file(Path(s.google.token_file), content)
    d = diagnose(s)
    assert d.cause == "corrupt"
    valid = next(f for f in d.findings if f.check == "file_valid")
    assert not valid.ok and named in valid.detail


def test_a_world_readable_file_is_a_permissions_problem_a_machine_fixes(installed):
    s, _ = installed()
    os.chmod(s.google.token_file, 0o644)
    d = diagnose(s)
    assert d.cause == "permissions"
    assert d.machine_fixable
    assert d.repair == {"action": "fix_permissions"}
    assert d.next_step == "jada-agent credentials fix-permissions"
    mode = next(f for f in d.findings if f.check == "file_mode")
    assert not mode.ok and "0644" in mode.detail


def test_an_open_secrets_directory_is_a_permissions_problem(installed):
    s, _ = installed()
    os.chmod(Path(s.google.token_file).parent, 0o755)  # noqa: S103 - the fault under test
    d = diagnose(s)
    assert d.cause == "permissions"
    assert not next(f for f in d.findings if f.check == "dir_mode").ok


def test_the_owner_check_compares_with_the_current_user_when_the_service_user_is_absent(installed):
    s, _ = installed(service_user="no-such-user-here")
    d = diagnose(s)
    owner = next(f for f in d.findings if f.check == "file_owner")
    assert owner.ok
    assert "'no-such-user-here' does not exist here" in owner.detail


def test_a_revoked_token_is_revoked_or_expired(installed, fake: FakeGoogle):
    s, _ = installed()
    fake.revoke_all()
    d = diagnose(s)
    assert d.cause == "revoked_or_expired"
    assert not d.machine_fixable
    refresh = next(f for f in d.findings if f.check == "refresh")
    assert refresh.detail == "HTTP Error 400: invalid_grant: Token has been expired or revoked."


def test_a_rotated_client_secret_is_client_rotated_or_deleted(installed, fake: FakeGoogle):
    s, token = installed()
    fake.rotate_client_secret(token["client_id"])
    d = diagnose(s)
    assert d.cause == "client_rotated_or_deleted"
    assert "HTTP Error 401: invalid_client" in d.findings[-2].detail + d.findings[-1].detail


def test_a_deleted_client_is_client_rotated_or_deleted(installed, fake: FakeGoogle):
    s, token = installed()
    fake.delete_client(token["client_id"])
    assert diagnose(s).cause == "client_rotated_or_deleted"


def test_a_token_granted_fewer_scopes_is_scope_mismatch_before_any_refresh(
    gsettings, fake: FakeGoogle
):
    s = gsettings()
    token = fake.issue_refresh_token(scopes=["https://www.googleapis.com/auth/drive.file"])
    write_secret_file(Path(s.google.token_file), token)
    d = diagnose(s)
    assert d.cause == "scope_mismatch"
    assert "lack https://www.googleapis.com/auth/spreadsheets" in next(
        f.detail for f in d.findings if f.check == "scopes"
    )


def test_an_invalid_scope_answer_is_scope_mismatch(installed, fake: FakeGoogle):
    s, _ = installed()
    fake.fail_token("invalid_scope")
    assert diagnose(s).cause == "scope_mismatch"


def test_invalid_rapt_without_an_error_dict_is_reauth_required(installed, fake: FakeGoogle):
    s, _ = installed()
    fake.fail_token("invalid_rapt")
    d = diagnose(s)
    assert d.cause == "reauth_required"
    assert "invalid_rapt" in d.findings[-1].detail
    assert "gcloud" not in d.findings[-1].detail  # the library's misleading advice is not relayed


def test_unauthorized_client_is_classified(installed, fake: FakeGoogle):
    s, _ = installed()
    fake.fail_token("unauthorized_client")
    assert diagnose(s).cause == "unauthorized_client"


# 429 is classified the same way (unit tests); each case here costs google-auth's ~3 s of retries.
@pytest.mark.parametrize("error", ["internal_failure", "unavailable"])
def test_server_side_token_errors_are_transient_and_say_retry_later(installed, fake, error):
    s, _ = installed()
    fake.fail_token(error, count=3)  # the library retries internal_failure itself
    d = diagnose(s)
    assert d.cause == "transient"
    assert not d.machine_fixable
    assert d.next_step == "nothing to do; retry later"


def test_a_token_endpoint_timeout_is_transient(installed, fake: FakeGoogle):
    s, _ = installed(google={"timeout": 0.3})
    fake.delay_token(1.0)
    d = diagnose(s)
    assert d.cause == "transient"
    assert "Timeout" in d.findings[-1].detail


def test_a_refused_connection_is_transient(installed):
    s, _ = installed(google={"token_uri": f"http://127.0.0.1:{closed_port()}/token"})
    d = diagnose(s)
    assert d.cause == "transient"
    assert "unreachable" in d.findings[-1].detail


# ------------------------------------------------------------------ repairs


def _store_secret(name: str, value: dict) -> None:
    boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name=name, SecretString=json.dumps(value)
    )


def test_a_newer_working_token_in_secrets_manager_makes_a_dead_token_machine_fixable(
    installed, fake: FakeGoogle, aws
):
    s, token = installed(google={"secret_name": "jada/google-token"})
    fake.revoke_all()
    _store_secret("jada/google-token", fake.issue_refresh_token(token["client_id"]))
    d = diagnose(s)
    assert d.cause == "revoked_or_expired"
    assert d.machine_fixable
    assert d.repair == {"action": "install_from_secret", "name": "jada/google-token"}
    assert d.next_step == (
        "jada-agent credentials install --from-secret jada/google-token --verify-sync"
    )


def test_a_stale_copy_of_the_same_dead_token_in_the_store_is_not_a_fix(
    installed, fake: FakeGoogle, aws
):
    s, token = installed(google={"secret_name": "jada/google-token"})
    _store_secret("jada/google-token", token)
    fake.revoke_all()
    d = diagnose(s)
    assert not d.machine_fixable
    assert d.repair is None
    store = next(f for f in d.findings if f.check == "store_secret")
    assert "same credential" in store.detail


def test_a_different_but_also_dead_token_in_the_store_is_not_a_fix(
    installed, fake: FakeGoogle, aws
):
    s, token = installed(google={"secret_name": "jada/google-token"})
    other = fake.issue_refresh_token(token["client_id"])
    _store_secret("jada/google-token", other)
    fake.revoke_all()
    d = diagnose(s)
    assert not d.machine_fixable
    assert "fails" in next(f for f in d.findings if f.check == "store_secret").detail


def test_a_rotated_client_secret_heals_from_the_updated_ssm_parameter(
    installed, fake: FakeGoogle, aws
):
    s, token = installed(google={"parameter_name": "/jada/google-token"})
    rotated = fake.rotate_client_secret(token["client_id"])
    boto3.client("ssm", region_name="us-east-1").put_parameter(
        Name="/jada/google-token",
        Type="SecureString",
        Value=json.dumps({**token, "client_secret": rotated["client_secret"]}),
    )
    d = diagnose(s)
    assert d.cause == "client_rotated_or_deleted"
    assert d.repair == {"action": "install_from_parameter", "name": "/jada/google-token"}


def test_a_missing_secret_is_a_finding_not_a_crash(installed, fake: FakeGoogle, aws):
    s, _ = installed(google={"secret_name": "jada/absent"})
    fake.revoke_all()
    d = diagnose(s)
    assert not d.machine_fixable
    assert "ResourceNotFoundException" in next(
        f.detail for f in d.findings if f.check == "store_secret"
    )


def test_a_working_service_account_key_is_offered_when_the_user_token_is_dead(
    installed, fake: FakeGoogle, service_account
):
    s, _ = installed()
    write_secret_file(Path(s.google.service_account_file), service_account)
    fake.revoke_all()
    d = diagnose(s)
    assert d.machine_fixable
    assert d.repair == {"action": "switch_service_account"}


def test_a_service_account_credential_diagnoses_ok(gsettings, service_account):
    s = gsettings(google={"credential_type": "service_account"})
    write_secret_file(Path(s.google.service_account_file), service_account)
    assert diagnose(s).cause == "ok"


def test_tokens_dying_seven_days_after_issue_point_at_testing_publishing_status(installed, fake):
    s, token = installed()
    h = History.for_settings(s)
    issued = datetime.now(UTC) - timedelta(days=8)
    h.installed("fp-old", "file old.json", issued)
    h.failed("fp-old", "revoked_or_expired", issued + timedelta(days=7, minutes=5))
    fake.revoke_all()
    d = diagnose(s)
    hint = next(f for f in d.findings if f.check == "history")
    assert "Testing publishing status" in hint.detail
    # the dead token's first failure is now in the history too, without any secret in it
    text = Path(s.google.token_file).with_name("google-token.history.json").read_text()
    assert fingerprint(token) in text
    assert_no_secret(text, token)
    assert (
        oct(os.stat(Path(s.google.token_file).with_name("google-token.history.json")).st_mode)[-3:]
        == "600"
    )


# ------------------------------------------------------------------ the command


def test_diagnose_json_prints_the_contract_and_exits_0_only_when_ok(installed, fake, tmp_path):
    s, token = installed()
    cfg = write_config(s, tmp_path / "agent.yml")
    ok = run_agent(cfg, "credentials", "diagnose", "--json")
    assert ok.returncode == 0, ok.stderr
    assert set(json.loads(ok.stdout)) == {
        "cause",
        "machine_fixable",
        "next_step",
        "repair",
        "findings",
    }
    fake.revoke_all()
    bad = run_agent(cfg, "credentials", "diagnose", "--json")
    assert bad.returncode == 1
    data = json.loads(bad.stdout)
    assert data["cause"] == "revoked_or_expired"
    assert data["repair"] is None
    assert_no_secret(ok.stdout + ok.stderr + bad.stdout + bad.stderr, token)


def test_the_fix_permissions_command_repairs_what_diagnose_found(installed, tmp_path):
    s, _ = installed()
    os.chmod(s.google.token_file, 0o644)
    os.chmod(Path(s.google.token_file).parent, 0o750)  # noqa: S103 - the fault under test
    cfg = write_config(s, tmp_path / "agent.yml")
    fixed = run_agent(cfg, "credentials", "fix-permissions", "--json")
    assert fixed.returncode == 0, fixed.stderr
    assert json.loads(fixed.stdout)["changed"] is True
    assert diagnose(s).cause == "ok"
    again = run_agent(cfg, "credentials", "fix-permissions", "--json")
    assert json.loads(again.stdout) == {
        "changed": False,
        "actions": [],
        "path": s.google.token_file,
    }


def test_a_lost_token_file_heals_from_a_working_token_in_the_store(gsettings, fake, aws):
    s = gsettings(google={"secret_name": "jada/google-token"})
    _store_secret("jada/google-token", fake.issue_refresh_token())
    d = diagnose(s)
    assert (d.cause, d.machine_fixable) == ("missing", True)
    assert d.repair == {"action": "install_from_secret", "name": "jada/google-token"}
