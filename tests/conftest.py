"""Shared fixtures: settings pointing into a temporary directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import config

pytest_plugins = ["tests.sandbox.pytest_plugin"]


@pytest.fixture
def settings_factory(tmp_path: Path):
    """Build validated settings whose every path lives under ``tmp_path``."""

    def make(**sections) -> config.Settings:
        base = {
            "host_name": "test-host",
            "state_dir": str(tmp_path / "state"),
            "secrets_dir": str(tmp_path / "state" / "secrets"),
            "store": {"path": str(tmp_path / "state" / "store.db")},
            "daemon": {
                "api_key_file": str(tmp_path / "state" / "secrets" / "anthropic-api-key"),
                "workspace_root": str(tmp_path / "state" / "workspaces"),
            },
            "google": {
                "token_file": str(tmp_path / "state" / "secrets" / "google-token.json"),
                "service_account_file": str(
                    tmp_path / "state" / "secrets" / "google-service-account.json"
                ),
            },
            "remediator": {
                "rules_dirs": [str(tmp_path / "rules.d")],
                "state_db": str(tmp_path / "state" / "remediator.db"),
                "private_data_dir": str(tmp_path / "state" / "runner"),
                "lock_file": str(tmp_path / "run" / "remediation.lock"),
            },
        }
        for key, value in sections.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                base[key] = {**base[key], **value}
            else:
                base[key] = value
        return config.from_dict(base, source=str(tmp_path / "agent.yml"))

    return make
