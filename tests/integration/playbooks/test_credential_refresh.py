"""playbooks/credential_refresh.yml: each diagnosis leads to its branch, run for real."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import boto3
import pytest

from tests.fakes.google import FakeGoogle
from tests.integration.google.conftest import assert_no_secret, write_secret_file

pytestmark = pytest.mark.slow

PLAYBOOK = "credential_refresh.yml"


def live_token(host, fake: FakeGoogle) -> dict:
    token = fake.issue_refresh_token()
    write_secret_file(host.token_file, token)
    return token


def test_a_revoked_token_becomes_a_needs_you_task_with_the_exact_command(host, fake):
    h = host()
    token = live_token(h, fake)
    fake.revoke_all()
    before = h.token_file.read_bytes()

    result = h.result(PLAYBOOK)

    assert result["outcome"] == "needs_human"
    assert result["cause"] == "revoked_or_expired"
    assert result["machine_fixable"] is False
    assert result["next_step"] == "ansible-playbook playbooks/reauth.yml -l web1"
    (task,) = h.needs_you_tasks()
    assert task.title == "Re-authorize the Google credential of the port-sheet sync on web1"
    assert "Cause: revoked_or_expired" in task.body
    assert "ansible-playbook playbooks/reauth.yml -l web1" in task.body
    assert any(a.startswith(f"needs-you task {task.id}:") for a in result["actions"])
    # No repair was tried and no sync ran: the credential is dead, a person must act.
    assert h.token_file.read_bytes() == before
    assert not any(a.startswith("verify") for a in result["actions"])
    assert not fake.requests("sheets")
    assert_no_secret(h.runs[-1].stdout + h.runs[-1].stderr, token)

    # Run again (the rule fires again): the same needs-you task, not a second one.
    again = h.result(PLAYBOOK)
    assert again["outcome"] == "needs_human"
    assert [t.id for t in h.needs_you_tasks()] == [task.id]


def test_a_revoked_token_without_a_host_name_names_the_machine_not_localhost(host, fake):
    import socket

    h = host(host_name="")
    live_token(h, fake)
    fake.revoke_all()
    result = h.result(PLAYBOOK)
    name = socket.gethostname()
    assert result["next_step"] == f"ansible-playbook playbooks/reauth.yml -l {name}"
    (task,) = h.needs_you_tasks()
    assert task.title.endswith(f" on {name}")


def test_a_world_readable_token_is_made_0600_and_the_sync_proves_it(host, fake):
    h = host()
    token = live_token(h, fake)
    h.token_file.chmod(0o644)

    result = h.result(PLAYBOOK)

    assert result["outcome"] == "recovered", result
    assert result["cause"] == "permissions"
    assert result["machine_fixable"] is True
    assert stat.S_IMODE(h.token_file.stat().st_mode) == 0o600
    assert f"fix-permissions: chmod 0600 {h.token_file}" in result["actions"]
    assert result["actions"][-1].startswith("verify: port-sheet-sync.service exit 0")
    assert fake.requests("sheets"), "the verifying sync wrote nothing to the sheet"
    assert not h.needs_you_tasks()
    out = h.runs[-1].stdout
    assert_no_secret(out + h.runs[-1].stderr, token)
    assert "changed=1" in out.split("PLAY RECAP")[-1]

    # Idempotent: a second run finds nothing to repair and changes nothing.
    again = h.result(PLAYBOOK)
    assert again["cause"] == "ok" and again["outcome"] == "recovered"
    assert "changed=0" in h.runs[-1].stdout.split("PLAY RECAP")[-1]


def _publish_in_secrets_manager(name: str, value: str) -> None:
    boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name=name, SecretString=value
    )


def _publish_in_ssm(name: str, value: str) -> None:
    boto3.client("ssm", region_name="us-east-1").put_parameter(
        Name=name, Value=value, Type="SecureString", Overwrite=True
    )


@pytest.mark.parametrize(
    ("setting", "name", "publish", "action"),
    [
        ("secret_name", "jada/google-token", _publish_in_secrets_manager, "Secrets Manager secret"),
        ("parameter_name", "/jada/playbooks-test/google-token", _publish_in_ssm, "SSM parameter"),
    ],
    ids=["secrets-manager", "ssm-parameter"],
)
def test_a_rotated_client_secret_is_healed_from_the_secret_store(
    host, fake, aws, setting, name, publish, action
):
    h = host(google={setting: name})
    token = live_token(h, fake)
    rotated = fake.rotate_client_secret(token["client_id"])
    newer = {**token, "client_secret": rotated["client_secret"]}
    publish(name, json.dumps(newer))

    result = h.result(PLAYBOOK)

    assert result["outcome"] == "recovered", result
    assert result["cause"] == "client_rotated_or_deleted"
    assert result["machine_fixable"] is True
    installed = json.loads(h.token_file.read_text())
    assert installed["client_secret"] == rotated["client_secret"]
    assert stat.S_IMODE(h.token_file.stat().st_mode) == 0o600
    assert any(a.startswith(f"install: installed {action}") for a in result["actions"]), result
    assert result["actions"][-1].startswith("verify: port-sheet-sync.service exit 0")
    assert not h.needs_you_tasks()
    assert_no_secret(h.runs[-1].stdout + h.runs[-1].stderr, token, newer)


def test_a_transient_token_error_changes_nothing(host, fake):
    h = host(google={"timeout": "0.5s"})
    live_token(h, fake)
    before = h.token_file.read_bytes()
    mtime = h.token_file.stat().st_mtime_ns
    fake.delay_token(1.5)  # the diagnosis's refresh times out; the sync's does not

    result = h.result(PLAYBOOK)

    assert result["cause"] == "transient"
    assert result["machine_fixable"] is False
    assert result["actions"][0] == "diagnose: transient"
    assert result["actions"][1].startswith("verify: port-sheet-sync.service exit 0")
    assert result["outcome"] == "recovered"  # healed by itself, proved by the sync
    assert h.token_file.read_bytes() == before
    assert h.token_file.stat().st_mtime_ns == mtime
    assert not h.needs_you_tasks()


def test_a_sync_that_still_fails_makes_the_run_fail_and_says_so(host, fake):
    h = host()
    live_token(h, fake)
    fake.fail_sheets(403, count=10)  # the credential is fine; the sheet is not shared

    r = h.play(PLAYBOOK, check=False, jada_result_file=str(h.tmp / "res.json"))

    assert r.returncode != 0
    result = json.loads((h.tmp / "res.json").read_text())
    assert result["outcome"] == "failed"
    assert result["cause"] == "ok"
    assert "exit 0" not in result["actions"][-1]


def test_a_hand_run_takes_and_releases_the_remediation_lock_and_respects_a_holder(host, fake):
    import subprocess

    h = host()
    live_token(h, fake)
    lock = [str(h.command), "-c", str(h.cfg), "remediator", "lock"]
    subprocess.run([*lock, "acquire", "--owner", "someone-else"], check=True)

    busy = h.play(PLAYBOOK, check=False)
    assert busy.returncode != 0
    assert "remediation lock busy" in busy.stdout
    assert not fake.requests("token"), "it diagnosed without the lock"

    subprocess.run([*lock, "release", "--owner", "someone-else"], check=True)
    h.play(PLAYBOOK)
    status = subprocess.run([*lock, "status"], capture_output=True, text=True, check=True)
    assert status.stdout.strip() == "free"


def test_the_remediator_runs_it_through_ansible_runner_with_its_extravars(host, fake):
    import shutil

    from agent.remediator.actions import run_playbook
    from tests.integration.playbooks.conftest import ROOT

    h = host()
    live_token(h, fake)
    h.token_file.chmod(0o640)
    pdd = h.settings.remediator.private_data_dir
    # The project as the remediator role installs it: the playbooks and the files they import.
    shutil.copytree(ROOT / "playbooks", f"{pdd}/project")
    extra = h.extravars(unit="port-sheet-sync.service")
    # What the remediator does not pass: the settings file comes from its environment
    # (JADA_AGENT_CONFIG), become is off (it runs the playbook as itself).
    for key in ("jada_settings_file", "jada_become", "ansible_python_interpreter"):
        extra.pop(key)

    rem = run_playbook(
        private_data_dir=pdd,
        playbook=PLAYBOOK,
        extravars=extra,
        incident_id=7,
        rule_name="sheet-sync-token",
        group={"status": "400"},
        timeout=180,
        config_file=str(h.cfg),
    )

    assert rem.status == "successful", rem.error
    assert rem.outcome == "recovered"
    assert rem.cause == "permissions"
    assert rem.machine_fixable is True
    assert rem.actions[-1].startswith("verify: port-sheet-sync.service exit 0: [port-sheet]")
    assert stat.S_IMODE(h.token_file.stat().st_mode) == 0o600


def test_a_dead_user_token_with_a_working_service_account_switches_the_settings(
    host, fake, service_account
):
    import yaml

    h = host()
    live_token(h, fake)
    fake.revoke_all()
    write_secret_file(Path(h.settings.google.service_account_file), service_account)

    result = h.result(PLAYBOOK)

    assert result["outcome"] == "recovered", result
    assert result["cause"] == "revoked_or_expired"
    assert result["machine_fixable"] is True
    settings = yaml.safe_load(h.cfg.read_text())
    assert settings["google"]["credential_type"] == "service_account"
    assert settings["google"]["token_uri"] == fake.token_uri  # the rest is kept
    assert stat.S_IMODE(h.cfg.stat().st_mode) == 0o640
    assert [p.name for p in h.cfg.parent.glob("agent.yml.*")], "no backup of the old settings"
    assert result["actions"][-1].startswith("verify: port-sheet-sync.service exit 0")
    assert not h.needs_you_tasks()


def test_check_mode_diagnoses_and_changes_nothing(host, fake):
    h = host()
    live_token(h, fake)
    h.token_file.chmod(0o644)

    r = h.play(PLAYBOOK, "--check")

    assert "web1: cause permissions (machine-fixable: fix_permissions)" in r.stdout
    assert "changed=0" in r.stdout.split("PLAY RECAP")[-1]
    assert stat.S_IMODE(h.token_file.stat().st_mode) == 0o644
    assert not h.needs_you_tasks()
    assert not fake.requests("sheets")
