"""The journal source against a fake ``journalctl`` on PATH (the real journald is tested on the
sandbox host): unit filter, cursor persisted and resumed, no re-fire after a restart."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from agent.remediator.sources.journald import MAX_BATCHES, JournalSource
from agent.remediator.state import StateDB
from tests.integration.remediator.helpers import SYNC_JOURNAL, TOKEN_4XX, token_rule

FAKE = '''#!{python}
"""A fake journalctl: prints the JSON entries of the feed (after --after-cursor) and follows.

Without --follow (with --lines=1) it prints the newest entry of the units and exits. A follower
that finds FEED.stall takes it (the next one does not) and from then on reads nothing, alive.
"""
import json, os, sys, time
feed = {feed!r}
with open(feed + ".args", "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
args = sys.argv[1:]
units = [a.split("=", 1)[1] for a in args if a.startswith("--unit=")]
after = next((a.split("=", 1)[1] for a in args if a.startswith("--after-cursor=")), None)
assert "--output=json" in args, args
if "--follow" not in args:
    assert "--lines=1" in args, args
    with open(feed, "rb") as f:
        ours = [raw for raw in f.read().splitlines()
                if json.loads(raw).get("_SYSTEMD_UNIT") in units]
    if ours:
        sys.stdout.write(ours[-1].decode() + "\\n")
    sys.exit(0)
since = next((float(a[9:]) for a in args if a.startswith("--since=@")), None)
skipping = after is not None
pos = 0
if "--lines=0" in args:
    pos = os.path.getsize(feed)
stuck = False
while True:
    if not stuck:
        try:
            os.rename(feed + ".stall", feed + ".stall.taken")
            stuck = True
        except FileNotFoundError:
            pass
    if stuck:
        time.sleep(0.02)
        continue
    with open(feed, "rb") as f:
        f.seek(pos)
        data = f.read()
    if data:
        last = data.rfind(b"\\n") + 1
        pos += last
        for raw in data[:last].splitlines():
            e = json.loads(raw)
            if skipping:
                skipping = e["__CURSOR"] != after
                continue
            if since is not None and int(e["__REALTIME_TIMESTAMP"]) < since * 1e6:
                continue
            if e.get("_SYSTEMD_UNIT") in units or e.get("UNIT") in units:
                sys.stdout.write(raw.decode() + "\\n")
        sys.stdout.flush()
    time.sleep(0.02)
'''


def entry(i: int, msg: str, unit: str = "port-sheet-sync.service") -> str:
    return (
        json.dumps(
            {
                "__CURSOR": f"s=fake;i={i}",
                "__REALTIME_TIMESTAMP": str(int(time.time() * 1e6)),
                "_SYSTEMD_UNIT": unit,
                "MESSAGE": msg,
            }
        )
        + "\n"
    )


def fake_journal(tmp_path: Path, first: str = "") -> tuple[Path, dict[str, str]]:
    """The fake journalctl on a PATH of its own: its feed (holding ``first``) and the env."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "journalctl"
    feed = tmp_path / "journal.jsonl"
    fake.write_text(FAKE.format(python=sys.executable, feed=str(feed)))
    fake.chmod(0o755)
    feed.write_text(first)
    return feed, {"PATH": f"{bindir}:{os.environ['PATH']}"}


def test_journal_rule_fires_resumes_after_its_cursor_and_never_refires(
    tmp_path: Path, service_factory
):
    feed, env = fake_journal(
        tmp_path, entry(0, "[port-sheet] token error: HTTP Error 400: Bad Request")
    )
    rule = token_rule(SYNC_JOURNAL, match=TOKEN_4XX, cooldown="6h")
    svc = service_factory([rule], env=env).start()
    time.sleep(0.5)
    msg = "[port-sheet] token error: HTTP Error 400: invalid_grant: Token has been expired or revoked."
    with open(feed, "a") as f:
        f.write(entry(1, msg))
        f.write(entry(2, msg, unit="other.service"))
        f.write(entry(3, msg))
    time.sleep(0.5)
    assert svc.incidents() == []  # the entry before the first start does not count
    with open(feed, "a") as f:
        f.write(entry(4, msg))
    items = svc.wait_incident(lambda xs: len(xs) == 1)
    assert items[0].status == "escalated"  # no action: straight to a person
    assert svc.stop() == 0
    with open(feed, "a") as f:
        f.write(entry(5, msg))
    svc.start()
    time.sleep(0.8)
    calls = [json.loads(x) for x in Path(str(feed) + ".args").read_text().splitlines()]
    assert any(a.startswith("--since=@") for a in calls[0])
    assert "--after-cursor=s=fake;i=4" in calls[1] and "--no-tail" in calls[1]
    assert len(svc.incidents()) == 1


def _backlog_source(tmp_path: Path, n: int, emitted: list) -> JournalSource:
    """A JournalSource whose journalctl prints a backlog of ``n`` entries, then stays."""
    feed = tmp_path / "backlog.jsonl"
    with open(feed, "w") as f:
        for i in range(n):
            f.write(entry(i, f"[port-sheet] collected tab=Sessions rows={i}"))
    fake = tmp_path / "journalctl"
    fake.write_text(f"#!/bin/sh\ncat {feed}\nexec sleep 60\n")
    fake.chmod(0o755)
    return JournalSource(["port-sheet-sync.service"], StateDB(), emitted.append, str(fake))


def _wait(cond, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def test_a_journal_backlog_is_handed_over_in_batches_and_at_most_a_few_wait(tmp_path: Path):
    # A backlog must not become one queue event per entry nor pile up in memory: the reader
    # holds back (journalctl blocks on the pipe) while MAX_BATCHES wait, and loses nothing.
    n = 20_000
    emitted: list = []
    src = _backlog_source(tmp_path, n, emitted)
    src.start()
    try:
        assert _wait(lambda: len(emitted) >= MAX_BATCHES)
        time.sleep(0.5)
        assert len(emitted) == MAX_BATCHES  # none consumed: the reader waits
        assert src.proc is not None and src.proc.poll() is None
        seen: list[str] = []
        done = 0
        while len(seen) < n:
            assert _wait(lambda d=done: len(emitted) > d), f"stuck after {len(seen)} entries"
            batch = emitted[done]
            seen += [e.cursor for e in batch]
            batch.done()
            done += 1
        assert seen == [f"s=fake;i={i}" for i in range(n)]  # all, once, in order
        assert done <= n // 10  # batches, not entries
    finally:
        src.stop()


def test_a_stopped_journal_reader_waiting_for_room_ends(tmp_path: Path):
    emitted: list = []
    src = _backlog_source(tmp_path, 20_000, emitted)
    src.start()
    assert _wait(lambda: len(emitted) >= MAX_BATCHES)
    src.stop()
    assert src.thread is not None and not src.thread.is_alive()


def test_a_journalctl_alive_but_stuck_is_found_and_replaced(tmp_path: Path, service_factory):
    # journalctl running but handing over nothing while the journal fills: the process looks
    # healthy, detection is blind -- the failure this agent exists to end. The source asks the
    # journal for its newest entry; twice behind with nothing read is a fault and a new child.
    feed, env = fake_journal(tmp_path)
    rule = token_rule(SYNC_JOURNAL, match=TOKEN_4XX, cooldown="6h")
    svc = service_factory([rule], env=env, remediator={"journal_stall_check": "1s"}).start()
    time.sleep(0.5)
    with open(feed, "a") as f:
        f.write(entry(1, "[port-sheet] collected tab=Tasks rows=3"))
    args = Path(str(feed) + ".args")
    time.sleep(0.5)  # read: the saved cursor is entry 1's
    Path(str(feed) + ".stall").touch()
    assert _wait(lambda: Path(str(feed) + ".stall.taken").exists())  # the child is stuck
    msg = "[port-sheet] token error: HTTP Error 400: invalid_grant: Token has been expired."
    with open(feed, "a") as f:
        for i in range(2, 5):
            f.write(entry(i, msg))
    # Found within two checks of the entries' arrival, and the new child reads them.
    items = svc.wait_incident(lambda xs: len(xs) == 1, timeout=20)
    assert items[0].status == "escalated"
    log = svc.log.read_text()
    assert "is running but has handed over nothing" in log, log[-2000:]
    follows = [json.loads(x) for x in args.read_text().splitlines() if "--follow" in x]
    assert len(follows) == 2  # the stuck child, then its replacement
    assert "--after-cursor=s=fake;i=1" in follows[1]  # from the saved cursor: nothing skipped
    assert svc.stop() == 0
