"""Helpers shared by the sub-command modules: settings loading, JSON output, exit codes."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from agent import config

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 64  # EX_USAGE: bad command line or bad configuration


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
