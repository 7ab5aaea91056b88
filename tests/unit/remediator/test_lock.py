"""The remediation lock: exclusive, re-entrant for its owner, stale holders broken."""

from __future__ import annotations

import os
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


def test_a_second_process_with_the_same_owner_name_does_not_take_a_live_holders_lock(
    tmp_path: Path,
):
    lock = RemediationLock(tmp_path / "l")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        lock.acquire("jada-remediator", ttl=600, pid=other.pid)
        with pytest.raises(LockBusy, match=f"pid {other.pid}"):
            lock.acquire("jada-remediator", ttl=600, pid=os.getpid())
        with pytest.raises(LockBusy):
            lock.release("jada-remediator", pid=os.getpid())
    finally:
        other.kill()
        other.wait()
    # dead now: its lock is stale and this process takes it
    assert lock.acquire("jada-remediator", ttl=600, pid=os.getpid()).pid == os.getpid()


def test_a_recorded_pid_that_now_names_another_process_is_stale(tmp_path: Path):
    import json

    path = tmp_path / "l"
    # our own pid, but with another start time: the holder died and the pid was reused
    path.write_text(
        json.dumps({"owner": "x", "pid": os.getpid(), "acquired": 0, "expires": 9e12, "start": 1})
    )
    assert RemediationLock(path).acquire("y", ttl=60).owner == "y"


def test_the_instance_lock_admits_one_process_and_is_freed_by_its_death(tmp_path: Path):
    from agent.remediator.lock import AlreadyRunning, InstanceLock

    path = tmp_path / "state.db.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from agent.remediator.lock import InstanceLock;"
            f" InstanceLock({str(path)!r}).acquire(); print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(AlreadyRunning, match=f"pid {holder.pid}"):
            InstanceLock(path).acquire()
    finally:
        holder.kill()
        holder.wait()
    mine = InstanceLock(path)
    mine.acquire()
    mine.release()
