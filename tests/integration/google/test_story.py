"""The incident the product exists for, through the commands the playbook runs."""

from __future__ import annotations

import json
import shlex

import boto3
import pytest

from tests.fakes.google import FakeGoogle
from tests.integration.google.conftest import assert_no_secret, run_agent, write_config


@pytest.mark.slow
def test_a_revoked_token_is_healed_by_the_command_diagnose_names(
    installed, fake: FakeGoogle, aws, tmp_path
):
    s, token = installed(google={"secret_name": "jada/google-token"})
    cfg = write_config(s, tmp_path / "agent.yml")
    assert run_agent(cfg, "sheet-sync").returncode == 0

    fake.revoke_all()  # the production incident: the stored grant dies
    failed = run_agent(cfg, "sheet-sync")
    assert failed.returncode == 2
    assert failed.stdout.startswith("[port-sheet] token error: HTTP Error 400: invalid_grant")

    # The operator re-authenticated elsewhere and published the new token.
    fresh = fake.issue_refresh_token(token["client_id"])
    boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name="jada/google-token", SecretString=json.dumps(fresh)
    )
    diag = run_agent(cfg, "credentials", "diagnose", "--json")
    d = json.loads(diag.stdout)
    assert (d["cause"], d["machine_fixable"]) == ("revoked_or_expired", True)
    argv = shlex.split(d["next_step"])
    assert argv[:3] == ["jada-agent", "credentials", "install"]
    healed = run_agent(cfg, *argv[1:], "--json")
    assert healed.returncode == 0, healed.stderr
    assert json.loads(healed.stdout)["sync"]["outcome"] == "ok"
    assert run_agent(cfg, "credentials", "diagnose").returncode == 0
    assert run_agent(cfg, "sheet-sync").returncode == 0

    forecast = run_agent(cfg, "credentials", "forecast", "--json")
    assert forecast.returncode == 0
    assert json.loads(forecast.stdout)["reason"].startswith("6 months unused")
    everything = "".join(p.stdout + p.stderr for p in (failed, diag, healed, forecast))
    assert_no_secret(everything, token, fresh)
