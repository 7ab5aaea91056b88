"""``jada-agent`` sub-commands of agent.daemon (registered by its owner)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """No sub-commands yet."""
