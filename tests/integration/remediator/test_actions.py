"""Playbooks through ansible-runner on localhost: results, timeout kill, injection, artifacts."""

from __future__ import annotations

import json
import os
import stat
import time
import uuid
from pathlib import Path

import pytest

from agent.remediator.actions import marked_processes, run_playbook

# Real ansible-playbook runs and service processes: seconds each.
pytestmark = pytest.mark.slow


def run(pdd: Path, playbook: str, **kw):
    args = {
        "private_data_dir": str(pdd),
        "playbook": playbook,
        "extravars": {"unit": "port-sheet-sync.service"},
        "incident_id": 7,
        "rule_name": "sheet-sync-token",
        "group": {"status": "400"},
        "timeout": 60,
        "artifacts_keep": 3,
    }
    args.update(kw)
    return run_playbook(**args)


def test_a_recovered_playbook_reports_status_stats_and_its_result(private_data_dir: Path):
    rem = run(private_data_dir, "recovered.yml")
    assert rem.status == "successful" and rem.rc == 0
    assert rem.outcome == "recovered" and rem.actions == ["installed a newer token"]
    assert rem.stats["ok"] == {"localhost": 3}
    seen = json.loads((Path(rem.artifact_dir) / "seen.json").read_text())
    assert seen == {
        "incident": 7,
        "rule": "sheet-sync-token",
        "group": {"status": "400"},
        "unit": "port-sheet-sync.service",
        "lock": True,
    }


def test_artifacts_are_private_rotated_and_hold_no_inherited_environment(
    private_data_dir: Path, monkeypatch
):
    monkeypatch.setenv("SOME_SECRET_TOKEN", "s3cr3t-value")
    rems = [run(private_data_dir, "needs_human.yml", artifacts_keep=2) for _ in range(3)]
    assert rems[-1].outcome == "needs_human"
    assert rems[-1].next_step.startswith("ansible-playbook playbooks/reauth.yml")
    dirs = sorted(p.name for p in (private_data_dir / "artifacts").iterdir())
    assert len(dirs) == 2 and rems[0].ident not in dirs
    for root, _subdirs, files in os.walk(private_data_dir / "artifacts"):
        assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
        for f in files:
            p = os.path.join(root, f)
            assert stat.S_IMODE(os.stat(p).st_mode) == 0o600, p
            assert b"s3cr3t-value" not in Path(p).read_bytes(), p
    command = json.loads((Path(rems[-1].artifact_dir) / "command").read_text())
    assert "SOME_SECRET_TOKEN" not in command["env"]
    assert not any("jada_group" in part for part in command["command"])


def test_template_syntax_in_incident_data_is_never_evaluated(private_data_dir: Path):
    marker = Path("/tmp") / f"pwned-{uuid.uuid4().hex}"
    evil = {
        "status": "{{ lookup('pipe', 'touch " + str(marker) + "') }}",
        "line": "{% for x in range(3) %}X{% endfor %}",
    }
    rem = run(
        private_data_dir,
        "recovered.yml",
        group=evil,
        extravars={"unit": "{{ lookup('pipe', 'touch " + str(marker) + "') }}"},
    )
    assert rem.status == "successful", rem.error
    assert not marker.exists()
    seen = json.loads((Path(rem.artifact_dir) / "seen.json").read_text())
    assert seen["group"] == evil
    assert seen["unit"].startswith("{{ lookup('pipe'")


def test_timeout_kills_the_whole_tree_including_the_forked_worker(private_data_dir: Path):
    sleep_for = f"{900 + (uuid.uuid4().int % 1000) / 1000:.3f}"
    t0 = time.monotonic()
    rem = run(private_data_dir, "hang.yml", timeout=3, extravars={"sleep_for": sleep_for})
    elapsed = time.monotonic() - t0
    assert rem.status == "timeout" and rem.outcome == "failed"
    assert "timed out" in rem.error
    assert elapsed < 20
    assert rem.killed >= 1  # the worker and the sleeps outlived ansible-playbook
    assert marked_processes(rem.ident) == []
    leftovers = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if sleep_for.encode() in cmd:
            leftovers.append(cmd)
    assert leftovers == []


def test_a_missing_playbook_is_a_failed_remediation_not_a_crash(private_data_dir: Path):
    rem = run(private_data_dir, "nope.yml")
    assert rem.status == "failed" and rem.outcome == "failed"
    assert "no such playbook" in rem.error


def test_aws_configuration_reaches_the_playbook_but_aws_keys_do_not(
    private_data_dir: Path, monkeypatch
):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://127.0.0.1:10")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/etc/jada-agent/aws-credentials")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-for-artifacts")
    rem = run(private_data_dir, "recovered.yml")
    env = json.loads((Path(rem.artifact_dir) / "command").read_text())["env"]
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9"
    assert env["AWS_ENDPOINT_URL_SECRETS_MANAGER"] == "http://127.0.0.1:10"
    assert env["AWS_SHARED_CREDENTIALS_FILE"] == "/etc/jada-agent/aws-credentials"
    assert "AWS_SECRET_ACCESS_KEY" not in env


def test_user_and_password_in_an_endpoint_url_never_reach_the_playbook(
    private_data_dir: Path, monkeypatch
):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://proxyuser:pr0xy-pass@127.0.0.1:9/path?q=1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", "https://u%40x:p%3Aw@[::1]:10")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", "https://token@127.0.0.1")
    rem = run(private_data_dir, "recovered.yml")
    for root, _subdirs, files in os.walk(rem.artifact_dir):
        for f in files:
            data = Path(root, f).read_bytes()
            assert b"pr0xy-pass" not in data and b"proxyuser" not in data, f
            assert b"p%3Aw" not in data and b"token@" not in data, f
    env = json.loads((Path(rem.artifact_dir) / "command").read_text())["env"]
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9/path?q=1"
    assert env["AWS_ENDPOINT_URL_SECRETS_MANAGER"] == "https://[::1]:10"
    assert env["AWS_ENDPOINT_URL_SSM"] == "https://127.0.0.1"
