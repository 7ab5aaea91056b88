"""Every role option that can carry a secret (a token, a key, a webhook or channel URL, AWS
credentials) is ``no_log: true`` in its role's ``meta/argument_specs.yml``, so the argument
validation that runs before the role's tasks never prints it."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]

# Names that say "secret": a token, a key, a password, credentials, a webhook or channel URL.
_SECRET = re.compile(
    r"(token|api_key|secret|password|credentials|webhook_url|heartbeat_url|channels|service_account)$"
)
# Options named like a secret that hold no secret: where a secret is, or which kind it is.
_NOT_SECRET = re.compile(r"(_file|_dir|_name|_type|_force)$")
# Free-form mappings that may carry secrets (a settings overlay can hold notify.urls).
_MAY_CARRY = {"jada_agent_settings_extra"}


def _options() -> list[tuple[str, str, dict]]:
    found = []
    for spec in sorted(ROOT.glob("roles/*/meta/argument_specs.yml")):
        role = spec.parent.parent.name
        for entry in yaml.safe_load(spec.read_text())["argument_specs"].values():
            for name, option in entry.get("options", {}).items():
                found.append((role, name, option))
    return found


def _is_secret(name: str) -> bool:
    return name in _MAY_CARRY or (bool(_SECRET.search(name)) and not _NOT_SECRET.search(name))


def test_every_secret_option_is_no_log():
    secrets = [(role, name) for role, name, _ in _options() if _is_secret(name)]
    missing = [
        f"{role}: {name}"
        for role, name, option in _options()
        if _is_secret(name) and option.get("no_log") is not True
    ]
    # The known secrets are among those checked (a renamed option must not slip past the pattern).
    assert {name for _, name in secrets} >= {
        "jada_agent_anthropic_api_key",
        "jada_agent_remediator_webhook_url",
        "jada_agent_notify_channels",
        "jada_agent_heartbeat_url",
        "port_sheet_sync_google_token",
        "port_sheet_sync_google_service_account",
        "remediator_aws_credentials",
    }
    assert missing == []


def test_no_option_outside_the_secrets_is_no_log():
    # no_log on a plain option hides its value from a person debugging a failed validation.
    needless = [
        f"{role}: {name}"
        for role, name, option in _options()
        if option.get("no_log") and not _is_secret(name)
    ]
    assert needless == []
