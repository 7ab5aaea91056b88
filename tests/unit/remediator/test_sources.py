"""The file tail and the matcher, driven by explicit polls (no watchdog)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from agent.remediator.matcher import MAX_LINE, Matcher, Stats
from agent.remediator.sources.filetail import FileTail
from agent.remediator.sources.journald import JournalSource
from agent.remediator.state import StateDB
from tests.unit.remediator.helpers import rule


class Collect:
    def __init__(self):
        self.lines: list[bytes] = []

    def __call__(self, buf: bytes | bytearray, end: int) -> None:
        assert buf[end - 1 : end] == b"\n"
        self.lines.extend(bytes(buf[:end]).split(b"\n")[:-1])


def append(path: Path, text: str | bytes) -> None:
    with open(path, "ab") as f:
        f.write(text.encode() if isinstance(text, str) else text)


def test_first_start_begins_at_the_end_and_then_reads_only_new_complete_lines(tmp_path: Path):
    log = tmp_path / "a.log"
    log.write_text("old 1\nold 2\n")
    tail, got = FileTail(str(log), StateDB()), Collect()
    tail.poll(got)
    assert got.lines == []
    append(log, "new 1\nnew 2 partial")
    tail.poll(got)
    assert got.lines == [b"new 1"]
    append(log, " done\n")
    tail.poll(got)
    assert got.lines == [b"new 1", b"new 2 partial done"]


def test_a_file_that_appears_later_is_read_from_its_start(tmp_path: Path):
    log = tmp_path / "later.log"
    tail, got = FileTail(str(log), StateDB()), Collect()
    tail.poll(got)
    log.write_text("first\n")
    tail.poll(got)
    assert got.lines == [b"first"]


def test_rename_and_create_drains_the_old_file_then_reads_the_new(tmp_path: Path):
    log = tmp_path / "a.log"
    log.write_text("")
    tail, got = FileTail(str(log), StateDB()), Collect()
    tail.poll(got)
    append(log, "1\n2\n")
    os.rename(log, tmp_path / "a.log.1")
    append(tmp_path / "a.log.1", "3\n")  # the writer has not reopened yet
    log.write_text("4\n")
    tail.poll(got)
    append(tmp_path / "a.log.1", "late\n")  # still drained during the grace period
    append(log, "5\n")
    tail.poll(got)
    assert got.lines == [b"1", b"2", b"3", b"4", b"late", b"5"]


def test_copytruncate_is_noticed_from_the_size_and_from_the_first_line(tmp_path: Path):
    log = tmp_path / "a.log"
    log.write_text("")
    tail, got = FileTail(str(log), StateDB()), Collect()
    tail.poll(got)
    append(log, "line one\nline two\n")
    tail.poll(got)
    with open(log, "r+b") as f:
        f.truncate(0)
    append(log, "x\n")
    tail.poll(got)
    # truncated and regrown past the old offset before we looked: the first line changed
    with open(log, "r+b") as f:
        f.truncate(0)
    append(log, "after second truncate, longer than before\n")
    tail.poll(got)
    assert got.lines == [
        b"line one",
        b"line two",
        b"x",
        b"after second truncate, longer than before",
    ]
    assert tail.stats.truncations == 2


def test_delete_and_recreate_is_followed(tmp_path: Path):
    log = tmp_path / "a.log"
    log.write_text("")
    tail, got = FileTail(str(log), StateDB()), Collect()
    tail.poll(got)
    append(log, "a\n")
    log.unlink()
    tail.poll(got)
    log.write_text("b\n")
    tail.poll(got)
    assert got.lines == [b"a", b"b"]


def test_a_restart_resumes_at_the_saved_offset_without_rereading(tmp_path: Path):
    db, log = tmp_path / "s.db", tmp_path / "a.log"
    log.write_text("")
    s1 = StateDB(db)
    t1, got = FileTail(str(log), s1), Collect()
    t1.poll(got)
    append(log, "a\nb\n")
    t1.poll(got)
    t1.close()
    s1.close()
    append(log, "c\n")
    s2 = StateDB(db)
    t2 = FileTail(str(log), s2)
    t2.poll(got)
    assert got.lines == [b"a", b"b", b"c"]


def test_a_restart_after_a_rotation_finishes_the_rotated_file_first(tmp_path: Path):
    db, log = tmp_path / "s.db", tmp_path / "a.log"
    log.write_text("")
    s1 = StateDB(db)
    t1, got = FileTail(str(log), s1), Collect()
    t1.poll(got)
    append(log, "a\n")
    t1.poll(got)
    t1.close()
    s1.close()
    append(log, "b\n")
    os.rename(log, tmp_path / "a.log.1")
    log.write_text("c\n")
    t2 = FileTail(str(log), StateDB(db))
    t2.poll(got)
    assert got.lines == [b"a", b"b", b"c"]


def test_over_long_lines_are_cut_and_counted_and_the_next_line_is_intact(tmp_path: Path):
    log = tmp_path / "a.log"
    log.write_text("")
    tail, got = FileTail(str(log), StateDB()), Collect()
    tail.poll(got)
    append(log, b"x" * (MAX_LINE * 3))
    tail.poll(got)  # unterminated and already too long: cut now
    append(log, b"y" * 10 + b"\nnext\n")
    tail.poll(got)
    assert got.lines == [b"x" * MAX_LINE, b"next"]
    assert tail.stats.cut == 1


def test_matcher_finds_matching_lines_cuts_long_ones_and_counts_bad_utf8():
    r = rule(source={"file": "/x"}, resolve=r"\[port-sheet\] sync ok")
    m = Matcher([r])
    stats = Stats()
    buf = (
        b"noise\n" * 100
        + b"[port-sheet] token error: HTTP Error 400: Bad \xff Request\n"
        + b"z" * (MAX_LINE + 10)
        + b"\n[port-sheet] sync ok rows=1\n"
        + b"[port-sheet] token error: HTTP Error xyz"  # the literal, but no status digits
        + b"\n"
    )
    hits = m.scan(buf, stats)
    # candidates only: lines holding a required literal, never the noise
    assert [line for _, line in hits] == [
        "[port-sheet] token error: HTTP Error 400: Bad \ufffd Request",
        "[port-sheet] sync ok rows=1",
        "[port-sheet] token error: HTTP Error xyz",
    ]
    assert stats.bytes == len(buf) and stats.cut == 1 and stats.invalid_utf8 == 1
    assert stats.candidates == 3


def test_matcher_without_a_literal_finds_lines_with_the_whole_pattern_in_the_same_pass():
    # No literal to look for: the pattern itself joins the one RE2 pass (line-anchored).
    r = rule(source={"file": "/x"}, match=r"(?i)^TOKEN ERROR (?P<status>\d+)$")
    hits = Matcher([r]).scan(b"a\ntoken error 4\nb token error 5\n", Stats())
    assert [line for _, line in hits] == ["token error 4"]
    # \A / \z name the whole text, which a buffer of lines is not: every line is searched.
    r = rule(source={"file": "/x"}, match=r"(?i)\Atoken error (?P<status>\d+)\z")
    hits = Matcher([r]).scan(b"a\ntoken error 4\nb\n", Stats())
    assert [line for _, line in hits] == ["a", "token error 4", "b"]


def test_journal_entries_parse_unit_time_cursor_and_binary_messages(tmp_path: Path):
    src = JournalSource(["port-sheet-sync.service"], StateDB(), emit=lambda b: None)
    e = src.parse(
        json.dumps(
            {
                "__CURSOR": "s=ab;i=1",
                "__REALTIME_TIMESTAMP": "1778745600000000",
                "_SYSTEMD_UNIT": "port-sheet-sync.service",
                "MESSAGE": [91, 112, 93, 255],
            }
        ).encode()
    )
    assert (e.unit, e.t, e.cursor, e.message) == (
        "port-sheet-sync.service",
        1778745600.0,
        "s=ab;i=1",
        "[p]\ufffd",
    )
    assert src.stats.invalid_utf8 == 1
    # No cursor yet: from the first start's time on, kept for the child's restarts (not
    # --lines=0, whose tail seek loses a new unit's first entries in journalctl 252).
    before = time.time()
    first = src.command()[-1]
    assert first.startswith("--since=@") and before <= float(first[9:]) <= time.time()
    time.sleep(0.01)
    assert src.command()[-1] == first
    src.state.save_cursor("journal", "s=ab;i=1")
    assert src.command()[-2:] == ["--after-cursor=s=ab;i=1", "--no-tail"]


def test_copytruncate_lines_not_yet_read_are_finished_from_the_copy(tmp_path: Path):
    import shutil

    log = tmp_path / "a.log"
    log.write_text("")
    tail, got = FileTail(str(log), StateDB()), Collect()
    tail.poll(got)
    append(log, "first\n")
    tail.poll(got)
    append(log, "written before the copy, unread\n")
    shutil.copyfile(log, tmp_path / "a.log.1")  # what copytruncate does: copy ...
    with open(log, "r+b") as f:  # ... then truncate
        f.truncate(0)
    append(log, "after\n")
    tail.poll(got)
    assert got.lines == [b"first", b"written before the copy, unread", b"after"]


def test_matcher_prefilter_finds_every_line_the_default_pack_matches():
    import random

    from agent.remediator.rules import load_rules

    rules = load_rules([Path(__file__).parents[3] / "files" / "rules.d"]).rules
    samples = [
        "[port-sheet] token error: HTTP Error 400: Bad Request",
        "[port-sheet] token error: credential file missing: /var/lib/jada-agent/secrets/t.json",
        "[port-sheet] permission error: /var/lib/jada-agent/secrets/google-token.json: Permission denied",
        "PermissionError: [Errno 13] Permission denied: '/var/lib/jada-agent/secrets/google-token.json'",
        "google.auth.exceptions.RefreshError: ('invalid_grant: Token has been expired', {})",
        "[port-sheet] api error: HTTP 403 forbidden",
        "[port-sheet] sync ok rows=3 requests=1 in 0.42s",
        "[port-sheet] transient error: timed out",
        "x [port-sheet] [port-sheet] token error: HTTP Error 401: invalid_client",
        "noise [port-sheet]",
        "ordinary line about tokens and secrets",
    ]
    rnd = random.Random(3)
    lines = [rnd.choice(samples) for _ in range(2000)]
    buf = ("\n".join(lines) + "\n").encode()
    got = {
        (r.name, line)
        for r, line in Matcher(rules).scan(buf, Stats())
        if r.match.search(line) or (r.resolve and r.resolve.search(line))
    }
    want = {
        (r.name, line)
        for line in lines
        for r in rules
        if r.match.search(line) or (r.resolve and r.resolve.search(line))
    }
    assert got == want and len(want) > 10


def test_journal_follows_every_boot_of_this_machine_only():
    # --follow alone means "this boot" as /proc says it, which a hardened unit in a container
    # sees wrongly (a fresh /proc: the host kernel's boot id) -- and a resume after a reboot
    # must not skip the previous boot's last entries. The machine id keeps other journals out.
    from agent.remediator.sources.journald import _machine_id

    src = JournalSource(["port-sheet-sync.service"], StateDB(), emit=print)
    cmd = src.command()
    assert "--merge" in cmd
    assert not any(a.startswith("--boot") or a == "-b" for a in cmd)
    machine = _machine_id()
    if machine:
        assert f"_MACHINE_ID={machine}" in cmd


def test_machine_id_is_read_only_when_well_formed(tmp_path: Path):
    from agent.remediator.sources.journald import _machine_id

    good = tmp_path / "good"
    good.write_text("0123456789abcdef0123456789abcdef\n")
    bad = tmp_path / "bad"
    bad.write_text("uninitialized\n")
    assert _machine_id(str(good)) == "0123456789abcdef0123456789abcdef"
    assert _machine_id(str(bad)) is None
    assert _machine_id(str(tmp_path / "absent")) is None


def test_a_log_unreadable_at_first_sight_is_read_from_its_size_then(tmp_path: Path):
    import pytest

    if os.geteuid() != 0:
        pytest.skip("needs root to read as another user")
    import shutil
    import tempfile

    where = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's tmp_path is not reachable by others
    where.chmod(0o755)  # the directory can be listed, the log cannot be read
    log = where / "a.log"
    log.write_text("old 1\nold 2\n")
    log.chmod(0o600)
    tail, got = FileTail(str(log), StateDB()), Collect()
    os.seteuid(65534)  # as a user that cannot read it
    try:
        tail.poll(got)
    finally:
        os.seteuid(0)
    assert got.lines == [] and tail.fault and "Permission denied" in tail.fault
    append(log, "new\n")
    tail.poll(got)  # readable now: only what came after the first sight
    shutil.rmtree(where)
    assert got.lines == [b"new"] and tail.fault is None


def test_a_symlink_a_fifo_or_a_directory_at_the_path_is_never_read(tmp_path: Path):
    secret = tmp_path / "secret"
    secret.write_text("root:$6$hash\n")
    log = tmp_path / "a.log"
    log.write_text("")
    reported: list[tuple[str, str | None]] = []
    tail = FileTail(str(log), StateDB(), on_fault=lambda k, m: reported.append((k, m)))
    got = Collect()
    tail.poll(got)
    for make, says in (
        (lambda: log.symlink_to(secret), "symbolic link"),
        (lambda: os.mkfifo(log), "FIFO"),
        (lambda: log.mkdir(), "directory"),
    ):
        if log.is_dir() and not log.is_symlink():
            log.rmdir()
        else:
            log.unlink()
        make()
        append(secret, "root:$6$more\n")
        tail.poll(got)
        assert got.lines == []
        assert reported[-1][1] is not None and says in reported[-1][1]
    log.rmdir()
    log.write_text("back\n")
    tail.poll(got)
    assert got.lines == [b"back"] and reported[-1] == (f"file:{log}", None)


def test_same_inode_and_first_line_but_other_content_is_read_from_its_start(tmp_path: Path):
    db, log = tmp_path / "s.db", tmp_path / "a.log"
    log.write_text("header\n")
    s1 = StateDB(db)
    t1, got = FileTail(str(log), s1), Collect()
    t1.poll(got)
    append(log, "a\n" * 10)
    t1.poll(got)
    t1.close()
    s1.close()
    with open(log, "r+") as f:  # same inode, same first line, longer: another file
        f.truncate(0)
        f.write("header\n" + "b\n" * 30)
    t2 = FileTail(str(log), StateDB(db))
    t2.poll(got)
    assert got.lines.count(b"b") == 30


def test_copytruncate_while_stopped_finishes_the_copy_first(tmp_path: Path):
    import shutil

    db, log = tmp_path / "s.db", tmp_path / "a.log"
    log.write_text("")
    s1 = StateDB(db)
    t1, got = FileTail(str(log), s1), Collect()
    t1.poll(got)
    append(log, "one\n")
    t1.poll(got)
    t1.close()
    s1.close()
    append(log, "two\n")  # unread when the copy is made
    shutil.copyfile(log, tmp_path / "a.log.1")
    with open(log, "r+b") as f:
        f.truncate(0)
    append(log, "three\n")
    t2 = FileTail(str(log), StateDB(db))
    t2.poll(got)
    assert got.lines == [b"one", b"two", b"three"]


def test_a_journal_line_that_is_not_an_object_is_skipped_and_counted():
    src = JournalSource(["u.service"], StateDB(), emit=lambda b: None)
    for raw in (b"[1, 2]\n", b'"text"\n', b"null\n", b"{broken\n"):
        assert src.parse(raw) is None
    assert src.stats.bad_entries == 4


def test_the_first_sight_of_an_unreadable_log_survives_a_restart(tmp_path: Path):
    import shutil
    import tempfile

    import pytest

    if os.geteuid() != 0:
        pytest.skip("needs root to read as another user")
    where = Path(tempfile.mkdtemp(dir="/tmp"))
    where.chmod(0o755)
    log = where / "a.log"
    log.write_text("old\n" * 5)
    log.chmod(0o600)
    dbdir = where / "state"
    dbdir.mkdir(mode=0o777)
    dbdir.chmod(0o777)  # the other user writes the state in this test
    db = dbdir / "s.db"
    s1 = StateDB(db)
    for f in dbdir.iterdir():
        f.chmod(0o666)
    t1 = FileTail(str(log), s1)
    os.seteuid(65534)
    try:
        t1.poll(Collect())
    finally:
        os.seteuid(0)
    t1.close()
    s1.close()
    append(log, "new\n")
    got = Collect()
    FileTail(str(log), StateDB(db)).poll(got)  # readable after the restart
    shutil.rmtree(where)
    assert got.lines == [b"new"]


def test_a_journal_message_reaches_only_the_rules_whose_literal_it_holds():
    from agent.remediator.rules import load_rules

    rules = load_rules([Path(__file__).parents[3] / "files" / "rules.d"]).rules
    m = Matcher(rules)
    assert m.rules_for("[port-sheet] collected tab=Ports rows=3") == []
    assert [r.name for r in m.rules_for("[port-sheet] token error: HTTP Error 400: x")] == [
        "sheet-sync-token"
    ]
    # A "sync ok" line can only resolve: with nothing open it goes to no rule at all.
    assert len(m.rules_for("[port-sheet] sync ok rows=1")) == 4
    assert Matcher(rules, resolvable=set).rules_for("[port-sheet] sync ok") == []


def test_a_batch_of_journal_messages_is_looked_at_exactly_where_one_by_one_would():
    # The live journal path picks a batch's candidates in one pass over the joined messages:
    # the same messages as a set match per message, multi-line and non-ASCII ones included.
    from agent.remediator.rules import load_rules

    rules = load_rules([Path(__file__).parents[3] / "files" / "rules.d"]).rules
    m = Matcher(rules)
    texts = [
        "[port-sheet] collected tab=Ports rows=3",
        "[port-sheet] token error: HTTP Error 400: x",
        "Traceback (most recent call last):\n  google.auth.exceptions.RefreshError: invalid_grant",
        "[port-sheet] sync ok rows=1",
        "[port-sheet] collected tab=Sessions rows=3 élan ✓",
        "[port-sheet] api error: HTTP 403 Forbidden ✗",
        "",
        "[port-sheet] wrote tab=Sessions rows=1\n[port-sheet] permission error: x",
        "[port-sheet] deployed marker unchanged",
    ] * 3
    want = [i for i, t in enumerate(texts) if m.rules_for(t)]
    assert want  # the mix holds candidates
    assert m.texts_to_look_at(texts) == want
    assert m.texts_to_look_at([]) == []
    assert Matcher([]).texts_to_look_at(texts) == []


def test_the_journal_reader_waits_for_an_unreadable_cursor_instead_of_dying(tmp_path: Path):
    # After a failed write whose read-back failed too, the state cannot be read for a while:
    # the reader thread used to die on the cursor query (an exception in thread "journal").
    import time

    started = tmp_path / "started"
    fake = tmp_path / "journalctl"
    fake.write_text(f'#!/bin/sh\necho "$@" > {started}\nexec sleep 30\n')
    fake.chmod(0o755)
    state = StateDB(tmp_path / "state.db")
    state.save_cursor("journal", "s=abc")
    faults: list[str | None] = []
    src = JournalSource(
        ["x.service"],
        state,
        emit=lambda b: None,
        journalctl=str(fake),
        on_fault=lambda key, msg: faults.append(msg),
    )
    state.db.close()  # what a failed read-back leaves: every query fails
    src.start()
    try:
        deadline = time.monotonic() + 10
        while not any(m and "cannot read the saved cursor" in m for m in faults):
            assert time.monotonic() < deadline, faults
            time.sleep(0.05)
        assert src.alive()
        state.rebuild()  # readable again: the reader starts journalctl after its saved cursor
        while not started.exists():
            assert time.monotonic() < deadline + 5, faults
            time.sleep(0.05)
        assert "--after-cursor=s=abc" in started.read_text()
    finally:
        src.stop()


def test_the_stall_check_counts_only_entries_the_child_should_have_read(tmp_path: Path):
    # A fresh start follows from "now": the unit's newest entry from before then is not ours
    # to read, however often the journal names it. One that came after is, and a child that
    # stays alive without reading it is replaced on the second look.
    import time

    newest = tmp_path / "newest.json"
    fake = tmp_path / "journalctl"
    fake.write_text(f'#!/bin/sh\ncase "$*" in *--follow*) exec sleep 30;; esac\ncat {newest}\n')
    fake.chmod(0o755)
    faults: list[str | None] = []
    src = JournalSource(
        ["x.service"],
        StateDB(),
        emit=lambda b: None,
        journalctl=str(fake),
        on_fault=lambda key, msg: faults.append(msg),
    )
    src.start()
    try:
        deadline = time.monotonic() + 10
        while src.proc is None or src.since is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        stamp = int((src.since - 3600) * 1e6)
        newest.write_text(f'{{"__CURSOR":"s=old","__REALTIME_TIMESTAMP":"{stamp}"}}\n')
        assert [src.check_stalled() for _ in range(3)] == [False, False, False]
        stamp = int((src.since + 1) * 1e6)
        newest.write_text(f'{{"__CURSOR":"s=new","__REALTIME_TIMESTAMP":"{stamp}"}}\n')
        first = src.proc.pid
        assert [src.check_stalled(), src.check_stalled()] == [False, True]
        assert src.stalls == 1 and any(m and "handed over nothing" in m for m in faults)
        while src.proc is None or src.proc.pid == first:  # a new child
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        src.stop()
