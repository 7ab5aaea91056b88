"""The packaged rules read the sync's log file by default; the remediator role can select the
journal instead, and then no rule reads both (a failure is never counted twice).

The role's own template (``roles/remediator/templates/rules-source.yml.j2``) is rendered by a
real ``ansible-playbook`` with the role's defaults and vars, then the remediator's rule loader
merges the packaged pack and the rendered override as on a host.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.remediator.rules import load_rules

ROOT = Path(__file__).resolve().parents[3]
PACK = ROOT / "files" / "rules.d"
ROLE = ROOT / "roles" / "remediator"
LOG = "/var/log/jada-agent/port-sheet-sync.log"


def render(tmp_path: Path, **variables: object) -> Path | None:
    """Render the override as the role does; None when the role installs none."""
    out = tmp_path / "rules.d"
    out.mkdir()
    play = [{
        "hosts": "localhost", "connection": "local", "gather_facts": False,
        "vars_files": [str(ROLE / "defaults" / "main.yml"), str(ROLE / "vars" / "main.yml")],
        "vars": {"role_path": str(ROLE), "ansible_python_interpreter": sys.executable},
        "tasks": [{
            "ansible.builtin.template": {
                "src": str(ROLE / "templates" / "rules-source.yml.j2"),
                "dest": str(out / "40-rules-source.yml"), "mode": "0644",
            },
            "when": "remediator_rules_source_override | bool",
        }],
    }]  # fmt: skip
    playbook = tmp_path / "render.yml"
    playbook.write_text(json.dumps(play))
    r = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,",
         str(playbook), "-e", json.dumps(variables)],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCALHOST_WARNING": "0"},
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    target = out / "40-rules-source.yml"
    return target if target.exists() else None


def sources(*dirs: Path) -> dict[str, str]:
    return {r.name: r.source.key for r in load_rules(dirs).rules}


def test_the_packaged_rules_read_the_sync_log_file_by_default(tmp_path: Path):
    assert set(sources(PACK).values()) == {f"file:{LOG}"}
    assert render(tmp_path) is None  # the default installs no override


def test_selecting_the_journal_replaces_every_file_rule_and_none_reads_both(tmp_path: Path):
    override = render(tmp_path, remediator_rules_source="journal")
    assert override is not None
    packaged = sources(PACK)
    merged = sources(PACK, override.parent)
    assert set(merged) == set(packaged)  # the same rules, by name: replaced, not added
    assert set(merged.values()) == {"journal:port-sheet-sync.service"}
    # Everything else of each rule is the packaged one's.
    by_name = {r.name: r for r in load_rules([PACK]).rules}
    for rule in load_rules([PACK, override.parent]).rules:
        assert rule.match.pattern == by_name[rule.name].match.pattern
        assert rule.threshold == by_name[rule.name].threshold


def test_a_log_file_elsewhere_is_followed_by_the_rules(tmp_path: Path):
    override = render(tmp_path, remediator_sync_log_file="/srv/logs/sync.log")
    assert override is not None
    assert set(sources(PACK, override.parent).values()) == {"file:/srv/logs/sync.log"}


@pytest.mark.parametrize("choice", ["file", "journal"])
def test_the_override_passes_remediator_check(tmp_path: Path, choice: str):
    override = render(tmp_path, remediator_rules_source=choice, remediator_sync_log_file="/x.log")
    r = subprocess.run(
        [sys.executable, "-m", "agent", "remediator", "check", "--rules-dir", str(override.parent)],
        capture_output=True, text=True, timeout=60, check=False, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
