"""The whole story on a real systemd host: the live audit finds the failing sync, Lightsail's
temporary SSH reaches the host through a certificate its sshd trusts, and health.yml run through
the Lightsail inventory writes the fleet report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.integration.aws import sandbox_host as H

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.sandbox


@pytest.fixture(scope="module")
def jada_host(sandbox_factory):
    from tests.fakes.lightsail import FakeLightsail

    # The CA must be known before the host's sshd is configured: one fake for the module.
    fake = FakeLightsail().start()
    machine = sandbox_factory("health")
    H.prepare(machine, fake.ca_public_key)
    H.wait_for_failures(machine, 4)
    yield machine, fake
    fake.stop()


@pytest.fixture
def lightsail_env(jada_host, monkeypatch):
    machine, fake = jada_host
    fake.reset()
    fake.add_instance("jada-prod", public_ip=machine.address, username=machine.admin_user,
                      host_keys=[H.host_key(machine)], tags={"role": "jada", "jada": ""})  # fmt: skip
    short = Path(tempfile.mkdtemp(prefix="js-", dir="/tmp"))
    env = dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        AWS_ENDPOINT_URL_LIGHTSAIL=fake.url,
        AWS_ACCESS_KEY_ID="AKIDSANDBOX",
        AWS_SECRET_ACCESS_KEY="sandbox-not-a-secret",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
        JADA_AGENT_CONFIG="/dev/null",
        JADA_LIGHTSAIL_REGIONS="us-east-1",
        JADA_SSH_TMPDIR=str(short),
    )
    yield env, short
    subprocess.run(["rm", "-rf", str(short)], check=False)


def test_live_audit_on_a_systemd_host_finds_the_failing_sync_and_says_degraded(jada_host):
    machine, _ = jada_host
    r = machine.run([*H.HEALTH_COMMAND, "health", "--json", "--no-credentials", "--days", "1"])
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["verdict"] == "degraded"
    units = report["units"]
    assert (units["jada-agent.service"]["active"], units["jada-agent.service"]["sub"]) == (
        "active", "running",
    )  # fmt: skip
    assert units["port-sheet-sync.timer"]["last_run"]["result"] == "exit-code"
    assert units["port-sheet-sync.timer"]["next_elapse"] is not None
    assert units["jada-agent.service"]["memory_bytes"] > 0
    token = next(x for x in report["recurring"] if x["signature"].startswith("[port-sheet]"))
    assert token["unit"] == "port-sheet-sync.service"
    assert token["cadence_s"] == H.SYNC_PERIOD_S
    assert report["errors"] == []


def test_lightsail_ssh_reaches_the_host_with_a_certificate_and_pinned_host_key(lightsail_env):
    env, short = lightsail_env
    r = subprocess.run(
        [sys.executable, "-m", "agent", "lightsail", "ssh", "jada-prod", "--",
         "sudo", "-n", "systemctl", "is-active", "jada-agent.service"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=60, check=False,
    )  # fmt: skip
    assert (r.returncode, r.stdout.strip()) == (0, "active"), r.stderr
    assert list(short.glob("jada-ssh-*")) == []


def test_health_playbook_through_the_lightsail_inventory_writes_a_degraded_fleet_report(
    lightsail_env, tmp_path
):
    env, short = lightsail_env
    reports = tmp_path / "reports"
    extra = {"health_command": H.HEALTH_COMMAND, "health_extra_args": ["--no-credentials"],
             "health_days": 1, "health_reports_dir": str(reports)}  # fmt: skip
    r = subprocess.run(
        [sys.executable, "-m", "agent", "lightsail", "run", "--",
         str(Path(sys.executable).parent / "ansible-playbook"), "-i", "inventory/lightsail.py",
         "playbooks/health.yml", "-e", json.dumps(extra)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    fleet = json.loads((reports / "fleet.json").read_text())
    assert [(h["host"], h["verdict"]) for h in fleet["hosts"]] == [("jada-prod", "degraded")]
    host = json.loads((reports / "hosts" / "jada-prod.json").read_text())
    assert host["metrics"]["instance"] == "jada-prod"
    assert "CPUUtilization" in host["metrics"]["series"]
    assert list(short.glob("jada-run-*")) == []


def test_health_playbook_over_ssh_as_the_sudo_user_keeps_the_audits_stderr_out_of_its_report(
    jada_host, tmp_path
):
    # The audit runs through `raw` over SSH with become: without a pseudo-terminal, what the
    # command writes on stderr stays out of the JSON it prints (a terminal would merge them).
    from tests.sandbox import harness

    machine, fake = jada_host
    fake.reset()
    inventory = tmp_path / "hosts.yml"
    harness.inventory([machine.name], inventory, fmt="yaml", become_user=machine.admin_user)
    reports = tmp_path / "reports"
    noisy = ["sh", "-c", 'echo "warning: $(id -un) runs the audit" >&2; exec "$0" "$@"']
    extra = {"health_command": [*noisy, *H.HEALTH_COMMAND], "health_days": 1,
             "health_extra_args": ["--no-credentials"], "health_reports_dir": str(reports)}  # fmt: skip
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
               PYTHONPATH=str(ROOT), JADA_AGENT_CONFIG="/dev/null")  # fmt: skip
    r = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), "-v",
         "playbooks/health.yml", "-e", json.dumps(extra)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "warning: root runs the audit" in r.stdout  # become worked; stderr shown apart (-v)
    raw = json.loads((reports / "raw" / f"{machine.name}.json").read_text())
    assert raw["verdict"] == "degraded"
