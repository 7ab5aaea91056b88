"""``credentials login`` end to end against the fake consent server: approve, deny, timeout."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path

import boto3
import pytest
import yaml

from agent import config
from tests.fakes.google import FakeGoogle


@pytest.fixture
def operator(gsettings, fake: FakeGoogle, tmp_path: Path):
    """An operator's machine: a client-secrets file and a settings file naming the fake."""
    client = fake.add_client()
    secrets = tmp_path / "client_secret.json"
    secrets.write_text(
        json.dumps(
            {
                "installed": {
                    **client,
                    "auth_uri": "https://accounts.google.com/o/oauth2/auth",
                    "token_uri": "https://oauth2.googleapis.com/token",
                    "redirect_uris": ["http://localhost"],
                }
            }
        )
    )
    cfg = tmp_path / "agent.yml"
    cfg.write_text(yaml.safe_dump(config.to_dict(gsettings())))
    return {"client": client, "secrets": secrets, "cfg": cfg, "out": tmp_path / "op" / "tok.json"}


def start_login(op: dict, *extra: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent",
            "-c",
            str(op["cfg"]),
            "credentials",
            "login",
            "--no-browser",
            "--client-secrets",
            str(op["secrets"]),
            "--out",
            str(op["out"]),
            *list(extra),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # The flow speaks plain http to the loopback fake; stdout unbuffered so the URL shows.
        env={
            **os.environ,
            **(env or {}),
            "OAUTHLIB_INSECURE_TRANSPORT": "1",
            "PYTHONUNBUFFERED": "1",
        },
    )


def consent_url(proc: subprocess.Popen) -> str:
    seen = []
    for line in proc.stderr:  # type: ignore[union-attr]
        if line.startswith("http"):
            return line.strip()
        seen.append(line)
    raise AssertionError("the login printed no consent URL: " + "".join(seen))


def visit(url: str) -> int:
    """The browser: open the consent page and follow its redirect to the loopback listener."""
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback fake
        return resp.status


def test_approved_consent_writes_a_0600_token_that_works(operator, fake: FakeGoogle):
    proc = start_login(operator)
    url = consent_url(proc)
    assert "code_challenge_method=S256" in url
    assert "access_type=offline" in url and "prompt=consent" in url
    assert visit(url) == 200
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    token = json.loads(operator["out"].read_text())
    assert token["type"] == "authorized_user"
    assert token["client_id"] == operator["client"]["client_id"]
    assert token["scopes"] == ["https://www.googleapis.com/auth/spreadsheets"]
    assert stat.S_IMODE(operator["out"].stat().st_mode) == 0o600
    assert fake.refresh_tokens[token["refresh_token"]].revoked is False
    assert token["refresh_token"] not in out + err
    assert operator["client"]["client_secret"] not in out + err
    kinds = [e["kind"] for e in fake.requests()]
    assert kinds == ["consent", "token.authorization_code"]


def test_denied_consent_writes_nothing_and_exits_2(operator, fake: FakeGoogle):
    fake.set_consent("deny")
    proc = start_login(operator)
    visit(consent_url(proc))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "denied" in err
    assert not operator["out"].exists()


def test_no_consent_before_the_timeout_exits_3(operator):
    proc = start_login(operator, "--timeout", "0.5")
    consent_url(proc)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 3
    assert "timeout" in err
    assert not operator["out"].exists()


def test_login_can_push_the_token_to_secrets_manager(operator, aws):
    proc = start_login(operator, "--push-secret", "jada/google-token", "--json", env={})
    visit(consent_url(proc))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert json.loads(out)["pushed_to"] == "jada/google-token"
    stored = boto3.client("secretsmanager", region_name="us-east-1").get_secret_value(
        SecretId="jada/google-token"
    )
    assert json.loads(stored["SecretString"]) == json.loads(operator["out"].read_text())


def test_consent_with_a_scope_unticked_writes_nothing_and_exits_2(operator, fake: FakeGoogle):
    fake.set_consent("approve", grant_scopes=["openid"])
    proc = start_login(operator)
    visit(consent_url(proc))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "fewer scopes than required" in err
    assert not operator["out"].exists()
