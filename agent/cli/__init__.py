"""The ``jada-agent`` command: one sub-command per job, ``--json`` wherever a machine reads it.

Each concern registers its sub-commands from its own module here (``agent.cli.<concern>``); every
sub-command is a thin wrapper over a function of the matching sub-package. The sub-packages never
import this package.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from agent import __version__
from agent.cli.common import EXIT_USAGE, CliError, Parser
from agent.config import ConfigError
from agent.logline import OneLineFormatter

# The order is the order of ``jada-agent --help``.
COMMAND_MODULES = (
    "agent.cli.config_cmd",
    "agent.cli.tasks",
    "agent.cli.daemon",
    "agent.cli.sheets",
    "agent.cli.credentials",
    "agent.cli.remediator",
    "agent.cli.health",
    "agent.cli.lightsail",
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="jada-agent",
        description="Run, sync, heal and audit the jada-agent orchestrator.",
    )
    parser.add_argument("--version", action="version", version=f"jada-agent {__version__}")
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="settings file (default: $JADA_AGENT_CONFIG or /etc/jada-agent/agent.yml)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    # One event, one line: a field from outside must never forge a line of its own.
    handler.setFormatter(OneLineFormatter("%(message)s"))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[handler])
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"jada-agent: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CliError as exc:
        print(f"jada-agent: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
