"""``ansible-playbook --syntax-check`` of ``site.yml`` and of every playbook in ``playbooks/``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOKS = [ROOT / "site.yml", *sorted((ROOT / "playbooks").glob("*.yml"))]


@pytest.mark.parametrize("path", PLAYBOOKS, ids=[str(p.relative_to(ROOT)) for p in PLAYBOOKS])
def test_playbook_passes_the_syntax_check(path: Path):
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
        "ANSIBLE_NOCOLOR": "1",
    }
    res = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "--syntax-check",
            "-i",
            str(ROOT / "inventory" / "example.yml"),
            str(path),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_a_broken_playbook_fails_the_syntax_check(tmp_path: Path):
    # The check must be able to fail: an unknown module is a syntax error.
    bad = tmp_path / "bad.yml"
    bad.write_text("- hosts: all\n  tasks:\n    - ansible.builtin.no_such_module: {}\n")
    res = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "--syntax-check",
            "-i",
            "localhost,",
            str(bad),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode != 0
