"""The remediation lock: exclusive, re-entrant for its owner, stale holders broken."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.remediator.lock import LockBusy, RemediationLock


def test_second_owner_is_refused_until_the_first_releases(tmp_path: Path):
    lock = RemediationLock(tmp_path / "l")
    lock.acquire("remediator", ttl=60)
    with pytest.raises(LockBusy, match="held by remediator"):
        lock.acquire("operator", ttl=60)
    assert lock.acquire("remediator", ttl=60).owner == "remediator"  # renew own lock
    with pytest.raises(LockBusy):
        lock.release("operator")
    assert lock.release("remediator") is True
    assert lock.acquire("operator", ttl=60).owner == "operator"


def test_expired_and_dead_pid_locks_are_broken_with_a_log_line(tmp_path: Path, caplog):
    lock = RemediationLock(tmp_path / "l")
    lock.acquire("old", ttl=0.0)
    assert lock.acquire("new", ttl=60).owner == "new"
    assert "breaking the stale remediation lock of old: it expired" in caplog.text
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.release("new")
    lock.acquire("ghost", ttl=600, pid=dead.pid)
    assert lock.acquire("new", ttl=60).owner == "new"
    assert f"its process {dead.pid} is gone" in caplog.text


def test_cli_exits_75_when_busy_and_0_when_released(tmp_path: Path, settings_factory):
    s = settings_factory()
    cfg = tmp_path / "agent.yml"
    import yaml

    from agent import config

    cfg.write_text(yaml.safe_dump(config.to_dict(s)))

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "agent", "-c", str(cfg), "remediator", "lock", *args],
            capture_output=True,
            text=True,
        )

    assert cli("acquire", "--owner", "alice", "--ttl", "5m").returncode == 0
    busy = cli("acquire", "--owner", "bob", "--wait", "0.3s")
    assert busy.returncode == 75 and "held by alice" in busy.stderr
    assert cli("release", "--owner", "bob").returncode == 75
    assert cli("release", "--owner", "alice").returncode == 0
    assert cli("acquire", "--owner", "bob").returncode == 0
