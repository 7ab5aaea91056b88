"""Benchmarks of the remediator, each printed beside its comparison and written as JSON.

The logs are generated here and are realistic: ``journalctl -o short-iso`` lines of the sync
(``TIMESTAMP HOST port-sheet-sync[PID]: [port-sheet] ...`` -- the prefix on every line, as the
sync's log file holds it), in the sync's mix (progress lines, a few ``sync ok``, transient and 429
errors), with 0.1 % of lines a token failure the rules count, and a second log with 10 %.
Comparisons run in the same run on the same files: ``grep -c``, ``grep -F -f`` and
``fail2ban-regex`` (Debian's fail2ban, installed here if missing; skipped with a note if not).

1. ingest: the live file path (FileTail → Matcher → Engine → state DB → store) of a
   ``Remediator`` in process, and the whole ``jada-agent remediator run`` process reading the
   log (file appears → position saved at its end; peak RSS). Targets: the packaged rules ≥ 5 M
   lines/s, one rule ≥ 10 M lines/s; 10 % matches ≤ 2× the 0.1 % time.
2. rules: 1, 4, 20 and 100 rules on the same log. Target: 100 rules ≤ 1.5× one rule.
3. replay: ``remediator replay`` in process and as a process (peak RSS) on the 1M log, on
   ``journalctl -o json`` exports of the same entries (1M, and 10M measured whole: 7.9 GB written
   here when the disk has room), and on a 10M-line log (constant memory).
   Targets ≥ 3 M lines/s, ≤ 64 MB at 10M lines, a 10M-entry export in ≤ 5 s.
4. journal: 1M entries through the live JournalSource's real ``journalctl -o json`` child,
   reading a journal file written on this machine by systemd-journal-remote (the same code path
   and journalctl binary, on a local journal directory); entries/s, the batches and the most
   events waiting in the core's queue, and the peak RSS of this process and of journalctl. The
   same path on a sandbox host, its own journald writing the entries, is
   ``tests/bench/bench_journal_host.py``.
5. detection: against a running ``jada-agent remediator run`` process, append the threshold-th
   matching line and time until the incident row is committed in the store (the bench polls the
   store every 0.2 ms). Target p50 ≤ 5 ms, p99 ≤ 30 ms over 200 trials.
6. first task: append → the first task of the remediation playbook running (the task touches a
   marker; its mtime is the moment), beside bare ``ansible-playbook`` start → the same marker,
   alternating in one run. Target p50 ≤ bare p50 + 50 ms.
7. footprint: the service with 10 watched files and one journal unit (the real journalctl),
   idle RSS and CPU over 60 s. Targets ≤ 30 MB, ≤ 0.1 %.

``python -m tests.bench.bench_remediator [--quick] [--only NAME] [--readme]``; results in
tests/bench/results/remediator.json; ``--readme`` (or ``--readme-only``, without running)
rewrites README's remediator rows from it.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = """---
- name: Mark the moment the first task runs.
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Touch the marker.
      ansible.builtin.command: "touch {{ marker_dir }}/{{ jada_group.trial }}"
      changed_when: true
"""
LINE = "[port-sheet] token error: HTTP Error 400: invalid_grant: Token has been expired or revoked."


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def settings_doc(tmp: Path, rules_dir: Path, **remediator: Any) -> dict[str, Any]:
    return {
        "host_name": "bench",
        "state_dir": str(tmp / "state"),
        "store": {"path": str(tmp / "state" / "store.db")},
        "remediator": {
            "rules_dirs": [str(rules_dir)],
            "state_db": str(tmp / "state" / "remediator.db"),
            "private_data_dir": str(tmp / "runner"),
            "lock_file": str(tmp / "run" / "remediation.lock"),
            **remediator,
        },
    }


def write_rules(rules_dir: Path, rules: list[dict[str, Any]]) -> None:
    rules_dir.mkdir(parents=True, exist_ok=True)
    (rules_dir / "50-bench.yml").write_text(yaml.safe_dump({"rules": rules}, sort_keys=False))


# --------------------------------------------------------------------------- logs

TOKEN = (
    "[port-sheet] token error: HTTP Error 400: invalid_grant: Token has been expired or revoked."
)
PROGRESS = [
    "[port-sheet] collected tab=Sessions rows={r} in {s:.2f}s",
    "[port-sheet] collected tab=Ports rows={r} listeners={n}",
    "[port-sheet] collected tab=Tasks rows={r} open={n}",
    "[port-sheet] wrote tab=Sessions rows={r} requests=1 in {s:.2f}s",
    "[port-sheet] deployed marker unchanged sha={h:08x}",
    "[port-sheet] credentials ok (authorized_user, expires in {n}h)",
]
T0 = 1778745600  # 2026-05-14T08:00:00Z


def _body(i: int, rnd: random.Random, match_every: int) -> str:
    """The sync log's mix: every line carries ``[port-sheet] ``; per 1000 lines 5 ``sync ok``
    (resolve lines), 2 ``api error: HTTP 429``, 10 ``transient error``, the failures the rules
    count (1 in ``match_every``), the rest progress lines no rule matches."""
    k = i % 1000
    if i % match_every == match_every - 1:
        return TOKEN
    if k % 200 == 17:
        return f"[port-sheet] sync ok rows={rnd.randint(1, 500)} requests=3 in {rnd.random():.2f}s"
    if k % 500 == 101:
        return (
            f"[port-sheet] api error: HTTP 429 Too Many Requests (retry {rnd.randint(1, 4)} of 4)"
        )
    if k % 100 == 33:
        return "[port-sheet] transient error: HTTP Error 503: Service Unavailable"
    return rnd.choice(PROGRESS).format(
        r=rnd.randint(1, 500), s=rnd.random(), h=rnd.getrandbits(32), n=rnd.randint(1, 9)
    )


def _records(n: int, match_every: int) -> Iterator[tuple[int, str, int]]:
    rnd = random.Random(7)
    for i in range(n):
        yield T0 + i * 2, _body(i, rnd, match_every), 812 + i // 5000


def write_lines(f: Any, lines: Iterable[str]) -> None:
    """Write ``lines`` to the open text file ``f``, ten thousand at a time."""
    buf: list[str] = []
    for line in lines:
        buf.append(line)
        if len(buf) >= 10000:
            f.write("\n".join(buf) + "\n")
            buf = []
    if buf:
        f.write("\n".join(buf) + "\n")


def make_log(path: Path, n: int, match_every: int = 1000) -> None:
    """The realistic log: ``journalctl -o short-iso`` lines as the sync's log file holds them."""
    with open(path, "w") as f:
        write_lines(
            f,
            (
                f"{time.strftime('%Y-%m-%dT%H:%M:%S+0000', time.gmtime(t))}"
                f" jada-host port-sheet-sync[{pid}]: {body}"
                for t, body, pid in _records(n, match_every)
            ),
        )


def make_json_export(path: Path, n: int, match_every: int = 1000) -> None:
    """The same entries as ``journalctl -o json`` writes them (the fields of a real entry).

    Byte for byte what ``json.dumps(entry, separators=(",", ":"))`` writes, with only the varying
    fields encoded per entry: a 10M-entry export (7.8 GB) is written in ~1 min, not ~2."""
    boot = "0123456789abcdef0123456789abcdef"
    machine = "3d1219c7c4c5404aaa1f6d2a48adfda4"
    dumps = json.dumps
    middle = (
        f'","_BOOT_ID":"{boot}","_MACHINE_ID":"{machine}","_HOSTNAME":"jada-host",'
        '"PRIORITY":"6","SYSLOG_FACILITY":"3","SYSLOG_IDENTIFIER":"port-sheet-sync","_PID":"'
    )
    tail = (
        '","_UID":"999","_GID":"999","_COMM":"jada-agent",'
        '"_EXE":"/opt/jada-agent/venv/bin/python3.11",'
        '"_CMDLINE":"/opt/jada-agent/venv/bin/python3 /opt/jada-agent/venv/bin/jada-agent sync",'
        '"_SYSTEMD_CGROUP":"/system.slice/port-sheet-sync.service",'
        '"_SYSTEMD_UNIT":"port-sheet-sync.service","_SYSTEMD_SLICE":"system.slice",'
        '"_TRANSPORT":"stdout","MESSAGE":'
    )
    with open(path, "w") as f:
        buf = []
        for i, (t, body, pid) in enumerate(_records(n, match_every)):
            us = t * 1000000
            buf.append(
                f'{{"__CURSOR":"s=05844266;i={i + 1:x};b={boot};m={i:x};t={us:x};x=be00",'
                f'"__REALTIME_TIMESTAMP":"{us}","__MONOTONIC_TIMESTAMP":"{1000000 + i}'
                f"{middle}{pid}{tail}{dumps(body)}}}"
            )
            if len(buf) >= 10000:
                f.write("\n".join(buf) + "\n")
                buf = []
        if buf:
            f.write("\n".join(buf) + "\n")


def ensure_tool(binary: str, package: str) -> str | None:
    """The path of ``binary``, installing Debian's ``package`` first if it is missing."""
    found = shutil.which(binary) or (binary if os.path.exists(binary) else None)
    if found:
        return found
    if os.geteuid() != 0:
        print(f"note: {binary} is missing and this is not root: comparison skipped")
        return None
    print(f"setup: installing {package} for the comparison", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    rc = subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
        env=env,
        capture_output=True,
    ).returncode
    found = shutil.which(binary) or (binary if os.path.exists(binary) else None)
    if rc != 0 or not found:
        print(f"note: {package} could not be installed (apt-get rc {rc}): comparison skipped")
        return None
    return found


def run_child(cmd: list[str], **kw: Any) -> tuple[float, float, float, subprocess.CompletedProcess]:
    """(wall s, CPU s, peak RSS MB) of one child process.

    The peak comes from GNU time (its own small process forks the command): the rusage of a
    child forked from this process would count this process's pages up to the exec.
    """
    timed = shutil.which("time") or "/usr/bin/time"
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss_file:
        full = (
            [timed, "-f", "%M %U %S", "-o", rss_file.name, *cmd] if os.path.exists(timed) else cmd
        )
        t0 = time.perf_counter()
        done = subprocess.run(full, capture_output=True, check=False, **kw)
        wall = time.perf_counter() - t0
        fields = rss_file.read().split()
    rss_mb = int(fields[-3]) / 1024 if len(fields) >= 3 else float("nan")
    cpu = float(fields[-2]) + float(fields[-1]) if len(fields) >= 3 else float("nan")
    return (
        wall,
        cpu,
        rss_mb,
        subprocess.CompletedProcess(cmd, done.returncode, done.stdout, done.stderr),
    )


def grep_c(path: Path, needle: str, runs: int = 3) -> dict[str, Any]:
    best = None
    for _ in range(runs):
        wall, cpu, rss, done = run_child(["grep", "-c", needle, str(path)])
        if best is None or wall < best[0]:
            best = (wall, cpu, rss, int(done.stdout.strip() or 0))
    assert best is not None
    return {"seconds": round(best[0], 4), "cpu_s": round(best[1], 4), "count": best[3]}


F2B_FILTER = """[Definition]
failregex = \\[port-sheet\\] token error: HTTP Error <F-ID>\\d{3}</F-ID>
ignoreregex = HTTP Error (?:5\\d\\d|429)\\b
datepattern = ^%%Y-%%m-%%dT%%H:%%M:%%S%%z
"""


def fail2ban_regex(path: Path, tmp: Path) -> dict[str, Any] | None:
    """fail2ban-regex with the token rule's regex on the same log (its offline tester)."""
    exe = ensure_tool("fail2ban-regex", "fail2ban")
    if exe is None:
        return None
    flt = tmp / "port-sheet.conf"
    # fail2ban needs a failure-id group in a failregex; the sync's lines name no host, so the
    # status is the id (<F-ID>), the group the token rule counts by. An optional <HOST>, as
    # this bench first had it, matched nothing ("0 matched"): no comparison at all.
    flt.write_text(F2B_FILTER)
    wall, cpu, rss, done = run_child([exe, "--print-no-missed", str(path), str(flt)])
    m = re.search(r"Lines: (\d+) lines, (\d+) ignored, (\d+) matched", done.stdout.decode())
    return {
        "seconds": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "peak_rss_mb": round(rss, 1),
        "rc": done.returncode,
        "matched": int(m.group(3)) if m else None,  # the same lines our token rule counts
        "summary": m.group(0) if m else done.stdout.decode(errors="replace")[-300:],
    }


def rules_on(path: Path, which: str, count: int = 1) -> list[dict[str, Any]]:
    """``pack``: the packaged rules pointed at ``path``; ``one``: its token rule alone;
    ``many``: the pack and ``count - 4`` more rules in its style (other failure lines)."""
    doc = yaml.safe_load((ROOT / "files" / "rules.d" / "50-port-sheet-sync.yml").read_text())
    pack = doc["rules"]
    for r in pack:
        r["source"] = {"file": str(path)}
    if which == "one":
        return pack[:1]
    if which == "pack":
        return pack
    rnd = random.Random(count)
    words = ["cache", "quota", "schema", "range", "lock", "merge", "batch", "export", "tab"]
    extra = []
    for i in range(count - len(pack)):
        kind = f"{rnd.choice(words)}-{i:03d}"
        extra.append(
            {
                "name": f"sheet-sync-{kind}",
                "source": {"file": str(path)},
                "match": rf"\[port-sheet\] {kind} error: (?P<code>\w+)",
                "threshold": 3,
                "within": "90m",
                "cooldown": "1h",
                "resolve": r"\[port-sheet\] sync ok\b",
            }
        )
    return pack + extra


# --------------------------------------------------------------------------- 1. ingest


def live_in_process(tmp: Path, src: Path, rules: list[dict[str, Any]], runs: int) -> dict[str, Any]:
    """The live path (FileTail → Matcher → Engine → state DB → store) of a ``Remediator``."""
    from agent import config
    from agent.remediator.service import Remediator

    times, cpus, fired = [], [], 0
    for trial in range(runs):
        d = tmp / f"live-{len(rules)}-{uuid.uuid4().hex[:6]}-{trial}"
        d.mkdir()
        log = d / "app.log"
        rules_dir = d / "rules.d"
        write_rules(rules_dir, [{**r, "source": {"file": str(log)}} for r in rules])
        s = config.from_dict(settings_doc(d, rules_dir), "bench")
        r = Remediator(s)
        r.apply_rules(r.load())  # the tail starts on an absent file: all of it will be new
        os.link(src, log)  # the same inode, page cache warm: the bench reads, never writes
        c0, t0 = time.process_time(), time.perf_counter()
        r.detection.read_file(str(log))
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        assert r.detection.stats.bytes == src.stat().st_size, (
            r.detection.stats.bytes,
            src.stat().st_size,
        )
        fired = len(r.store.list_incidents())
        r.store.close()
        r.state.close()
    return {"seconds": times, "cpu_s": cpus, "incidents": fired}


def live_whole_process(tmp: Path, src: Path, rules: list[dict[str, Any]]) -> dict[str, Any]:
    """``jada-agent remediator run`` reading the whole log: from the file appearing to its
    position saved at the end; peak RSS of the process."""
    d = tmp / f"proc-{len(rules)}-{uuid.uuid4().hex[:6]}"
    d.mkdir()
    log = d / "app.log"
    rules_dir = d / "rules.d"
    write_rules(rules_dir, [{**r, "source": {"file": str(log)}} for r in rules])
    doc = settings_doc(d, rules_dir)
    svc = Service(d, doc)
    size = src.stat().st_size
    db = sqlite3.connect(doc["remediator"]["state_db"], timeout=5)
    try:
        c0 = proc_cpu_seconds(svc.proc.pid)
        t0 = time.perf_counter()
        os.link(src, log)
        while True:
            row = db.execute(
                "SELECT offset FROM position WHERE key = ?", (f"file:{log}",)
            ).fetchone()
            if row and row[0] >= size:
                break
            if time.perf_counter() - t0 > 300:
                raise RuntimeError(f"whole-process ingest never finished\n{svc.log.read_text()}")
            time.sleep(0.002)
        wall = time.perf_counter() - t0
        cpu = proc_cpu_seconds(svc.proc.pid) - c0
        hwm = proc_status_mb(svc.proc.pid, "VmHWM")
    finally:
        db.close()
        svc.stop()
    return {"seconds": round(wall, 3), "cpu_s": round(cpu, 3), "peak_rss_mb": round(hwm, 1)}


def bench_ingest(tmp: Path, quick: bool) -> dict[str, Any]:
    from agent.remediator.fastpath import Prefilter

    n = 200_000 if quick else 1_000_000
    runs = 3 if quick else 5
    res: dict[str, Any] = {"lines": n, "load_average": os.getloadavg()[0]}
    for label, every in (("0.1%", 1000), ("10%", 10)):
        src = tmp / f"ingest-{every}.log"
        make_log(src, n, every)
        out: dict[str, Any] = {"bytes": src.stat().st_size}
        for which in ("pack", "one"):
            rules = rules_on(src, which)
            m = live_in_process(tmp, src, rules, runs)
            out[which] = {
                "rules": len(rules),
                "lines_per_s": round(n / min(m["seconds"])),
                "lines_per_s_median": round(n / statistics.median(m["seconds"])),
                "cpu_lines_per_s": round(n / min(m["cpu_s"])),
                "incidents": m["incidents"],
            }
            if every == 1000:
                w = live_whole_process(tmp, src, rules)
                out[which]["whole_process"] = {**w, "lines_per_s": round(n / w["seconds"])}
            if which == "pack":
                # Beside it, every pass by RE2 alone (what a dense pass's twin in ``re`` saves).
                Prefilter.engine = "re2"
                try:
                    r2 = live_in_process(tmp, src, rules, runs)
                finally:
                    Prefilter.engine = "auto"
                out["pack_re2_only"] = {
                    "lines_per_s": round(n / min(r2["seconds"])),
                    "cpu_lines_per_s": round(n / min(r2["cpu_s"])),
                }
        out["grep_c"] = grep_c(src, "token error")
        out["grep_c"]["lines_per_s"] = round(n / out["grep_c"]["seconds"])
        res[label] = out
        pk, one, g = out["pack"], out["one"], out["grep_c"]
        whole = (
            f"; whole process {pk['whole_process']['lines_per_s']:,}/s,"
            f" {pk['whole_process']['peak_rss_mb']} MB"
            if "whole_process" in pk
            else ""
        )
        print(
            f"ingest {label} matches: pack ({pk['rules']} rules) {pk['lines_per_s']:,} lines/s"
            f" (median {pk['lines_per_s_median']:,}{whole}) | 1 rule {one['lines_per_s']:,}/s"
            f" | grep -c {g['lines_per_s']:,}/s  [targets: pack ≥ 5 M, 1 rule ≥ 10 M]",
            flush=True,
        )
    res["ratio_10pct_vs_0.1pct"] = round(
        res["0.1%"]["pack"]["lines_per_s"] / res["10%"]["pack"]["lines_per_s"], 2
    )
    # The same ratio on CPU time: on a shared machine the wall time also counts waiting.
    res["ratio_10pct_vs_0.1pct_cpu"] = round(
        res["0.1%"]["pack"]["cpu_lines_per_s"] / res["10%"]["pack"]["cpu_lines_per_s"], 2
    )
    res["ratio_10pct_vs_0.1pct_cpu_re2_only"] = round(
        res["0.1%"]["pack_re2_only"]["cpu_lines_per_s"]
        / res["10%"]["pack_re2_only"]["cpu_lines_per_s"],
        2,
    )
    print(
        f"ingest 10 % vs 0.1 % matches (pack): {res['ratio_10pct_vs_0.1pct']}× wall,"
        f" {res['ratio_10pct_vs_0.1pct_cpu']}× CPU  [target ≤ 2]; every pass by RE2 alone"
        f" {res['ratio_10pct_vs_0.1pct_cpu_re2_only']}× CPU",
        flush=True,
    )
    f2b = fail2ban_regex(tmp / "ingest-1000.log", tmp)
    if f2b is not None:
        f2b["lines_per_s"] = round(n / f2b["seconds"])
        print(
            f"  fail2ban-regex (1 rule, same log): {f2b['lines_per_s']:,} lines/s,"
            f" {f2b['peak_rss_mb']} MB, {f2b['matched']} lines matched"
        )
    res["fail2ban_regex"] = f2b
    res["met"] = (
        res["0.1%"]["pack"]["lines_per_s"] >= 5_000_000
        and res["0.1%"]["one"]["lines_per_s"] >= 10_000_000
    )
    return res


# --------------------------------------------------------------------------- 2. rules


def bench_rules(tmp: Path, quick: bool) -> dict[str, Any]:
    """1, 4 (the pack), 20 and 100 rules on the same log: the cost of more rules."""
    n = 200_000 if quick else 1_000_000
    src = tmp / "rules.log"
    make_log(src, n)
    res: dict[str, Any] = {"lines": n}
    for count in (1, 4, 20, 100):
        rules = rules_on(src, "one" if count == 1 else "pack" if count == 4 else "many", count)
        m = live_in_process(tmp, src, rules, 3)
        res[str(count)] = {
            "seconds": round(min(m["seconds"]), 4),
            "lines_per_s": round(n / min(m["seconds"])),
        }
    lits = tmp / "literals.txt"
    lits.write_text(
        "\n".join(["token error: ", "sync ok"] + [f"{i:03d} error: " for i in range(98)]) + "\n"
    )
    wall, _cpu, _rss, _ = min(
        (run_child(["grep", "-c", "-F", "-f", str(lits), str(src)]) for _ in range(3)),
        key=lambda x: x[0],
    )
    res["grep_F_f_100_seconds"] = round(wall, 4)
    res["ratio_100_vs_1"] = round(res["100"]["seconds"] / res["1"]["seconds"], 2)
    res["met"] = res["ratio_100_vs_1"] <= 1.5
    print(
        "rules: "
        + " | ".join(f"{c}: {res[str(c)]['seconds']} s" for c in (1, 4, 20, 100))
        + f" | 100 vs 1: {res['ratio_100_vs_1']}× (target ≤ 1.5×) | grep -F -f (100 literals)"
        f" {res['grep_F_f_100_seconds']} s  [{'met' if res['met'] else 'NOT met'}]",
        flush=True,
    )
    return res


# --------------------------------------------------------------------------- 3. replay


def replay_cli(rules_dir: Path, log: Path) -> tuple[float, float, float, dict[str, Any]]:
    wall, cpu, rss, done = run_child(
        [sys.executable, "-m", "agent", "remediator", "replay", "--rules-dir", str(rules_dir),
         str(log), "--json"],
        cwd=ROOT,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(done.stderr.decode(errors="replace")[-2000:])
    return wall, cpu, rss, json.loads(done.stdout)


def bench_replay(tmp: Path, quick: bool) -> dict[str, Any]:
    from agent.remediator.replay import replay
    from agent.remediator.rules import load_rules

    # The whole-process runs start as an installed agent does: its modules byte-compiled (pip
    # compiles them at install). A source tree may have none (PYTHONDONTWRITEBYTECODE), and
    # then every run would compile ~40 modules first (~30 ms of a 1M-line replay's ~330).
    compileall.compile_dir(ROOT / "agent", quiet=1)
    n = 200_000 if quick else 1_000_000
    big = 1_000_000 if quick else 10_000_000
    res: dict[str, Any] = {"lines": n, "load_average": os.getloadavg()[0]}
    src = tmp / "replay.log"
    make_log(src, n)
    for which in ("pack", "one"):
        rules_dir = tmp / f"replay-rules-{which}"
        write_rules(rules_dir, rules_on(Path("/var/log/x.log"), which))
        rules = load_rules([rules_dir]).rules
        best = min(_timed(lambda r=rules: replay(r, [str(src)])) for _ in range(3))
        # best of three whole-process runs: a shared machine's other work only adds time
        wall, _cpu, rss, rep = min(
            (replay_cli(rules_dir, src) for _ in range(3)), key=lambda x: x[0]
        )
        res[which] = {
            "in_process_lines_per_s": round(n / best),
            "whole_process_lines_per_s": round(n / wall),
            "whole_process_seconds": round(wall, 3),
            "peak_rss_mb": round(rss, 1),
            "fired": sum(len(r["fired"]) for r in rep["rules"]),
        }
        print(
            f"replay {which} ({len(rules)} rules), {n:,} lines: in process"
            f" {res[which]['in_process_lines_per_s']:,}/s, whole process"
            f" {res[which]['whole_process_lines_per_s']:,}/s, {res[which]['peak_rss_mb']} MB"
            "  [target ≥ 3 M/s]",
            flush=True,
        )
    # The journal export: the same entries as journalctl -o json writes them, 1M and 10M.
    export = tmp / "replay.json"
    make_json_export(export, n)
    rules_dir = tmp / "replay-rules-journal"
    journal_pack = rules_on(Path("/var/log/x.log"), "pack")
    for r in journal_pack:
        r["source"] = {"journal": {"unit": "port-sheet-sync.service"}}
    write_rules(rules_dir, journal_pack)
    wall, cpu, rss, rep = min((replay_cli(rules_dir, export) for _ in range(3)), key=lambda x: x[0])
    journal_rules = load_rules([rules_dir]).rules
    cpu_best = min(_cpu_timed(lambda: replay(journal_rules, [str(export)])) for _ in range(3))
    size = export.stat().st_size
    res["json_export"] = {
        "entries": n,
        "bytes": size,
        "whole_process_lines_per_s": round(n / wall),
        "seconds": round(wall, 3),
        "cpu_seconds": round(cpu, 2),
        "peak_rss_mb": round(rss, 1),
        "fired": sum(len(r["fired"]) for r in rep["rules"]),
        # best of three in process, CPU time: what the machine's other work does not inflate
        "in_process_cpu_s": round(cpu_best, 2),
    }
    export.unlink()
    print(
        f"replay json export, {n:,} entries ({size / 1e6:.0f} MB): {wall:.2f} s,"
        f" {res['json_export']['whole_process_lines_per_s']:,} entries/s,"
        f" {res['json_export']['peak_rss_mb']} MB (in process {cpu_best:.2f} s CPU)",
        flush=True,
    )
    # The same at ten times the entries: measured, not projected (7.9 GB written here).
    need = size * big // n * 6 // 5
    free = shutil.disk_usage(tmp).free
    if free < need:
        print(f"note: {free / 1e9:.1f} GB free, {need / 1e9:.1f} GB needed: 10M export skipped")
        res["json_export_large"] = {"skipped": f"{free / 1e9:.1f} GB free, {need / 1e9:.1f} needed"}
    else:
        export = tmp / "replay-large.json"
        make_json_export(export, big)
        wall, cpu, rss, rep = min(
            (replay_cli(rules_dir, export) for _ in range(3)), key=lambda x: x[0]
        )
        res["json_export_large"] = {
            "entries": big,
            "bytes": export.stat().st_size,
            "seconds": round(wall, 2),
            "cpu_seconds": round(cpu, 2),
            "entries_per_s": round(big / wall),
            "peak_rss_mb": round(rss, 1),
            "fired": sum(len(r["fired"]) for r in rep["rules"]),
            "load_average": round(os.getloadavg()[0], 2),
        }
        export.unlink()
        j = res["json_export_large"]
        print(
            f"replay json export, {big:,} entries ({j['bytes'] / 1e9:.1f} GB): {wall:.2f} s"
            f" whole process ({cpu:.2f} s CPU), {j['entries_per_s']:,} entries/s,"
            f" {j['peak_rss_mb']} MB  [target ≤ 5 s, ≤ 64 MB]",
            flush=True,
        )
    # Constant memory: the same replay over a log ten times the size.
    large = tmp / "replay-large.log"
    make_log(large, big)
    wall, _cpu, rss, rep = replay_cli(tmp / "replay-rules-pack", large)
    res["large"] = {
        "lines": big,
        "seconds": round(wall, 2),
        "lines_per_s": round(big / wall),
        "peak_rss_mb": round(rss, 1),
        "fired": sum(len(r["fired"]) for r in rep["rules"]),
    }
    print(
        f"replay pack, {big:,} lines: {wall:.2f} s, {res['large']['peak_rss_mb']} MB peak RSS"
        "  [target ≤ 64 MB]",
        flush=True,
    )
    f2b = fail2ban_regex(src, tmp)
    if f2b is not None:
        f2b["lines_per_s"] = round(n / f2b["seconds"])
        print(
            f"  fail2ban-regex, {n:,} lines: {f2b['lines_per_s']:,}/s, {f2b['peak_rss_mb']} MB,"
            f" {f2b['matched']} matched"
        )
    res["fail2ban_regex"] = f2b
    large.unlink()
    res["met"] = (
        res["pack"]["whole_process_lines_per_s"] >= 3_000_000 and res["large"]["peak_rss_mb"] <= 64
    )
    jl = res["json_export_large"]
    res["json_met"] = "seconds" in jl and jl["seconds"] <= 5 and jl["peak_rss_mb"] <= 64
    return res


def _cpu_timed(fn: Any) -> float:
    c0 = time.process_time()
    fn()
    return time.process_time() - c0


def _timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- 4. journal


def write_journal_file(path: Path, n: int, machine: str) -> str:
    """Journal files (in ``path``'s directory: journal-remote rotates a large one) of a seed
    entry and ``n`` sync entries, written by systemd-journal-remote from the export format;
    returns the seed entry's cursor."""
    exe = ensure_tool("/lib/systemd/systemd-journal-remote", "systemd-journal-remote")
    if exe is None:
        raise FileNotFoundError("systemd-journal-remote")
    proc = subprocess.Popen(
        [exe, "-o", str(path), "-"], stdin=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdin is not None
    boot = "0123456789abcdef0123456789abcdef"

    def entry(i: int, t: int, body: str) -> bytes:
        return (
            f"__REALTIME_TIMESTAMP={t * 1000000 + i % 1000}\n__MONOTONIC_TIMESTAMP={1000000 + i}\n"
            f"_BOOT_ID={boot}\n_MACHINE_ID={machine}\n_HOSTNAME=jada-host\nPRIORITY=6\n"
            f"SYSLOG_IDENTIFIER=port-sheet-sync\n_PID=812\n_UID=999\n_COMM=jada-agent\n"
            f"_SYSTEMD_UNIT=port-sheet-sync.service\n_TRANSPORT=stdout\nMESSAGE={body}\n\n"
        ).encode()

    buf = [entry(0, T0 - 10, "[port-sheet] seed")]
    for i, (t, body, _pid) in enumerate(_records(n, 1000), 1):
        buf.append(entry(i, t, body))
        if len(buf) >= 10000:
            proc.stdin.write(b"".join(buf))
            buf = []
    proc.stdin.write(b"".join(buf))
    proc.stdin.close()
    if proc.wait() != 0:
        raise RuntimeError(proc.stderr.read().decode() if proc.stderr else "journal-remote failed")
    out = subprocess.run(
        ["journalctl", f"--directory={path.parent}", "-o", "json", "-n", "1", "--reverse",
         "--no-pager", "MESSAGE=[port-sheet] seed"],
        capture_output=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.splitlines()[0])["__CURSOR"]


def bench_journal(tmp: Path, quick: bool) -> dict[str, Any]:
    """The deployed default: entries through the real ``journalctl -o json`` child of the live
    JournalSource, from a journal file written on this machine (systemd-journal-remote)."""
    from agent import config
    from agent.remediator.service import Remediator
    from agent.remediator.sources.journald import _machine_id

    n = 100_000 if quick else 1_000_000
    machine = _machine_id() or "3d1219c7c4c5404aaa1f6d2a48adfda4"
    jdir = tmp / "journal"
    jdir.mkdir()
    jfile = jdir / "bench.journal"
    try:
        seed = write_journal_file(jfile, n, machine)
    except (FileNotFoundError, RuntimeError) as exc:
        print(f"journal: skipped ({exc})")
        return {"skipped": str(exc)}
    wrapper = tmp / "journalctl"
    wrapper.write_text(f'#!/bin/sh\nexec journalctl --directory={jdir} "$@"\n')
    wrapper.chmod(0o755)
    rules_dir = tmp / "journal-rules"
    pack = rules_on(Path("/var/log/x.log"), "pack")
    for r in pack:
        r["source"] = {"journal": {"unit": "port-sheet-sync.service"}}
    write_rules(rules_dir, pack)
    s = config.from_dict(settings_doc(tmp, rules_dir), "bench")
    r = Remediator(s, journalctl=str(wrapper))
    r.state.save_cursor("journal", seed)  # resume after the seed: every entry is new
    rss0 = proc_status_mb(os.getpid(), "VmRSS")
    r.apply_rules(r.load())
    assert r.detection.journal is not None
    seen = 0
    child_hwm = 0.0
    most_waiting = 0  # events left in the core's queue: bounded by the reader's batches
    t0 = time.perf_counter()
    c0 = time.process_time()
    r.detection.journal.start()
    batches = 0
    while seen < n:
        event = r.q.get(timeout=60)
        if event[0] == "journal":
            seen += len(event[1])
            batches += 1
            most_waiting = max(most_waiting, r.q.qsize())
        r.dispatch(event)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    if r.detection.journal.proc is not None:
        child_hwm = max(child_hwm, proc_status_mb(r.detection.journal.proc.pid, "VmHWM"))
        child_cpu = proc_cpu_seconds(r.detection.journal.proc.pid)
    else:
        child_cpu = 0.0
    hwm = proc_status_mb(os.getpid(), "VmHWM")
    fired = len(r.store.list_incidents())
    r.detection.journal.stop()
    r.store.close()
    r.state.close()
    res = {
        "entries": n,
        "seconds": round(wall, 2),
        "lines_per_s": round(n / wall),
        "remediator_cpu_s": round(cpu, 2),
        "journalctl_cpu_s": round(child_cpu, 2),
        "remediator_rss_mb_before": round(rss0, 1),
        "remediator_peak_rss_mb": round(hwm, 1),
        "journalctl_peak_rss_mb": round(child_hwm, 1),
        "total_peak_rss_mb": round(hwm + child_hwm, 1),
        "batches": batches,
        "most_events_waiting": most_waiting,
        "incidents": fired,
        "load_average": round(os.getloadavg()[0], 2),
    }
    print(
        f"journal: {n:,} entries through journalctl -o json: {res['lines_per_s']:,} entries/s"
        f" ({wall:.1f} s; CPU remediator {cpu:.1f} s + journalctl {child_cpu:.1f} s); peak RSS"
        f" bench process {res['remediator_peak_rss_mb']} MB + journalctl"
        f" {res['journalctl_peak_rss_mb']} MB; {batches:,} batches, at most {most_waiting}"
        " waiting",
        flush=True,
    )
    return res


# --------------------------------------------------------------------------- service helper


class Service:
    def __init__(self, tmp: Path, doc: dict[str, Any]):
        self.cfg = tmp / "agent.yml"
        self.cfg.write_text(yaml.safe_dump(doc))
        self.log = tmp / "service.log"
        self.store_path = doc["store"]["path"]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "-c", str(self.cfg), "remediator", "run"],
            stdout=subprocess.DEVNULL,
            stderr=open(self.log, "wb"),  # noqa: SIM115
            cwd=ROOT,
        )
        deadline = time.monotonic() + 30
        while "remediator ready" not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(self.log.read_text())
            time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)


def append(path: Path, text: str) -> float:
    with open(path, "a") as f:
        t = time.time()
        f.write(text)
    return t


# --------------------------------------------------------------------------- 2. detection


def bench_detection(tmp: Path, quick: bool) -> dict[str, Any]:
    d = tmp / "detect"
    d.mkdir()
    log = d / "sync.log"
    log.write_text("")
    rules_dir = d / "rules.d"
    write_rules(
        rules_dir,
        [
            {
                "name": "sheet-sync-token",
                "source": {"file": str(log)},
                "match": r"\[port-sheet\] token error: HTTP Error (?P<status>\d+).* trial=(?P<trial>\d+)",
                "threshold": 3,
                "within": "90m",
                "group_by": ["trial"],
                "cooldown": "6h",
            }
        ],
    )
    svc = Service(d, settings_doc(d, rules_dir))
    trials = 50 if quick else 200
    lat = []
    db = sqlite3.connect(svc.store_path, timeout=5)
    try:
        for i in range(trials):
            append(log, f"{LINE} trial={i}\n{LINE} trial={i}\n")
            time.sleep(0.01)
            t0 = append(log, f"{LINE} trial={i}\n")
            while True:
                row = db.execute(
                    "SELECT count(*) FROM incidents WHERE grp = ?", (json.dumps({"trial": str(i)}),)
                ).fetchone()
                if row[0]:
                    break
                if time.time() - t0 > 5:
                    raise RuntimeError(f"trial {i}: no incident\n{svc.log.read_text()[-2000:]}")
                time.sleep(0.0002)
            lat.append((time.time() - t0) * 1000)
            time.sleep(0.005)
    finally:
        db.close()
        svc.stop()
    res = {
        "trials": trials,
        "p50_ms": round(statistics.median(lat), 3),
        "p99_ms": round(pct(lat, 99), 3),
        "max_ms": round(max(lat), 3),
        "target": {"p50_ms": 5, "p99_ms": 30},
    }
    res["met"] = res["p50_ms"] <= 5 and res["p99_ms"] <= 30
    print(
        f"detection: p50 {res['p50_ms']} ms, p99 {res['p99_ms']} ms, max {res['max_ms']} ms"
        f" over {trials}  | fail2ban 359 ms, ansible-rulebook 846 ms (append → action)"
        f"  [{'met' if res['met'] else 'NOT met'}]"
    )
    return res


# --------------------------------------------------------------------------- 3. first task


def wait_file(path: Path, timeout: float = 60) -> float:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} never appeared")
        time.sleep(0.002)
    return path.stat().st_mtime_ns / 1e9


def ansible_playbook_start(needle: bytes) -> float | None:
    """Epoch start time of the oldest running ansible-playbook whose command line has needle."""
    hz = os.sysconf("SC_CLK_TCK")
    best = None
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"ansible-playbook" not in cmd or needle not in cmd:
                continue
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        ticks = int(stat.rsplit(")", 1)[1].split()[19])
        best = ticks if best is None else min(best, ticks)
    if best is None:
        return None
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return time.time() - (uptime - best / hz)


def bench_first_task(tmp: Path, quick: bool) -> dict[str, Any]:
    d = tmp / "firsttask"
    pdd = d / "runner"
    (pdd / "project").mkdir(parents=True)
    (pdd / "project" / "first.yml").write_text(PLAYBOOK)
    markers = d / "markers"
    markers.mkdir()
    log = d / "sync.log"
    log.write_text("")
    rules_dir = d / "rules.d"
    write_rules(
        rules_dir,
        [
            {
                "name": "first-task",
                "source": {"file": str(log)},
                "match": r"token error: HTTP Error (?P<status>\d+).* trial=(?P<trial>\w+)",
                "threshold": 3,
                "within": "90m",
                "group_by": ["trial"],
                "cooldown": "6h",
                "action": {
                    "playbook": "first.yml",
                    "extravars": {"marker_dir": str(markers)},
                    "timeout": "2m",
                },
            }
        ],
    )
    svc = Service(d, settings_doc(d, rules_dir, private_data_dir=str(pdd)))
    inv = d / "inventory.ini"
    inv.write_text(
        f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n"
    )
    bare_env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", str(d)),
        "LANG": "C.UTF-8",
        "ANSIBLE_LOCALHOST_WARNING": "False",
    }
    trials = 3 if quick else 10
    ours, bare = [], []
    spawn: list[float] = []
    under_runner: list[float] = []
    try:
        for i in range(trials):
            # bare ansible-playbook: process start → first task
            name = f"bare{i}"
            t0 = time.time()
            p = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "ansible-playbook"),
                    "-i",
                    str(inv),
                    str(pdd / "project" / "first.yml"),
                    "-e",
                    json.dumps({"marker_dir": str(markers), "jada_group": {"trial": name}}),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=bare_env,
                cwd=pdd / "project",  # where ansible-runner runs it: the same (no) ansible.cfg
            )
            bare.append((wait_file(markers / name) - t0) * 1000)
            p.wait()
            # the remediator: append of the threshold-th line → first task
            name = f"r{i}"
            append(log, f"{LINE} trial={name}\n{LINE} trial={name}\n")
            time.sleep(0.05)
            t0 = append(log, f"{LINE} trial={name}\n")
            mark = wait_file(markers / name)
            ours.append((mark - t0) * 1000)
            started = ansible_playbook_start(b"first.yml")
            if started is not None:
                spawn.append((started - t0) * 1000)  # the remediator's own share
                under_runner.append((mark - started) * 1000)  # Ansible's, under ansible-runner
            # let the run finish (the lock) before the next trial
            deadline = time.monotonic() + 60
            while svc.log.read_text(errors="replace").count("first.yml successful") < i + 1:
                if time.monotonic() > deadline:
                    raise RuntimeError(svc.log.read_text()[-3000:])
                time.sleep(0.02)
    finally:
        svc.stop()
    res = {
        "trials": trials,
        "remediator_p50_ms": round(statistics.median(ours), 1),
        "bare_ansible_playbook_p50_ms": round(statistics.median(bare), 1),
        "remediator_ms": [round(x, 1) for x in ours],
        "bare_ms": [round(x, 1) for x in bare],
    }
    res["overhead_p50_ms"] = round(
        res["remediator_p50_ms"] - res["bare_ansible_playbook_p50_ms"], 1
    )
    res["paired_overhead_p50_ms"] = round(
        statistics.median(o - b for o, b in zip(ours, bare, strict=True)), 1
    )
    if spawn:
        # The decomposition, with ~10 ms resolution (process start times from /proc): append →
        # ansible-playbook exec'd is the remediator's doing; exec → first task is Ansible's.
        res["append_to_exec_p50_ms"] = round(statistics.median(spawn), 1)
        res["exec_to_first_task_under_runner_p50_ms"] = round(statistics.median(under_runner), 1)
    res["met"] = res["overhead_p50_ms"] <= 50
    print(
        f"first task: remediator p50 {res['remediator_p50_ms']} ms | bare ansible-playbook p50"
        f" {res['bare_ansible_playbook_p50_ms']} ms | overhead {res['overhead_p50_ms']} ms"
        f" (paired {res['paired_overhead_p50_ms']} ms; append → exec"
        f" {res.get('append_to_exec_p50_ms')} ms) (target ≤ 50; ansible-rulebook 846 ms)"
        f"  [{'met' if res['met'] else 'NOT met'}]"
    )
    return res


# --------------------------------------------------------------------------- 4. footprint


def proc_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status_mb(pid: int, field: str) -> float:
    """A memory figure of /proc/PID/status (VmRSS, VmHWM) in MB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def proc_rss_mb(pid: int) -> float:
    return proc_status_mb(pid, "VmRSS")


def bench_footprint(tmp: Path, quick: bool) -> dict[str, Any]:
    d = tmp / "footprint"
    logs = d / "logs"
    logs.mkdir(parents=True)
    rules = []
    for i in range(10):
        p = logs / f"app{i}.log"
        p.write_text("hello\n")
        rules.append(
            {
                "name": f"file-{i}",
                "source": {"file": str(p)},
                "match": r"token error: HTTP Error (?P<status>\d+)",
                "threshold": 3,
                "within": "90m",
            }
        )
    rules.append(
        {
            "name": "journal-unit",
            "source": {"journal": {"unit": "port-sheet-sync.service"}},
            "match": r"token error: HTTP Error (?P<status>\d+)",
            "threshold": 3,
            "within": "90m",
        }
    )
    rules_dir = d / "rules.d"
    write_rules(rules_dir, rules)
    svc = Service(d, settings_doc(d, rules_dir))
    window = 10.0 if quick else 60.0
    try:
        time.sleep(3)
        c0, t0 = proc_cpu_seconds(svc.proc.pid), time.monotonic()
        time.sleep(window)
        c1, t1 = proc_cpu_seconds(svc.proc.pid), time.monotonic()
        rss = proc_rss_mb(svc.proc.pid)
        children = [
            int(t)
            for task in Path(f"/proc/{svc.proc.pid}/task").iterdir()
            for t in (task / "children").read_text().split()
        ]
        child_rss = {str(c): round(proc_rss_mb(c), 1) for c in children}
    finally:
        svc.stop()
    cpu_pct = (c1 - c0) / (t1 - t0) * 100
    res = {
        "window_s": window,
        "rss_mb": round(rss, 1),
        "cpu_percent": round(cpu_pct, 3),
        "journalctl_child_rss_mb": child_rss,
        "target": {"rss_mb": 30, "cpu_percent": 0.1},
    }
    res["met"] = rss <= 30 and cpu_pct <= 0.1
    print(
        f"footprint: RSS {res['rss_mb']} MB, CPU {res['cpu_percent']} % over {window:.0f} s"
        f" (journalctl child {child_rss} MB)  | fail2ban 22–38 MB, ansible-rulebook 121 MB"
        f"  [{'met' if res['met'] else 'NOT met'}]"
    )
    return res


# journal first: its peak RSS is then the remediator's, not earlier parts' data
PARTS = ["journal", "ingest", "rules", "replay", "detection", "first_task", "footprint"]
OUT = ROOT / "tests" / "bench" / "results" / "remediator.json"


def readme_rows(results: dict[str, Any]) -> list[str]:
    """README's ingest/replay rows, from the JSON this bench wrote."""
    rows = []
    i = results.get("ingest")
    if i:
        a, b = i["0.1%"], i["10%"]
        w = a["pack"].get("whole_process", {})
        f2b = i.get("fail2ban_regex") or {}
        rows.append(
            f"| remediator ingest, packaged rules (4), 1 M realistic lines, 0.1 % / 10 % matches"
            f" | {a['pack']['lines_per_s'] / 1e6:.1f} M / {b['pack']['lines_per_s'] / 1e6:.1f} M"
            f" lines/s in process; whole process {w.get('lines_per_s', 0) / 1e6:.1f} M lines/s,"
            f" {w.get('peak_rss_mb', '?')} MB | `grep -c` {a['grep_c']['lines_per_s'] / 1e6:.1f} M"
            f" lines/s; fail2ban-regex {f2b.get('lines_per_s', 0) / 1e3:.0f} k lines/s |"
        )
        if "ratio_10pct_vs_0.1pct_cpu" in i:
            rows.append(
                f"| remediator ingest, 10 % matches vs 0.1 % (time) | {i['ratio_10pct_vs_0.1pct']}×"
                f" wall, {i['ratio_10pct_vs_0.1pct_cpu']}× CPU | every pass by RE2 alone (no"
                f" twin in `re` for a dense pass): {i.get('ratio_10pct_vs_0.1pct_cpu_re2_only', '?')}×"
                " CPU |"
            )
        rows.append(
            f"| remediator ingest, one rule | {a['one']['lines_per_s'] / 1e6:.1f} M lines/s in"
            f" process; whole process {a['one'].get('whole_process', {}).get('lines_per_s', 0) / 1e6:.1f}"
            " M lines/s | — |"
        )
    r = results.get("rules")
    if r:
        rows.append(
            f"| remediator rules 1 / 4 / 20 / 100, 1 M lines | {r['1']['seconds']} /"
            f" {r['4']['seconds']} / {r['20']['seconds']} / {r['100']['seconds']} s"
            f" ({r['ratio_100_vs_1']}× for 100) | `grep -F -f` 100 literals"
            f" {r['grep_F_f_100_seconds']} s |"
        )
    p = results.get("replay")
    if p:
        f2b = p.get("fail2ban_regex") or {}
        rows.append(
            f"| `remediator replay`, packaged rules, 1 M lines | {p['pack']['whole_process_lines_per_s'] / 1e6:.1f} M"
            f" lines/s, {p['pack']['peak_rss_mb']} MB (in process"
            f" {p['pack']['in_process_lines_per_s'] / 1e6:.1f} M/s); {p['large']['lines'] / 1e6:.0f} M lines"
            f" {p['large']['seconds']} s,"
            f" {p['large']['peak_rss_mb']} MB | fail2ban-regex {f2b.get('lines_per_s', 0) / 1e3:.0f} k"
            f" lines/s, {f2b.get('peak_rss_mb', '?')} MB |"
        )
        j, jl = p["json_export"], p.get("json_export_large") or {}
        if "seconds" in jl:
            rows.append(
                f"| `remediator replay` of a `journalctl -o json` export, {jl['entries'] / 1e6:.0f} M"
                f" entries ({jl['bytes'] / 1e9:.1f} GB) | {jl['seconds']} s whole process"
                f" ({jl['entries_per_s'] / 1e6:.1f} M entries/s, {jl['cpu_seconds']} s CPU),"
                f" {jl['peak_rss_mb']} MB; {j['entries'] / 1e6:g} M entries ({j['bytes'] / 1e6:.0f} MB)"
                f" {j['seconds']} s"
                f" (in process {j['in_process_cpu_s']} s CPU) | — |"
            )
        else:
            rows.append(
                f"| `remediator replay` of a `journalctl -o json` export,"
                f" {j['entries'] / 1e6:g} M entries ({j['bytes'] / 1e6:.0f} MB) | {j['whole_process_lines_per_s'] / 1e6:.1f} M"
                f" entries/s, {j['peak_rss_mb']} MB (10 M not measured:"
                f" {jl.get('skipped', 'not run')}) | — |"
            )
    jr = results.get("journal")
    if jr and "skipped" not in jr:
        rows.append(
            f"| remediator journal path, 1 M entries through `journalctl -o json` (a backlog;"
            " journal files written here by systemd-journal-remote, not on a sandbox host)"
            f" | {jr['lines_per_s'] / 1e3:.0f} k entries/s; peak RSS {jr['remediator_peak_rss_mb']}"
            f" MB (the process; {jr.get('batches', '?'):,} batches, at most"
            f" {jr.get('most_events_waiting', '?')} waiting) + journalctl"
            f" {jr['journalctl_peak_rss_mb']} MB (mapped journal files) | — |"
        )
    d = results.get("detection")
    if d:
        rows.append(
            f"| remediator detection latency (line appended → incident) | p50 {d['p50_ms']} ms,"
            f" p99 {d['p99_ms']} ms | — |"
        )
    ft = results.get("first_task")
    if ft:
        rows.append(
            f"| remediator: line appended → first playbook task | {ft['remediator_p50_ms']:.0f} ms"
            f" | bare `ansible-playbook` of the same playbook: {ft['bare_ansible_playbook_p50_ms']:.0f}"
            " ms |"
        )
    fp = results.get("footprint")
    if fp:
        rows.append(f"| remediator idle | RSS {fp['rss_mb']} MB, CPU {fp['cpu_percent']} % | — |")
    return rows


def update_readme(results: dict[str, Any]) -> None:
    """Replace README's remediator ingest/replay rows (and their date line) with ``results``."""
    readme = ROOT / "README.md"
    lines = readme.read_text().split("\n")
    rows = readme_rows(results)
    keys = ("| remediator ingest", "| remediator log ingest", "| remediator rules",
            "| `remediator replay`", "| remediator journal path", "| remediator idle",
            "| remediator detection latency", "| remediator: line appended")  # fmt: skip
    at = next(i for i, line in enumerate(lines) if line.startswith("| what | figure |")) + 2
    kept = [line for line in lines if not line.startswith(keys)]
    at = next(i for i, line in enumerate(kept) if line.startswith("| what | figure |")) + 2
    kept[at:at] = rows
    ran = [
        f"{name} {r['ran']['when']} (load {r['ran']['load_average']})"
        for name, r in results.items()
        if isinstance(r, dict) and "ran" in r
    ]
    note = (
        "Remediator rows: `python -m tests.bench.bench_remediator --readme` on this machine"
        f" (2 cores, shared), {'; '.join(ran) or results.get('when', '?')}."
    )
    notes = ("Remediator rows:", "Remediator ingest")
    # the note goes, and the blank line that set it off from the table
    kept = [
        line
        for i, line in enumerate(kept)
        if not line.startswith(notes)
        and not (not line and i + 1 < len(kept) and kept[i + 1].startswith(notes))
    ]
    end = next(i for i in range(at, len(kept)) if not kept[i].startswith("|"))
    kept[end:end] = ["", note]
    readme.write_text("\n".join(kept))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller runs (CI smoke)")
    ap.add_argument("--only", action="append", choices=PARTS)
    ap.add_argument("--readme", action="store_true", help="rewrite README's rows from the JSON")
    ap.add_argument(
        "--readme-only", action="store_true", help="rewrite README's rows from the last JSON"
    )
    args = ap.parse_args()
    if args.readme_only:
        update_readme(json.loads(OUT.read_text()))
        print("README.md: benchmark rows rewritten from", OUT)
        return
    which = args.only or PARTS
    results: dict[str, Any] = json.loads(OUT.read_text()) if args.only and OUT.exists() else {}
    results.update(
        {
            "quick": args.quick,
            "cpus": os.cpu_count(),
            "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "load_average": round(os.getloadavg()[0], 2),
        }
    )
    with tempfile.TemporaryDirectory(prefix="bench-remediator-") as t:
        tmp = Path(t)
        for name in which:
            sub = tmp / name
            sub.mkdir()
            results[name] = globals()[f"bench_{name}"](sub, args.quick)
            results[name]["ran"] = {
                "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "load_average": round(os.getloadavg()[0], 2),
            }
            OUT.parent.mkdir(parents=True, exist_ok=True)
            OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written: {OUT}")
    if args.readme:
        update_readme(results)
        print("README.md: benchmark rows rewritten")


if __name__ == "__main__":
    main()
