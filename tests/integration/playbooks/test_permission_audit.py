"""playbooks/permission_audit.yml: wrong modes found, reported under --check, fixed otherwise."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from tests.integration.google.conftest import write_secret_file

pytestmark = pytest.mark.slow

PLAYBOOK = "permission_audit.yml"


def mode(p: Path) -> int:
    return stat.S_IMODE(p.lstat().st_mode)


@pytest.fixture
def audited(host):
    """A host whose token, key, settings, secrets dir and some runner artifacts are too open."""
    h = host()
    s = h.settings
    secrets = Path(s.secrets_dir)
    write_secret_file(h.token_file, {"type": "authorized_user"}, mode=0o644)
    write_secret_file(Path(s.daemon.api_key_file), b"sk-ant-test\n", mode=0o640)
    write_secret_file(secrets / "google-token.json.bak", b"{}", mode=0o600)  # already right
    secrets.chmod(0o755)
    h.cfg.chmod(0o644)
    artifacts = Path(s.remediator.private_data_dir) / "artifacts"
    for i in range(200):
        d = artifacts / f"{i}-sheet-sync-token"
        (d / "job_events").mkdir(parents=True)
        for sub in (artifacts, d, d / "job_events"):
            sub.chmod(0o700)
        for name in ("stdout", "status", "rc", "job_events/1-x.json"):
            f = d / name
            f.write_text("x")
            f.chmod(0o600)
    wide_dir = artifacts / "7-sheet-sync-token"
    wide_dir.chmod(0o755)
    wide_file = artifacts / "42-sheet-sync-token" / "stdout"
    wide_file.chmod(0o644)
    return h, wide_dir, wide_file


def test_check_mode_reports_every_wrong_file_and_changes_nothing(audited):
    h, wide_dir, wide_file = audited
    s = h.settings
    result = h.result(PLAYBOOK, "--check")
    assert "would change: 6 file(s)" in h.runs[-1].stdout
    listed = sorted(a.split(": ")[1] for a in result["actions"])
    wrong = (h.token_file, s.daemon.api_key_file, s.secrets_dir, h.cfg, wide_dir, wide_file)
    assert listed == sorted(str(p) for p in wrong)
    assert mode(h.token_file) == 0o644
    assert mode(wide_dir) == 0o755
    assert mode(h.cfg) == 0o644


def test_the_audit_fixes_what_is_wrong_fast_and_is_idempotent(audited):
    h, wide_dir, wide_file = audited
    s = h.settings
    t0 = time.monotonic()
    result = h.result(PLAYBOOK)
    took = time.monotonic() - t0
    assert result["outcome"] == "recovered"
    assert result["cause"] == "permissions"
    assert len(result["actions"]) == 6
    assert f"google token: {h.token_file}: mode 0644 owner" in "\n".join(result["actions"])
    assert mode(h.token_file) == 0o600
    assert mode(Path(s.daemon.api_key_file)) == 0o600
    assert mode(Path(s.secrets_dir)) == 0o700
    assert mode(h.cfg) == 0o640
    assert mode(wide_dir) == 0o700
    assert mode(wide_file) == 0o600
    # 800 artifact files: one find, not a module call per file.
    print(f"permission audit over 800 artifacts: {took:.1f}s")
    assert took < 30

    again = h.result(PLAYBOOK)
    assert again == {**again, "outcome": "recovered", "cause": "ok", "actions": []}
    assert "changed=0" in h.runs[-1].stdout.split("PLAY RECAP")[-1]


def test_a_wrong_owner_is_found(audited):
    h, _, _ = audited
    if os.geteuid() != 0:
        pytest.skip("chown needs root")
    os.chown(h.token_file, 65534, 65534)
    result = h.result(PLAYBOOK)
    line = next(a for a in result["actions"] if a.startswith("google token:"))
    assert "owner nobody:nogroup" in line
    assert h.token_file.stat().st_uid == os.geteuid()
