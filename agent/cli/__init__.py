"""The ``jada-agent`` command: one sub-command per job, ``--json`` wherever a machine reads it.

Each concern registers its sub-commands from its own module here (``agent.cli.<concern>``); every
sub-command is a thin wrapper over a function of the matching sub-package. The sub-packages never
import this package.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from agent.cli.common import CliError, Parser
from agent.config import ConfigError
from agent.exitcodes import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, EXIT_USAGE
from agent.logline import OneLineFormatter

# Each module and the top-level commands it registers, in the order of ``jada-agent --help``.
# A command line builds only its command's module: all of them cost ~30 ms of imports and
# argparse set-up, a fifth of a short command's start (tests/unit/cli checks this table).
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "agent.cli.config_cmd": ("config",),
    "agent.cli.tasks": ("tasks", "status", "sessions"),
    "agent.cli.daemon": ("daemon",),
    "agent.cli.sheets": ("sheet-sync",),
    "agent.cli.credentials": ("credentials",),
    "agent.cli.remediator": ("remediator",),
    "agent.cli.notify": ("notify",),
    "agent.cli.health": ("health",),
    "agent.cli.lightsail": ("lightsail",),
}
_MODULE_OF = {c: m for m, commands in COMMAND_MODULES.items() for c in commands}


class _Version(argparse.Action):
    """``--version``, looked up only when asked: ``importlib.metadata`` (and the ``email`` parser
    it loads) would cost the long-running services about a megabyte of RSS for a string they
    never print."""

    def __call__(self, parser: argparse.ArgumentParser, *_args: object, **_kw: object) -> None:
        import agent

        sys.stdout.write(f"jada-agent {agent.__version__}\n")
        parser.exit()


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser of every command; given the command line, of its command alone (the
    output, help and errors are the same: see :func:`_module_of`)."""
    parser = Parser(
        prog="jada-agent",
        description="Run, sync, heal and audit the jada-agent orchestrator.",
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="show the version and exit")
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="settings file (default: $JADA_AGENT_CONFIG or /etc/jada-agent/agent.yml)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    only = _module_of(argv) if argv is not None else None
    for name in COMMAND_MODULES if only is None else (only,):
        importlib.import_module(name).register(sub)
    return parser


def _module_of(argv: Sequence[str]) -> str | None:
    """The module of the command ``argv`` runs, or None (every module is then built).

    It follows only the global options in their plain spellings (``-v``, ``--verbose``, ``-c
    FILE``, ``-cFILE``, ``--config FILE``, ``--config=FILE``); anything else before the
    command (``-h``, ``--version``, an abbreviation, ``--``) or an unknown command gets every
    module, so that argparse says what it always said.
    """
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-v", "--verbose"):
            i += 1
        elif arg in ("-c", "--config"):
            i += 2
        elif arg.startswith("--config=") or (arg.startswith("-c") and not arg.startswith("--")):
            i += 1
        elif arg.startswith("-"):
            return None
        else:
            return _MODULE_OF.get(arg)
    return None


# HTTP client libraries (httpx and its forks, httpcore, urllib3) log every request at INFO
# ("HTTP Request: GET ... 200 OK"): noise on a command's stderr, shown only with --verbose.
_CLIENT_LOGGERS = ("httpx", "httpcore", "urllib3")


def _no_client_chatter(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or not record.name.startswith(_CLIENT_LOGGERS)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    return dispatch(args)


def dispatch(args: argparse.Namespace) -> int:
    """Run the parsed command: logging set up, errors as one line on stderr with their exit code,
    and a reader that went away (``| head``) is no traceback."""
    handler = logging.StreamHandler(sys.stderr)
    # One event, one line: a field from outside must never forge a line of its own.
    handler.setFormatter(OneLineFormatter("%(message)s"))
    if not args.verbose:
        handler.addFilter(_no_client_chatter)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[handler])
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not at exit as "Exception ignored"
        return code
    except BrokenPipeError:
        # The reader stopped reading (``jada-agent ... | head``): what it wanted, it has. Point
        # stdout at /dev/null so that the flush at exit does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE
    except ConfigError as exc:
        print(f"jada-agent: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CliError as exc:
        print(f"jada-agent: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
