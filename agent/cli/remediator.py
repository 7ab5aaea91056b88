"""``jada-agent remediator ...``: the service, the rule checker, the offline tester, incidents,
breaker resets and the remediation lock. Each is a thin wrapper over ``agent.remediator``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator

from agent.cli.common import CliError, add_json_flag, print_json
from agent.cli.common import settings as load_settings
from agent.config import Settings, parse_duration
from agent.exitcodes import EXIT_FAILURE, EXIT_OK, EXIT_TEMPFAIL, EXIT_USAGE


class _IncidentStatuses:
    """The store's incident statuses, read when argparse first looks at them (``incidents
    --status`` or its help): the store's model costs ~5 ms of imports that every other
    remediator command (``run``, ``replay``) would pay at start for nothing."""

    @staticmethod
    def _statuses() -> tuple[str, ...]:
        from agent.store.model import INCIDENT_STATUSES

        return INCIDENT_STATUSES

    def __iter__(self) -> Iterator[str]:
        return iter(self._statuses())

    def __contains__(self, value: object) -> bool:
        return value in self._statuses()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("remediator", help="detect recurring failures in logs and remediate them")
    rsub = p.add_subparsers(dest="remediator_command", metavar="ACTION")
    rsub.required = True

    run = rsub.add_parser("run", help="the service: tail sources, count, run playbooks")
    run.set_defaults(func=cmd_run)

    check = rsub.add_parser("check", help="validate every rule file and exit non-zero on error")
    check.add_argument(
        "--rules-dir",
        action="append",
        metavar="DIR",
        help="rule directory (repeatable; default: remediator.rules_dirs of the settings)",
    )
    add_json_flag(check)
    check.set_defaults(func=cmd_check)

    rp = rsub.add_parser("replay", help="offline tester: what would the rules do with these logs")
    g = rp.add_mutually_exclusive_group(required=True)
    g.add_argument("--rules", action="append", metavar="FILE", help="a rule file (repeatable)")
    g.add_argument("--rules-dir", action="append", metavar="DIR", help="a rule directory")
    rp.add_argument("logs", nargs="+", metavar="LOG", help="log files ('-' for stdin)")
    add_json_flag(rp)
    rp.set_defaults(func=cmd_replay)

    inc = rsub.add_parser("incidents", help="list incidents")
    inc.add_argument(
        "--status",
        action="append",
        choices=_IncidentStatuses(),
        metavar="S",
        help="only these statuses (repeatable; %(choices)s)",
    )
    add_json_flag(inc)
    inc.set_defaults(func=cmd_incidents)

    reset = rsub.add_parser(
        "reset", help="close a rule's circuit breaker (after a person fixed it)"
    )
    reset.add_argument("rule", metavar="RULE")
    reset.set_defaults(func=cmd_reset)

    status = rsub.add_parser(
        "status",
        help="faults, sources, queued remediations, the notification outbox (exit 1: something is wrong)",
    )
    add_json_flag(status)
    status.set_defaults(func=cmd_status)

    lock = rsub.add_parser(
        "lock", help="the one-remediation-at-a-time lock, for playbooks run by hand"
    )
    lsub = lock.add_subparsers(dest="lock_command", metavar="ACTION")
    lsub.required = True
    acq = lsub.add_parser("acquire", help="take the lock (exit 75 if someone else holds it)")
    acq.add_argument("--owner", required=True)
    acq.add_argument("--ttl", default="15m", help="expiry (default 15m)")
    acq.add_argument("--wait", default="0s", help="wait this long for a busy lock (default 0s)")
    acq.add_argument("--pid", type=int, help="a process whose death frees the lock")
    acq.set_defaults(func=cmd_lock_acquire)
    rel = lsub.add_parser("release", help="release a lock this owner holds")
    rel.add_argument("--owner", required=True)
    rel.set_defaults(func=cmd_lock_release)
    st = lsub.add_parser("status", help="who holds the lock")
    add_json_flag(st)
    st.set_defaults(func=cmd_lock_status)


def cmd_run(args: argparse.Namespace) -> int:
    from agent.remediator.service import run_service

    return run_service(load_settings(args))


def _rules_dirs(args: argparse.Namespace) -> list[str]:
    if args.rules_dir:
        return list(args.rules_dir)
    return list(load_settings(args).remediator.rules_dirs)


def cmd_check(args: argparse.Namespace) -> int:
    from agent.remediator.rules import load_rules, rule_files

    dirs = _rules_dirs(args)
    files = rule_files(dirs)
    ruleset = load_rules(dirs)  # a RuleError propagates: exit 64 naming file, rule, key
    if not files:
        raise CliError(f"no rule files (*.yml) in {', '.join(dirs)}", EXIT_USAGE)
    if args.json:
        print_json(
            {
                "files": files,
                "rules": [
                    {
                        "name": r.name,
                        "file": r.file,
                        "source": r.source.key,
                        "playbook": r.action.playbook if r.action else None,
                    }
                    for r in ruleset.rules
                ],
            }
        )
    else:
        for r in ruleset.rules:
            action = r.action.playbook if r.action else "no action"
            print(f"{r.name}: {r.source.describe()} -> {action}  ({r.file})")
        if not args.rules_dir:
            # On the host: say which playbooks are not installed yet (not an error: the rules
            # may be checked before the role has installed the playbooks).
            project = os.path.join(load_settings(args).remediator.private_data_dir, "project")
            for r in ruleset.rules:
                if r.action and not os.path.isfile(os.path.join(project, r.action.playbook)):
                    print(f"warning: {r.name}: {r.action.playbook} is not in {project}")
        print(f"ok: {len(ruleset.rules)} rules in {len(files)} files")
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    from agent.remediator.replay import render_text, replay
    from agent.remediator.rules import load_rules

    ruleset = load_rules(dirs=args.rules_dir or (), files=args.rules or ())
    if not ruleset.rules:
        raise CliError("no rules to replay", EXIT_USAGE)
    # Opened here so that an unreadable log is a clear error before anything is read; replay
    # streams them (constant memory, whatever their size).
    logs = []
    for path in args.logs:
        try:
            logs.append(sys.stdin.buffer if path == "-" else open(path, "rb"))  # noqa: SIM115
        except OSError as exc:
            raise CliError(f"{path}: cannot read the log: {exc.strerror}", EXIT_FAILURE) from None
    report = replay(ruleset.rules, logs)
    if args.json:
        print_json(report.to_json())
    else:
        print(render_text(report, ruleset.rules))
    return EXIT_OK


def cmd_incidents(args: argparse.Namespace) -> int:
    from agent.cli.common import open_store_read_only
    from agent.health.incidents import describe as describe_incident
    from agent.health.incidents import story
    from agent.logline import one_line

    with open_store_read_only(load_settings(args)) as store:
        items = store.list_incidents(args.status)
    if args.json:
        print_json([i.to_json() for i in items])
        return EXIT_OK
    if not items:
        print("no incidents")
    for i in items:
        group = ",".join(f"{k}={v}" for k, v in i.group.items())
        runs = len(i.remediations)
        # Summaries and group values are log text: control characters and ANSI escapes are
        # printed escaped, never played on the operator's terminal.
        print(
            one_line(
                f"#{i.id} {i.status:<11} {i.rule}{'[' + group + ']' if group else ''}"
                f"  opened {i.opened:%Y-%m-%d %H:%M}Z  remediations {runs}"
                f"{'  cause ' + i.cause if i.cause else ''}"
            )
        )
        if i.summary:
            print(f"    {one_line(i.summary)}")
        # What was done and how it ended (the health report lists the same).
        for line in describe_incident(story(i.to_json()))[1:]:
            print("  " + one_line(line))
    return EXIT_OK


def cmd_reset(args: argparse.Namespace) -> int:
    from agent.remediator.state import StateDB

    s = load_settings(args)
    known = _known_rules(s)
    if known is not None and args.rule not in known and not _has_state(s, args.rule):
        import difflib

        close = difflib.get_close_matches(args.rule, known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise CliError(
            f"no rule {args.rule!r}{hint}; the rules are: {', '.join(sorted(known)) or 'none'}",
            EXIT_USAGE,
        )
    state = StateDB(s.remediator.state_db)
    n = state.reset(args.rule)
    state.close()
    print(f"{args.rule}: breaker closed, cooldown and windows cleared ({n} groups)")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from agent.remediator.status import healthy, render_outbox, sections

    s = sections(load_settings(args))
    if args.json:
        print_json(s)
        return EXIT_OK if healthy(s) else EXIT_FAILURE
    svc = s["service"]
    print(f"service: {'running, pid ' + str(svc['pid']) if svc['running'] else 'not running'}")
    print(f"faults: {len(s['faults']) or 'none'}")
    for f in s["faults"]:
        print(f"  {f['kind']} {f['key']}: {f['message']} ({f['count']} times)")
    files = s["sources"].get("files") or {}
    for path, info in sorted(files.items()):
        fault = f"  FAULT: {info['fault']}" if info.get("fault") else ""
        print(f"file {path}: offset {info.get('offset')}{fault}")
    j = s["sources"].get("journal")
    if j:
        print(
            f"journal {', '.join(j.get('units') or [])}: {j.get('state')}, pid {j.get('pid')},"
            f" {j.get('restarts', 0)} restarts, {j.get('stalls', 0)} stalls,"
            f" {j.get('bad_entries', 0)} bad entries"
        )
    print(f"queue: {len(s['queue']) or 'empty'}")
    for q in s["queue"]:
        print(f"  firing {q['firing']} {q['rule']} {q['status']} incident #{q['incident_id']}")
    if s["stuck"]:
        print("stuck remediating: " + ", ".join(f"#{i['incident_id']}" for i in s["stuck"]))
    for line in render_outbox(s["outbox"]):
        print(line)
    return EXIT_OK if healthy(s) else EXIT_FAILURE


def _has_state(s: Settings, rule: str) -> bool:
    """Whether the state DB remembers ``rule`` (a rule since removed from the files)."""
    from agent.remediator.state import StateDB

    if not os.path.exists(s.remediator.state_db):
        return False
    state = StateDB(s.remediator.state_db)
    try:
        return any(k[0] == rule for k in [*state.groups, *state.windows, *state.fires])
    finally:
        state.close()


def _known_rules(s: Settings) -> set[str] | None:
    """The rule names of the settings' rule directories (None when they cannot be read: the
    reset then goes ahead, it may be the way out of a broken rule set)."""
    from agent.remediator.rules import load_rules

    try:
        return {r.name for r in load_rules(list(s.remediator.rules_dirs)).rules}
    except Exception:
        return None


def cmd_lock_acquire(args: argparse.Namespace) -> int:
    from agent.remediator.lock import LockBusy, RemediationLock

    s = load_settings(args)
    ttl = parse_duration(args.ttl, key="--ttl")
    wait = parse_duration(args.wait, key="--wait")
    lock = RemediationLock(s.remediator.lock_file)
    try:
        info = lock.acquire(args.owner, ttl=ttl, wait=wait, pid=args.pid)
    except LockBusy as exc:
        print(f"jada-agent: remediation lock busy: {exc}", file=sys.stderr)
        return EXIT_TEMPFAIL
    print(f"acquired by {info.owner} until {info.expires_iso()}")
    return EXIT_OK


def cmd_lock_release(args: argparse.Namespace) -> int:
    from agent.remediator.lock import LockBusy, RemediationLock

    s = load_settings(args)
    try:
        released = RemediationLock(s.remediator.lock_file).release(args.owner)
    except LockBusy as exc:
        print(f"jada-agent: {exc}", file=sys.stderr)
        return EXIT_TEMPFAIL
    print("released" if released else "not held")
    return EXIT_OK


def cmd_lock_status(args: argparse.Namespace) -> int:
    from agent.remediator.lock import RemediationLock

    s = load_settings(args)
    info = RemediationLock(s.remediator.lock_file).holder()
    if args.json:
        print_json(info.to_json() if info else None)
    else:
        print(f"held by {info.owner} until {info.expires_iso()}" if info else "free")
    return EXIT_OK
