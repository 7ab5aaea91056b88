"""Daemon fixtures: the fake Anthropic server, a controllable clock, settings in tmp_path."""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime, timedelta

import pytest

from agent.daemon.loop import Daemon
from agent.store import open_store
from tests.fakes.anthropic import FakeAnthropic

KEY = "sk-test-0123456789"


class Clock:
    """A clock that moves only when told to (the daemon's injected ``now``)."""

    def __init__(self, at: datetime):
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> None:
        self.at += timedelta(**delta)


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
def clock():
    return Clock(datetime(2026, 5, 13, 23, 0, tzinfo=UTC))


@pytest.fixture
def daemon_settings(settings_factory, tmp_path, fake_server):
    key_file = tmp_path / "state" / "secrets" / "anthropic-api-key"
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text(KEY + "\n")
    os.chmod(key_file, 0o600)

    def make(**daemon):
        base = {
            "anthropic_base_url": fake_server.url,
            "api_key_file": str(key_file),
            "workspace_root": str(tmp_path / "ws"),
            "allowed_commands": ["ls", "cat", "echo", "sleep", "env"],
            "command_timeout": "2s",
        }
        return settings_factory(daemon={**base, **daemon})

    return make


@pytest.fixture
def make_daemon(daemon_settings, clock):
    made = []

    def make(**daemon):
        settings = daemon_settings(**daemon)
        out = io.StringIO()
        d = Daemon(settings, store=open_store(settings), now=clock, out=out)
        made.append(d)
        return d

    yield make
    for d in made:
        d.waker.close()
        d.store.close()


def log_of(d: Daemon) -> str:
    return d.out.getvalue()
