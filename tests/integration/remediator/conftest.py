"""Fixtures for the remediator's integration tests: a private data dir with small playbooks."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from agent import config
from agent.store import open_store

PLAYBOOKS = Path(__file__).parent / "playbooks"


@pytest.fixture
def log(tmp_path: Path) -> Path:
    """The log the tests' rules watch: ``sync.log`` in ``tmp_path``, created empty."""
    path = tmp_path / "sync.log"
    path.write_text("")
    return path


@pytest.fixture
def private_data_dir(tmp_path: Path) -> Path:
    pdd = tmp_path / "runner"
    shutil.copytree(PLAYBOOKS, pdd / "project")
    return pdd


class Service:
    """A real ``jada-agent remediator run`` process on a temporary configuration."""

    def __init__(
        self, tmp_path: Path, settings: config.Settings, env: dict[str, str] | None = None
    ):
        self.tmp = tmp_path
        self.settings = settings
        self.cfg = tmp_path / "agent.yml"
        self.cfg.write_text(yaml.safe_dump(config.to_dict(settings)))
        self.log = tmp_path / "service.log"
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Service:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "-c", str(self.cfg), "remediator", "run"],
            stdout=subprocess.DEVNULL,
            stderr=open(self.log, "wb"),  # noqa: SIM115 - the child owns it
            env=self.env,
        )
        self.wait_log("remediator ready")
        return self

    def wait_log(self, text: str, timeout: float = 20.0, count: int = 1) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = self.log.read_text(errors="replace") if self.log.exists() else ""
            if data.count(text) >= count:
                return data
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"service exited {self.proc.returncode}:\n{data}")
            time.sleep(0.02)
        raise AssertionError(f"{text!r} not logged within {timeout}s:\n{data}")

    def incidents(self):
        with open_store(self.settings) as store:
            return store.list_incidents()

    def wait_incident(self, pred, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            items = self.incidents()
            if pred(items):
                return items
            time.sleep(0.05)
        raise AssertionError(
            f"incidents never matched: {[i.to_json() for i in self.incidents()]}\n"
            f"{self.log.read_text(errors='replace')}"
        )

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def service_factory(tmp_path: Path, settings_factory, private_data_dir: Path):
    made: list[Service] = []

    def make(rules: list[dict], env: dict[str, str] | None = None, **sections) -> Service:
        rules_dir = tmp_path / "rules.d"
        rules_dir.mkdir(exist_ok=True)
        (rules_dir / "50-test.yml").write_text(yaml.safe_dump({"rules": rules}, sort_keys=False))
        remediator = {"private_data_dir": str(private_data_dir), **sections.pop("remediator", {})}
        s = settings_factory(remediator=remediator, **sections)
        svc = Service(tmp_path, s, env)
        made.append(svc)
        return svc

    yield make
    for svc in made:
        svc.stop()
