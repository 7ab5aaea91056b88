"""Real daemon processes (``python -m agent daemon``) against the fake Anthropic server."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.fakes.anthropic import FakeAnthropic

KEY = "sk-integration-5f3a9c"

# A stand-in agent command for runner=command: quick to start (the Anthropic SDK alone takes
# seconds to import), exits 0; with HOLD in its prompt it waits until told to go on.
AGENT = """
import os, sys, time
prompt = open(sys.argv[1]).read()
if "HOLD" in prompt:
    open("entered", "w").close()
    deadline = time.monotonic() + 120
    while not os.path.exists("release") and time.monotonic() < deadline:
        time.sleep(0.02)
sys.exit(0)
"""


class DaemonProcess:
    """A daemon child whose output lines can be awaited."""

    def __init__(self, config: Path, env: dict[str, str] | None = None):
        self.lines: list[str] = []
        self.times: list[float] = []
        self._q: queue.Queue[str] = queue.Queue()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "-c", str(config), "daemon"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.times.append(time.monotonic())
            self.lines.append(line.rstrip("\n"))
            self._q.put(line)

    def wait_for(self, pattern: str, timeout: float = 60) -> str:
        rx = re.compile(pattern)
        for line in self.lines:
            if rx.search(line):
                return line
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._q.get(timeout=0.05)
            except queue.Empty:
                continue
            if rx.search(line):
                return line
        raise AssertionError(f"no line matching {pattern!r}; output:\n" + "\n".join(self.lines))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"daemon did not stop within {timeout}s of SIGTERM; output:\n"
                + "\n".join(self.lines)
            ) from None
        finally:
            self._reader.join(timeout=2)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture(scope="session")
def fake_server():
    with FakeAnthropic(keys=(KEY,)) as fake:
        yield fake


@pytest.fixture
def fake(fake_server):
    fake_server.reset()
    fake_server.set_keys([KEY])
    yield fake_server
    fake_server.reset()


@pytest.fixture
def config_file(tmp_path, fake_server):
    """A settings file; ``poll_interval`` is an hour so that only a nudge can wake the daemon."""
    state = tmp_path / "st"
    (state / "secrets").mkdir(parents=True)
    key = state / "secrets" / "anthropic-api-key"
    key.write_text(KEY)
    key.chmod(0o600)

    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)

    def make(store: dict | None = None, command_runner: bool = False, **daemon) -> Path:
        if command_runner:
            daemon = {
                "runner": "command",
                "command": [sys.executable, str(agent), "{prompt_file}"],
                **daemon,
            }
        data = {
            "host_name": "itest",
            "state_dir": str(state),
            "store": store or {"path": str(state / "store.db")},
            "daemon": {
                "anthropic_base_url": fake_server.url,
                "api_key_file": str(key),
                "workspace_root": str(tmp_path / "ws"),
                "poll_interval": "1h",
                "lease_ttl": "6s",
                **daemon,
            },
        }
        path = tmp_path / "agent.yml"
        path.write_text(yaml.safe_dump(data))
        return path

    return make


@pytest.fixture
def daemons():
    started: list[DaemonProcess] = []

    def start(config: Path, env: dict[str, str] | None = None) -> DaemonProcess:
        d = DaemonProcess(config, env)
        started.append(d)
        return d

    yield start
    for d in started:
        d.kill()


def cli(config: Path, *argv: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "agent", "-c", str(config), *argv],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return out.stdout


@pytest.fixture
def aws_env(monkeypatch):
    """Fake credentials for moto, for this process and the daemons it starts."""
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env
