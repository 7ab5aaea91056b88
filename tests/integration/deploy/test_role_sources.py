"""The roles take the repository they deploy from a variable (``jada_agent_source_dir``,
``remediator_source_dir``) whose default is the repository they sit in. A role copied elsewhere
stops before its first change, naming the variable to set, instead of installing no rules and
then removing the host's as "no longer deployed"; told where the repository is, it goes on.

Only the roles' preflight tasks run (``--tags preflight``), against localhost in check mode.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def preflight(
    roles_path: Path, role: str, tmp_path: Path, **variables: str
) -> subprocess.CompletedProcess[str]:
    play = [{"hosts": "localhost", "connection": "local", "gather_facts": False, "roles": [role]}]
    playbook = tmp_path / "preflight.yml"
    playbook.write_text(json.dumps(play))
    return subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "--check",
         "--tags", "preflight", str(playbook), "-e", json.dumps({"ansible_python_interpreter": sys.executable, **variables})],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "ANSIBLE_ROLES_PATH": str(roles_path), "ANSIBLE_NOCOLOR": "1",
             "ANSIBLE_LOCALHOST_WARNING": "0"},
    )  # fmt: skip


@pytest.fixture
def roles_elsewhere(tmp_path: Path) -> Path:
    """The roles as a Galaxy install leaves them: a roles path outside the repository."""
    roles = tmp_path / "galaxy" / "roles"
    shutil.copytree(ROOT / "roles", roles, ignore=shutil.ignore_patterns("molecule"))
    return roles


@pytest.mark.parametrize(
    ("role", "variable"),
    [("remediator", "remediator_source_dir"), ("jada_agent", "jada_agent_source_dir")],
)
def test_a_role_outside_the_repository_stops_first_and_names_the_variable(
    roles_elsewhere: Path, tmp_path: Path, role: str, variable: str
):
    r = preflight(roles_elsewhere, role, tmp_path)
    assert r.returncode != 0, r.stdout
    assert variable in r.stdout
    assert "changed=0" in r.stdout


@pytest.mark.parametrize(
    ("role", "variable"),
    [("remediator", "remediator_source_dir"), ("jada_agent", "jada_agent_source_dir")],
)
def test_a_role_outside_the_repository_goes_on_when_told_where_it_is(
    roles_elsewhere: Path, tmp_path: Path, role: str, variable: str
):
    r = preflight(roles_elsewhere, role, tmp_path, **{variable: str(ROOT)})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]


def test_the_remediator_follows_the_jada_agent_source(roles_elsewhere: Path, tmp_path: Path):
    r = preflight(roles_elsewhere, "remediator", tmp_path, jada_agent_source_dir=str(ROOT))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]


def test_the_roles_in_the_repository_need_no_source_variable(tmp_path: Path):
    for role in ("jada_agent", "remediator"):
        r = preflight(ROOT / "roles", role, tmp_path)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
