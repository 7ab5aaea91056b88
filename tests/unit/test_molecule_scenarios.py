"""Every role with tasks has a Molecule scenario whose sequence proves it the same way: converge,
idempotence, check mode on the converged host, then verify, each in that order."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PROOF = ["converge", "idempotence", "check", "verify"]


def test_every_role_with_tasks_has_a_scenario_with_the_full_proof():
    roles = sorted(p.parent.parent.name for p in ROOT.glob("roles/*/tasks/main.yml"))
    assert roles  # the glob must find the roles
    wrong = {}
    for role in roles:
        scenario = ROOT / "roles" / role / "molecule" / "default" / "molecule.yml"
        if not scenario.exists():
            wrong[role] = "no molecule/default/molecule.yml"
            continue
        sequence = yaml.safe_load(scenario.read_text())["scenario"]["test_sequence"]
        proof = [step for step in sequence if step in PROOF]
        if proof != PROOF:
            wrong[role] = f"sequence {sequence}"
    assert wrong == {}
