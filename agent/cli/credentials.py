"""``jada-agent credentials diagnose|install|login|forecast``: the Google credential's lifecycle."""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from agent.cli.common import add_json_flag, print_json, settings

if TYPE_CHECKING:
    from agent.config import Settings
    from agent.credentials.install import SyncCheck


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("credentials", help="diagnose, install, re-authenticate, forecast")
    csub = p.add_subparsers(dest="credentials_command", metavar="ACTION")
    csub.required = True

    d = csub.add_parser(
        "diagnose", help="check the credential and name the cause (exit 0 only when ok)"
    )
    add_json_flag(d)
    d.set_defaults(func=cmd_diagnose)

    i = csub.add_parser("install", help="validate and install a credential atomically")
    src = i.add_mutually_exclusive_group(required=True)
    src.add_argument("--from", dest="from_file", metavar="FILE", help="a credential JSON file")
    src.add_argument("--from-secret", metavar="NAME", help="an AWS Secrets Manager secret")
    src.add_argument("--from-parameter", metavar="NAME", help="an AWS SSM parameter")
    i.add_argument("--no-verify", action="store_true", help="skip the test refresh")
    i.add_argument(
        "--verify-sync",
        action="store_true",
        help="run one sync after installing; roll back if it fails with a credential error",
    )
    add_json_flag(i)
    i.set_defaults(func=cmd_install)

    login = csub.add_parser("login", help="re-authenticate in a browser (operator's machine)")
    login.add_argument("--no-browser", action="store_true", help="print the URL instead")
    login.add_argument(
        "--client-secrets",
        metavar="FILE",
        default="client_secret.json",
        help="the OAuth client file (default: ./client_secret.json)",
    )
    login.add_argument(
        "--out", metavar="FILE", default="google-token.json", help="token file to write (0600)"
    )
    login.add_argument("--push-secret", metavar="NAME", help="also store it in Secrets Manager")
    login.add_argument("--timeout", type=float, help="seconds to wait for consent")
    add_json_flag(login)
    login.set_defaults(func=cmd_login)

    fp = csub.add_parser(
        "fix-permissions",
        help="make the credential file 0600 and its directory 0700, owned by the service user",
    )
    add_json_flag(fp)
    fp.set_defaults(func=cmd_fix_permissions)

    f = csub.add_parser("forecast", help="when the credential will likely stop working, and why")
    add_json_flag(f)
    f.set_defaults(func=cmd_forecast)


def cmd_diagnose(args: argparse.Namespace) -> int:
    from agent.credentials import diagnose

    d = diagnose(settings(args))
    if args.json:
        print_json(d.to_json())
    else:
        print(f"cause: {d.cause}")
        print(f"machine_fixable: {'yes' if d.machine_fixable else 'no'}")
        print(f"next step: {d.next_step}")
        for f in d.findings:
            print(f"  [{'ok' if f.ok else 'FAIL'}] {f.check}: {f.detail}")
    return 0 if d.cause == "ok" else 1


def cmd_install(args: argparse.Namespace) -> int:
    from agent.credentials import install

    if args.from_file:
        kind, name = "file", args.from_file
    elif args.from_secret:
        kind, name = "secret", args.from_secret
    else:
        kind, name = "parameter", args.from_parameter
    s = settings(args)
    out = install(
        s,
        kind,
        name,
        verify=not args.no_verify,
        verify_sync=_sync_proof(s) if args.verify_sync else None,
    )
    if args.json:
        print_json(out.to_json())
    else:
        print(out.message, file=sys.stdout if out.ok else sys.stderr)
    return out.exit_code


def _sync_proof(s: Settings) -> SyncCheck:
    """One real sync, its line on stderr: the proof that the sheet accepts a new credential."""
    from agent.sheets import run_sync

    return functools.partial(run_sync, s, log=lambda line: print(line, file=sys.stderr, flush=True))


def cmd_login(args: argparse.Namespace) -> int:
    from agent.credentials import login

    out = login(
        settings(args),
        Path(args.client_secrets),
        Path(args.out),
        open_browser=not args.no_browser,
        push_secret=args.push_secret,
        timeout=args.timeout,
    )
    if args.json:
        print_json(out.to_json())
    else:
        print(out.message, file=sys.stdout if out.exit_code == 0 else sys.stderr)
    return out.exit_code


def cmd_fix_permissions(args: argparse.Namespace) -> int:
    from agent.credentials.files import fix_permissions
    from agent.credentials.google import active_path

    s = settings(args)
    path = active_path(s)
    try:
        done = fix_permissions(path, s.service_user)
    except OSError as exc:
        print(f"jada-agent: {path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if args.json:
        print_json({"changed": bool(done), "actions": done, "path": str(path)})
    else:
        print("\n".join(done) if done else f"{path}: already 0600 in a 0700 directory")
    return 0


def cmd_forecast(args: argparse.Namespace) -> int:
    from agent.credentials import forecast

    fc = forecast(settings(args))
    if args.json:
        print_json(fc)
    else:
        when = fc["expires_at"] or "no expiry foreseen"
        # One line for the journal; "warning" when it is closer than google.forecast_warn.
        level = "warning" if fc["warn"] else "forecast"
        print(f"[credentials] {level}: {when}: {fc['reason']}")
    return 0
