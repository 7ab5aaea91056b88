"""``jada-agent daemon``: the orchestrator service (unit ``jada-agent.service``, Type=notify)."""

from __future__ import annotations

import argparse
import logging

from agent.cli.common import CliError, settings
from agent.store import StoreError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "daemon",
        help="run the orchestrator: take tasks from the dashboard and run Claude sessions",
    )
    p.set_defaults(func=cmd_daemon)


def cmd_daemon(args: argparse.Namespace) -> int:
    from agent.daemon.loop import run_daemon

    # The journal is for people: no per-request chatter from the client libraries.
    for name in ("botocore", "boto3", "urllib3", "httpx", "anthropic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        return run_daemon(settings(args))
    except StoreError as exc:
        # Exit 1: systemd's Restart= tries again; the journal says why.
        raise CliError(f"store: {exc}") from None
