"""The README's Lightsail path, exactly as documented, against a real systemd host.

The fake Lightsail API (in this process) knows the sandbox host as the instance ``jada-prod-1``,
tagged ``jada``, with its real host key; its sshd trusts the fake's certificate authority for the
``admin`` user, as a Lightsail instance trusts Lightsail's. An untagged instance ``web-1`` sits in
the same region. Then the README's commands run as an operator types them, in the README's order
of a first deploy (no Google token yet, then the token):

    jada-agent lightsail run -- ansible-playbook -i inventory/lightsail.py site.yml --list-hosts
    jada-agent lightsail run -- ansible-playbook -i inventory/lightsail.py site.yml -e @vars
    (the token added to the vars)
    jada-agent lightsail run -- ansible-playbook -i inventory/lightsail.py site.yml -e @vars
    jada-agent lightsail run -- ansible-playbook -i inventory/lightsail.py playbooks/health.yml

so the documented path is the tested path. A few minutes (a fresh host installs the virtualenv).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.deploy import GROUP_VARS, parse_recap
from tests.fakes.lightsail import FakeLightsail
from tests.integration.aws.sandbox_host import host_key
from tests.sandbox import harness

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
INSTANCE = "jada-prod-1"


@dataclass
class Lightsail:
    machine: harness.Machine
    fake: FakeLightsail
    env: dict[str, str]
    vars_file: Path
    first_vars_file: Path
    ssh_tmp: Path
    reports: Path


def trust_ca(machine: harness.Machine, ca_public_key: str) -> None:
    """Make the host's sshd accept certificates of ``ca_public_key``, as Lightsail's images do."""
    script = (
        f"printf '%s\\n' {shlex.quote(ca_public_key)} > /etc/ssh/lightsail_ca.pub && "
        "chmod 0644 /etc/ssh/lightsail_ca.pub && "
        "echo 'TrustedUserCAKeys /etc/ssh/lightsail_ca.pub' >> /etc/ssh/sshd_config && "
        "sshd -t && systemctl reload ssh"
    )
    res = machine.run(script)
    assert res.returncode == 0, res.stderr


def _private_json(path: Path, data: object) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
    return path


@pytest.fixture(scope="module")
def lightsail(sandbox_factory, tmp_path_factory):
    fake = FakeLightsail().start()
    machine = sandbox_factory("lightsail")
    trust_ca(machine, fake.ca_public_key)
    fake.add_instance(
        INSTANCE,
        public_ip=machine.address,
        username=machine.admin_user,
        host_keys=[host_key(machine)],
        tags={"jada": ""},
    )
    # Not a jada host: it must be neither listed, nor deployed to, nor given access.
    fake.add_instance("web-1", public_ip="127.0.0.1", tags={"env": "prod"})
    work = tmp_path_factory.mktemp("lightsail")
    vars_file = _private_json(work / "jada-vars.json", GROUP_VARS)
    # The first deploy: everything but the Google token, which does not exist yet.
    first = {k: v for k, v in GROUP_VARS.items() if k != "port_sheet_sync_google_token"}
    first_vars_file = _private_json(work / "jada-vars-first.json", first)
    # ssh's control socket path must stay short.
    ssh_tmp = Path(tempfile.mkdtemp(prefix="jl-", dir="/tmp"))
    env = dict(
        os.environ,
        PATH=f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        AWS_ENDPOINT_URL_LIGHTSAIL=fake.url,
        AWS_ACCESS_KEY_ID="AKIDSANDBOX",
        AWS_SECRET_ACCESS_KEY="sandbox-not-a-secret",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
        JADA_LIGHTSAIL_REGIONS="us-east-1",
        JADA_SSH_TMPDIR=str(ssh_tmp),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
    )
    yield Lightsail(machine, fake, env, vars_file, first_vars_file, ssh_tmp, work / "reports")
    fake.stop()
    shutil.rmtree(ssh_tmp, ignore_errors=True)


def lightsail_run(ls: Lightsail, *ansible: str, timeout: float = 1200):
    """``jada-agent lightsail run -- ansible-playbook -i inventory/lightsail.py ...``."""
    argv = [str(BIN / "jada-agent"), "lightsail", "run", "--",
            "ansible-playbook", "-i", "inventory/lightsail.py", *ansible]  # fmt: skip
    r = subprocess.run(
        argv, cwd=ROOT, env=ls.env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert list(ls.ssh_tmp.glob("jada-run-*")) == [], "the temporary access was left behind"
    return r


def test_list_hosts_shows_the_tagged_instance_only(lightsail: Lightsail):
    r = lightsail_run(lightsail, "site.yml", "--list-hosts")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "hosts (1):" in r.stdout, r.stdout
    assert INSTANCE in r.stdout and "web-1" not in r.stdout


def test_a_first_deploy_without_a_token_deploys_and_says_what_is_missing(lightsail: Lightsail):
    r = lightsail_run(lightsail, "site.yml", "-e", f"@{lightsail.first_vars_file}")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    assert parse_recap(r.stdout)[INSTANCE]["failed"] == 0
    token = "/var/lib/jada-agent/secrets/google-token.json"
    assert f"MISSING: no Google credential on {INSTANCE} ({token})" in out, out[-4000:]
    assert f"playbooks/reauth.yml -l {INSTANCE}" in out
    m = lightsail.machine
    for unit in ("jada-agent.service", "jada-remediator.service", "port-sheet-sync.timer"):
        assert m.run(["systemctl", "is-active", unit]).stdout.strip() == "active", unit
    # The sync says what is missing, in the journal and in its log file.
    m.run(["systemctl", "start", "port-sheet-sync.service"])
    journal = m.run(["journalctl", "-o", "cat", "-u", "port-sheet-sync.service"]).stdout
    line = next((ln for ln in journal.splitlines() if "[port-sheet]" in ln), "")
    print(f"\nthe sync with no token: {line}")
    assert "token error" in line and token in line, journal[-2000:]
    log = m.run(["cat", "/var/log/jada-agent/port-sheet-sync.log"]).stdout
    assert line in log
    # The on-host audit and the diagnosis name the missing credential.
    jada = "/opt/jada-agent/venv/bin/jada-agent"
    diagnose = m.run([jada, "credentials", "diagnose"])
    print(f"credentials diagnose: rc={diagnose.returncode}\n{diagnose.stdout[-1500:]}")
    assert "missing" in diagnose.stdout and token in diagnose.stdout
    health = m.run([jada, "health", "--days", "1"])
    print(f"health: rc={health.returncode}\n{health.stdout[-2500:]}")
    assert token in health.stdout or "missing" in health.stdout, health.stdout


def test_site_yml_through_the_lightsail_inventory_deploys_the_host(lightsail: Lightsail):
    r = lightsail_run(lightsail, "site.yml", "-e", f"@{lightsail.vars_file}")
    out = r.stdout + r.stderr
    recap = parse_recap(r.stdout)
    assert r.returncode == 0, out[-4000:]
    assert set(recap) == {INSTANCE}, out[-2000:]
    assert recap[INSTANCE]["failed"] == 0 and recap[INSTANCE]["unreachable"] == 0
    assert recap[INSTANCE]["changed"] > 0
    for unit in ("jada-agent.service", "jada-remediator.service", "port-sheet-sync.timer"):
        active = lightsail.machine.run(["systemctl", "is-active", unit]).stdout.strip()
        assert active == "active", unit
    # Only the jada host was given temporary access.
    asked = {body["instanceName"] for op, body in lightsail.fake.requests
             if op == "GetInstanceAccessDetails"}  # fmt: skip
    assert asked == {INSTANCE}


def test_health_yml_through_the_lightsail_inventory_reports_the_host(lightsail: Lightsail):
    r = lightsail_run(
        lightsail,
        "playbooks/health.yml",
        "-e",
        json.dumps({"health_reports_dir": str(lightsail.reports), "health_days": 1}),
    )
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    fleet = json.loads((lightsail.reports / "fleet.json").read_text())
    assert [h["host"] for h in fleet["hosts"]] == [INSTANCE]
    host = json.loads((lightsail.reports / "hosts" / f"{INSTANCE}.json").read_text())
    assert host["metrics"]["instance"] == INSTANCE
    assert "CPUUtilization" in host["metrics"]["series"]
