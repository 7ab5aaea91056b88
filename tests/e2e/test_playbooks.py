"""The remediation playbooks for real on a sandbox host converged by site.yml.

One sandbox host (reached as the sudo user ``admin``, like a cloud VM), the Google fake and
moto's Secrets Manager bound to the host end of its veth link. site.yml deploys the package,
the settings naming the fakes, port-sheet-sync.service and a live token; then:

- permission_audit.yml makes a 0644 token 0600 again (and says so);
- credential_refresh.yml with a revoked token leaves a needs-you task naming the host and the
  exact re-auth command, and runs no sync;
- credential_refresh.yml with a rotated OAuth client secret installs the newer token from
  Secrets Manager and proves it by starting port-sheet-sync.service.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.fakes.google import FakeGoogle
from tests.integration.google.conftest import assert_no_secret
from tests.sandbox import harness

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))
SHEET = "e2e-sheet"
# moto keeps its state per process, shared by every moto server of the test session: a name of
# this module's own, so a secret another test left behind cannot collide with it.
SECRET = f"jada/e2e-playbooks-{secrets.token_hex(4)}/google-token"
TOKEN = "/var/lib/jada-agent/secrets/google-token.json"
JADA = "/opt/jada-agent/venv/bin/jada-agent"


class Site:
    def __init__(self, machine: harness.Machine, fake: FakeGoogle, moto: str, tmp: Path):
        self.machine = machine
        self.fake = fake
        self.moto = moto
        self.tmp = tmp
        self.inventory = tmp / "hosts.ini"
        self.last: subprocess.CompletedProcess[str] | None = None
        harness.inventory([machine.name], self.inventory, group="jada", become_user="admin")
        self.aws_env = {
            "AWS_ENDPOINT_URL": moto,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def play(self, playbook: str, *args: str, check: bool = True, **extravars: Any):
        vars_file = self.tmp / f"vars-{time.monotonic_ns()}.json"
        vars_file.write_text(json.dumps(extravars))
        vars_file.chmod(0o600)
        t0 = time.monotonic()
        r = subprocess.run(
            [ANSIBLE_PLAYBOOK, "-i", str(self.inventory), playbook, "-e", f"@{vars_file}", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
            env={**os.environ, "ANSIBLE_NOCOLOR": "1"},
        )
        r.seconds = time.monotonic() - t0  # type: ignore[attr-defined]
        if check:
            assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
        return r

    def sh(self, cmd: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.machine.run(cmd, **kw)

    def put_token(self, token: dict[str, Any]) -> None:
        """Write the token on the host the way the role does: 0600, owner jada."""
        r = self.sh(f"install -m 0600 -o jada -g jada /dev/stdin {TOKEN}", input=json.dumps(token))
        assert r.returncode == 0, r.stderr

    def result(self, playbook: str, **extravars: Any) -> dict[str, Any]:
        path = f"/root/result-{time.monotonic_ns()}.json"
        # A hand run waits for the remediator's lock rather than failing on it.
        self.last = self.play(
            f"playbooks/{playbook}", jada_result_file=path, jada_lock_wait="120s", **extravars
        )
        r = self.sh(f"cat {path}", check=True)
        return json.loads(r.stdout)

    def jada(self, *args: str) -> str:
        cmd = " ".join([JADA, *args])
        return self.sh(cmd, check=True).stdout


@pytest.fixture(scope="module")
def site(sandbox_factory, tmp_path_factory) -> Iterator[Site]:
    from moto.server import ThreadedMotoServer

    machine = sandbox_factory("playbooks")
    tmp = tmp_path_factory.mktemp("e2e-playbooks")
    moto = ThreadedMotoServer(ip_address=machine.host_address, port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    with FakeGoogle(host=machine.host_address) as fake:
        fake.create_spreadsheet(SHEET)
        s = Site(machine, fake, f"http://{host}:{port}", tmp)
        token = fake.issue_refresh_token()
        s.play(
            "site.yml",
            jada_agent_spreadsheet_id=SHEET,
            jada_agent_google_secret_name=SECRET,
            jada_agent_settings_extra={
                "google": {"token_uri": fake.token_uri, "auth_uri": fake.auth_uri, "timeout": "5s"},
                "sheets": {"endpoint": fake.sheets_endpoint, "timeout": "5s", "max_retries": 1},
            },
            port_sheet_sync_google_token=token,
            # The runs here are started by the playbooks, not by the clock.
            port_sheet_sync_timer_state="stopped",
            port_sheet_sync_timer_enabled=False,
            # These tests are about the playbooks; the notifications have their own.
            jada_agent_notify_none_acknowledged=True,
        )
        yield s
    moto.stop()


def _mode_owner(site: Site, path: str) -> str:
    return site.sh(f"stat -c '%a %U:%G' {path}", check=True).stdout.strip()


def test_permission_audit_makes_a_world_readable_token_0600_again(site: Site):
    site.sh(f"chmod 0644 {TOKEN}", check=True)
    # Hundreds of runner artifacts, a few of them too open: the audit must stay fast.
    site.sh(
        "set -e; a=/var/lib/jada-remediator/runner/artifacts; mkdir -p $a; "
        "for i in $(seq 1 300); do mkdir -p -m 0700 $a/$i; "
        "for f in stdout status rc; do echo x > $a/$i/$f; chmod 0600 $a/$i/$f; done; done; "
        "chmod 0700 $a; chmod 0644 $a/17/stdout",
        check=True,
    )

    report = site.play("playbooks/permission_audit.yml", "--check")
    assert _mode_owner(site, TOKEN).startswith("644 ")
    assert "would change: 2 file(s)" in report.stdout

    fixed = site.play("playbooks/permission_audit.yml")
    print(f"permission_audit.yml over 900 runner artifacts: {fixed.seconds:.1f}s")
    assert _mode_owner(site, TOKEN) == "600 jada:jada"
    assert _mode_owner(site, "/var/lib/jada-remediator/runner/artifacts/17/stdout").startswith(
        "600"
    )
    assert "changed: 2 file(s)" in fixed.stdout
    assert fixed.seconds < 60

    again = site.play("playbooks/permission_audit.yml")
    assert "every file has its intended mode and owner" in again.stdout
    assert "changed=0" in again.stdout.split("PLAY RECAP")[-1]


def test_credential_refresh_with_a_revoked_token_asks_a_person_with_the_exact_command(
    site: Site,
):
    site.put_token(site.fake.issue_refresh_token())
    site.fake.revoke_all()
    site.fake.clear_log()
    name = site.machine.name

    result = site.result("credential_refresh.yml")

    assert result["outcome"] == "needs_human", result
    assert result["cause"] == "revoked_or_expired"
    assert result["next_step"] == f"ansible-playbook playbooks/reauth.yml -l {name}"
    tasks = json.loads(site.jada("tasks", "list", "--status", "needs_you", "--json"))
    (task,) = [t for t in tasks if t["title"].endswith(f" on {name}")]
    assert f"ansible-playbook playbooks/reauth.yml -l {name}" in task["body"]
    assert "revoked_or_expired" in task["body"]
    assert not site.fake.requests("sheets"), "a sync ran although the token is dead"


def test_credential_refresh_installs_a_token_with_the_rotated_client_secret_from_secrets_manager(
    site: Site,
):
    token = site.fake.issue_refresh_token()
    site.put_token(token)
    rotated = site.fake.rotate_client_secret(token["client_id"])
    boto3.client(
        "secretsmanager",
        region_name="us-east-1",
        endpoint_url=site.moto,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_secret(
        Name=SECRET, SecretString=json.dumps({**token, "client_secret": rotated["client_secret"]})
    )
    site.fake.clear_log()

    result = site.result("credential_refresh.yml", jada_environment=site.aws_env)

    assert result["outcome"] == "recovered", result
    assert result["cause"] == "client_rotated_or_deleted"
    assert any(a.startswith("install: installed Secrets Manager secret") for a in result["actions"])
    # The verifying run's own journal line, read by its invocation id.
    assert result["actions"][-1].startswith("verify: port-sheet-sync.service exit 0: [port-sheet]")
    assert _mode_owner(site, TOKEN) == "600 jada:jada"
    installed = json.loads(site.sh(f"cat {TOKEN}", check=True).stdout)
    assert installed["client_secret"] == rotated["client_secret"]
    assert site.fake.requests("sheets"), "the verifying sync never reached the sheet"
    assert site.last is not None
    assert_no_secret(site.last.stdout + site.last.stderr, token, installed)
    status = site.sh("systemctl show -p Result --value port-sheet-sync.service", check=True)
    assert status.stdout.strip() == "success"


def test_the_remediator_runs_credential_refresh_itself_on_the_third_token_error(site: Site):
    """The playbook under the real hardened jada-remediator.service, through ansible-runner."""
    site.put_token(site.fake.issue_refresh_token())
    site.fake.revoke_all()
    for _ in range(3):
        r = site.sh("systemctl start port-sheet-sync.service")
        assert r.returncode != 0  # the sync fails with the token error, as in production

    deadline = time.monotonic() + 180
    incident: dict[str, Any] = {}
    while time.monotonic() < deadline:
        incidents = json.loads(site.jada("remediator", "incidents", "--json"))
        done = [
            i
            for i in incidents
            if i["rule"] == "sheet-sync-token"
            and any(r.get("finished") for r in i.get("remediations") or [])
        ]
        if done:
            incident = done[-1]
            break
        time.sleep(2)
    assert incident, f"no finished remediation: {incidents}"
    run = incident["remediations"][-1]
    assert run["playbook"] == "credential_refresh.yml"
    assert run["status"] == "successful", run
    assert run["outcome"] == "needs_human", run
    assert run["cause"] == "revoked_or_expired"
    assert run["next_step"] == f"ansible-playbook playbooks/reauth.yml -l {site.machine.name}"
    tasks = json.loads(site.jada("tasks", "list", "--status", "needs_you", "--json"))
    assert [t for t in tasks if t["title"].endswith(f" on {site.machine.name}")]
