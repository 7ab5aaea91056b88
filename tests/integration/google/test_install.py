"""``credentials install``: atomic, 0600, backup, corrupt file kept aside, crash-safe, rollback."""

from __future__ import annotations

import functools
import json
import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import boto3

from agent import config
from agent.credentials import diagnose, install
from agent.credentials.history import History, fingerprint
from agent.credentials.install import SyncCheck
from agent.sheets import run_sync
from tests.fakes.google import FakeGoogle
from tests.integration.google.conftest import (
    assert_no_secret,
    run_agent,
    write_config,
    write_secret_file,
)


def mode(path: str | Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _sync(s: config.Settings, log: Callable[[str], None] = lambda line: None) -> SyncCheck:
    # What `credentials install --verify-sync` passes in: one real sync against the fake.
    return functools.partial(run_sync, s, log=log)


def new_token_file(fake: FakeGoogle, tmp_path: Path, client_id: str | None = None) -> tuple:
    token = fake.issue_refresh_token(client_id)
    src = write_secret_file(tmp_path / "incoming" / "token.json", token, mode=0o640)
    return token, src


def test_install_from_a_file_writes_0600_and_keeps_the_old_one_as_a_0600_backup(
    installed, fake, tmp_path
):
    s, old = installed()
    new, src = new_token_file(fake, tmp_path, old["client_id"])
    out = install(s, "file", str(src))
    assert out.ok, out.message
    target = Path(s.google.token_file)
    assert json.loads(target.read_text())["refresh_token"] == new["refresh_token"]
    assert mode(target) == 0o600
    bak = Path(out.result.backup)
    assert json.loads(bak.read_text())["refresh_token"] == old["refresh_token"]
    assert mode(bak) == 0o600
    assert [p.name for p in target.parent.iterdir() if ".tmp-" in p.name] == []
    assert History.for_settings(s).get(fingerprint(new))["source"] == f"file {src}"


def test_installing_the_same_credential_again_changes_nothing(installed):
    s, token = installed()
    src = write_secret_file(Path(s.state_dir) / "same.json", token)
    before = os.stat(s.google.token_file).st_ino
    out = install(s, "file", str(src))
    assert out.ok and not out.result.changed
    assert os.stat(s.google.token_file).st_ino == before


def test_a_credential_that_fails_to_refresh_is_not_installed(installed, fake, tmp_path):
    s, _old = installed()
    new, src = new_token_file(fake, tmp_path)
    fake.revoke(new["refresh_token"])
    before = Path(s.google.token_file).read_bytes()
    out = install(s, "file", str(src))
    assert out.exit_code == 2
    assert out.cause == "revoked_or_expired"
    assert Path(s.google.token_file).read_bytes() == before


def test_an_invalid_file_is_refused_with_the_field_named(installed, tmp_path):
    s, _ = installed()
    src = write_secret_file(tmp_path / "bad.json", {"client_id": "x", "client_secret": "y"})
    out = install(s, "file", str(src))
    assert out.exit_code == 2
    assert "refresh_token: expected a non-empty string" in out.message


def test_no_verify_installs_without_contacting_the_token_endpoint(gsettings, fake, tmp_path):
    s = gsettings()
    _, src = new_token_file(fake, tmp_path)
    fake.clear_log()
    out = install(s, "file", str(src), verify=False)
    assert out.ok and not out.verified
    assert fake.requests("token") == []


def test_a_corrupt_existing_file_is_kept_aside_not_lost(gsettings, fake, tmp_path):
    s = gsettings()
    target = write_secret_file(Path(s.google.token_file), b"{half a file")
    _, src = new_token_file(fake, tmp_path)
    out = install(s, "file", str(src))
    assert out.ok
    aside = Path(out.result.kept_aside)
    assert aside.read_bytes() == b"{half a file"
    assert mode(aside) == 0o600
    assert aside.parent == target.parent


def test_a_crash_between_write_and_rename_leaves_the_old_token_intact(installed, fake, tmp_path):
    s, old = installed()
    _, src = new_token_file(fake, tmp_path, old["client_id"])
    cfg = write_config(s, tmp_path / "agent.yml")
    # A real process dies (os._exit: no cleanup, no finally) right before the rename.
    script = textwrap.dedent(
        f"""
        import os
        from agent import config
        from agent.credentials import install
        s = config.load({str(cfg)!r})
        install(s, "file", {str(src)!r}, before_rename=lambda tmp: os._exit(9))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=os.getcwd(), timeout=60, check=False)
    assert proc.returncode == 9
    target = Path(s.google.token_file)
    assert json.loads(target.read_text())["refresh_token"] == old["refresh_token"]
    leftovers = [p for p in target.parent.iterdir() if ".tmp-" in p.name]
    assert leftovers and all(mode(p) == 0o600 for p in leftovers)
    assert diagnose(s).cause == "ok"
    # The next install cleans up what the crashed one left behind.
    out = install(s, "file", str(src))
    assert out.ok
    assert sorted(out.result.stale_temp_removed) == sorted(str(p) for p in leftovers)
    assert [p for p in target.parent.iterdir() if ".tmp-" in p.name] == []


def test_verify_sync_keeps_a_working_credential(installed, fake, tmp_path):
    s, old = installed()
    _, src = new_token_file(fake, tmp_path, old["client_id"])
    out = install(s, "file", str(src), verify_sync=_sync(s))
    assert out.ok, out.message
    assert out.sync["outcome"] == "ok"
    assert not out.rolled_back


def test_verify_sync_rolls_back_when_the_sync_fails_with_a_credential_error(
    installed, fake, tmp_path
):
    s, old = installed()
    _new, src = new_token_file(fake, tmp_path, old["client_id"])
    # The refresh passes but the sheet is not shared with the new identity: the sync says 403.
    new_identity = fake.issue_refresh_token(old["client_id"], identity="stranger@example.com")
    write_secret_file(src, new_identity)
    fake.forbid("stranger@example.com")
    lines: list[str] = []
    out = install(s, "file", str(src), verify_sync=_sync(s, lines.append))
    assert out.exit_code == 2
    assert out.rolled_back
    assert (
        json.loads(Path(s.google.token_file).read_text())["refresh_token"] == old["refresh_token"]
    )
    assert lines == ["[port-sheet] api error: HTTP 403 The caller does not have permission"]


def test_install_from_secrets_manager(installed, fake, aws):
    s, old = installed()
    new = fake.issue_refresh_token(old["client_id"])
    boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name="jada/google-token", SecretString=json.dumps(new)
    )
    out = install(s, "secret", "jada/google-token")
    assert out.ok, out.message
    assert json.loads(Path(s.google.token_file).read_text()) == new


def test_install_from_ssm_parameter_store(gsettings, fake, aws):
    s = gsettings()
    new = fake.issue_refresh_token()
    boto3.client("ssm", region_name="us-east-1").put_parameter(
        Name="/jada/google-token", Type="SecureString", Value=json.dumps(new)
    )
    out = install(s, "parameter", "/jada/google-token")
    assert out.ok, out.message
    assert mode(s.google.token_file) == 0o600


def test_a_missing_secret_is_reported_and_nothing_changes(installed, aws):
    s, _ = installed()
    before = Path(s.google.token_file).read_bytes()
    out = install(s, "secret", "jada/nope")
    assert out.exit_code == 1
    assert "jada/nope" in out.message and "ResourceNotFoundException" in out.message
    assert Path(s.google.token_file).read_bytes() == before


def test_a_service_account_key_installs_to_its_own_file(gsettings, service_account, tmp_path):
    s = gsettings(google={"credential_type": "service_account"})
    src = write_secret_file(tmp_path / "sa.json", service_account)
    out = install(s, "file", str(src))
    assert out.ok, out.message
    assert out.result.path == s.google.service_account_file
    assert mode(s.google.service_account_file) == 0o600


def test_the_install_command_prints_json_and_no_secret(installed, fake, tmp_path):
    s, old = installed()
    new, src = new_token_file(fake, tmp_path, old["client_id"])
    cfg = write_config(s, tmp_path / "agent.yml")
    proc = run_agent(cfg, "credentials", "install", "--from", str(src), "--verify-sync", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["ok"] and data["verified"] and data["sync"]["outcome"] == "ok"
    assert proc.stderr.startswith("[port-sheet] sync ok")
    assert_no_secret(proc.stdout + proc.stderr, new, old)


def test_verify_sync_keeps_the_credential_when_the_sync_fails_for_a_transient_reason(
    installed, fake, tmp_path
):
    s, old = installed()
    new, src = new_token_file(fake, tmp_path, old["client_id"])
    fake.fail_sheets(503, count=10)
    out = install(s, "file", str(src), verify_sync=_sync(s))
    assert out.exit_code == 3
    assert not out.rolled_back
    assert json.loads(Path(s.google.token_file).read_text()) == new


def test_a_world_writable_secrets_directory_is_refused_by_install_and_sync(
    installed, fake, tmp_path
):
    from agent.sheets import run_sync

    s, _token = installed()
    secrets = Path(s.google.token_file).parent
    before = Path(s.google.token_file).read_bytes()
    secrets.chmod(0o777)
    _new, src = new_token_file(fake, tmp_path)
    out = install(s, "file", str(src))
    assert out.exit_code == 1
    assert "writable by anyone; refusing to install" in out.message
    assert Path(s.google.token_file).read_bytes() == before
    lines: list[str] = []
    r = run_sync(s, log=lines.append)
    assert r.exit_code == 2 and r.error_class == "permissions", lines
    assert "writable by anyone" in lines[0]
    secrets.chmod(0o700)
    assert install(s, "file", str(src)).ok
