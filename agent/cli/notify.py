"""``jada-agent notify test|heartbeat``: try every notification channel; the dead-man's switch.

Thin wrappers over ``agent.remediator.notify`` / ``outbox`` (a test message goes through the
same delivery process and total deadline as the service's) and ``agent.remediator.heartbeat``.
"""

from __future__ import annotations

import argparse

from agent.cli.common import CliError, add_json_flag, print_json
from agent.cli.common import settings as load_settings
from agent.exitcodes import EXIT_FAILURE, EXIT_OK, EXIT_USAGE


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("notify", help="test the notification channels; send the heartbeat")
    nsub = p.add_subparsers(dest="notify_command", metavar="ACTION")
    nsub.required = True
    t = nsub.add_parser("test", help="send a test message through every configured channel")
    add_json_flag(t)
    t.set_defaults(func=cmd_test)
    hb = nsub.add_parser(
        "heartbeat", help="ping remediator.notify.heartbeat_url with ok/degraded (the timer's job)"
    )
    hb.add_argument(
        "--state", choices=("ok", "degraded"), help="send this instead of the health verdict"
    )
    hb.add_argument(
        "--settle",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long a remediator that is not running is given to come back (a restart)"
        " before the fail signal is sent (default: %(default)s)",
    )
    add_json_flag(hb)
    hb.set_defaults(func=cmd_heartbeat)


def cmd_test(args: argparse.Namespace) -> int:
    from agent.remediator.notify import channels, host_of, test_notice
    from agent.remediator.senders import deliver_batch

    s = load_settings(args)
    chans = channels(s)
    if not chans:
        raise CliError(
            "no notification channel is configured: set remediator.notify.webhook_url,"
            " sns_topic_arn or urls (inventory: jada_agent_notify_channels)",
            EXIT_USAGE,
        )
    msg = test_notice(host_of(s))
    results: dict[str, str] = {}
    for ch in chans:  # one after the other: each has its own deadline
        got: dict[int, str] = {}

        def record(_id: int, ok: bool, error: str, got: dict[int, str] = got) -> None:
            got[_id] = "ok" if ok else f"error: {error}"

        deliver_batch(ch, [{"id": 1, **msg.to_row()}], s.remediator.notify.timeout, record)
        results[ch.name] = got.get(1, "error: no answer")
    if args.json:
        print_json({"results": results})
    else:
        for name, result in results.items():
            print(f"{name}: {result}")
    return EXIT_OK if all(r == "ok" for r in results.values()) else EXIT_FAILURE


def cmd_heartbeat(args: argparse.Namespace) -> int:
    from agent.remediator.heartbeat import beat

    s = load_settings(args)
    if not s.remediator.notify.heartbeat_url:
        raise CliError(
            "no heartbeat URL: set remediator.notify.heartbeat_url (inventory:"
            " jada_agent_heartbeat_url)",
            EXIT_USAGE,
        )
    try:
        out = beat(s, state=args.state, settle=args.settle)
    except RuntimeError as exc:
        raise CliError(f"heartbeat not sent: {exc}", EXIT_FAILURE) from None
    if args.json:
        print_json(out)
    else:
        print(f"heartbeat sent: {out['sent']}{' (fail signal)' if out['fail'] else ''}")
    return EXIT_OK
