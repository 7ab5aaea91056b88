"""A command line builds only its command's module, and says exactly what the full parser says."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import subprocess
import sys

import pytest

from agent.cli import COMMAND_MODULES, build_parser
from agent.cli.common import Parser


def _registered(module: str) -> tuple[str, ...]:
    parser = Parser(prog="jada-agent")
    sub = parser.add_subparsers(dest="command")
    importlib.import_module(module).register(sub)
    return tuple(sub.choices)


@pytest.mark.parametrize("module", list(COMMAND_MODULES))
def test_the_command_table_names_exactly_what_each_module_registers(module: str) -> None:
    assert _registered(module) == COMMAND_MODULES[module]


def test_a_remediator_command_line_imports_no_other_command_module_nor_the_store() -> None:
    probe = (
        "import json, sys; from agent.cli import build_parser;"
        " build_parser(['-v', '-c', '/nonexistent', 'remediator', 'replay', '--rules', 'r', 'x']);"
        " print(json.dumps(sorted(m for m in sys.modules"
        " if m.startswith(('agent.cli.', 'agent.store')))))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == ["agent.cli.common", "agent.cli.remediator"]


def _outcome(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[object, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            result: object = sorted(vars(parser.parse_args(argv)).items())
        except SystemExit as exc:
            result = ("exit", exc.code)
    return result, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    "argv",
    [
        ["remediator", "replay", "--rules", "r.yml", "a.log", "--json"],
        ["-v", "--config=/x", "remediator", "incidents", "--status", "open"],
        ["-c", "/x", "remediator", "incidents", "--status", "bogus"],
        ["-c/x", "remediator", "--help"],
        ["remediator", "incidents", "--help"],
        ["remediator"],
        ["remediator", "replay", "--bogus"],
        ["tasks", "list", "--help"],
        ["status", "--bogus"],
        ["sheet-sync", "--help"],
        ["lightsail", "ssh"],
        ["no-such-command"],
        ["-c", "-v", "remediator", "status"],
        ["--conf", "/x", "remediator", "status"],
        ["-vc", "/x", "remediator", "status"],
        ["--help"],
        [],
    ],
)
def test_a_parser_built_for_its_command_line_says_what_the_full_parser_says(
    argv: list[str],
) -> None:
    assert _outcome(build_parser(argv), argv) == _outcome(build_parser(), argv)
