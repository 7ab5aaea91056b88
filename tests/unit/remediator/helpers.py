"""Builders shared by the remediator's unit tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from agent.remediator.rules import Rule, parse_rule


def rule(**overrides: Any) -> Rule:
    data: dict[str, Any] = {
        "name": "sheet-sync-token",
        "source": {"file": "/var/log/x.log"},
        "match": r"\[port-sheet\] token error: HTTP Error (?P<status>\d+)",
        "threshold": 3,
        "within": "90m",
    }
    data.update(overrides)
    return parse_rule(data, "test.yml", 0)


def write_rules(path: Path, *rules: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"rules": list(rules)}, sort_keys=False))
    return path
