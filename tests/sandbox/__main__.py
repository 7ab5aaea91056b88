"""Command line: ``python -m tests.sandbox {build,up,down,list,ssh,inventory}``.

``up`` prints the machine as JSON on stdout (progress goes to stderr), so callers can parse it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from tests.sandbox import harness


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sandbox", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_build = sub.add_parser("build", help="build (or reuse) the cached base rootfs")
    p_build.add_argument("--force", action="store_true", help="rebuild even if cached")
    p_up = sub.add_parser("up", help="boot a sandbox host; prints its JSON")
    p_up.add_argument("name")
    p_up.add_argument("--timeout", type=float, default=harness.BOOT_TIMEOUT)
    p_up.add_argument("--replace", action="store_true", help="take down an existing one first")
    p_down = sub.add_parser("down", help="power off and remove sandbox hosts")
    p_down.add_argument("names", nargs="*")
    p_down.add_argument("--all", action="store_true", help="every sandbox on this machine")
    sub.add_parser("list", help="JSON list of sandbox hosts")
    p_ssh = sub.add_parser("ssh", help="ssh NAME [-- CMD...] (pinned host key)")
    p_ssh.add_argument("name")
    p_ssh.add_argument("--user", "-l", default=None, help="login user (default root)")
    p_ssh.add_argument("command", nargs="*", help="remote command (put it after --)")
    p_inv = sub.add_parser("inventory", help="write an Ansible inventory for sandbox hosts")
    p_inv.add_argument("names", nargs="+")
    p_inv.add_argument("-o", "--output", default=None, help="file to write (default stdout)")
    p_inv.add_argument("--format", choices=("ini", "yaml"), default="ini")
    p_inv.add_argument("--group", default="sandbox")
    p_inv.add_argument(
        "--become-user",
        default=None,
        help="log in as this sudo user (e.g. admin) with become enabled",
    )
    argv = list(sys.argv[1:] if argv is None else argv)
    remote: list[str] = []
    if "--" in argv:  # everything after the first "--" is the remote command, verbatim
        cut = argv.index("--")
        argv, remote = argv[:cut], argv[cut + 1 :]
    args = parser.parse_args(argv)

    try:
        if args.cmd == "build":
            print(harness.build(force=args.force))
        elif args.cmd == "up":
            if args.replace:
                harness.down(args.name)
            machine = harness.up(args.name, timeout=args.timeout)
            print(json.dumps(machine.to_json()))
        elif args.cmd == "down":
            if not args.all and not args.names:
                parser.error("down needs NAME... or --all")
            removed = harness.down_all() if args.all else []
            removed += [name for name in args.names if harness.down(name)]
            print(json.dumps({"removed": removed}))
        elif args.cmd == "list":
            print(json.dumps(harness.list_machines(), indent=2))
        elif args.cmd == "ssh":
            machine = harness.get(args.name)
            command = [*args.command, *remote]
            argv_ssh = machine.ssh_argv(args.user)
            if sys.stdin.isatty() and not command:
                argv_ssh.insert(1, "-t")
            if command:
                argv_ssh += ["--", *command]
            os.execvp(argv_ssh[0], argv_ssh)  # noqa: S606 - replace ourselves with ssh
        elif args.cmd == "inventory":
            text = harness.inventory(
                args.names,
                args.output,
                fmt=args.format,
                group=args.group,
                become_user=args.become_user,
            )
            if args.output is None:
                sys.stdout.write(text)
    except harness.SandboxError as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
