"""Fixtures: the Google fake, moto for Secrets Manager/SSM, and settings wired to both."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent import config
from tests.fakes.google import FakeGoogle

SHEET = "sheet-under-test"


@pytest.fixture(scope="session")
def google_server() -> Iterator[FakeGoogle]:
    with FakeGoogle() as fake:
        yield fake


@pytest.fixture
def fake(google_server: FakeGoogle) -> FakeGoogle:
    google_server.reset()
    google_server.create_spreadsheet(SHEET)
    return google_server


def write_secret_file(path: Path, data: dict[str, Any] | bytes, mode: int = 0o600) -> Path:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.write(fd, raw)
    os.close(fd)
    os.chmod(path, mode)
    return path


@pytest.fixture
def gsettings(settings_factory, fake: FakeGoogle, tmp_path: Path):
    """Settings on the fake; the token file is under tmp_path (not yet written)."""

    def make(**sections: Any) -> config.Settings:
        secrets = tmp_path / "state" / "secrets"
        google = {
            "token_file": str(secrets / "google-token.json"),
            "service_account_file": str(secrets / "google-service-account.json"),
            "token_uri": fake.token_uri,
            "auth_uri": fake.auth_uri,
            "timeout": "2s",
            **sections.pop("google", {}),
        }
        sheets = {
            "spreadsheet_id": SHEET,
            "endpoint": fake.sheets_endpoint,
            "timeout": "2s",
            "max_retries": 2,
            "retry_base_delay": 0.01,
            "deployed_marker": str(tmp_path / "DEPLOYED"),
            **sections.pop("sheets", {}),
        }
        return settings_factory(google=google, sheets=sheets, **sections)

    return make


@pytest.fixture
def installed(fake: FakeGoogle, gsettings):
    """Settings plus a live token written 0600 at google.token_file; returns (settings, token)."""

    def make(**sections: Any):
        s = gsettings(**sections)
        token = fake.issue_refresh_token()
        write_secret_file(Path(s.google.token_file), token)
        return s, token

    return make


@pytest.fixture(scope="session")
def sa_key() -> dict[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return {"private": private, "public": public}


@pytest.fixture
def service_account(fake: FakeGoogle, sa_key: dict[str, str]) -> dict[str, Any]:
    email = "port-sheet@jada-test.iam.gserviceaccount.com"
    fake.add_service_account(email, sa_key["public"])
    return {
        "type": "service_account",
        "project_id": "jada-test",
        "private_key_id": "k1",
        "private_key": sa_key["private"],
        "client_email": email,
        "client_id": "1234567890",
        "token_uri": "https://oauth2.googleapis.com/token",  # the settings' token_uri wins
    }


@pytest.fixture
def aws(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """boto3 pointed at moto (reset for each test)."""
    import urllib.request

    reset = urllib.request.Request(moto_url + "/moto-api/reset", method="POST")  # noqa: S310
    urllib.request.urlopen(reset, timeout=5).close()  # noqa: S310 - loopback moto
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return moto_url


def write_config(s: config.Settings, path: Path) -> Path:
    path.write_text(yaml.safe_dump(config.to_dict(s)))
    return path


def run_agent(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m agent -c CFG ARGS`` in its own process: output captured, a minute at most."""
    return subprocess.run(
        [sys.executable, "-m", "agent", "-c", str(cfg), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def closed_port() -> int:
    """A loopback port with nothing listening (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def secret_values(token: dict[str, Any]) -> list[str]:
    return [token[k] for k in ("client_secret", "refresh_token") if k in token]


def assert_no_secret(text: str, *tokens: dict[str, Any]) -> None:
    """Fail naming only *which* secret leaked, so a failure does not print the secret itself."""
    leaked = [
        f"token {i} {key}"
        for i, token in enumerate(tokens)
        for key in ("client_secret", "refresh_token")
        if key in token and token[key] in text
    ]
    assert not leaked, f"secret(s) in the output: {', '.join(leaked)}"
