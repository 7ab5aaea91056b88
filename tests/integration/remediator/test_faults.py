"""Fault injection: the real ``jada-agent remediator run`` process through every fault it must
survive (README "Reliability").

Each test asserts the guarantees: exactly one remediation per firing, nothing left
"remediating", no line lost or counted twice, bounded memory and database, a stop within 5 s.
Line accounting uses cycles of "3 failures, 1 recovery line" under a rule with threshold 3 and
no cooldown: N cycles make exactly N incidents, each resolved; a lost line makes fewer, a line
counted twice makes more (or leaves one open).

Faults are real: ``chattr +i`` on the database files (writes through the open descriptors then
fail with EPERM, as on a read-only or failing disk), a size-limited tmpfs that is full, kill -9,
SIGTERM, a wall clock stepped back by libfaketime, files swapped for symlinks, directories and
FIFOs, a journalctl that floods its stderr, prints junk or dies. Root is needed (chattr, mount);
the tests skip without it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from agent import config
from tests.integration.remediator.helpers import SYNC_JOURNAL, SYNC_OK, TOKEN_4XX, token_rule

pytestmark = pytest.mark.slow

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="needs root (chattr, mount, other users)")

FAIL = "[port-sheet] token error: HTTP Error 400: invalid_grant\n"
OK = "[port-sheet] sync ok rows=1 requests=1 in 0.1s\n"
CYCLE = FAIL * 3 + OK
ACTION = {"playbook": "recovered.yml", "extravars": {"unit": "x.service"}, "timeout": "60s"}


def rule(log: Path, **kw) -> dict:
    return token_rule(
        {"file": str(log)}, **{"group_by": ["status"], "cooldown": 0, "resolve": SYNC_OK, **kw}
    )


def append(path: Path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)


def stop_within(svc, seconds: float = 5.0) -> int:
    """SIGTERM and the exit code; the stop must take less than ``seconds``."""
    assert svc.proc is not None and svc.proc.poll() is None
    t0 = time.monotonic()
    svc.proc.send_signal(signal.SIGTERM)
    try:
        rc = svc.proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        svc.proc.kill()
        svc.proc.wait()
        raise AssertionError(f"the service took more than {seconds}s to stop") from None
    assert time.monotonic() - t0 < seconds
    return rc


def chattr(flag: str, *paths: Path) -> None:
    existing = [str(p) for p in paths if p.exists()]
    out = subprocess.run(["chattr", flag, *existing], capture_output=True, text=True)
    if out.returncode != 0 and "not supported" in out.stderr and flag == "+i":
        pytest.skip(f"the file system under {existing[0]} has no immutable flag")
    assert out.returncode == 0, out.stderr


def db_files(path: str | Path) -> list[Path]:
    return [Path(f"{path}{s}") for s in ("", "-wal", "-shm")]


def resolved_cycles(svc, n: int, timeout: float = 60.0) -> list:
    return svc.wait_incident(
        lambda xs: len(xs) >= n and all(i.status == "resolved" for i in xs), timeout=timeout
    )


def assert_cycles(svc, n: int) -> None:
    """Exactly ``n`` incidents, all resolved: every line counted once."""
    items = resolved_cycles(svc, n)
    time.sleep(0.5)  # anything counted twice would fire again by now
    items = svc.incidents()
    assert len(items) == n, [i.to_json() for i in items]
    assert all(i.status == "resolved" for i in items)


def remediator_status(svc) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "agent", "-c", str(svc.cfg), "remediator", "status", "--json"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "Traceback" not in out.stderr, out.stderr
    return {**json.loads(out.stdout), "rc": out.returncode}


def nothing_remediating(svc) -> None:
    assert [i.id for i in svc.incidents() if i.status == "remediating"] == []


# --------------------------------------------------------------------------- write failures


@needs_root
def test_a_read_only_store_when_the_rule_fires_loses_no_incident(tmp_path, log, service_factory):
    svc = service_factory([rule(log, action=ACTION)])
    store = Path(svc.settings.store.path)
    svc.start()
    append(log, FAIL)  # the store exists and is in use
    time.sleep(0.3)
    chattr("+i", *db_files(store))
    try:
        append(log, FAIL * 2)  # fires while the store cannot be written
        svc.wait_log("store_write", timeout=15)
        time.sleep(0.5)
        status = remediator_status(svc)
    finally:
        chattr("-i", *db_files(store))
    # visible while it lasts: the write error and the firing waiting for its incident
    assert status["rc"] == 1
    assert [f["kind"] for f in status["faults"]] == ["store_write"]
    assert [(q["rule"], q["status"]) for q in status["queue"]] == [("sheet-sync-token", "new")]
    assert status["service"] == {"running": True, "pid": svc.proc.pid}
    items = svc.wait_incident(lambda xs: xs and xs[0].status == "resolved", timeout=30)
    assert len(items) == 1 and len(items[0].remediations) == 1
    assert items[0].remediations[0]["outcome"] == "recovered"
    nothing_remediating(svc)
    after = remediator_status(svc)
    assert after["rc"] == 0 and after["faults"] == [] and after["queue"] == []
    assert stop_within(svc) == 0


@needs_root
def test_a_read_only_state_database_loses_and_double_counts_no_line(tmp_path, log, service_factory):
    svc = service_factory([rule(log)])
    state = Path(svc.settings.remediator.state_db)
    svc.start()
    append(log, CYCLE)
    resolved_cycles(svc, 1)
    chattr("+i", *db_files(state))
    try:
        for _ in range(20):
            append(log, CYCLE)
            time.sleep(0.01)
        svc.wait_log("state_write", timeout=15)
        time.sleep(0.5)
        assert len(svc.incidents()) == 1  # nothing decided that the state cannot hold
    finally:
        chattr("-i", *db_files(state))
    assert_cycles(svc, 21)
    assert "fault state_write write is over" in svc.wait_log("is over")
    assert stop_within(svc) == 0


@needs_root
def test_a_full_disk_under_the_state_loses_no_counted_line(tmp_path, service_factory):
    statefs = tmp_path / "statefs"
    statefs.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(statefs)], check=True)
    try:
        log = tmp_path / "sync.log"
        log.write_text("")
        svc = service_factory(
            [rule(log)], remediator={"state_db": str(statefs / "remediator.db")}
        ).start()
        append(log, CYCLE)
        resolved_cycles(svc, 1)
        filler = statefs / "filler"
        with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        # 2000 failures, each counted once: 500 cycles of 3 + a recovery line
        for _ in range(10):
            append(log, CYCLE * 50)
            time.sleep(0.05)
        time.sleep(1.0)
        assert stop_within(svc) == 0  # stopped while the disk is still full
        filler.unlink()
        # what was counted is what the database holds: the restart counts each line once
        svc.start()
        assert_cycles(svc, 501)
        assert stop_within(svc) == 0
    finally:
        subprocess.run(["umount", "-l", str(statefs)], check=False)


# --------------------------------------------------------------------------- the job queue


@needs_root
def test_sigterm_with_a_remediation_queued_resumes_it_after_the_restart(tmp_path, service_factory):
    from agent.remediator.lock import RemediationLock

    log = tmp_path / "sync.log"
    log.write_text("")
    svc = service_factory([rule(log, resolve=None, action=ACTION)])
    person = RemediationLock(svc.settings.remediator.lock_file)
    person.acquire("operator", ttl=600)  # the remediation must wait: it stays queued
    svc.start()
    append(log, FAIL * 3)
    svc.wait_incident(lambda xs: len(xs) == 1)
    time.sleep(0.5)
    assert stop_within(svc) == 0
    (inc,) = svc.incidents()
    assert inc.remediations == [] and inc.status != "remediating"
    assert person.release("operator")
    svc.start()
    items = svc.wait_incident(lambda xs: xs[0].status == "resolved")
    (run,) = items[0].remediations
    assert run["outcome"] == "recovered" and run["status"] == "successful"
    time.sleep(0.5)
    assert len(svc.incidents()[0].remediations) == 1
    assert stop_within(svc) == 0


def test_kill_9_right_after_remediating_leaves_nothing_stuck_and_runs_once(
    tmp_path, log, service_factory
):
    svc = service_factory([rule(log, resolve=None, action=ACTION)]).start()
    append(log, FAIL * 3)
    svc.wait_incident(lambda xs: xs and xs[0].status == "remediating", timeout=30)
    svc.signal(signal.SIGKILL)
    svc.proc.wait(10)
    svc.start()
    items = svc.wait_incident(
        lambda xs: xs and xs[0].status != "remediating" and xs[0].remediations, timeout=30
    )
    time.sleep(1.0)
    items = svc.incidents()
    assert len(items) == 1
    nothing_remediating(svc)
    # one remediation for the one firing: run again (killed before it started) or recorded
    # as interrupted (killed during it)
    assert len(items[0].remediations) == 1, items[0].remediations
    assert stop_within(svc) == 0


# --------------------------------------------------------------------------- single instance


def test_a_second_remediator_on_the_same_state_database_refuses_to_start(
    tmp_path, log, service_factory
):
    svc = service_factory([rule(log)]).start()
    second = subprocess.run(
        [sys.executable, "-m", "agent", "-c", str(svc.cfg), "remediator", "run"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert second.returncode == 75
    assert "another remediator" in second.stderr and "already running" in second.stderr
    assert str(svc.proc.pid) in second.stderr
    assert "Traceback" not in second.stderr
    assert stop_within(svc) == 0
    # and once the first is gone (even by SIGKILL) a new one starts
    svc.start()
    svc.signal(signal.SIGKILL)
    svc.proc.wait(10)
    svc.start()
    assert stop_within(svc) == 0


# --------------------------------------------------------------------------- bounded


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_million_matches_in_cooldown_cost_no_rows_and_no_memory(tmp_path, log, service_factory):
    svc = service_factory([rule(log, resolve=None, cooldown="6h")]).start()
    append(log, FAIL * 3)
    svc.wait_incident(lambda xs: len(xs) == 1)
    time.sleep(0.5)
    rss0 = _rss_kib(svc.proc.pid)
    with open(log, "a") as f:
        for _ in range(10):
            f.write(FAIL * 100_000)
    size = log.stat().st_size
    state = Path(svc.settings.remediator.state_db)

    def offset() -> int:
        with sqlite3.connect(state) as db:
            row = db.execute("SELECT offset FROM position").fetchone()
        return row[0] if row else 0

    deadline = time.monotonic() + 60
    while offset() < size and time.monotonic() < deadline:
        time.sleep(0.2)
    assert offset() == size
    grown_mib = (_rss_kib(svc.proc.pid) - rss0) / 1024
    print(f"RSS grew {grown_mib:.1f} MiB over 1M matches")
    assert grown_mib < 25, f"RSS grew {grown_mib:.1f} MiB"
    assert stop_within(svc) == 0
    with sqlite3.connect(state) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        rows = sum(
            db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: S608 - table names
            for t in tables - {"sqlite_sequence"}
        )
    assert rows < 50, rows
    total = sum(p.stat().st_size for p in db_files(state) if p.exists())
    assert total < 1_000_000, total
    assert len(svc.incidents()) == 1


# --------------------------------------------------------------------------- the clock


LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"


@pytest.mark.skipif(not os.path.exists(LIBFAKETIME), reason="libfaketime is not installed")
def test_a_wall_clock_stepped_back_22h_does_not_silence_a_rule(tmp_path, service_factory):
    spec = tmp_path / "faketime"
    spec.write_text("+0\n")
    env = {
        "LD_PRELOAD": LIBFAKETIME,
        "FAKETIME_TIMESTAMP_FILE": str(spec),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",  # a clock step moves the wall clock only
    }
    log = tmp_path / "sync.log"
    log.write_text("")
    svc = service_factory([rule(log, cooldown="2s")], env=env).start()
    append(log, CYCLE)
    resolved_cycles(svc, 1)
    spec.write_text("-22h\n")  # the host's clock is stepped back 22 hours
    time.sleep(2.5)  # the 2 s cooldown is over
    append(log, CYCLE)
    assert_cycles(svc, 2)
    assert stop_within(svc) == 0


# --------------------------------------------------------------------------- corrupt files


def test_a_corrupt_state_database_is_moved_aside_and_the_service_starts(
    tmp_path, log, service_factory
):
    svc = service_factory([rule(log)])
    state = Path(svc.settings.remediator.state_db)
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_bytes(b"this is not a database" * 100)
    svc.start()
    text = svc.wait_log("moved aside")
    assert "Traceback" not in text
    assert list(state.parent.glob("remediator.db.corrupt-*"))
    status = remediator_status(svc)
    assert [(f["kind"], f["key"]) for f in status["faults"]] == [("state_write", "corrupt")]
    append(log, CYCLE)
    assert_cycles(svc, 1)
    assert stop_within(svc) == 0


def test_a_corrupt_store_is_refused_with_the_command_that_repairs_it(
    tmp_path, log, service_factory
):
    svc = service_factory([rule(log)])
    store = Path(svc.settings.store.path)
    store.parent.mkdir(parents=True, exist_ok=True)
    store.write_bytes(b"garbage, not SQLite " * 200)
    out = subprocess.run(
        [sys.executable, "-m", "agent", "-c", str(svc.cfg), "remediator", "run"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert f"sqlite3 {store} .recover | sqlite3 {store}.recovered" in out.stderr
    assert store.read_bytes().startswith(b"garbage")  # the record is never replaced for you


# --------------------------------------------------------------------------- files


def test_copytruncate_while_stopped_reads_the_unread_tail_from_the_copy(tmp_path, service_factory):
    log = tmp_path / "app.log"
    log.write_text("")
    svc = service_factory([rule(log)]).start()
    append(log, CYCLE + FAIL)
    resolved_cycles(svc, 1)
    time.sleep(0.3)
    assert stop_within(svc) == 0
    append(log, FAIL)  # unread: written while stopped, before the copy
    shutil.copyfile(log, tmp_path / "app.log.1")  # logrotate copytruncate
    with open(log, "r+b") as f:
        f.truncate(0)
    append(log, FAIL + OK)
    svc.start()
    assert_cycles(svc, 2)
    assert stop_within(svc) == 0


def test_a_file_rewritten_on_the_same_inode_with_the_same_first_line_is_read_whole(
    tmp_path, service_factory
):
    log = tmp_path / "app.log"
    header = "# app log v1\n"
    log.write_text(header)
    svc = service_factory([rule(log)]).start()
    append(log, "noise line\n" * 40)
    time.sleep(0.5)
    assert stop_within(svc) == 0
    ino = log.stat().st_ino
    # Another file on the same inode, starting with the same line and longer than our offset:
    # what a delete + recreate with inode reuse looks like at the next start.
    with open(log, "r+") as f:
        f.truncate(0)
        f.write(header + CYCLE * 3 + "x" * 600 + "\n")
    assert log.stat().st_ino == ino
    svc.start()
    assert_cycles(svc, 3)
    assert stop_within(svc) == 0


@needs_root
def test_a_log_swapped_for_a_symlink_to_a_root_only_file_is_never_read(tmp_path, service_factory):
    secret = tmp_path / "shadow"
    secret.write_text(FAIL * 10)  # what /etc/shadow would be: root's, never the log
    secret.chmod(0o600)
    logdir = tmp_path / "logs"
    logdir.mkdir()
    log = logdir / "app.log"
    log.write_text("")
    svc = service_factory([rule(log)]).start()
    log.unlink()
    log.symlink_to(secret)  # by whoever can write the log's directory
    append(secret, FAIL * 5)
    text = svc.wait_log("symbolic link; not followed", timeout=15)
    time.sleep(1.0)
    assert svc.incidents() == []
    assert "Traceback" not in text
    # a regular file back at the path is read again, from its start
    log.unlink()
    log.write_text(CYCLE)
    assert_cycles(svc, 1)
    assert stop_within(svc) == 0


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_a_directory_or_fifo_at_the_log_path_neither_crashes_nor_blocks(
    tmp_path, service_factory, kind
):
    log = tmp_path / "app.log"
    if kind == "directory":
        log.mkdir()
    else:
        os.mkfifo(log)
    svc = service_factory([rule(log)]).start()  # starts: a fault, not a crash
    svc.wait_log(f"is a {'directory' if kind == 'directory' else 'FIFO'}", timeout=15)
    assert svc.proc.poll() is None
    if kind == "directory":
        log.rmdir()
    else:
        log.unlink()
    log.write_text(CYCLE)
    assert_cycles(svc, 1)
    assert stop_within(svc) == 0


# --------------------------------------------------------------------------- the journal

FAKE_JOURNALCTL = """#!{python}
import json, os, sys, time
script = {script!r}
runs = script + ".runs"
n = int(open(runs).read()) if os.path.exists(runs) else 0
open(runs, "w").write(str(n + 1))
plan = json.load(open(script))
step = plan[min(n, len(plan) - 1)]
sys.stderr.write(step.get("stderr", ""))
sys.stderr.flush()
for line in step.get("stdout", []):
    sys.stdout.write(line + "\\n")
sys.stdout.flush()
if "exit" in step:
    sys.exit(step["exit"])
while True:
    time.sleep(1)
"""


def _journal_entry(i: int, msg: str) -> str:
    return json.dumps(
        {
            "__CURSOR": f"s=fake;i={i}",
            "__REALTIME_TIMESTAMP": str(int(time.time() * 1e6)),
            "_SYSTEMD_UNIT": "port-sheet-sync.service",
            "MESSAGE": msg,
        }
    )


def _journal_service(tmp_path, service_factory, plan: list[dict]):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = tmp_path / "plan.json"
    script.write_text(json.dumps(plan))
    fake = bindir / "journalctl"
    fake.write_text(FAKE_JOURNALCTL.format(python=sys.executable, script=str(script)))
    fake.chmod(0o755)
    r = token_rule(SYNC_JOURNAL, match=TOKEN_4XX, cooldown="6h")
    env = {"PATH": f"{bindir}:{os.environ['PATH']}"}
    return service_factory([r], env=env)


MSG = FAIL.strip()


def test_journalctl_flooding_its_stderr_does_not_stop_detection(tmp_path, service_factory):
    plan = [
        {
            "stderr": "Journal file corrupted, ignoring file.\n" * 5000,  # ~190 KiB
            "stdout": [_journal_entry(i, MSG) for i in range(1, 4)],
        }
    ]
    svc = _journal_service(tmp_path, service_factory, plan).start()
    items = svc.wait_incident(lambda xs: xs and xs[0].status == "escalated", timeout=20)
    assert len(items) == 1
    assert stop_within(svc) == 0


def test_a_journal_line_that_is_not_an_object_is_skipped_and_counted(tmp_path, service_factory):
    plan = [
        {
            "stdout": [
                _journal_entry(1, MSG),
                "[1, 2, 3]",
                '"a string"',
                "null",
                "{not json",
                _journal_entry(2, MSG),
                _journal_entry(3, MSG),
            ]
        }
    ]
    svc = _journal_service(tmp_path, service_factory, plan).start()
    items = svc.wait_incident(lambda xs: xs and xs[0].status == "escalated", timeout=20)
    assert len(items) == 1
    assert "not a JSON object" in svc.log.read_text()
    assert stop_within(svc) == 0


def test_a_dying_journalctl_is_a_visible_fault_and_is_restarted(tmp_path, service_factory):
    plan = [
        {"stderr": "Failed to open journal: Input/output error\n", "exit": 1},
        {"stdout": [_journal_entry(i, MSG) for i in range(1, 4)]},
    ]
    svc = _journal_service(tmp_path, service_factory, plan).start()
    text = svc.wait_log("fault source journal:", timeout=15)
    assert "Input/output error" in text
    items = svc.wait_incident(lambda xs: xs and xs[0].status == "escalated", timeout=20)
    assert len(items) == 1
    svc.wait_log("fault source journal is over", timeout=10)
    assert stop_within(svc) == 0


# --------------------------------------------------------------------------- settings


def test_settings_that_are_a_directory_are_refused_with_exit_64(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "agent", "-c", str(tmp_path), "config", "check"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 64 and "Traceback" not in out.stderr
    assert "a directory" in out.stderr


def _settings(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "agent.yml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("value", [".inf", ".nan", "'1" + "0" * 400 + "s'"])
def test_infinite_and_nan_numbers_are_refused_by_config_check(tmp_path, value):
    p = _settings(tmp_path, f"daemon:\n  lease_ttl: {value}\n")
    out = subprocess.run(
        [sys.executable, "-m", "agent", "config", "check", str(p)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 64, out.stdout + out.stderr
    assert "daemon.lease_ttl" in out.stderr and "Traceback" not in out.stderr


BOMB = """a: &a ["x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
rules: [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_a_yaml_alias_bomb_in_a_rules_file_is_refused_fast(tmp_path, settings_factory):
    rules_dir = tmp_path / "rules.d"
    rules_dir.mkdir()
    (rules_dir / "50-bomb.yml").write_text(BOMB)
    cfg = tmp_path / "agent.yml"
    cfg.write_text(yaml.safe_dump(config.to_dict(settings_factory())))
    t0 = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "agent", "-c", str(cfg), "remediator", "check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 64, out.stdout + out.stderr
    assert "50-bomb.yml" in out.stderr and "aliases (*name) expand it beyond" in out.stderr
    assert "Traceback" not in out.stderr
    assert time.monotonic() - t0 < 30  # a bound for the test, not a benchmark


def test_a_yaml_alias_bomb_in_the_settings_is_refused(tmp_path):
    p = _settings(tmp_path, BOMB.replace("rules:", "daemon:"))
    out = subprocess.run(
        [sys.executable, "-m", "agent", "config", "check", str(p)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # refused for what it is (the aliases), before anything walks the expansion
    assert out.returncode == 64 and "Traceback" not in out.stderr
    assert "aliases (*name) expand it beyond" in out.stderr


@needs_root
def test_a_read_only_state_while_reading_the_journal_loses_and_repeats_no_entry(
    tmp_path, service_factory
):
    from tests.integration.remediator.test_journal import entry, fake_journal

    feed, env = fake_journal(tmp_path)
    r = token_rule(SYNC_JOURNAL, match=TOKEN_4XX, cooldown=0, resolve=SYNC_OK)
    svc = service_factory([r], env=env)
    state = Path(svc.settings.remediator.state_db)
    svc.start()
    time.sleep(0.5)
    n = 0

    def cycle() -> str:
        nonlocal n
        out = ""
        for line in (FAIL, FAIL, FAIL, OK):
            n += 1
            out += entry(n, line.strip())
        return out

    append(feed, cycle())
    resolved_cycles(svc, 1)
    chattr("+i", *db_files(state))
    try:
        append(feed, "".join(cycle() for _ in range(5)))
        svc.wait_log("state_write", timeout=15)
        time.sleep(0.5)
    finally:
        chattr("-i", *db_files(state))
    assert_cycles(svc, 6)
    assert stop_within(svc) == 0


def test_kill_9_while_reading_a_journal_backlog_loses_and_repeats_no_entry(
    tmp_path, service_factory
):
    # A batch of entries, the windows it moved, its fires and its last cursor commit together:
    # a SIGKILL anywhere in a backlog leaves the state of some whole batch, and the next start
    # reads again after that batch's cursor. Every cycle (three failures, then "sync ok") must
    # make exactly one incident, opened and resolved, however often the reader is killed.
    from tests.integration.remediator.test_journal import entry, fake_journal

    feed, env = fake_journal(tmp_path)
    r = token_rule(SYNC_JOURNAL, match=TOKEN_4XX, cooldown=0, resolve=SYNC_OK)
    # Lines a second rule counts and never fires on: work inside each batch's transaction,
    # so that the kills also land between a batch's first line and its commit.
    noise = {
        "name": "quota-noise",
        "source": SYNC_JOURNAL,
        "match": r"\[port-sheet\] api error: HTTP 429 \(try (?P<k>\d+)\)",
        "group_by": ["k"],
        "threshold": 1000000,
        "within": "90m",
    }
    svc = service_factory([r, noise], env=env)
    svc.start()
    time.sleep(0.5)  # following: the backlog below is after its first start
    cycles = 600
    n = 0
    text = []
    for c in range(cycles):
        lines = [FAIL.strip()] * 3 + [OK.strip()]
        lines[c % 3 : c % 3] = [f"[port-sheet] api error: HTTP 429 (try {k})" for k in range(25)]
        for line in lines:
            n += 1
            text.append(entry(n, line))
    try:
        append(feed, "".join(text))
        seen = []
        for _ in range(8):  # killed part-way through, eight times
            before = len(svc.incidents())
            deadline = time.monotonic() + 30
            while len(svc.incidents()) < before + 3:  # some progress, then the kill
                assert time.monotonic() < deadline, svc.log.read_text()[-2000:]
                time.sleep(0.02)
            svc.signal(signal.SIGKILL)
            svc.proc.wait()
            seen.append(len(svc.incidents()))
            svc.start()
        assert seen[-1] < cycles  # every kill came while the backlog was being read
        assert_cycles(svc, cycles)
        assert stop_within(svc) == 0
    finally:
        # A killed service's journalctl (its own session) is not in a cgroup here, as it would
        # be under systemd: end the orphans.
        subprocess.run(["pkill", "-f", str(feed)], check=False)
