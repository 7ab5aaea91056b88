"""playbooks/reauth.yml: consent on "the operator's machine", token installed 0600, sync proved."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import tempfile
import threading
import urllib.request
from pathlib import Path

import boto3
import pytest
import yaml

from agent import config
from tests.fakes.google import FakeGoogle
from tests.integration.google.conftest import assert_no_secret, write_secret_file
from tests.integration.playbooks.conftest import ANSIBLE_PLAYBOOK, ROOT

pytestmark = pytest.mark.slow

URL = re.compile(r"(http://127\.0\.0\.1:\d+/o/oauth2/auth\?[^\s'\"]+)")


def operator_files(h, fake: FakeGoogle) -> dict:
    client = fake.add_client()
    secrets = h.tmp / "op" / "client_secret.json"
    secrets.parent.mkdir()
    secrets.write_text(json.dumps({"installed": {**client, "redirect_uris": ["http://localhost"]}}))
    # The operator's settings name the same OAuth endpoints as the host's.
    cfg = h.tmp / "op" / "agent.yml"
    cfg.write_text(yaml.safe_dump(config.to_dict(h.settings)))
    return {"client": client, "secrets": secrets, "cfg": cfg}


def temporaries() -> set[str]:
    """The playbook's temporary token directories and files (here and "on the host")."""
    return {
        p
        for p in os.listdir(tempfile.gettempdir())
        if p.startswith(("jada-reauth-", "jada-token-"))
    }


def async_dir(h) -> Path:
    return h.tmp / "ansible_async"


def run_reauth(h, op: dict, *, visit: bool = True, **extravars) -> tuple[int, str]:
    """Start the playbook, be the browser on the consent URL it prints, return (rc, output)."""
    vars_file = h.tmp / "reauth-vars.json"
    vars_file.write_text(
        json.dumps(
            h.extravars(
                jada_login_command=[str(h.command)],
                jada_operator_settings=str(op["cfg"]),
                jada_client_secrets=str(op["secrets"]),
                jada_no_browser=True,
                jada_login_timeout=20,
                **extravars,
            )
        )
    )
    argv = [ANSIBLE_PLAYBOOK, "-c", "local", "-i", "localhost,", "playbooks/reauth.yml"]
    proc = subprocess.Popen(
        [*argv, "-e", f"@{vars_file}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={
            **os.environ,
            "OAUTHLIB_INSECURE_TRANSPORT": "1",
            "ANSIBLE_NOCOLOR": "1",
            # ~/.ansible_async by default: the login job's status file lands here.
            "ANSIBLE_ASYNC_DIR": str(async_dir(h)),
        },
    )
    lines: list[str] = []
    timer = threading.Timer(120, proc.kill)
    timer.start()
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            m = URL.search(line)
            if m and visit:
                with urllib.request.urlopen(m.group(1), timeout=10) as resp:  # noqa: S310
                    assert resp.status == 200
        rc = proc.wait()
    finally:
        timer.cancel()
    return rc, "".join(lines)


def test_reauth_installs_the_new_token_pushes_it_and_closes_the_needs_you_task(host, fake, aws):
    h = host()
    old = fake.issue_refresh_token()
    write_secret_file(h.token_file, old)
    fake.revoke_all()
    # What credential_refresh.yml left behind: the task for a person.
    title = "Re-authorize the Google credential of the port-sheet sync on web1"
    subprocess.run(
        [str(h.command), "-c", str(h.cfg), "tasks", "add", "--needs-you", title],
        check=True,
        capture_output=True,
    )
    op = operator_files(h, fake)
    before = temporaries()

    rc, out = run_reauth(h, op, jada_push_secret="jada/google-token")

    assert rc == 0, out[-5000:]
    token = json.loads(h.token_file.read_text())
    assert token["client_id"] == op["client"]["client_id"]
    assert token["refresh_token"] != old["refresh_token"]
    assert stat.S_IMODE(h.token_file.stat().st_mode) == 0o600
    assert fake.refresh_tokens[token["refresh_token"]].revoked is False
    pushed = boto3.client("secretsmanager", region_name="us-east-1").get_secret_value(
        SecretId="jada/google-token"
    )
    assert json.loads(pushed["SecretString"])["refresh_token"] == token["refresh_token"]
    assert fake.requests("sheets"), "no verifying sync"
    assert not h.needs_you_tasks()
    assert_no_secret(out, token, old)
    # Nothing left behind: no temporary token on "the host" or "the operator's machine", no
    # job status file of the login (it holds the job's output).
    assert temporaries() == before
    assert not async_dir(h).exists() or list(async_dir(h).iterdir()) == []


def test_no_consent_fails_the_run_and_changes_nothing(host, fake):
    h = host()
    old = fake.issue_refresh_token()
    write_secret_file(h.token_file, old)
    before = h.token_file.read_bytes()
    op = operator_files(h, fake)
    fake.set_consent("deny")

    rc, out = run_reauth(h, op)

    assert rc != 0
    assert "consent was denied" in out
    assert h.token_file.read_bytes() == before
    assert not async_dir(h).exists() or list(async_dir(h).iterdir()) == []
