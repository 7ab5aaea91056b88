"""The real ``jada-agent credentials install`` run as root against a hostile service user.

The service user owns the secrets directory and plants symlinks in it; root must never read
through them (a root-only file copied into a backup the user owns) nor move anything aside when
refusing. A real unprivileged user is created for the test.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest
import yaml

from tests.integration.google.conftest import run_agent

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (creates a user)")

ROOT_ONLY = {
    "type": "authorized_user",
    "client_id": "root-client",
    "client_secret": "root-only-secret-9f2",
    "refresh_token": "root-only-refresh",
}
NEW = {**ROOT_ONLY, "client_secret": "new-secret", "refresh_token": "new-refresh"}


@pytest.fixture
def hostile():
    """A real unprivileged user owning a secrets dir it can reach (/tmp/pytest-of-root is 0700)."""
    name = f"jadat{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--system", "--no-create-home", name], check=True)
    base = Path(tempfile.mkdtemp(prefix="jada-hostile-", dir="/tmp"))
    base.chmod(0o755)
    pw = pwd.getpwnam(name)
    secrets = base / "secrets"
    secrets.mkdir(mode=0o700)
    os.chown(secrets, pw.pw_uid, pw.pw_gid)
    root_dir = base / "root-only"
    root_dir.mkdir(mode=0o700)
    root_file = root_dir / "token.json"
    root_file.write_text(json.dumps(ROOT_ONLY))
    root_file.chmod(0o600)
    new = root_dir / "new.json"
    new.write_text(json.dumps(NEW))
    cfg = base / "agent.yml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "service_user": name,
                "state_dir": str(base),
                "google": {"token_file": str(secrets / "google-token.json")},
            }
        )
    )
    try:
        yield name, pw, secrets, root_file, new, cfg
    finally:
        shutil.rmtree(base, ignore_errors=True)
        subprocess.run(["userdel", name], check=False)


def _install(cfg: Path, source: Path) -> subprocess.CompletedProcess[str]:
    return run_agent(cfg, "credentials", "install", "--from", str(source), "--no-verify")


def _as_user(pw, fn) -> None:
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(pw.pw_gid)
            os.setuid(pw.pw_uid)
            fn()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def _user_can_read(pw, path: Path) -> bool:
    r, w = os.pipe()

    def probe() -> None:
        try:
            os.write(w, path.read_bytes()[:200] or b"-")
        except OSError:
            os.write(w, b"!")

    _as_user(pw, probe)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    return data not in (b"!", b"")


def test_a_symlink_to_a_root_only_credential_never_reaches_the_service_user(hostile) -> None:
    _name, pw, secrets, root_file, new, cfg = hostile
    _as_user(pw, lambda: os.symlink(root_file, secrets / "google-token.json"))
    res = _install(cfg, new)
    leaked = [
        p for p in secrets.iterdir() if not p.is_symlink() and b"root-only-secret" in p.read_bytes()
    ]
    readable = [p for p in leaked if _user_can_read(pw, p)]
    assert not readable, f"{res.stdout}{res.stderr}: the service user can read {readable}"
    assert json.loads(root_file.read_text()) == ROOT_ONLY  # root's file untouched
    assert "symlink" in res.stdout + res.stderr and res.returncode != 0


def test_a_symlink_to_etc_passwd_is_refused_and_nothing_is_moved_aside(hostile) -> None:
    _name, pw, secrets, _root_file, new, cfg = hostile
    _as_user(pw, lambda: os.symlink("/etc/passwd", secrets / "google-token.json"))
    before = stat.S_IMODE(os.stat("/etc/passwd").st_mode)
    res = _install(cfg, new)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert "is a symlink; refusing" in out and "Traceback" not in out
    assert os.readlink(secrets / "google-token.json") == "/etc/passwd"
    assert sorted(p.name for p in secrets.iterdir()) == ["google-token.json"]
    assert stat.S_IMODE(os.stat("/etc/passwd").st_mode) == before


def test_a_fifo_is_refused_without_hanging(hostile) -> None:
    _name, pw, secrets, _root_file, new, cfg = hostile
    _as_user(pw, lambda: os.mkfifo(secrets / "google-token.json"))
    res = _install(cfg, new)
    assert res.returncode == 1 and "not a regular file" in res.stdout + res.stderr


def test_an_honest_install_as_root_leaves_files_owned_by_the_service_user(hostile) -> None:
    _name, pw, secrets, _root_file, new, cfg = hostile
    res = _install(cfg, new)
    assert res.returncode == 0, res.stdout + res.stderr
    st = (secrets / "google-token.json").stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (pw.pw_uid, 0o600)
    assert json.loads((secrets / "google-token.json").read_text()) == NEW
