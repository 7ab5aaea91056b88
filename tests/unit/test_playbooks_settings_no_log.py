"""Every playbook task that reads the settings file (it names notification URLs, secrets) has
``no_log: true``, so the values reach neither runner artifacts nor job events."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _tasks(node: Any):
    if isinstance(node, list):
        for item in node:
            yield from _tasks(item)
    elif isinstance(node, dict):
        if any(k in node for k in ("name",)) and not any(k in node for k in ("hosts", "block")):
            yield node
        for key in ("tasks", "pre_tasks", "post_tasks", "handlers", "block", "rescue", "always"):
            if key in node:
                yield from _tasks(node[key])


def _reads_settings(task: dict[str, Any]) -> bool:
    text = json.dumps(task)
    slurps_settings = "slurp" in text and "_jada_settings" in text
    shows_config = "'config', 'show'" in text or '"config", "show"' in text
    # a fact holding the whole settings document (a task var used to pick paths is not output)
    facts = yaml.safe_dump(task.get("ansible.builtin.set_fact") or {})
    registered_config = "_jada_config.stdout" in facts
    return slurps_settings or shows_config or registered_config


def test_every_task_that_reads_the_settings_has_no_log():
    offenders = []
    checked = 0
    # The playbooks and the task files they import (playbooks/tasks/*.yml).
    for path in sorted((ROOT / "playbooks").rglob("*.yml")):
        for task in _tasks(yaml.safe_load(path.read_text())):
            if _reads_settings(task):
                checked += 1
                if task.get("no_log") is not True:
                    offenders.append(f"{path.relative_to(ROOT)}: {task.get('name')}")
    assert checked >= 3  # credential_refresh (show, set_fact, slurp) and permission_audit
    assert offenders == []
