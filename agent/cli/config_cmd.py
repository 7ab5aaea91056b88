"""``jada-agent config check|show``: validate and print the settings file."""

from __future__ import annotations

import argparse

from agent import config
from agent.cli.common import add_json_flag, print_json
from agent.exitcodes import EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="validate or show the settings file")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION")
    csub.required = True
    check = csub.add_parser(
        "check",
        help="validate a settings file (used by Ansible's validate: before it replaces one)",
    )
    check.add_argument("file", nargs="?", help="file to check (default: the --config file)")
    check.set_defaults(func=cmd_check)
    show = csub.add_parser("show", help="print the effective settings")
    add_json_flag(show)
    show.set_defaults(func=cmd_show)


def cmd_check(args: argparse.Namespace) -> int:
    path = args.file or args.config or str(config.DEFAULT_PATH)
    s = config.load(path)
    print(f"{s.source}: ok")
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    s = config.load(args.config)
    data = config.to_masked_dict(s)  # channel URLs carry tokens: never printed
    if args.json:
        print_json(data)
    else:
        import yaml

        print(f"# {s.source}")
        print(yaml.safe_dump(data, sort_keys=False), end="")
    return EXIT_OK
