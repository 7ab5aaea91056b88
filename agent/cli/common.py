"""Helpers shared by the sub-command modules: settings loading, JSON output, exit codes."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, NoReturn

from agent import config

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 64  # EX_USAGE: bad command line or bad configuration


class Parser(argparse.ArgumentParser):
    """argparse with usage errors exiting 64 (EX_USAGE), not argparse's 2.

    Exit 2 means "credential error" for ``sheet-sync`` and ``credentials install``; a unit or a
    playbook reading that status must not mistake a mistyped option for a dead token. Sub-command
    parsers inherit the class (``add_subparsers`` uses the parent's type).
    """

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


class CliError(RuntimeError):
    """A failure to report as one line on stderr with an exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILURE):
        super().__init__(message)
        self.code = code


def settings(args: argparse.Namespace) -> config.Settings:
    return config.load(args.config)


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")
    sys.stdout.flush()


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for a machine to read")
