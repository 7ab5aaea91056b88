"""``site.yml`` refuses a host that would tell nobody (no notification channel), unless the
inventory acknowledges it; the error names the variables to set."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")


def preflight(tmp_path: Path, **host_vars: object) -> subprocess.CompletedProcess[str]:
    inv = tmp_path / "inventory.json"
    inv.write_text(
        json.dumps(
            {
                "jada": {
                    "hosts": {"h1": {"ansible_connection": "local"}},
                    "vars": {"ansible_python_interpreter": sys.executable, **host_vars},
                }
            }
        )
    )
    return subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", str(inv), str(ROOT / "site.yml"), "--tags", "preflight"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


def test_site_refuses_a_host_with_no_channel_and_names_the_variable(tmp_path):
    run = preflight(tmp_path)
    assert run.returncode != 0
    out = run.stdout + run.stderr
    assert "No notification channel for h1" in out
    assert "jada_agent_notify_channels" in out and "jada_agent_notify_none_acknowledged" in out


@pytest.mark.parametrize(
    "host_vars",
    [
        {"jada_agent_notify_channels": ["ntfy://ntfy.example/jada"]},
        {"jada_agent_remediator_webhook_url": "https://hooks.example/T/B/X"},
        {"jada_agent_notify_channels": [], "jada_agent_notify_none_acknowledged": True},
    ],
)
def test_site_accepts_a_channel_or_an_explicit_acknowledgement(tmp_path, host_vars):
    run = preflight(tmp_path, **host_vars)
    assert run.returncode == 0, run.stdout + run.stderr
    # the channel URL is a secret: not in the play's output
    for v in host_vars.values():
        if isinstance(v, list) and v:
            assert v[0] not in run.stdout
