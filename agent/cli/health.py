"""``jada-agent health``: audit this host or a saved journal; build per-host and fleet reports.

- ``health [--days N] [--json | --html FILE] [--from-journal FILE] [--no-credentials]``
- ``health host-report --health FILE --out-dir DIR [--instance NAME] [--region R]``: on the
  controller, add the instance's Lightsail metrics to a host's audit and write its reports.
- ``health fleet-report --dir DIR``: the fleet summary (worst verdict first) from the host reports.

Exit status of the audit: 0 healthy, 1 degraded, 2 failing, 3 unknown (a script can branch);
``--json`` and ``--html`` always exit 0 when the audit itself ran.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agent.cli.common import CliError, add_json_flag, print_json, settings
from agent.exitcodes import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, VERDICT_EXIT


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("health", help="audit this host (units, journal, resources, credentials)")
    p.add_argument("--days", type=int, default=None, help="days of journal to read (default 7)")
    add_json_flag(p)
    p.add_argument("--html", metavar="FILE", help="write a self-contained HTML report to FILE")
    p.add_argument(
        "--from-journal",
        metavar="FILE",
        help="audit a saved `journalctl -o json` export or `-o short-iso` text instead",
    )
    p.add_argument(
        "--no-credentials", action="store_true", help="skip the credential checks (no network)"
    )
    p.set_defaults(func=cmd_health)
    hs = p.add_subparsers(dest="health_command", metavar="[REPORT]")
    hr = hs.add_parser("host-report", help="controller: add Lightsail metrics to a host's audit")
    hr.add_argument(
        "--health", required=True, metavar="FILE", help="the host's `health --json` (- for stdin)"
    )
    hr.add_argument("--out-dir", required=True, metavar="DIR")
    hr.add_argument("--name", help="host name in the reports (default: from the audit)")
    hr.add_argument("--instance", help="Lightsail instance name (none: no metrics)")
    hr.add_argument("--region", help="Lightsail region (default: settings aws.region)")
    add_json_flag(hr)
    hr.set_defaults(func=cmd_host_report)
    fr = hs.add_parser("fleet-report", help="controller: fleet summary from the host reports")
    fr.add_argument("--dir", required=True, metavar="DIR", help="the reports directory")
    fr.add_argument(
        "--audits",
        metavar="FILE",
        help="JSON {host: {audit, instance, region}} (- for stdin): write the host reports first",
    )
    fr.add_argument(
        "--unreached",
        default="",
        metavar="H1,H2",
        help="hosts the run could not audit (listed as unknown)",
    )
    add_json_flag(fr)
    fr.set_defaults(func=cmd_fleet_report)


def cmd_health(args: argparse.Namespace) -> int:
    from agent.health.audit import audit_host, audit_journal
    from agent.health.readers import JournalError

    if args.json and args.html:
        raise CliError("--json and --html exclude each other", EXIT_USAGE)
    if args.days is not None and args.days < 1:
        raise CliError("--days: expected an integer of at least 1", EXIT_USAGE)
    s = settings(args)
    from agent.cli.lightsail import _quiet_boto

    _quiet_boto()
    try:
        if args.from_journal:
            report = audit_journal(args.from_journal, s, days=args.days)
        else:
            report = audit_host(
                s, config_path=args.config, days=args.days, credentials=not args.no_credentials
            )
    except JournalError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    if args.json:
        print_json(report)
        return EXIT_OK
    from agent.health.report import render_html, render_text

    if args.html:
        _write(Path(args.html), render_html(report))
        print(f"{report['verdict']}: report written to {args.html}")
        return EXIT_OK
    sys.stdout.write(render_text(report))
    return VERDICT_EXIT.get(report["verdict"], EXIT_FAILURE)


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CliError(f"{path}: cannot write ({exc.strerror})") from None


def cmd_host_report(args: argparse.Namespace) -> int:
    from agent.cli.lightsail import _quiet_boto

    _quiet_boto()
    from agent.health.fleet import FleetError, host_report

    s = settings(args)
    text = sys.stdin.read() if args.health == "-" else None
    try:
        report = host_report(
            Path("<stdin>" if text is not None else args.health),
            Path(args.out_dir),
            name=args.name,
            instance=args.instance,
            region=args.region or s.aws.region,
            text=text,
        )
    except FleetError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    if args.json:
        print_json({k: report.get(k) for k in ("host", "verdict", "reasons", "metrics")})
    else:
        print(f"{report['host']}: {report['verdict']}")
    return EXIT_OK


def cmd_fleet_report(args: argparse.Namespace) -> int:
    import json

    from agent.cli.lightsail import _quiet_boto
    from agent.health.fleet import FleetError, fleet_report, ingest

    _quiet_boto()
    try:
        if args.audits:
            source = "<stdin>" if args.audits == "-" else args.audits
            try:
                text = sys.stdin.read() if args.audits == "-" else Path(args.audits).read_text()
                audits = json.loads(text)
            except (OSError, ValueError) as exc:
                raise FleetError(
                    f"{source}: expected JSON {{host: {{audit, ...}}}} ({exc})"
                ) from None
            only = ingest(audits, Path(args.dir), settings(args).aws.region)
        else:
            only = None
        unreached = [h for h in args.unreached.split(",") if h]
        summary = fleet_report(Path(args.dir), only, unreached)
    except FleetError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    if args.json:
        print_json(summary)
    else:
        sys.stdout.write(summary["text"])
    return EXIT_OK
