"""The inventory of the story: role variables that point a host's settings at the fakes.

Kept apart from the scenario so the mapping from "what the story needs" to the roles' public
variables (``roles/*/defaults/main.yml``) and the playbooks' inline variables is in one place.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.e2e.story import Story


def google_endpoints(url: str) -> dict[str, str]:
    return {
        "token_uri": url + "/token",
        "auth_uri": url + "/o/oauth2/auth",
    }


def for_story(story: Story) -> dict[str, dict[str, Any]]:
    """``{"host": {...}, "group": {...}}`` for the story's sandbox host."""
    from tests.e2e import story as s

    f = story.f
    google = f.urls["google"]
    group: dict[str, Any] = {
        "jada_agent_host_name": story.name,
        "jada_agent_spreadsheet_id": s.SPREADSHEET_ID,
        "jada_agent_anthropic_base_url": f.urls["anthropic"],
        "jada_agent_anthropic_api_key": story.api_key,
        "jada_agent_google_secret_name": s.SECRET_NAME,
        "jada_agent_aws_region": s.REGION,
        "jada_agent_settings_extra": {
            "google": {**google_endpoints(google), "timeout": "10s"},
            "sheets": {"endpoint": google + "/", "timeout": "10s", "max_retries": 1},
        },
        # The host's credential: the authorized-user JSON, deployed 0600 by port_sheet_sync.
        "port_sheet_sync_google_token": story.token,
        # The timer exists but cannot fire during the run: the story starts the unit itself.
        "port_sheet_sync_on_calendar": s.timer_schedule(),
        "port_sheet_sync_randomized_delay_sec": 0,
        "port_sheet_sync_persistent": False,
        # The remediator pulls a rotated client's credential from Secrets Manager (moto here),
        # with a key of its own, as a Lightsail host (no instance profile) would.
        "remediator_environment": {"AWS_ENDPOINT_URL": f.urls["moto"], "AWS_REGION": s.REGION},
        # Who is told: the loopback webhook (a person's inbox) and the dead-man's switch.
        "jada_agent_remediator_webhook_url": f.webhook_url,
        "jada_agent_heartbeat_url": f.heartbeat_url,
        "remediator_heartbeat_interval": "1min",
        "remediator_aws_credentials": {
            "aws_access_key_id": s.AWS_KEY_ID,
            "aws_secret_access_key": s.AWS_SECRET,
        },
    }
    return {"host": {}, "group": group}


def operator_settings(story: Story) -> Path:
    """The settings file of the operator's machine: the consent and token endpoints (the fake)."""
    path = story.work_dir / "operator-agent.yml"
    path.write_text(json.dumps({"google": google_endpoints(story.f.urls["google"])}) + "\n")
    return path


def reauth_args(story: Story) -> list[str]:
    """Extra ``ansible-playbook playbooks/reauth.yml`` arguments for the operator step."""
    extra = {
        "jada_client_secrets": str(story.client_file),
        "jada_operator_settings": str(operator_settings(story)),
        "jada_login_command": [str(Path(sys.executable).with_name("jada-agent"))],
        "jada_login_timeout": 60,
    }
    return ["-e", json.dumps(extra)]
