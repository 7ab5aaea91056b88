"""Benchmarks of the remediator, each printed beside its comparison and written as JSON.

1. ingest: a 1M-line log (~100 bytes a line, 0.1 % matches) read through the real path
   (FileTail → Matcher → Engine → state DB → store) of a ``Remediator``, beside ``grep -c`` on
   the same file in the same run. Target ≥ 3,000,000 lines/s.
2. detection: against a running ``jada-agent remediator run`` process, append the threshold-th
   matching line and time until the incident row is committed in the store (the bench polls the
   store every 0.2 ms). Target p50 ≤ 5 ms, p99 ≤ 30 ms over 200 trials.
3. first task: append → the first task of the remediation playbook running (the task touches a
   marker; its mtime is the moment), beside bare ``ansible-playbook`` start → the same marker,
   alternating in one run. Target p50 ≤ bare p50 + 50 ms.
4. footprint: the service with 10 watched files and one journal unit (the real journalctl),
   idle RSS and CPU over 60 s. Targets ≤ 30 MB, ≤ 0.1 %.

``python -m tests.bench.bench_remediator [--quick]``; results in tests/bench/results/remediator.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
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


def packaged_rules_on(path: Path) -> list[dict[str, Any]]:
    """The default pack, pointed at a file instead of the journal."""
    doc = yaml.safe_load((ROOT / "files" / "rules.d" / "50-port-sheet-sync.yml").read_text())
    for r in doc["rules"]:
        r["source"] = {"file": str(path)}
    return doc["rules"]


# --------------------------------------------------------------------------- 1. ingest


def issue_rule_on(path: Path) -> list[dict[str, Any]]:
    """The issue's example rule, on a file."""
    return [
        {
            "name": "sheet-sync-token",
            "source": {"file": str(path)},
            "match": r"\[port-sheet\] token error: HTTP Error (?P<status>\d+)",
            "ignore": [r"HTTP Error 5\d\d"],
            "threshold": 3,
            "within": "90m",
            "group_by": ["status"],
            "cooldown": "6h",
            "resolve": r"\[port-sheet\] sync ok",
        }
    ]


def make_log(path: Path, n: int) -> None:
    rnd = random.Random(7)
    words = ["sheet", "agent", "queue", "task", "session", "tick", "poll", "batch", "host", "disk"]
    with open(path, "w") as f:
        buf = []
        for i in range(n):
            if i % 1000 == 999:
                line = f"2026-05-14T08:{i % 60:02d}:00Z port-sheet-sync[812]: {LINE}"
            else:
                body = " ".join(rnd.choice(words) for _ in range(9))
                line = f"2026-05-14T08:{i % 60:02d}:00Z jada-agent[100]: INFO {body} id={i:08d}"
            buf.append(line[:99].ljust(99))
            if len(buf) >= 10000:
                f.write("\n".join(buf) + "\n")
                buf = []
        if buf:
            f.write("\n".join(buf) + "\n")


def bench_ingest(tmp: Path, quick: bool) -> dict[str, Any]:
    from agent import config
    from agent.remediator.service import Remediator

    n = 200_000 if quick else 1_000_000
    src = tmp / "ingest-src.log"
    make_log(src, n)
    size = src.stat().st_size
    # grep -c on the same file (page cache warm for both)
    grep_times, grep_cpu = [], []
    for _ in range(3):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        out = subprocess.run(
            ["grep", "-c", "token error", str(src)], capture_output=True, text=True
        )
        grep_times.append(time.perf_counter() - t0)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        grep_cpu.append(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime)
    grep_count = int(out.stdout.strip())

    cpu: dict[str, list[float]] = {}

    def measure(rules_for: Any, runs: int) -> tuple[list[float], int]:
        times, fired = [], 0
        cpu[rules_for.__name__] = []
        for trial in range(runs):
            d = tmp / f"ingest-{rules_for.__name__}-{trial}"
            d.mkdir()
            log = d / "app.log"
            rules_dir = d / "rules.d"
            write_rules(rules_dir, rules_for(log))
            s = config.from_dict(settings_doc(d, rules_dir), "bench")
            r = Remediator(s)
            r.apply_rules(r.load())  # the tail starts on an absent file: all of it will be new
            os.link(src, log)  # the same inode, page cache warm: the bench reads, never writes
            c0, t0 = time.process_time(), time.perf_counter()
            r.read_file(str(log))
            times.append(time.perf_counter() - t0)
            cpu[rules_for.__name__].append(time.process_time() - c0)
            assert r.stats.bytes == size, (r.stats.bytes, size)  # every line was consumed
            fired = len(r.store.list_incidents())
            r.store.close()
            r.state.close()
        return times, fired

    runs = 3 if quick else 5
    ours, fired = measure(packaged_rules_on, runs)
    one, _ = measure(issue_rule_on, runs)
    best = min(ours)
    res = {
        "lines": n,
        "bytes": size,
        "matching_lines": grep_count,
        "incidents_opened": fired,
        "seconds": [round(x, 4) for x in ours],
        "lines_per_s": round(n / best),
        "lines_per_s_median": round(n / statistics.median(ours)),
        "one_rule_lines_per_s": round(n / min(one)),
        "grep_c_lines_per_s": round(n / min(grep_times)),
        # CPU time: the same figures without the other processes of a shared machine.
        "cpu_lines_per_s": round(n / min(cpu["packaged_rules_on"])),
        "cpu_one_rule_lines_per_s": round(n / min(cpu["issue_rule_on"])),
        "grep_c_cpu_lines_per_s": round(n / max(min(grep_cpu), 1e-6)),
        "load_average": os.getloadavg()[0],
        "target_lines_per_s": 3_000_000,
    }
    res["met"] = res["lines_per_s"] >= 3_000_000
    print(
        f"ingest: {res['lines_per_s']:,} lines/s with the default pack (median"
        f" {res['lines_per_s_median']:,}; one rule: {res['one_rule_lines_per_s']:,})"
        f"  | grep -c: {res['grep_c_lines_per_s']:,} lines/s  | target ≥ 3,000,000"
        f"  [CPU time: {res['cpu_lines_per_s']:,} vs grep -c {res['grep_c_cpu_lines_per_s']:,};"
        f" load {res['load_average']:.1f}]"
        f"  [{'met' if res['met'] else 'NOT met'}]"
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


def proc_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller runs (CI smoke)")
    ap.add_argument(
        "--only", action="append", choices=["ingest", "detection", "first_task", "footprint"]
    )
    args = ap.parse_args()
    which = args.only or ["ingest", "detection", "first_task", "footprint"]
    results: dict[str, Any] = {"quick": args.quick, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="bench-remediator-") as t:
        tmp = Path(t)
        for name in which:
            sub = tmp / name
            sub.mkdir()
            results[name] = globals()[f"bench_{name}"](sub, args.quick)
    out = ROOT / "tests" / "bench" / "results" / "remediator.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written: {out}")


if __name__ == "__main__":
    main()
