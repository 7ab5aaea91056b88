"""Credential checks by their cheapest real call; no secret in any result."""

from __future__ import annotations

import json
import os
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from agent.health.creds import check_anthropic, check_aws, check_file_modes, check_google

KEY = "sk-ant-api03-health-test-key-0123456789"


class _Models(BaseHTTPRequestHandler):
    def log_message(self, *a):  # quiet
        pass

    def do_GET(self):
        auth = self.headers.get("x-api-key") or self.headers.get("Authorization", "").removeprefix(
            "Bearer "
        )
        if not self.path.startswith("/v1/models"):
            status, body = (
                404,
                {"type": "error", "error": {"type": "not_found_error", "message": "?"}},
            )
        elif auth != KEY:
            status, body = 401, {"type": "error",
                                 "error": {"type": "authentication_error", "message": "invalid x-api-key"}}  # fmt: skip
        else:
            model = {"type": "model", "id": "claude-sonnet-4-5", "display_name": "Claude Sonnet 4.5",
                     "created_at": "2025-09-29T00:00:00Z"}  # fmt: skip
            status, body = 200, {"data": [model], "has_more": False,
                                 "first_id": model["id"], "last_id": model["id"]}  # fmt: skip
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def models_api():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Models)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _settings(settings_factory, tmp_path: Path, key: str | None, base_url: str):
    key_file = tmp_path / "anthropic-api-key"
    if key is not None:
        key_file.write_text(key + "\n")
        key_file.chmod(0o600)
    return settings_factory(daemon={"api_key_file": str(key_file), "anthropic_base_url": base_url})


def test_valid_anthropic_key_lists_models_and_is_never_shown(
    settings_factory, tmp_path, models_api
):
    result = check_anthropic(_settings(settings_factory, tmp_path, KEY, models_api))
    assert result["status"] == "ok"
    assert KEY not in json.dumps(result)


def test_rejected_anthropic_key_is_reported_without_the_key(settings_factory, tmp_path, models_api):
    bad = "sk-ant-api03-revoked-key-9999"
    result = check_anthropic(_settings(settings_factory, tmp_path, bad, models_api))
    assert result["status"] == "rejected"
    assert bad not in json.dumps(result)


def test_missing_anthropic_key_file_is_missing(settings_factory, tmp_path, models_api):
    assert (
        check_anthropic(_settings(settings_factory, tmp_path, None, models_api))["status"]
        == "missing"
    )


@pytest.fixture
def moto_sts(monkeypatch):
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    yield
    server.stop()


def test_aws_role_checked_with_get_caller_identity(settings_factory, monkeypatch, moto_sts):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDHEALTHTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret-value")
    result = check_aws(settings_factory())
    assert result["status"] == "ok"
    assert result["detail"].startswith("arn:aws:")
    assert "not-a-real-secret-value" not in json.dumps(result)


def test_aws_without_credentials_is_missing_only_when_a_setting_needs_them(
    settings_factory, monkeypatch, moto_sts
):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    needs = check_aws(settings_factory(google={"secret_name": "jada/google-token"}))
    assert needs["status"] == "missing"
    assert "google.secret_name" in needs["detail"]
    assert check_aws(settings_factory())["status"] == "not used"


def _script(tmp_path: Path, body: str) -> list[str]:
    p = tmp_path / "credentials-cli"
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(0o700)
    return [str(p)]


def test_google_diagnose_contract_gives_cause_and_next_step(settings_factory, tmp_path):
    diag = {"cause": "revoked", "machine_fixable": False, "next_step": "ansible-playbook playbooks/reauth.yml -l HOST",
            "repair": None, "findings": []}  # fmt: skip
    cmd = _script(
        tmp_path,
        f"""case "$*" in
  *diagnose*) echo '{json.dumps(diag)}'; exit 2;;
  *forecast*) echo '{{"expires_in_days": null}}';;
esac
""",
    )
    result = check_google(settings_factory(), None, command=cmd)
    assert (result["status"], result["cause"]) == ("failing", "revoked")
    assert result["next_step"].startswith("ansible-playbook playbooks/reauth.yml")
    assert result["forecast"] == {"expires_in_days": None}


def test_google_without_the_credentials_command_is_not_checked(settings_factory, tmp_path):
    cmd = _script(
        tmp_path,
        "echo \"usage: jada-agent: error: argument COMMAND: invalid choice: 'credentials'\" >&2; exit 2\n",
    )
    result = check_google(settings_factory(), None, command=cmd)
    assert result == result | {"status": "not checked", "detail": "agent.credentials unavailable"}


def test_file_modes_flag_a_world_readable_token_and_an_open_directory(settings_factory, tmp_path):
    s = settings_factory()
    secrets = Path(s.secrets_dir)
    secrets.mkdir(parents=True)
    secrets.chmod(0o755)
    (secrets / "google-token.json").write_text("{}")
    (secrets / "google-token.json").chmod(0o644)
    (secrets / "anthropic-api-key").write_text("x")
    (secrets / "anthropic-api-key").chmod(0o600)
    by_path = {Path(f["path"]).name: f for f in check_file_modes(s)}
    assert by_path["secrets"]["problem"] == "mode 0755 is wider than 0700"
    assert by_path["google-token.json"]["problem"] == "mode 0644 is wider than 0600"
    assert by_path["anthropic-api-key"]["ok"] is True
    assert stat.S_IMODE((secrets / "google-token.json").stat().st_mode) == 0o644  # only read


def test_google_check_through_the_real_credentials_command_names_the_cause(tmp_path):
    from agent import config

    cfg = tmp_path / "agent.yml"
    cfg.write_text(
        f"secrets_dir: {tmp_path}/secrets\ngoogle:\n  token_file: {tmp_path}/none.json\n"
    )
    result = check_google(config.load(cfg), str(cfg))
    assert (result["status"], result["cause"]) == ("failing", "missing")
    assert result["next_step"]


def _fake_systemctl(tmp_path: Path, environment: str) -> str:
    """A stand-in systemctl answering `show -p Environment -p EnvironmentFiles UNIT` for the
    remediator's unit only (this machine has no systemd as PID 1)."""
    script = tmp_path / "systemctl"
    script.write_text(
        "#!/bin/sh\n"
        'case "$*" in *jada-remediator.service*)\n'
        f"  printf '%s\\n' {json.dumps('Environment=' + environment)} 'EnvironmentFiles=' ;;\n"
        "*) printf 'Environment=\\nEnvironmentFiles=\\n' ;; esac\n"
    )
    script.chmod(0o755)
    return str(script)


def test_aws_role_is_checked_with_the_credentials_the_remediator_unit_is_given(
    settings_factory, tmp_path, monkeypatch, moto_sts
):
    # The shell running health has no AWS key; only the remediator's unit is given one, through
    # AWS_SHARED_CREDENTIALS_FILE (roles/remediator): the host is healthy, not "missing".
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    creds = tmp_path / "aws-credentials"
    creds.write_text(
        "[default]\naws_access_key_id = AKIDUNITONLY\n"
        "aws_secret_access_key = unit-only-secret-value\n"
    )
    creds.chmod(0o600)
    # The unit's own endpoint and files (as the role's remediator_environment gives them): the
    # check must use the unit's, not this shell's.
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # the shell's: unused
    systemctl = _fake_systemctl(
        tmp_path,
        f'PYTHONUNBUFFERED=1 "HOME=/var/lib/x y" AWS_ENDPOINT_URL={endpoint} '
        f"AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null "
        f"AWS_SHARED_CREDENTIALS_FILE={creds}",
    )
    settings = settings_factory(google={"secret_name": "jada/google-token"})
    result = check_aws(settings, systemctl=systemctl)
    assert result["status"] == "ok", result
    assert "jada-remediator.service" in result["source"]
    assert "unit-only-secret-value" not in json.dumps(result)
    assert os.environ["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9"  # this process's, restored
    assert "AWS_SHARED_CREDENTIALS_FILE" in os.environ and os.environ[
        "AWS_SHARED_CREDENTIALS_FILE"
    ] != str(creds)


def test_aws_role_missing_when_neither_the_unit_nor_the_shell_has_a_key(
    settings_factory, tmp_path, monkeypatch, moto_sts
):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    systemctl = _fake_systemctl(tmp_path, "PYTHONUNBUFFERED=1")
    settings = settings_factory(google={"secret_name": "jada/google-token"})
    result = check_aws(settings, systemctl=systemctl)
    assert result["status"] == "missing"
    assert result["source"] == "boto3 default chain"
