"""The remediation playbooks run for real on this machine (``ansible-playbook -c local``).

A "host" here is a settings file and state directories under ``tmp_path``, a ``jada-agent``
wrapper that runs this checkout's package, the loopback Google fake and moto's Secrets Manager.
Where the playbooks would start ``port-sheet-sync.service``, they run ``jada-agent sheet-sync``
directly (``jada_verify_command``), so no systemd is needed.
"""

from __future__ import annotations

import getpass
import grp
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent import config
from agent.store import open_store
from tests.integration.google.conftest import (  # noqa: F401 - fixtures shared with these tests
    SHEET,
    aws,
    fake,
    google_server,
    gsettings,
    sa_key,
    service_account,
    write_secret_file,
)

ROOT = Path(__file__).resolve().parents[3]
ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))


@dataclass
class Host:
    """One pretend host: its settings file, its command and the playbook runner."""

    tmp: Path
    settings: config.Settings
    cfg: Path
    command: Path
    runs: list[subprocess.CompletedProcess[str]] = field(default_factory=list)

    @property
    def token_file(self) -> Path:
        return Path(self.settings.google.token_file)

    def extravars(self, **more: Any) -> dict[str, Any]:
        return {
            "ansible_python_interpreter": sys.executable,
            "jada_agent_command": str(self.command),
            "jada_settings_file": str(self.cfg),
            "jada_service_group": grp.getgrgid(os.getegid()).gr_name,
            "jada_become": False,
            "jada_verify_command": [str(self.command), "-c", str(self.cfg), "sheet-sync"],
            "jada_verify_reads_unit": False,
            **more,
        }

    def play(
        self, playbook: str, *args: str, check: bool = True, **extravars: Any
    ) -> subprocess.CompletedProcess[str]:
        """``ansible-playbook`` on this host; the extravars go in a 0600 file, as the remediator's do."""
        vars_file = self.tmp / f"extravars-{len(self.runs)}.json"
        vars_file.write_text(json.dumps(self.extravars(**extravars)))
        vars_file.chmod(0o600)
        r = subprocess.run(
            [
                ANSIBLE_PLAYBOOK,
                "-c",
                "local",
                "-i",
                "localhost,",
                f"playbooks/{playbook}",
                "-e",
                f"@{vars_file}",
                *args,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCALHOST_WARNING": "False"},
        )
        self.runs.append(r)
        if check:
            assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
        return r

    def result(self, playbook: str, *args: str, **extravars: Any) -> dict[str, Any]:
        """Run as the remediator does (``jada_result_file``) and return the result JSON."""
        out = self.tmp / f"result-{len(self.runs)}.json"
        self.play(playbook, *args, jada_result_file=str(out), **extravars)
        data = json.loads(out.read_text())
        assert out.stat().st_mode & 0o777 == 0o600
        return data

    def needs_you_tasks(self) -> list[Any]:
        with open_store(self.settings) as store:
            return [t for t in store.list_tasks(["needs_you"]) if t.kind == "needs_you"]


@pytest.fixture
def host(gsettings, tmp_path: Path):  # noqa: F811 - the imported fixture
    """A host on the fake: settings file, state under tmp_path, a jada-agent wrapper."""

    def make(**sections: Any) -> Host:
        secrets = tmp_path / "state" / "secrets"
        s = gsettings(
            host_name=sections.pop("host_name", "web1"),
            service_user=getpass.getuser(),
            sheets={"max_retries": 1, **sections.pop("sheets", {})},
            daemon={"api_key_file": str(secrets / "anthropic-api-key")},
            **sections,
        )
        cfg = tmp_path / "agent.yml"
        cfg.write_text(yaml.safe_dump(config.to_dict(s), sort_keys=False))
        cfg.chmod(0o640)
        s = config.load(cfg)
        # The playbooks change modes and owners: nothing they touch may lie outside tmp_path.
        for path in (
            s.state_dir,
            s.secrets_dir,
            s.store.path,
            s.daemon.api_key_file,
            s.google.token_file,
            s.google.service_account_file,
            s.remediator.private_data_dir,
            s.remediator.lock_file,
        ):
            assert Path(path).is_relative_to(tmp_path), f"{path} is outside the test's directory"
        command = tmp_path / "bin" / "jada-agent"
        command.parent.mkdir()
        command.write_text(
            f'#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} -m agent "$@"\n', encoding="utf-8"
        )
        command.chmod(0o755)
        (tmp_path / "state").mkdir(exist_ok=True)
        return Host(tmp_path, s, cfg, command)

    return make
