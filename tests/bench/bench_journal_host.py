"""Benchmark: the remediator's journal path on a real systemd host (a sandbox), as deployed.

``bench_remediator``'s journal part reads journal files written on this machine by
systemd-journal-remote; this one measures the deployed default end to end on a sandbox host
(``tests/sandbox``: Debian 12, systemd as PID 1, its own journald):

1. boot a sandbox host; disable journald's rate limit there (a drop-in, journald restarted);
2. inject: a transient ``port-sheet-sync.service`` prints ``N`` lines of the sync's realistic mix
   (``bench_remediator._records``: the ``[port-sheet] `` prefix on every line, 0.1 % token
   failures) to stdout, so the host's own journald stores them as the real sync's lines
   (``_SYSTEMD_UNIT``, ``_TRANSPORT=stdout``, ``SYSLOG_IDENTIFIER=port-sheet-sync``); timed until
   ``journalctl --sync`` returns;
3. on the host, with the project's code and its few dependencies copied in
   (``tests/e2e/inhost.py``) and the host's own Python 3.11: (a) in process, the live
   ``JournalSource`` of a ``Remediator`` with the packaged rules (journal source) and its real
   ``journalctl -o json`` child, resuming after a seed entry, timed until the last entry's cursor
   is saved; (b) the whole ``jada-agent remediator run`` process the same way (the pack without
   its playbooks, which are not measured here), timed from its start; (c) the same journalctl
   command alone to /dev/null (``-o json``, and ``-o export`` for comparison); (d) following:
   the remediator at the journal's end while journald stores the lines again, timed until the
   last one's cursor is saved. Peak RSS (VmHWM in the host's ``/proc``) of the Python process
   and of its journalctl child; the entries read and the incidents opened are checked against
   the generated ones;
4. the host is always torn down (error, Ctrl-C, SIGTERM).

``python -m tests.bench.bench_journal_host [--quick] [--readme | --readme-only]``; results in
tests/bench/results/journal_host.json. Needs root (the sandbox harness).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "bench" / "results" / "journal_host.json"
UNIT = "port-sheet-sync.service"
SEED = "[port-sheet] bench seed"
TOKEN_EVERY = 1000  # 0.1 % token failures, as bench_remediator's realistic log
GUEST_DIR = "/opt/jada-src"  # the code and its inputs in the host (tests/e2e/inhost.py)
GUEST_WORK = "/var/tmp/jada-bench"  # state, store and rules of the runs, inside the host
README_KEY = "| remediator on a sandbox host:"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _load() -> float:
    return round(os.getloadavg()[0], 2)


# =========================================================================== in the sandbox host


def expected_incidents(n: int, span_s: float) -> int:
    """Incidents the packaged rules open on ``n`` lines of the mix written within ``span_s``.

    Only ``sheet-sync-token`` matches the mix (the 429 and 503 lines are not its failures, no
    line is an ``api error: HTTP 401/403``, a RefreshError or a permission error). Its group is
    the status (400 for every failure): the third failure fires, and every later one is within
    the 3 h cooldown when the whole injection took less than that; the ``sync ok`` lines
    resolve the incident but do not end the cooldown. So one incident, resolved.
    """
    assert span_s < 3 * 3600, "the injection outlasted the cooldown: count again"
    return 1 if n // TOKEN_EVERY >= 3 else 0


def _rules(drop_actions: bool) -> list[dict[str, Any]]:
    from tests.bench.bench_remediator import rules_on

    pack = rules_on(Path("/var/log/unused.log"), "pack")
    for r in pack:
        r["source"] = {"journal": {"unit": UNIT}}
        if drop_actions:
            r.pop("action", None)
    return pack


def _incidents(store_path: str) -> list[dict[str, Any]]:
    db = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True, timeout=10)
    try:
        rows = db.execute("SELECT rule, status FROM incidents ORDER BY id").fetchall()
    finally:
        db.close()
    return [{"rule": r, "status": s} for r, s in rows]


def guest_in_process(work: Path, seed: str, last: str) -> dict[str, Any]:
    """``bench_remediator.bench_journal``'s measurement, on the host's own journal: the live
    JournalSource's real journalctl child, resuming after ``seed``, until ``last`` is saved."""
    from agent import config
    from agent.remediator.service import Remediator
    from tests.bench.bench_remediator import (
        proc_cpu_seconds,
        proc_status_mb,
        settings_doc,
        write_rules,
    )

    rules_dir = work / "rules.d"
    write_rules(rules_dir, _rules(drop_actions=False))
    doc = settings_doc(work, rules_dir)
    s = config.from_dict(doc, "bench")
    r = Remediator(s)
    r.state.save_cursor("journal", seed)  # resume after the seed: every sync line is new
    rss0 = proc_status_mb(os.getpid(), "VmRSS")
    r.apply_rules(r.load())
    source = r.detection.journal
    assert source is not None
    seen = batches = most_waiting = 0
    t0 = time.perf_counter()
    c0 = time.process_time()
    source.start()
    while True:
        event = r.q.get(timeout=120)
        if event[0] == "journal":
            seen += len(event[1])
            batches += 1
            most_waiting = max(most_waiting, r.q.qsize())
            end = event[1][-1].cursor == last if event[1] else False
        else:
            end = False
        r.dispatch(event)
        if end and r.state.cursor("journal") == last:
            break
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    proc = source.proc
    assert proc is not None and proc.poll() is None, "journalctl ended before the last entry"
    child_hwm = proc_status_mb(proc.pid, "VmHWM")
    child_anon = proc_status_mb(proc.pid, "RssAnon")
    child_file = proc_status_mb(proc.pid, "RssFile")
    child_cpu = proc_cpu_seconds(proc.pid)
    hwm = proc_status_mb(os.getpid(), "VmHWM")
    command = source.command()
    source.stop()
    r.store.close()
    r.state.close()
    return {
        "entries": seen,
        "seconds": round(wall, 3),
        "entries_per_s": round(seen / wall),
        "python_cpu_s": round(cpu, 2),
        "journalctl_cpu_s": round(child_cpu, 2),
        "python_rss_mb_before": round(rss0, 1),
        "python_peak_rss_mb": round(hwm, 1),
        "journalctl_peak_rss_mb": round(child_hwm, 1),
        # at the end: its own memory, and the journal files it maps (page cache, shared)
        "journalctl_rss_anon_mb": round(child_anon, 1),
        "journalctl_rss_file_mb": round(child_file, 1),
        "total_peak_rss_mb": round(hwm + child_hwm, 1),
        "batches": batches,
        "most_events_waiting": most_waiting,
        "incidents": _incidents(doc["store"]["path"]),
        "journalctl_command": command,
    }


def _children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


def guest_whole_process(work: Path, seed: str, last: str) -> dict[str, Any]:
    """``jada-agent remediator run`` with the backlog: from its start until ``last`` is saved
    (the state DB polled every 20 ms, read-only); peak RSS of it and of its journalctl."""
    import yaml

    from agent.remediator.state import StateDB
    from tests.bench.bench_remediator import (
        proc_cpu_seconds,
        proc_status_mb,
        settings_doc,
        write_rules,
    )

    rules_dir = work / "rules.d"
    # The playbooks are not measured (and ansible is not copied in): the pack, notify-only.
    write_rules(rules_dir, _rules(drop_actions=True))
    doc = settings_doc(work, rules_dir)
    cfg = work / "agent.yml"
    cfg.write_text(yaml.safe_dump(doc))
    state_db = doc["remediator"]["state_db"]
    Path(state_db).parent.mkdir(parents=True, exist_ok=True)
    st = StateDB(state_db)
    st.save_cursor("journal", seed)
    st.close()
    log = work / "service.log"
    t0 = time.perf_counter()
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "-c", str(cfg), "remediator", "run"],
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd=GUEST_DIR,
        )
    child: int | None = None
    child_hwm = child_cpu = 0.0
    db = None
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the remediator exited {proc.returncode}:\n{log.read_text()}")
            if time.perf_counter() - t0 > 600:
                raise RuntimeError(f"the last cursor was never saved\n{log.read_text()[-3000:]}")
            if child is None:
                kids = _children(proc.pid)
                child = kids[0] if kids else None
            if db is None and Path(state_db).exists():
                db = sqlite3.connect(f"file:{state_db}?mode=ro", uri=True, timeout=10)
            if db is not None:
                with contextlib.suppress(sqlite3.OperationalError):  # busy or not yet created
                    row = db.execute("SELECT cursor FROM cursor WHERE key = 'journal'").fetchone()
                    if row and row[0] == last:
                        break
            time.sleep(0.02)
        wall = time.perf_counter() - t0
        cpu = proc_cpu_seconds(proc.pid)
        hwm = proc_status_mb(proc.pid, "VmHWM")
        if child is not None:
            child_hwm = proc_status_mb(child, "VmHWM")
            child_cpu = proc_cpu_seconds(child)
    finally:
        if db is not None:
            db.close()
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return {
        "seconds": round(wall, 3),
        "python_cpu_s": round(cpu, 2),
        "journalctl_cpu_s": round(child_cpu, 2),
        "python_peak_rss_mb": round(hwm, 1),
        "journalctl_peak_rss_mb": round(child_hwm, 1),
        "total_peak_rss_mb": round(hwm + child_hwm, 1),
        "incidents": _incidents(doc["store"]["path"]),
    }


def _sh(script: str) -> str:
    return subprocess.run(["sh", "-ec", script], capture_output=True, text=True, check=True).stdout


def count_after(cursor: str) -> dict[str, int]:
    """The unit's entries after ``cursor``: all, the sync's lines, the token failures."""
    out = _sh(
        f"journalctl -o cat --no-pager -u {UNIT} --after-cursor='{cursor}'"
        " | awk '/^\\[port-sheet\\] /{n++} /token error/{t++} END{print NR, n+0, t+0}'"
    )
    total, sync_lines, tokens = (int(x) for x in out.split())
    return {"entries": total, "sync_lines": sync_lines, "token_failures": tokens}


def last_cursor() -> str:
    out = _sh(f"journalctl -o json -n 1 --no-pager -u {UNIT}")
    return str(json.loads(out.splitlines()[-1])["__CURSOR"])


def inject_lines() -> None:
    """The sync's lines into the host's journal: one process printing to its stdout, as the
    sync does (journald's stdout stream blocks the writer rather than dropping when journald
    falls behind, with the rate limit off); returns once journald has stored them all."""
    _sh(
        f"systemd-run --quiet --wait --unit={UNIT} -p SyslogIdentifier=port-sheet-sync"
        f" /bin/cat {GUEST_DIR}/lines.txt\njournalctl --sync\n"
    )


def journalctl_alone(command: list[str], seed: str, entries: int) -> dict[str, Any]:
    """The remediator's own journalctl command, with nothing reading but /dev/null: the floor
    of the journal path. Also with ``--output=export`` (same fields), for comparison."""
    base = [a for a in command if a != "--follow" and not a.startswith("--after-cursor=")]
    base.append(f"--after-cursor={seed}")
    out: dict[str, Any] = {}
    for fmt in ("json", "export"):
        cmd = [f"--output={fmt}" if a.startswith("--output=") else a for a in base]
        t0 = time.perf_counter()
        with open(os.devnull, "wb") as null:
            proc = subprocess.Popen(cmd, stdout=null, stdin=subprocess.DEVNULL)
        _pid, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd} exited {proc.returncode}")
        out[fmt] = {
            "seconds": round(wall, 2),
            "entries_per_s": round(entries / wall),
            "cpu_s": round(ru.ru_utime + ru.ru_stime, 2),
            "peak_rss_mb": round(ru.ru_maxrss / 1024, 1),
        }
    return out


def guest_follow(work: Path, after: str) -> dict[str, Any]:
    """Following, as deployed once caught up: the remediator reads from ``after`` (the journal's
    end) while the host's journald stores the lines again (rotating its files on the way);
    timed from the injection's start to the last entry's cursor saved; the lag is the part
    after journald had stored the last line."""
    from agent import config
    from agent.remediator.service import Remediator
    from tests.bench.bench_remediator import proc_status_mb, settings_doc, write_rules

    rules_dir = work / "rules.d"
    write_rules(rules_dir, _rules(drop_actions=False))
    doc = settings_doc(work, rules_dir)
    r = Remediator(config.from_dict(doc, "bench"))
    r.state.save_cursor("journal", after)
    r.apply_rules(r.load())
    source = r.detection.journal
    assert source is not None
    source.start()
    deadline = time.monotonic() + 30
    while source.proc is None or source.started_at is None:
        if time.monotonic() > deadline:
            raise RuntimeError("journalctl never started")
        time.sleep(0.01)
    time.sleep(0.5)  # journalctl has reached the journal's end and waits for more
    done: dict[str, Any] = {}

    def write() -> None:
        try:
            inject_lines()
            done["stored"] = time.perf_counter()
            done["last"] = last_cursor()
        except Exception as exc:  # the main loop reports it
            done["error"] = exc

    writer = threading.Thread(target=write, name="inject")
    seen = 0
    t0 = time.perf_counter()
    writer.start()
    while True:
        if "error" in done:
            raise RuntimeError(f"injection failed: {done['error']}")
        try:
            event = r.q.get(timeout=0.2)
        except queue.Empty:
            event = None
        if event is not None:
            if event[0] == "journal":
                seen += len(event[1])
            r.dispatch(event)
        if "last" in done and r.state.cursor("journal") == done["last"]:
            break
        if time.perf_counter() - t0 > 600:
            raise RuntimeError("the last entry never came")
    t_end = time.perf_counter()
    writer.join()
    proc = source.proc
    child_hwm = proc_status_mb(proc.pid, "VmHWM") if proc is not None else 0.0
    hwm = proc_status_mb(os.getpid(), "VmHWM")
    source.stop()
    r.store.close()
    r.state.close()
    return {
        "entries": seen,
        "seconds": round(t_end - t0, 2),
        "entries_per_s": round(seen / (t_end - t0)),
        "injection_seconds": round(done["stored"] - t0, 2),
        "lag_after_stored_s": round(t_end - done["stored"], 3),
        "python_peak_rss_mb": round(hwm, 1),
        "journalctl_peak_rss_mb": round(child_hwm, 1),
        "journalctl_restarts": source.restarts,
        "incidents": _incidents(doc["store"]["path"]),
        "journal": count_after(after),
    }


def guest_main(seed: str, last: str) -> None:
    """The runs on the host; one JSON document on stdout."""
    out: dict[str, Any] = {}
    for name, fn in (("in_process", guest_in_process), ("whole_process", guest_whole_process)):
        work = Path(GUEST_WORK) / name
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        out[name] = fn(work, seed, last)
        out[name]["load_average"] = _load()
    out["journalctl_alone"] = journalctl_alone(
        out["in_process"]["journalctl_command"], seed, out["in_process"]["entries"]
    )
    out["journalctl_alone"]["load_average"] = _load()
    work = Path(GUEST_WORK) / "follow"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    out["follow"] = guest_follow(work, last_cursor())
    out["follow"]["load_average"] = _load()
    print(json.dumps(out))


# =========================================================================== on this machine


def stage(m: Any, n: int) -> None:
    """The project's code (``tests/e2e/inhost.py``) and the lines to inject, into the host."""
    from tests.bench.bench_remediator import _records, write_lines
    from tests.e2e import inhost

    assert inhost.GUEST_DIR == GUEST_DIR
    dest = inhost.install(
        m, ["tests/bench/bench_remediator.py", "tests/bench/bench_journal_host.py"]
    )
    with open(dest / "lines.txt", "w") as f:
        f.write(SEED + "\n")
        write_lines(f, (body for _t, body, _pid in _records(n, TOKEN_EVERY)))


def _host(m: Any, script: str, timeout: float = 1800) -> str:
    """Run a shell script on the host (its namespaces, as root); its stdout, or an error."""
    done = m.nsenter(["sh", "-ec", script], timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"on the host: {script}\nrc {done.returncode}: {done.stderr[-3000:]}")
    return done.stdout


def guest_inject(n: int) -> None:
    """Journald without its rate limit, then the seed line and ``n`` sync lines stored; one
    JSON document on stdout: the time it took, the cursors of the seed and of the unit's last
    entry, and what the journal holds after the seed (counted once, not timed)."""
    _sh(
        "mkdir -p /etc/systemd/journald.conf.d\n"
        "printf '[Journal]\\nRateLimitIntervalSec=0\\nRateLimitBurst=0\\n'"
        " > /etc/systemd/journald.conf.d/50-bench.conf\n"
        "systemctl restart systemd-journald\n"
    )
    t0 = time.perf_counter()
    inject_lines()
    seconds = time.perf_counter() - t0
    seed = json.loads(_sh(f"journalctl -o json -n 1 --no-pager -u {UNIT} 'MESSAGE={SEED}'"))
    last = json.loads(_sh(f"journalctl -o json -n 1 --no-pager -u {UNIT}"))
    span = (int(last["__REALTIME_TIMESTAMP"]) - int(seed["__REALTIME_TIMESTAMP"])) / 1e6
    res = {
        "seconds": round(seconds, 2),
        "entries_per_s": round(n / seconds),
        "seed_cursor": seed["__CURSOR"],
        "last_cursor": last["__CURSOR"],
        "span_s": round(span, 2),
        "journal": count_after(seed["__CURSOR"]),
        "journal_disk_usage": _sh("journalctl --disk-usage").strip(),
        "load_average": _load(),
    }
    print(json.dumps(res))


def _on_host(m: Any, args: list[str]) -> dict[str, Any]:
    """This module's ``--on-host`` part on the host, with its Python; its JSON document."""
    from tests.e2e import inhost

    done = inhost.python(m, ["-m", "tests.bench.bench_journal_host", "--on-host", *args])
    return dict(json.loads(done.stdout.splitlines()[-1]))


def run(quick: bool) -> dict[str, Any]:
    from tests.sandbox import harness

    n = 100_000 if quick else 1_000_000
    name = f"jbench-{secrets.token_hex(3)}"
    res: dict[str, Any] = {"entries": n, "quick": quick, "cpus": os.cpu_count()}
    res["when"], res["load_average"] = _now(), _load()
    t0 = time.perf_counter()
    m = harness.up(name)
    try:
        res["host"] = {
            "name": name,
            "up_s": round(time.perf_counter() - t0, 2),
            "os": _host(m, ". /etc/os-release; echo $PRETTY_NAME").strip(),
            "systemd": _host(m, "systemctl --version | head -1").strip(),
            "python": _host(m, "python3 --version").strip(),
        }
        t1 = time.perf_counter()
        stage(m, n)
        res["host"]["stage_s"] = round(time.perf_counter() - t1, 2)
        inj = res["injection"] = _on_host(m, ["--inject", str(n)])
        print(
            f"injection: {n:,} lines through the host's journald (stdout of a transient"
            f" {UNIT}) in {inj['seconds']} s, {inj['entries_per_s']:,} entries/s;"
            f" {inj['journal_disk_usage']}",
            flush=True,
        )
        held = inj["journal"]
        if held["sync_lines"] != n or held["token_failures"] != n // TOKEN_EVERY:
            raise RuntimeError(f"the journal does not hold the generated lines: {inj}")
        res.update(_on_host(m, ["--seed", inj["seed_cursor"], "--last", inj["last_cursor"]]))
    finally:
        with contextlib.suppress(Exception):
            harness.down(name)
    want = expected_incidents(n, res["injection"]["span_s"])
    res["expected_incidents"] = want
    for part in ("in_process", "whole_process", "follow"):
        got = res[part]["incidents"]
        res[part]["incidents_ok"] = len(got) == want and all(
            i["rule"] == "sheet-sync-token" and i["status"] == "resolved" for i in got
        )
    held = res["injection"]["journal"]["entries"]
    ip, wp, fo = res["in_process"], res["whole_process"], res["follow"]
    ip["entries_ok"] = ip["entries"] == held
    wp["entries_per_s"] = round(held / wp["seconds"])
    fo["entries_ok"] = (
        fo["entries"] == fo["journal"]["entries"] and fo["journal"]["sync_lines"] == n + 1
    )
    res["ok"] = all(x.get(k, True) for x in (ip, wp, fo) for k in ("entries_ok", "incidents_ok"))
    return res


def _ok(flag: bool) -> str:
    return "ok" if flag else "WRONG"


def report(res: dict[str, Any]) -> None:
    ip, wp, inj = res["in_process"], res["whole_process"], res["injection"]
    fo, alone = res["follow"], res["journalctl_alone"]
    print(
        f"journal on a sandbox host ({res['host']['os']}, {res['host']['systemd']},"
        f" {res['host']['python']}), {res['entries']:,} entries, {res['when']},"
        f" load {res['load_average']} → {fo['load_average']}:"
    )
    print(
        f"  injection: {inj['seconds']} s ({inj['entries_per_s']:,} entries/s into journald),"
        f" {inj['journal_disk_usage']}"
    )
    print(
        f"  backlog in process: {ip['entries_per_s']:,} entries/s ({ip['seconds']} s; CPU python"
        f" {ip['python_cpu_s']} s + journalctl {ip['journalctl_cpu_s']} s); peak RSS python"
        f" {ip['python_peak_rss_mb']} MB + journalctl {ip['journalctl_peak_rss_mb']} MB"
        f" ({ip['journalctl_rss_anon_mb']} MB its own, {ip['journalctl_rss_file_mb']} MB mapped"
        f" journal files at the end); {ip['batches']:,} batches, at most"
        f" {ip['most_events_waiting']} waiting; entries {ip['entries']:,} [{_ok(ip['entries_ok'])}],"
        f" incidents {len(ip['incidents'])} (expected {res['expected_incidents']})"
        f" [{_ok(ip['incidents_ok'])}]"
    )
    print(
        f"  backlog, whole process (jada-agent remediator run, start → last cursor saved):"
        f" {wp['entries_per_s']:,} entries/s ({wp['seconds']} s; CPU python {wp['python_cpu_s']} s"
        f" + journalctl {wp['journalctl_cpu_s']} s); peak RSS {wp['python_peak_rss_mb']} MB +"
        f" journalctl {wp['journalctl_peak_rss_mb']} MB; incidents {len(wp['incidents'])}"
        f" [{_ok(wp['incidents_ok'])}]"
    )
    print(
        f"  journalctl alone (the same command, to /dev/null): -o json"
        f" {alone['json']['entries_per_s']:,} entries/s ({alone['json']['cpu_s']} s CPU,"
        f" {alone['json']['peak_rss_mb']} MB); -o export {alone['export']['entries_per_s']:,}"
        f" entries/s ({alone['export']['cpu_s']} s CPU)"
    )
    print(
        f"  following while journald writes them: {fo['entries_per_s']:,} entries/s"
        f" ({fo['seconds']} s; journald took {fo['injection_seconds']} s; last entry's cursor"
        f" saved {fo['lag_after_stored_s'] * 1000:.0f} ms after journald stored it); peak RSS"
        f" {fo['python_peak_rss_mb']} MB + journalctl {fo['journalctl_peak_rss_mb']} MB;"
        f" entries {fo['entries']:,} [{_ok(fo['entries_ok'])}], journalctl restarts"
        f" {fo['journalctl_restarts']}, incidents {len(fo['incidents'])} [{_ok(fo['incidents_ok'])}]"
    )


def readme_row(res: dict[str, Any]) -> str:
    ip, wp, fo = res["in_process"], res["whole_process"], res["follow"]
    alone = res["journalctl_alone"]["json"]
    return (
        f"{README_KEY} journal path, {res['entries'] / 1e6:g} M entries written by the host's"
        f" journald (stdout of `{UNIT}`), read through the real `journalctl -o json` child"
        f" (`python -m tests.bench.bench_journal_host`, {res['when']}, load"
        f" {res['load_average']})"
        f" | backlog {ip['entries_per_s'] / 1e3:.0f} k entries/s in process, peak RSS"
        f" {ip['python_peak_rss_mb']} MB + journalctl {ip['journalctl_peak_rss_mb']} MB"
        f" ({ip['journalctl_rss_anon_mb']} MB its own, the rest mapped journal files); whole"
        f" process {wp['entries_per_s'] / 1e3:.0f} k entries/s (start → last cursor saved),"
        f" {wp['python_peak_rss_mb']} MB + {wp['journalctl_peak_rss_mb']} MB; following"
        f" journald's writes, the last entry {fo['lag_after_stored_s']:.1f} s after"
        f" it was stored; "
        + (
            f"every entry read once, {len(ip['incidents'])} incident as expected"
            if res["ok"]
            else "entries or incidents WRONG"
        )
        + f" | the same `journalctl -o json` to /dev/null {alone['entries_per_s'] / 1e3:.0f} k"
        f" entries/s |"
    )


def update_readme(res: dict[str, Any]) -> None:
    """Put this bench's row in README's benchmark table, after the other remediator rows."""
    readme = ROOT / "README.md"
    lines = [line for line in readme.read_text().split("\n") if not line.startswith(README_KEY)]
    head = next(i for i, line in enumerate(lines) if line.startswith("| what | figure |"))
    at = head + 2
    for i in range(at, len(lines)):
        if not lines[i].startswith("|"):
            break
        if lines[i].startswith(("| remediator", "| `remediator")):
            at = i + 1
    lines.insert(at, readme_row(res))
    readme.write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="100 k entries instead of 1 M")
    ap.add_argument("--readme", action="store_true", help="also put the row in README's table")
    ap.add_argument("--readme-only", action="store_true", help="the row from the last JSON")
    ap.add_argument("--on-host", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--inject", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--seed", help=argparse.SUPPRESS)
    ap.add_argument("--last", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.on_host:
        if args.inject:
            guest_inject(args.inject)
        else:
            guest_main(args.seed, args.last)
        return
    if args.readme_only:
        update_readme(json.loads(OUT.read_text()))
        print("README.md: the sandbox journal row rewritten from", OUT)
        return

    def stop(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")  # the sandbox is torn down on the way out

    from tests.sandbox import harness

    why = harness.preflight()
    if why is not None:
        print(f"journal on a sandbox host: skipped ({why})")
        return
    signal.signal(signal.SIGTERM, stop)
    try:
        res = run(args.quick)
    except KeyboardInterrupt as exc:
        print(f"interrupted ({str(exc) or 'Ctrl-C'}): the sandbox host is down", file=sys.stderr)
        sys.exit(130)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(res, indent=2) + "\n")
    report(res)
    print(f"written: {OUT}")
    if not res["ok"]:
        print("NOT OK: entries or incidents differ from the generated ones (see above)")
    if args.readme:
        update_readme(res)
        print("README.md: the sandbox journal row rewritten")


if __name__ == "__main__":
    main()
