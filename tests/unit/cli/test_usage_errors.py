"""Usage errors exit 64 (EX_USAGE), never 2, which ``sheet-sync`` uses for a credential error."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import agent
from agent.cli import main


@pytest.mark.parametrize(
    "argv",
    [
        ["no-such-command"],
        ["sheet-sync", "--no-such-flag"],
        ["credentials", "install"],  # one of --from/--from-secret/--from-parameter is required
        ["remediator", "lock", "acquire"],  # --owner is required
    ],
)
def test_a_usage_error_exits_64_and_names_the_problem(argv, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 64
    err = capsys.readouterr().err
    assert "usage: jada-agent" in err
    assert "error:" in err


def test_help_still_exits_0(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["sheet-sync", "--help"])
    assert exc.value.code == 0
    assert "usage: jada-agent sheet-sync" in capsys.readouterr().out


def test_the_console_command_exits_64_on_a_bad_option() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "agent", "sheet-sync", "--bogus"], capture_output=True, text=True
    )
    assert r.returncode == 64
    assert "unrecognized arguments: --bogus" in r.stderr


def test_the_health_command_runs_with_only_pyyaml_beside_the_package(tmp_path) -> None:
    # What a sandbox host (tests/integration/aws) ships: the package and PyYAML, nothing else.
    lib = tmp_path / "lib"
    shutil.copytree(Path(agent.__file__).parent, lib / "agent")
    shutil.copytree(Path(yaml.__file__).parent, lib / "yaml")
    run = [sys.executable, "-S", "-m", "agent", "health"]
    env = {"PYTHONPATH": str(lib), "PATH": "/usr/bin:/bin"}
    r = subprocess.run([*run, "--days", "x"], capture_output=True, text=True, env=env)
    assert r.returncode == 64
    assert "--days" in r.stderr

    r = subprocess.run([*run, "--help"], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "--from-journal" in r.stdout, r.stderr
    r = subprocess.run(
        [*run, "--json", "--no-credentials", "--days", "1"], capture_output=True, text=True, env=env
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["verdict"] in ("healthy", "degraded", "failing", "unknown")


def test_version_is_printed_on_stdout_and_the_service_path_never_loads_importlib_metadata() -> None:
    r = subprocess.run([sys.executable, "-m", "agent", "--version"], capture_output=True, text=True)
    assert r.returncode == 0
    assert r.stdout.startswith("jada-agent ") and r.stdout.strip() != "jada-agent"
    # Building the parser (what every long-running service does) must not pay for the version:
    # importlib.metadata and the email parser it loads are about a megabyte of the idle RSS.
    probe = (
        "import sys; from agent.cli import build_parser; build_parser();"
        " print(sorted(m for m in ('importlib.metadata', 'email.parser', 'difflib')"
        " if m in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"
