"""The inventory of the story: role variables that point a host's settings at the fakes.

Kept apart from the scenario so the mapping from "what the story needs" to the roles' public
variables (``roles/*/defaults/main.yml``) is in one place.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.e2e.story import Story


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
            "google": {
                "token_uri": google + "/token",
                "auth_uri": google + "/o/oauth2/auth",
                "revoke_uri": google + "/revoke",
                "timeout": "10s",
            },
            "sheets": {"endpoint": google + "/", "timeout": "10s", "max_retries": 1},
        },
        # The host's credential: the authorized-user JSON, deployed 0600 by port_sheet_sync.
        "port_sheet_sync_google_token": json.dumps(story.token),
        "port_sheet_sync_timer_on_calendar": s.timer_schedule(),
        # The remediator reaches Secrets Manager (moto) through botocore's own variables.
        "jada_agent_aws_endpoint_url": f.urls["moto"],
        "jada_agent_aws_access_key_id": s.AWS_KEY_ID,
        "jada_agent_aws_secret_access_key": s.AWS_SECRET,
    }
    return {"host": {}, "group": group}


def reauth_args(story: Story) -> list[str]:
    """Extra ``ansible-playbook playbooks/reauth.yml`` arguments for the operator step."""
    return ["-e", f"reauth_client_secrets={story.client_file}"]
