"""Run ``site.yml`` (and the roles' verify playbooks) against sandbox hosts.

Shared by ``tests/e2e/test_site.py`` and ``tests/bench/bench_deploy.py``: an inventory for the
group ``jada`` with settings that keep a host healthy and idle without any cloud (no Anthropic
server, no Google), and ``ansible-playbook`` runs whose PLAY RECAP is parsed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.sandbox import harness

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
VERIFY = {
    role: ROOT / "roles" / role / "molecule" / "default" / "verify.yml"
    for role in ("jada_agent", "port_sheet_sync", "remediator")
}
PROBE_RULE = "molecule-sync-line"

# Not secrets: values of the right shape for a host with no cloud. The daemon reads the key only
# when a session of runner=anthropic starts; the token's client does not exist.
GROUP_VARS: dict[str, Any] = {
    "ansible_python_interpreter": "/usr/bin/python3",
    "jada_agent_anthropic_api_key": "sk-ant-e2e-not-a-real-key",
    # A harmless session runner: a task added to the queue runs /bin/true and completes.
    "jada_agent_runner": "command",
    "jada_agent_runner_command": ["/bin/true"],
    "jada_agent_spreadsheet_id": "e2e-sheet",
    # No one to notify on a throw-away host: said explicitly, as site.yml requires.
    "jada_agent_notify_none_acknowledged": True,
    "port_sheet_sync_google_token": {
        "type": "authorized_user",
        "client_id": "e2e.apps.googleusercontent.com",
        "client_secret": "not-a-real-secret",
        "refresh_token": "not-a-real-refresh-token",
    },
    # The probe rule of the remediator's verify playbook: any line of the sync opens an incident.
    "remediator_local_rules": [
        {
            "name": PROBE_RULE,
            "description": "Any line of the port-sheet sync (a probe of the journal source).",
            "source": {"journal": {"unit": "port-sheet-sync.service"}},
            "match": r"\[port-sheet\] ",
            "threshold": 1,
            "within": "1h",
            "cooldown": "1s",
        }
    ],
}


@dataclass
class Run:
    """One ``ansible-playbook`` run: exit code, output, seconds and the recap per host."""

    rc: int
    out: str
    seconds: float
    recap: dict[str, dict[str, int]]

    def changed(self) -> int:
        return sum(h.get("changed", 0) for h in self.recap.values())

    def failed(self) -> int:
        return sum(h.get("failed", 0) + h.get("unreachable", 0) for h in self.recap.values())

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.out.splitlines()[-lines:])


_RECAP = re.compile(r"^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$", re.M)


def parse_recap(out: str) -> dict[str, dict[str, int]]:
    recap: dict[str, dict[str, int]] = {}
    section = out.rsplit("PLAY RECAP", 1)[-1] if "PLAY RECAP" in out else ""
    for host, fields in _RECAP.findall(section):
        recap[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", fields)}
    return recap


def write_inventory(
    machines: list[harness.Machine], path: Path, extra_vars: dict[str, Any] | None = None
) -> Path:
    """A YAML (JSON) inventory: the machines in group ``jada`` with :data:`GROUP_VARS`."""
    hosts = {}
    for m in machines:
        hosts[m.name] = {
            "ansible_host": m.address,
            "ansible_port": m.port,
            "ansible_user": m.user,
            "ansible_ssh_private_key_file": m.identity_file,
            "ansible_ssh_common_args": m.ssh_common_args,
        }
    doc = {"jada": {"hosts": hosts, "vars": {**GROUP_VARS, **(extra_vars or {})}}}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh, indent=2)
    return path


def playbook(inventory: Path, playbook: str | Path, *args: str, timeout: float = 900) -> Run:
    """``ansible-playbook -i INVENTORY PLAYBOOK ARGS...`` from the repository root."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
    }
    t0 = time.monotonic()
    proc = subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", str(inventory), str(playbook), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    out = proc.stdout + proc.stderr
    return Run(proc.returncode, out, time.monotonic() - t0, parse_recap(proc.stdout))


def exposure(machine: harness.Machine, unit: str) -> tuple[float, str]:
    """``systemd-analyze security UNIT`` inside the machine: (exposure, the summary line)."""
    res = machine.run(["systemd-analyze", "security", "--no-pager", unit])
    lines = [ln for ln in res.stdout.splitlines() if "Overall exposure level" in ln]
    if res.returncode != 0 or not lines:
        raise AssertionError(f"systemd-analyze security {unit}: rc={res.returncode} {res.stderr}")
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", lines[-1])
    assert m, lines[-1]
    return float(m.group(1)), lines[-1].strip()
