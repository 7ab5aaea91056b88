"""``jada-agent tasks add|list|show|done``, ``jada-agent status``, ``jada-agent sessions``."""

from __future__ import annotations

import argparse
import logging
import os
import textwrap
from typing import Any

from agent.cli.common import (
    CliError,
    add_json_flag,
    open_store_read_only,
    print_json,
    settings,
)
from agent.exitcodes import EXIT_OK, EXIT_USAGE
from agent.store import OPEN_STATUSES, TASK_STATUSES, Store, StoreError, Task, open_store


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tasks", help="the progress dashboard: add, list, show, close tasks")
    tsub = p.add_subparsers(dest="tasks_command", metavar="ACTION")
    tsub.required = True

    add = tsub.add_parser("add", help="add a task (prints its id) and wake the daemon")
    add.add_argument("title")
    add.add_argument("--body", default="", help="what to do, in full")
    add.add_argument("--priority", type=int, default=0, help="higher runs first (default 0)")
    add.add_argument(
        "--depends-on",
        type=int,
        action="append",
        default=[],
        metavar="ID",
        help="a task that must be done first (repeatable)",
    )
    add.add_argument("--workspace", metavar="DIR", help="directory the session works in")
    add.add_argument(
        "--needs-you",
        action="store_true",
        help="a task for a person (never given to a session): the body says what to do;"
        " an open needs-you task with the same title is reused (noted, same id)",
    )
    add_json_flag(add)
    add.set_defaults(func=cmd_add)

    ls = tsub.add_parser("list", help="list tasks (open ones by default)")
    ls.add_argument(
        "--status",
        action="append",
        choices=[*TASK_STATUSES, "all"],
        metavar="S",
        help=f"only these statuses (repeatable; {', '.join(TASK_STATUSES)}, all)",
    )
    add_json_flag(ls)
    ls.set_defaults(func=cmd_list)

    show = tsub.add_parser("show", help="show one task with its notes")
    show.add_argument("id", type=int)
    add_json_flag(show)
    show.set_defaults(func=cmd_show)

    done = tsub.add_parser("done", help="mark a task done (answers a needs-you task)")
    done.add_argument("id", type=int)
    done.add_argument("--note", help="what was done or answered")
    done.set_defaults(func=cmd_done)

    re_ = tsub.add_parser("reopen", help="put a failed or done task back in the queue")
    re_.add_argument("id", type=int)
    re_.add_argument("--note", help="why it can run now")
    re_.set_defaults(func=cmd_reopen)

    st = sub.add_parser("status", help="sessions used and left today, queue, needs-you, outcomes")
    add_json_flag(st)
    st.set_defaults(func=cmd_status)

    se = sub.add_parser("sessions", help="turn-budget analysis of recent sessions")
    se.add_argument("--days", type=int, default=7, help="how far back (default 7)")
    add_json_flag(se)
    se.set_defaults(func=cmd_sessions)


def _open(s: Any) -> Store:
    # One line of output a script can read: no client-library chatter on stderr.
    logging.getLogger("botocore").setLevel(logging.WARNING)
    try:
        return open_store(s)
    except StoreError as exc:
        raise CliError(f"store: {exc}") from None


def _store(args: argparse.Namespace) -> Store:
    return _open(settings(args))


def _read_only(s: Any) -> Store:
    logging.getLogger("botocore").setLevel(logging.WARNING)
    return open_store_read_only(s)


def cmd_add(args: argparse.Namespace) -> int:
    from agent import dashboard

    s = settings(args)
    with _open(s) as store:
        try:
            task, nudged = dashboard.add_task(
                store,
                s,
                args.title,
                body=args.body,
                priority=args.priority,
                depends_on=args.depends_on,
                workspace=os.path.abspath(args.workspace) if args.workspace else None,
                needs_you=args.needs_you,
            )
        except StoreError as exc:
            raise CliError(str(exc), EXIT_USAGE) from None
    if args.json:
        print_json({**task.to_json(), "daemon_nudged": nudged})
    else:
        print(task.id)
    return EXIT_OK


def _line(t: Task, open_ids: set[int]) -> str:
    waits = [d for d in t.depends_on if d in open_ids]
    deps = f"  (waits for {', '.join(map(str, waits))})" if waits else ""
    return f"{t.id:>5}  {t.status:<9} {t.priority:>4}  {t.title}{deps}"


def _indented(text: str) -> str:
    return textwrap.indent(text.rstrip(), "         ")


def cmd_list(args: argparse.Namespace) -> int:
    wanted = args.status or list(OPEN_STATUSES)
    with _read_only(settings(args)) as store:
        tasks = store.list_tasks(None if "all" in wanted else wanted)
        open_ids = {t.id for t in store.list_tasks(OPEN_STATUSES)}
        others = [] if tasks or "all" in wanted else store.list_tasks(None)
    if args.json:
        print_json([t.to_json() for t in tasks])
        return EXIT_OK
    if not tasks:
        if others:
            # Tasks exist, none with these statuses: say what there is and how to see it.
            counts: dict[str, int] = {}
            for t in others:
                counts[t.status] = counts.get(t.status, 0) + 1
            shown = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
            label = "/".join(wanted) if args.status else "open"
            print(f"no {label} tasks ({shown}): see them with `jada-agent tasks list --status all`")
        else:
            print("no tasks")
        return EXIT_OK
    print(f"{'id':>5}  {'status':<9} {'prio':>4}  title")
    for t in tasks:
        print(_line(t, open_ids))
        if t.kind == "needs_you" and t.body:
            # A person reads this: show the exact command, not a truncated summary.
            print(_indented(t.body))
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    with _read_only(settings(args)) as store:
        task = store.get_task(args.id)
    if task is None:
        raise CliError(f"no task {args.id}")
    if args.json:
        print_json(task.to_json())
        return EXIT_OK
    print(f"task {task.id}: {task.title}")
    print(
        f"  status:    {task.status}{' (a task for a person)' if task.kind == 'needs_you' else ''}"
    )
    print(f"  priority:  {task.priority}")
    if task.depends_on:
        print(f"  after:     {', '.join(map(str, task.depends_on))}")
    if task.workspace:
        print(f"  workspace: {task.workspace}")
    print(
        f"  created:   {task.created:%Y-%m-%d %H:%M:%S}Z   updated: {task.updated:%Y-%m-%d %H:%M:%S}Z"
    )
    if task.body:
        print()
        print(task.body.rstrip())
    if task.notes:
        print("\nnotes:")
        for n in task.notes:
            print(f"  {n['at'][:19]}Z  {n['text']}")
    return EXIT_OK


def cmd_done(args: argparse.Namespace) -> int:
    from agent import dashboard

    s = settings(args)
    with _open(s) as store:
        try:
            task = dashboard.mark_done(store, s, args.id, args.note)
        except StoreError as exc:
            raise CliError(str(exc)) from None
    print(f"task {task.id} done")
    return EXIT_OK


def cmd_reopen(args: argparse.Namespace) -> int:
    from agent import dashboard

    s = settings(args)
    with _open(s) as store:
        try:
            dashboard.reopen(store, s, args.id, args.note)
        except StoreError as exc:
            raise CliError(str(exc)) from None
    print(f"task {args.id} ready")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from agent import dashboard

    s = settings(args)
    with _read_only(s) as store:
        r = dashboard.status_report(store, s)
    if args.json:
        print_json(r)
        return EXIT_OK
    hours, rest = divmod(r["seconds_to_rollover"], 3600)
    print(
        f"sessions today: {r['sessions_today']}/{r['sessions_per_day']} used,"
        f" {r['sessions_left']} left; rollover {r['next_rollover']} (in {hours}h{rest // 60:02d}m)"
    )
    q = r["queue"]
    print(
        f"queue: {q['ready']} ready, {q['running']} running, {q['blocked']} blocked,"
        f" {q['needs_you']} need you, {r['failed']} failed"
    )
    if r["next_task"]:
        print(f"next: task {r['next_task']['id']}: {r['next_task']['title']}")
    for t in r["needs_you_tasks"]:
        print(f"needs you: task {t['id']}: {t['title']}")
        if t["body"]:
            print(_indented(t["body"]))
    for o in r["last_outcomes"]:
        print(
            f"session {o['session']} task {o['task']} {o['started'][:16]}Z"
            f" outcome={o['outcome']} turns={o['turns']} exit={o['exit_code']}"
        )
    d = r["daemon"]
    print(
        f"daemon: {d['owner']} ({'live' if d['live'] else 'lease expired'})"
        if d
        else "daemon: no lease held"
    )
    return EXIT_OK


def cmd_sessions(args: argparse.Namespace) -> int:
    from agent import dashboard

    s = settings(args)
    with _read_only(s) as store:
        r = dashboard.sessions_report(store, s, days=args.days)
    if args.json:
        print_json(r)
        return EXIT_OK
    print(f"last {r['days']} days: {r['sessions']} sessions, turn cap {r['max_turns']}")
    if not r["sessions"]:
        return EXIT_OK
    outcomes = ", ".join(f"{k} {v}" for k, v in r["by_outcome"].items())
    print(f"outcomes: {outcomes}")
    rate = r["completion_rate"]
    print(
        f"completion rate: {rate:.0%}" if rate is not None else "completion rate: n/a",
        f"| cap hit rate: {r['cap_hit_rate']:.0%}" if r["cap_hit_rate"] is not None else "",
    )
    t = r["turns"]
    print(f"turns per session: mean {t['mean']}, median {t['median']}, max {t['max']}")
    print(f"tokens: {r['tokens']['input']} in, {r['tokens']['output']} out")
    for c in r["tasks_hitting_cap"]:
        yielded = (
            f"; yielded its turn to task{'s' if len(c['yielded_to']) > 1 else ''} "
            + ", ".join(map(str, c["yielded_to"]))
            if c.get("yielded_to")
            else ""
        )
        print(
            f"hit the cap: task {c['task']} ({c['title']}): {c['cap_hits']} of {c['sessions']}"
            f" sessions{yielded}"
        )
    return EXIT_OK
