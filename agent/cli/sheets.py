"""``jada-agent sheet-sync``: one run of the port-sheet sync (the unit's ExecStart)."""

from __future__ import annotations

import argparse
import sys

from agent.cli.common import add_json_flag, print_json, settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sheet-sync",
        help="push sessions, tasks, ports and deployment to the Google Sheet (exit 0 ok, "
        "2 credential error, 3 transient, 1 other)",
    )
    add_json_flag(p)
    p.set_defaults(func=cmd_sync)


def cmd_sync(args: argparse.Namespace) -> int:
    from agent.sheets import run_sync

    s = settings(args)
    if args.json:
        # The journal line goes to stderr so that stdout holds only the JSON document.
        result = run_sync(s, log=lambda line: print(line, file=sys.stderr, flush=True))
        print_json(result.to_json())
    else:
        result = run_sync(s)
    return result.exit_code
