"""Fixtures: the fake Lightsail with boto3 routed to it, and a real sshd on 127.0.0.1 that trusts
the fake's certificate authority."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.fakes.lightsail import FakeLightsail

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


@pytest.fixture
def fake_lightsail(monkeypatch: pytest.MonkeyPatch):
    with FakeLightsail() as fake:
        monkeypatch.setenv("AWS_ENDPOINT_URL_LIGHTSAIL", fake.url)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTESTHEALTH")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret-not-real")
        monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
        monkeypatch.delenv("AWS_PROFILE", raising=False)
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        yield fake


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sshd:
    def __init__(self, root: Path, ca_public_key: str):
        self.root = root
        self.port = _free_port()
        self.user = getpass.getuser()
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.host_key = root / "ssh_host_ed25519_key"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.host_key)], check=True
        )
        self.host_public_key = (root / "ssh_host_ed25519_key.pub").read_text().strip()
        (root / "ca.pub").write_text(ca_public_key + "\n")
        self.config = root / "sshd_config"
        self.config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.host_key}\n"
            f"TrustedUserCAKeys {root / 'ca.pub'}\nPidFile {root / 'sshd.pid'}\n"
            "AuthorizedKeysFile none\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "UsePAM no\nPermitRootLogin prohibit-password\nStrictModes no\n"
            "LogLevel VERBOSE\nMaxStartups 50\n"
        )
        self.log = root / "sshd.log"
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("w"),
        )
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        raise RuntimeError(f"sshd did not start: {self.log.read_text()[-500:]}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def sshd(fake_lightsail: FakeLightsail, tmp_path_factory: pytest.TempPathFactory):
    if not os.path.exists(SSHD):
        pytest.skip("openssh-server is not installed (CI installs it)")
    if os.geteuid() != 0:
        pytest.skip("sshd for another user needs root")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    server = Sshd(tmp_path_factory.mktemp("sshd"), fake_lightsail.ca_public_key)
    yield server
    server.stop()
