"""Helpers shared by the sub-command modules: settings loading, JSON output, errors.

The exit statuses are :mod:`agent.exitcodes`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, NoReturn

from agent import config
from agent.exitcodes import EXIT_FAILURE, EXIT_USAGE


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


def open_store_read_only(s: config.Settings) -> Any:
    """The store for a command that only reads it. A store that does not exist yet (a SQLite
    file, a DynamoDB table) is not created (a look must not change the host or the account, nor
    leave a root-owned file for the daemon): the command reads an empty in-memory store instead
    and says so on stderr."""
    from agent.store import StoreError, StoreMissing, open_store
    from agent.store.sqlite import SQLiteStore

    if s.store.backend == "sqlite" and not os.path.exists(s.store.path):
        print(
            f"jada-agent: no store yet at {s.store.path} (no task added, no daemon run)",
            file=sys.stderr,
        )
        return SQLiteStore(":memory:")
    try:
        return open_store(s, create=False)
    except StoreMissing as exc:  # DynamoDB: a look needs no CreateTable and creates nothing
        print(f"jada-agent: no store yet: {exc} (no task added, no daemon run)", file=sys.stderr)
        return SQLiteStore(":memory:")
    except StoreError as exc:
        raise CliError(f"store: {exc}") from None


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")
    sys.stdout.flush()


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for a machine to read")
