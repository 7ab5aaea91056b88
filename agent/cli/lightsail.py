"""``jada-agent lightsail``: instances, temporary SSH access, and commands run with that access.

- ``lightsail list [--region R]... [--json]``
- ``lightsail ssh [--port P] [--region R] INSTANCE [-- COMMAND...]``: a shell (or one command) on the instance
  with temporary access; the key and certificate are deleted when ssh exits.
- ``lightsail access INSTANCE --dir DIR [--json]``: write the access into DIR (yours to delete)
  and print the ssh options and Ansible host variables.
- ``lightsail run [--port P] -- COMMAND...``: run COMMAND (say ``ansible-playbook -i
  inventory/lightsail.py playbooks/health.yml``) with ``JADA_LIGHTSAIL_ACCESS_DIR`` set to a private
  temporary directory; the dynamic inventory writes each instance's access there, and the
  directory and its control masters are removed when COMMAND ends, however it ends.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path

from agent.cli.common import CliError, add_json_flag, print_json, settings
from agent.exitcodes import EXIT_USAGE

ACCESS_DIR_ENV = "JADA_LIGHTSAIL_ACCESS_DIR"
PORT_ENV = "JADA_LIGHTSAIL_SSH_PORT"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lightsail", help="Lightsail instances and temporary SSH access")
    ls = p.add_subparsers(dest="lightsail_command", metavar="SUBCOMMAND")
    ls.required = True

    lst = ls.add_parser("list", help="instances in the region(s)")
    lst.add_argument("--region", action="append", help="region (repeatable; default aws.region)")
    add_json_flag(lst)
    lst.set_defaults(func=cmd_list)

    ssh = ls.add_parser("ssh", help="open a shell (or run a command) with temporary access")
    ssh.add_argument("instance")
    ssh.add_argument("--region")
    ssh.add_argument("--port", type=int, default=None, help="sshd port (default 22)")
    # Options go before INSTANCE: everything after it is the remote command.
    ssh.add_argument(
        "remote", nargs=argparse.REMAINDER, help="[--] COMMAND to run instead of a shell"
    )
    ssh.set_defaults(func=cmd_ssh)

    acc = ls.add_parser("access", help="write temporary access into a directory")
    acc.add_argument("instance")
    acc.add_argument("--dir", required=True, metavar="DIR")
    acc.add_argument("--region")
    acc.add_argument("--port", type=int, default=None)
    add_json_flag(acc)
    acc.set_defaults(func=cmd_access)

    run = ls.add_parser("run", help="run a command with per-instance access for the inventory")
    run.add_argument("--port", type=int, default=None)
    run.add_argument("command_argv", nargs=argparse.REMAINDER, metavar="-- COMMAND")
    run.set_defaults(func=cmd_run)


def _quiet_boto() -> None:
    # boto3 logs "Found credentials in ..." at INFO; the command's own output must stay clean.
    for name in ("botocore", "boto3", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _port(args: argparse.Namespace) -> int:
    return args.port or int(os.environ.get(PORT_ENV) or 22)


def _strip_dashes(argv: list[str]) -> list[str]:
    return argv[1:] if argv and argv[0] == "--" else argv


def cmd_list(args: argparse.Namespace) -> int:
    _quiet_boto()
    from agent.aws.lightsail import LightsailError, list_instances

    s = settings(args)
    rows = []
    try:
        for region in args.region or [s.aws.region]:
            rows += [i.__dict__ for i in list_instances(region)]
    except LightsailError as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print_json(rows)
    else:
        for r in rows:
            print(f"{r['name']:<30} {r['region']:<12} {r['state']:<10} {r['public_ip'] or '-'}")
    return 0


def cmd_ssh(args: argparse.Namespace) -> int:
    _quiet_boto()
    from agent.aws.lightsail import LightsailError, access_details
    from agent.aws.ssh import Terminated, ssh_argv, temporary_access

    s = settings(args)
    region = args.region or s.aws.region
    command = _strip_dashes(args.remote)
    try:
        details = access_details(args.instance, region)
        with temporary_access(details, port=_port(args)) as access:
            argv = ssh_argv(access, command, control_persist=None)
            if not command:
                argv.insert(1, "-t")
            # A child, not exec: the key must be deleted after the session ends.
            return subprocess.call(argv)
    except LightsailError as exc:
        raise CliError(str(exc)) from None
    except Terminated as t:
        return 128 + t.signum


def cmd_access(args: argparse.Namespace) -> int:
    _quiet_boto()
    from agent.aws.lightsail import LightsailError, access_details
    from agent.aws.ssh import ansible_vars, ssh_argv, write_access

    s = settings(args)
    region = args.region or s.aws.region
    directory = Path(args.dir)
    if directory.exists() and any(directory.iterdir()):
        raise CliError(f"{directory}: expected a new or empty directory", EXIT_USAGE)
    try:
        access = write_access(access_details(args.instance, region), directory, port=_port(args))
    except LightsailError as exc:
        raise CliError(str(exc)) from None
    argv = ssh_argv(access)
    if args.json:
        print_json({"access": access, "ssh": argv, "ansible_vars": ansible_vars(access)})
    else:
        print(" ".join(argv))
        print(f"# remove {directory} when done (the certificate expires at {access['expires_at']})")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from agent.aws.ssh import Terminated, cleanup_on_signals, private_tempdir, remove_access_dir

    command = _strip_dashes(args.command_argv)
    if not command:
        raise CliError("lightsail run: expected -- COMMAND ...", EXIT_USAGE)
    directory = private_tempdir("jada-run-")
    env = dict(os.environ, **{ACCESS_DIR_ENV: str(directory), PORT_ENV: str(_port(args))})
    proc: subprocess.Popen[bytes] | None = None
    try:
        with cleanup_on_signals():
            proc = subprocess.Popen(command, env=env)
            return proc.wait()
    except FileNotFoundError:
        raise CliError(f"{command[0]}: command not found", EXIT_USAGE) from None
    except Terminated as t:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
        return 128 + t.signum
    finally:
        remove_access_dir(directory)
        sys.stdout.flush()
